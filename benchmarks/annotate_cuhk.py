"""Issue 15: `reid-aug annotate` on cuhk03-detected-mini (no keypoints of its own): the share of valid images and a
contact sheet of the estimated skeletons over the images.

    python benchmarks/annotate_cuhk.py --root ../shared/datasets/cuhk03-detected-mini --work /tmp/cuhk-ann \\
        --out benchmarks/results/annotate      (pose extra; the annotations go to --work, pointed to from the cache)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    from PIL import Image

    from reid_aug.dataset.market import load_dataset
    from reid_aug.keypoints.annotate import annotate_dataset, load_annotate_config
    from reid_aug.utils.images import image_grid, save_png
    from views_plausibility import draw_skeleton

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=Path("/work/shared/datasets/cuhk03-detected-mini"))
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    cfg = load_annotate_config(None, [f"workers={args.workers}"])
    t0 = time.time()
    report = annotate_dataset(args.root, cfg, out=args.work)
    seconds = time.time() - t0
    index = load_dataset(args.root, annotations_dir=args.work)
    table = index.table
    by_split = {s: float(table[table["split"] == s]["pose_ok"].mean()) for s in ("train", "query", "gallery")}
    rng = np.random.default_rng(0)
    picks = table.iloc[np.sort(rng.choice(len(table), 24, replace=False))]
    tiles = []
    for r in picks.itertuples():
        img = Image.open(r.path).convert("RGB")
        kp = index.keypoints[r.name] if r.name in index.keypoints else np.full((18, 2), -1)
        scale = np.array([128 / img.size[1], 64 / img.size[0]])
        kp = np.where(kp >= 0, np.floor((kp + 0.5) * scale), -1).astype(int)     # follows the resize to 128x64
        tiles.append(draw_skeleton(np.asarray(img.resize((64, 128))), kp, 2))
    cols = [np.stack(tiles[i::6]).transpose(0, 3, 1, 2) for i in range(6)]
    args.out.mkdir(parents=True, exist_ok=True)
    save_png(image_grid(cols, pad=4), args.out / "cuhk03_mini_skeletons.png")
    result = {"dataset": str(args.root), "images": report["images"], "annotated": report["annotated"],
              "person_found": report["person_found"], "valid_share": report["valid_share"],
              "valid_share_by_split": by_split, "failed": report["failed"], "settings": report["settings"],
              "seconds": round(seconds, 1), "images_per_second": report["images_per_second"],
              "contact_sheet": "cuhk03_mini_skeletons.png (24 images drawn with seed 0, resized to 128x64 with "
                               "their keypoints)"}
    (args.out / "cuhk03_mini.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
