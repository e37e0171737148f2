"""Derive the rotated-pose visibility rule (and check the bone ratios) on Market-1501's annotations.

1. Label-only statistics, no lifting: images binned by the shoulders' order in the image,
   ``(x_left_shoulder - x_right_shoulder) / torso length`` (positive = the right shoulder on the
   image's left = front; negative = back), and profile views split by the nose's side: the share of
   each joint OpenPose reported.
2. Upper quartile and 95th percentile of each template bone's 2D length in torso lengths
   (train annotations), against reid_aug.views.lift.TEMPLATE.
3. The visibility intervals fitted on the lifted yaws (reid_aug.views.fit_visibility_intervals), their
   agreement, the agreement of the rule in reid_aug.views.VISIBILITY, and presence per 30-degree bin of psi.

    python benchmarks/views_visibility.py [--root /work/shared/datasets/market1501]

Writes ``benchmarks/results/views/visibility.md``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "views" / "visibility.md"
SHORT = ("nose", "neck", "r_sho", "r_elb", "r_wri", "l_sho", "l_elb", "l_wri", "r_hip", "r_kne", "r_ank",
         "l_hip", "l_kne", "l_ank", "r_eye", "l_eye", "r_ear", "l_ear")


def load(root: Path, which=("train", "test")) -> np.ndarray:
    from reid_aug.keypoints.annotations import read_annotations

    kps = []
    for split in which:
        kps.extend(read_annotations(root / "annotations" / f"market-annotation-{split}.csv").values())
    return np.stack(kps).astype(np.int64)


def presence_table(title: str, groups) -> list[str]:
    """Markdown table: one row per (label, present (n, 18)) group, the share of each joint present."""
    lines = [f"### {title}", "", "| group | n | " + " | ".join(SHORT) + " |", "|---|---:|" + "---:|" * 18]
    for label, present in groups:
        if len(present):
            lines.append(f"| {label} | {len(present)} | " + " | ".join(f"{v:.2f}" for v in present.mean(0)) + " |")
    return lines + [""]


def label_only_stats(kps: np.ndarray) -> list[str]:
    from reid_aug.views.lift import lift_poses, present_mask

    lifted = lift_poses(kps)
    ok = lifted.ok
    p, k, s = present_mask(kps)[ok], kps[ok], lifted.scale[ok]
    order = (k[:, 5, 1] - k[:, 2, 1]) / s
    bins = [(-9, -0.5, "back (right shoulder on the image's right, < -0.5)"), (-0.5, -0.25, "-0.5 .. -0.25"),
            (-0.25, -0.1, "-0.25 .. -0.1"), (-0.1, 0.1, "edge-on, -0.1 .. 0.1"), (0.1, 0.25, "0.1 .. 0.25"),
            (0.25, 0.5, "0.25 .. 0.5"), (0.5, 9, "front (right shoulder on the image's left, > 0.5)")]
    groups = [(label, p[(order >= lo) & (order < hi)]) for lo, hi, label in bins]
    lines = presence_table("Shoulder order in the image (labels only, no lifting)", groups)
    profile = (np.abs(order) < 0.25) & p[:, 0]
    nose_dx = (k[:, 0, 1] - k[:, 1, 1]).astype(float)
    lines += presence_table("Profiles (|shoulder order| < 0.25, nose present) by the nose's side", [
        ("nose right of the neck (> 2 px)", p[profile & (nose_dx > 2)]),
        ("nose left of the neck (< -2 px)", p[profile & (nose_dx < -2)])])
    return lines


def bone_ratios(kps: np.ndarray) -> list[str]:
    from reid_aug.views.lift import TEMPLATE, lift_poses, present_mask

    lifted = lift_poses(kps)
    ok = lifted.ok
    p, k, s = present_mask(kps)[ok], kps[ok], lifted.scale[ok]
    bones = {"shoulder width": (2, 5), "hip width": (8, 11), "upper arm": (2, 3), "forearm": (3, 4),
             "thigh": (8, 9), "shin": (9, 10), "neck-nose": (1, 0), "nose-eye": (0, 14), "eye-ear": (14, 16),
             "ear-ear": (16, 17)}
    dc = {"shoulder width": 0.90, "hip width": 0.66, "upper arm": 0.65, "forearm": 0.51, "thigh": 0.85, "shin": 0.85}
    lines = ["### Bone lengths / torso length (train annotations, 2D)", "",
             "| bone | n | median | upper quartile | 95th pct | template | Drillis-Contini |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, (i, j) in bones.items():
        m = p[:, i] & p[:, j]
        v = np.linalg.norm(k[m, i] - k[m, j], axis=1) / s[m]
        q = np.quantile(v, [0.5, 0.75, 0.95])
        t = np.linalg.norm(TEMPLATE[i] - TEMPLATE[j]) if "width" not in name else abs(TEMPLATE[i, 0] - TEMPLATE[j, 0])
        lines.append(f"| {name} | {m.sum()} | {q[0]:.3f} | {q[1]:.3f} | {q[2]:.3f} | {t:.3f} | {dc.get(name, '')} |")
    return lines + [""]


def fitted_rule(kps: np.ndarray) -> list[str]:
    from reid_aug.views import VISIBILITY, fit_visibility_intervals, lift_poses, visible_at
    from reid_aug.views.lift import present_mask
    from reid_aug.views.rotate import JOINT_RULES, joint_psi

    lifted = lift_poses(kps)
    yaw, present = lifted.yaw[lifted.ok], present_mask(kps)[lifted.ok]
    fit = fit_visibility_intervals(yaw, present)
    rule = visible_at(yaw)
    lines = [f"### Fitted visibility intervals ({len(yaw)} liftable poses)", "",
             "| joint kind | fitted interval of psi | agreement (fit) | VISIBILITY in code | agreement (code) |",
             "|---|---|---:|---|---:|"]
    for kind, (interval, agreement) in fit.items():
        joints = [j for j, k, _ in JOINT_RULES if k == kind]
        code = float((rule[:, joints] == present[:, joints]).mean())
        lines.append(f"| {kind} | {interval or 'always'} | {agreement:.3f} | {VISIBILITY[kind] or 'always'} "
                     f"| {code:.3f} |")
    edges = np.arange(-180, 180, 30)
    lines += ["", "### Presence per 30-degree bin of psi (left and right joints pooled)", "",
              "| kind | " + " | ".join(f"{e}..{e + 30}" for e in edges) + " |", "|---|" + "---:|" * len(edges)]
    for kind in fit:
        psi = np.concatenate([joint_psi(yaw, side) for _, k, side in JOINT_RULES if k == kind])
        seen = np.concatenate([present[:, j] for j, k, _ in JOINT_RULES if k == kind])
        cells = [seen[(psi >= e) & (psi < e + 30)].mean() for e in edges]
        lines.append(f"| {kind} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/work/shared/datasets/market1501"))
    args = ap.parse_args()
    t0 = time.time()
    kps = load(args.root)
    lines = label_only_stats(kps) + bone_ratios(load(args.root, ("train",))) + fitted_rule(kps)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    head = ["# Visibility rule and bone ratios from Market-1501's annotations", "",
            f"Command: `python benchmarks/views_visibility.py --root {args.root}`; commit {commit}; "
            f"{len(kps)} annotations (train + test); wall time {time.time() - t0:.1f} s.", "",
            "psi = yaw for the nose; for a left/right joint, the yaw signed so that positive = that side "
            "turned towards the camera (reid_aug/views/rotate.py).", ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(head + lines))
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
