"""Are rotated Market-1501 skeletons as plausible as real ones? And which views does each identity have?

Plausibility: the training pose bank (reid_aug.synthesis.posebank.PoseBank, train images with both
shoulders and hips) is split by identity; HOLDOUT of the identities (seeded) are held out. For every
held-out pose, the distance to its nearest bank pose (posebank's normalised poses and masked
distance, in torso lengths) is the *real* statistic; the same distance for the held-out poses
rotated by 45..315 degrees (reid_aug.views.rotate_poses) is the *rotated* one. Because the masked
distance shrinks with the number of joints, each angle also gets a matched control: the real poses
with the joints their rotated versions lost removed. An angle "fails" when more than 10 % of its
rotated poses (twice the expected 5 %) lie beyond the control's 95th percentile.

Views: the share of training identities with 0/1/2/3 of the views front/side/back
(reid_aug.views.view_table), and the yaw histogram.

Figure: 8 real people (train, chosen across source views with a fixed seed): the image with its
annotation, then the skeleton rotated by 0, 45, ..., 315 degrees drawn over the dimmed image.

    python benchmarks/views_plausibility.py [--root /work/shared/datasets/market1501]

Writes ``benchmarks/results/views/plausibility.md`` and ``benchmarks/results/views/rotations.png``.
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

OUT = ROOT / "benchmarks" / "results" / "views"
ANGLES = (0, 45, 90, 135, 180, 225, 270, 315)
HOLDOUT = 0.1
CHUNK = 48


def nearest_distance(queries: np.ndarray, bank_norm: np.ndarray) -> np.ndarray:
    """(n,) masked distance of each query pose (n, 18, 2) int keypoints to its nearest bank pose."""
    from reid_aug.synthesis.posebank import normalize_poses, pose_distance_matrix

    q = normalize_poses(queries)
    out = np.empty(len(q))
    for i in range(0, len(q), CHUNK):
        out[i:i + CHUNK] = np.nanmin(pose_distance_matrix(q[i:i + CHUNK], bank_norm), axis=1)
    return out


def plausibility(bank, seed: int) -> tuple[list[str], dict]:
    from reid_aug.synthesis.posebank import torso_present
    from reid_aug.views import rotate_poses

    ids = np.unique(bank.pids)
    held = np.random.default_rng(seed).choice(ids, int(round(len(ids) * HOLDOUT)), replace=False)
    out_mask = np.isin(bank.pids, held)
    bank_norm = bank.normalized()[~out_mask]
    src = bank.keypoints[out_mask].astype(np.int64)
    real = nearest_distance(src, bank_norm)
    p95 = float(np.quantile(real, 0.95))
    rot = rotate_poses(src, ANGLES[1:])
    lines = [f"Bank: {int((~out_mask).sum())} poses of {len(ids) - len(held)} identities; held out: {len(src)} "
             f"poses of {len(held)} identities (seed {seed}). Real: {len(real)} poses, "
             f"{(src[..., 0] >= 0).sum(-1).mean():.1f} joints/pose, mean {real.mean():.3f}, median "
             f"{np.median(real):.3f}, 95th percentile {p95:.3f} torso lengths.", "",
             "The masked distance averages over the joints a pose has, so fewer joints give smaller distances: "
             "each angle is also compared with a matched control, the real held-out poses with the same joints "
             "removed as their rotated versions (`control`).", "",
             "| angle | n | joints/pose | rotated mean | rotated median | control median | share > real 95th | "
             "share > control 95th | verdict |", "|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    verdicts = {}
    for a, angle in enumerate(ANGLES[1:]):
        k = rot.keypoints[:, a]
        ok = torso_present(k)
        d = nearest_distance(k[ok], bank_norm)
        control = nearest_distance(np.where(k[ok] >= 0, src[ok], -1), bank_norm)
        share_ctl = float((d > np.quantile(control, 0.95)).mean())
        verdicts[angle] = "FAILS" if share_ctl > 0.10 else "ok"
        lines.append(f"| {angle} | {len(d)} | {(k[ok][..., 0] >= 0).sum(-1).mean():.1f} | {d.mean():.3f} | "
                     f"{np.median(d):.3f} | {np.median(control):.3f} | {(d > p95).mean():.3f} | {share_ctl:.3f} | "
                     f"{verdicts[angle]} |")
    return lines + [""], verdicts


def view_shares(index) -> list[str]:
    from reid_aug.views import view_count_shares, view_table, views_per_identity

    vt = view_table(index, split="train")
    per_id = views_per_identity(vt)
    shares = view_count_shares(vt)
    counts = vt["view"].value_counts()
    hist, edges = np.histogram(vt["yaw"].dropna(), bins=np.arange(-180, 181, 30))
    lines = [f"Training images: {len(vt)}; views: " + ", ".join(f"{v} {int(counts.get(v, 0))}" for v in
                                                                 ("front", "side", "back", "unknown")), "",
             "| views per identity | identities | share |", "|---:|---:|---:|"]
    for n in range(4):
        lines.append(f"| {n} | {int((per_id['n_views'] == n).sum())} | {shares[n]:.3f} |")
    lines += ["", "Identities with each view: " + ", ".join(f"{v} {per_id[v].mean():.3f}" for v in
                                                           ("front", "side", "back")), "",
              "Yaw histogram (30-degree bins from -180): " + " ".join(str(int(h)) for h in hist), ""]
    return lines


def draw_skeleton(image: np.ndarray, kps: np.ndarray, zoom: int) -> np.ndarray:
    """uint8 (H*zoom, W*zoom, 3) copy of ``image`` (H, W, 3) with the OpenPose limbs of ``kps`` (18, 2)."""
    import colorsys

    from PIL import Image, ImageDraw

    from reid_aug.keypoints.skeleton import LIMBS

    im = Image.fromarray(image).resize((image.shape[1] * zoom, image.shape[0] * zoom), Image.NEAREST)
    draw = ImageDraw.Draw(im)
    for i, (a, b) in enumerate(LIMBS):
        if (kps[[a, b]] >= 0).all():
            rgb = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(i / len(LIMBS), 1.0, 1.0))
            draw.line([(kps[a, 1] * zoom, kps[a, 0] * zoom), (kps[b, 1] * zoom, kps[b, 0] * zoom)], fill=rgb, width=3)
    for y, x in kps[kps[:, 0] >= 0]:
        draw.ellipse([x * zoom - 2, y * zoom - 2, x * zoom + 2, y * zoom + 2], fill=(255, 255, 255))
    return np.asarray(im)


def pick_people(bank, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8 bank rows (3 front, 2 side, 3 back views, drawn with ``seed``) and every bank pose's view."""
    from reid_aug.views import estimate_views

    _, views = estimate_views(bank.keypoints)
    rng = np.random.default_rng(seed)
    picks = np.concatenate([rng.choice(np.flatnonzero(views == v), n, replace=False)
                            for v, n in (("front", 3), ("side", 2), ("back", 3))])
    return picks, views


