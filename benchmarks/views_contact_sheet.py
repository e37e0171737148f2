"""Issue 16: the contact sheet of novel views with generated images: the 8 Market people of
views_plausibility.py (same seed), each rotated by 0-315 degrees in 45-degree steps and drawn by a trained
generator run (PG² or Deformable GAN) from the person's own image.

    python benchmarks/views_contact_sheet.py RUN [--out benchmarks/results/views/contact_sheet.png]

Rows: people; columns: the real image beside its annotated skeleton, then per angle the generated image beside
its target skeleton (over the dimmed generated image).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from views_plausibility import ANGLES, draw_skeleton, pick_people  # noqa: E402


def main() -> None:
    from PIL import Image

    from reid_aug.dataset.market import load_dataset
    from reid_aug.generator.inference import load_generator
    from reid_aug.pairs import load_image
    from reid_aug.synthesis.posebank import PoseBank
    from reid_aug.synthesis.writer import tensor_to_uint8
    from reid_aug.utils.images import image_grid, save_png
    from reid_aug.views import rotate_poses

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--root", type=Path, default=Path("/work/shared/datasets/market1501"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "views" / "contact_sheet.png")
    args = ap.parse_args()
    index = load_dataset(args.root)
    bank = PoseBank.from_index(index)
    picks, views = pick_people(bank, args.seed)
    rot = rotate_poses(bank.keypoints[picks], ANGLES)                            # (8, A, 18, 2)
    gen = load_generator(args.run)
    src = torch.stack([load_image(index.path_of(bank.names[i])) for i in picks])  # (8, 3, H, W)
    n, a = len(picks), len(ANGLES)
    tgt_kp = torch.from_numpy(rot.keypoints.reshape(n * a, 18, 2).astype(np.int64))
    src_kp = torch.from_numpy(np.repeat(bank.keypoints[picks], a, axis=0).astype(np.int64))
    src_rep = src.repeat_interleave(a, 0)
    extra = {"src_kp": src_kp, "tgt_kp": tgt_kp, "src_pose": gen.pose_maps(src_kp)} if gen.family.conditions else {}
    out = tensor_to_uint8(gen.generate(src_rep, gen.pose_maps(tgt_kp), **extra)).reshape(n, a, 128, 64, 3)
    columns = [[] for _ in range(a + 1)]
    for r, i in enumerate(picks):
        img = np.asarray(Image.open(index.path_of(bank.names[i])).convert("RGB").resize((64, 128)))
        columns[0].append(np.concatenate([img, draw_skeleton((img * 0.35).astype(np.uint8), bank.keypoints[i], 1)],
                                         axis=1))
        for j in range(a):
            columns[j + 1].append(np.concatenate([out[r, j], draw_skeleton((out[r, j] * 0.35).astype(np.uint8),
                                                                            rot.keypoints[r, j], 1)], axis=1))
    grid = image_grid([np.stack(col).transpose(0, 3, 1, 2) for col in columns], pad=4)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_png(grid, args.out)
    print(f"{args.out}: rows {', '.join(str(bank.names[i]) for i in picks)} (views {', '.join(views[picks])}); "
          f"columns: the real image, then for {', '.join(map(str, ANGLES))} degrees the generated image beside its "
          f"target skeleton; generator {gen.path} ({gen.family.name}, stage {gen.stages[-1]}, step {gen.step})")


if __name__ == "__main__":
    main()
