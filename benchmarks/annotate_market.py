"""Issue 15: how well `reid-aug annotate` (MediaPipe Pose) agrees with Market-1501's OpenPose annotations.

1. Settings (canvas pad, frame size, visibility threshold) are chosen on SELECT Market *train* images by the
   share of OpenPose joints that MediaPipe finds within PCK 0.1 x height ("agreeing recall").
2. With the chosen settings, REPORT other images (half train, half test; none used in 1.) give per joint the
   detection rate (ours and OpenPose's), PCK@0.1h where both found the joint, and the share of images valid by the
   pairs rule (both shoulders and both hips), plus images/s with 2 worker processes.
The OpenPose annotations are not ground truth: these are agreement figures.

    python benchmarks/annotate_market.py --out benchmarks/results/annotate      (needs the pose extra)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reid_aug.dataset.market import load_dataset  # noqa: E402
from reid_aug.keypoints.blazepose import to_openpose18  # noqa: E402
from reid_aug.keypoints.skeleton import KEYPOINT_NAMES, MISSING, TORSO_JOINTS  # noqa: E402

PADS, FRAMES, VISIBILITIES = (0.25, 0.5, 0.75), (192, 256, 384), (0.3, 0.5, 0.7)
_EST = {}


def _init(pad, frame):
    from reid_aug.keypoints.blazepose import BlazePose

    _EST["bp"] = BlazePose(pad, frame)


def _points(paths):
    from PIL import Image

    out = []
    for p in paths:
        with Image.open(p) as im:
            rgb = np.asarray(im.convert("RGB"))
        out.append((_EST["bp"].points(rgb), rgb.shape[:2]))
    return out


def estimate(paths, pad, frame, workers=2):
    """-> (list of (33, 3) points or None with image sizes, images/s)."""
    chunks = [paths[i:i + 16] for i in range(0, len(paths), 16)]
    with mp.get_context("spawn").Pool(workers, initializer=_init, initargs=(pad, frame)) as pool:
        pool.map(_points, [paths[:workers]] * workers)        # warm up (model load) outside the timing
        t = time.perf_counter()
        res = [r for chunk in pool.imap(_points, chunks) for r in chunk]
        return res, len(paths) / (time.perf_counter() - t)


def agreement(points, truth, visibility):
    ours = np.stack([to_openpose18(p, size, visibility) for p, size in points]).astype(float)
    found, tfound = ours[..., 0] != MISSING, truth[..., 0] != MISSING
    both = found & tfound
    dist = np.hypot(*(ours - truth).transpose(2, 0, 1))
    ok = both & (dist <= 0.1 * 128)
    return {
        "agreeing_recall": float(ok.sum() / tfound.sum()),
        "pck_where_both": float(ok.sum() / both.sum()) if both.any() else 0.0,
        "person_found": float(np.mean([p is not None for p, _ in points])),
        "valid_share": float(found[:, list(TORSO_JOINTS)].all(1).mean()),
        "valid_share_openpose": float(tfound[:, list(TORSO_JOINTS)].all(1).mean()),
        "per_joint": {KEYPOINT_NAMES[j]: {"detection": float(found[:, j].mean()),
                                           "detection_openpose": float(tfound[:, j].mean()),
                                           "pck": float(ok[:, j].sum() / both[:, j].sum()) if both[:, j].any() else None}
                      for j in range(18)},
    }


def rule_check(index, rows, n: int, out: Path) -> None:
    """``--rule-check N``: agreement on N held-out images with the recipe's settings, with and without the
    OpenPose visibility rule for back views (:func:`reid_aug.keypoints.blazepose.openpose_visibility`)."""
    from reid_aug.keypoints.annotate import load_annotate_config
    from reid_aug.keypoints.blazepose import openpose_visibility

    cfg = load_annotate_config()
    rows = rows[:n]
    pts, rate = estimate([r.path for r in rows], cfg.pad, cfg.frame)
    truth = index.keypoints_for([r.name for r in rows]).astype(float)
    plain = agreement(pts, truth, cfg.visibility)
    kps = np.stack([to_openpose18(p, size, cfg.visibility) for p, size in pts])
    ruled = openpose_visibility(kps)
    ruled_pts = [(p, size, k) for (p, size), k in zip(pts, ruled)]
    with_rule = agreement_of(ruled, truth, [p is not None for p, _, _ in ruled_pts])
    result = {"images": len(rows), "settings": {"pad": cfg.pad, "frame": cfg.frame, "visibility": cfg.visibility},
              "without_rule": plain, "with_rule": with_rule, "images_per_s_2_workers": round(rate, 1)}
    (out / "market_visibility_rule.json").write_text(json.dumps(result, indent=1) + "\n")
    for name in ("nose", "r_eye", "r_ear", "r_wrist"):
        print(name, {k: round(v["per_joint"][name]["detection"], 3) for k, v in (("without", plain), ("with", with_rule))},
              "openpose", round(plain["per_joint"][name]["detection_openpose"], 3))
    print({k: (round(v["agreeing_recall"], 4), round(v["pck_where_both"], 4)) for k, v in (("without", plain),
                                                                                       ("with", with_rule))})


def agreement_of(ours_kps: np.ndarray, truth: np.ndarray, found) -> dict:
    """:func:`agreement` for keypoints already mapped to the 18 joints."""
    ours = ours_kps.astype(float)
    f, tfound = ours[..., 0] != MISSING, truth[..., 0] != MISSING
    both = f & tfound
    ok = both & (np.hypot(*(ours - truth).transpose(2, 0, 1)) <= 0.1 * 128)
    return {"agreeing_recall": float(ok.sum() / tfound.sum()), "pck_where_both": float(ok.sum() / both.sum()),
            "person_found": float(np.mean(found)), "valid_share": float(f[:, list(TORSO_JOINTS)].all(1).mean()),
            "per_joint": {KEYPOINT_NAMES[j]: {"detection": float(f[:, j].mean()),
                                               "detection_openpose": float(tfound[:, j].mean()),
                                               "pck": float(ok[:, j].sum() / both[:, j].sum()) if both[:, j].any()
                                               else None} for j in range(18)}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="market")
    ap.add_argument("--select", type=int, default=400)
    ap.add_argument("--report", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate")
    ap.add_argument("--rule-check", type=int, default=0,
                    help="only compare the back-view visibility rule on this many held-out images (recipe settings)")
    args = ap.parse_args()
    index = load_dataset(args.dataset)
    train = index.split("train").sample(frac=1.0, random_state=0)
    test = index.split("gallery")
    test = test[test["kind"] == "normal"].sample(frac=1.0, random_state=0)
    sel = train.head(args.select)
    rep = list(train.iloc[args.select:args.select + args.report // 2].itertuples()) + list(
        test.head(args.report // 2).itertuples())
    if args.rule_check:
        args.out.mkdir(parents=True, exist_ok=True)
        return rule_check(index, rep, args.rule_check, args.out)
    truth_sel = index.keypoints_for(sel["name"]).astype(float)
    grid, t0 = [], time.time()
    for pad in PADS:
        for frame in FRAMES:
            pts, rate = estimate(sel["path"].tolist(), pad, frame)
            for vis in VISIBILITIES:
                a = agreement(pts, truth_sel, vis)
                grid.append({"pad": pad, "frame": frame, "visibility": vis, "images_per_s": round(rate, 1),
                             **{k: v for k, v in a.items() if k != "per_joint"}})
                print(json.dumps(grid[-1]), flush=True)
    best = max(grid, key=lambda g: g["agreeing_recall"])
    pts, rate = estimate([r.path for r in rep], best["pad"], best["frame"])
    truth = index.keypoints_for([r.name for r in rep]).astype(float)
    result = {"selection": {"images": len(sel), "split": "train", "grid": grid, "chosen": best},
              "report": {"images": len(rep), "train": args.report // 2, "test": args.report - args.report // 2,
                         "images_per_s_2_workers": round(rate, 1),
                         **agreement(pts, truth, best["visibility"])},
              "seconds": round(time.time() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "market_agreement.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["report"], indent=1))


if __name__ == "__main__":
    main()