def figure(index, bank, path: Path, seed: int, zoom: int = 2) -> list[str]:
    from PIL import Image

    from reid_aug.utils.images import image_grid, save_png
    from reid_aug.views import rotate_poses

    picks, views = pick_people(bank, seed)
    rot = rotate_poses(bank.keypoints[picks], ANGLES)
    columns = [[] for _ in range(len(ANGLES) + 1)]
    for r, i in enumerate(picks):
        img = np.asarray(Image.open(index.path_of(bank.names[i])).convert("RGB").resize((64, 128)))
        dim = (img * 0.45).astype(np.uint8)
        columns[0].append(draw_skeleton(img, bank.keypoints[i], zoom))
        for a in range(len(ANGLES)):
            columns[a + 1].append(draw_skeleton(dim, rot.keypoints[r, a], zoom))
    grid = image_grid([np.stack(c).transpose(0, 3, 1, 2) for c in columns], pad=4)
    save_png(grid, path)
    return [f"Figure `{path.name}`: rows = {', '.join(str(bank.names[i]) for i in picks)} "
            f"(source views {', '.join(views[picks])}, estimated yaws "
            f"{', '.join(f'{y:.0f}' for y in rot.source_yaw)}); columns = annotated image, then the skeleton "
            f"rotated by {', '.join(map(str, ANGLES))} degrees over the dimmed image.", ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=Path("/work/shared/datasets/market1501"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    from reid_aug.dataset.market import load_dataset
    from reid_aug.synthesis.posebank import PoseBank

    t0 = time.time()
    index = load_dataset(args.root)
    bank = PoseBank.from_index(index)
    table, _ = plausibility(bank, args.seed)
    lines = ["## Plausibility of rotated poses", ""] + table
    lines += ["## Views per training identity", ""] + view_shares(index)
    lines += ["## Rotations of 8 people", ""] + figure(index, bank, OUT / "rotations.png", args.seed)
    lines += ["To do: the contact sheet with PG² images for these targets needs a trained generator.", ""]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    head = ["# Novel-view poses on Market-1501: plausibility and views", "",
            f"Command: `python benchmarks/views_plausibility.py --root {args.root} --seed {args.seed}`; "
            f"commit {commit}; wall time {time.time() - t0:.0f} s.", ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "plausibility.md").write_text("\n".join(head + lines))
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()
