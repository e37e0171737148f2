"""SSIM over the real Market-1501 test pairs: ours (batched torch) vs scikit-image's per-image loop, same run.

The pairs of ``annotations/market-pairs-test.csv`` (12,000) with the source image standing in for the generated
one -- which is exactly the copy-the-source floor of ``evaluate-generator``. All images are decoded first (timed
separately), then for each protocol:

- ours, eager (``ssim(src, tgt, protocol)``) and fused with ``torch.compile`` (``compile=True``; its one-off
  compilation is timed separately, steady state is what is compared);
- the published loop: ``skimage.metrics.structural_similarity`` per image, exactly as the Deformable GAN / PATN
  (``defgan``) and PG² (``pg2``) scripts call it;
- speed-up = skimage seconds / ours seconds, max |ours - skimage| over all pairs;
- the copy-source floor (mean SSIM) and the mask-SSIM floor (target pose masks; checked against scikit-image on
  a 500-pair sample).

    OMP_NUM_THREADS=1 python benchmarks/bench_ssim.py --out benchmarks/results/ssim.md

Runs on one thread by default (the scikit-image loop is single-threaded); ``--threads`` changes it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reid_aug.metrics.ssim import PROTOCOLS, ssim, ssim_skimage  # noqa: E402
from reid_aug.utils.io import atomic_write_text  # noqa: E402


def load_pairs(root: Path, n: int | None):
    import pandas as pd
    from PIL import Image
    from tqdm import tqdm

    from reid_aug.keypoints.annotations import read_annotations
    from reid_aug.pose import pose_masks

    pairs = pd.read_csv(root / "annotations" / "market-pairs-test.csv")
    if n:
        pairs = pairs.iloc[:n]
    image_dir = root / "Market-1501-v15.09.15" / "bounding_box_test"
    if not image_dir.is_dir():
        image_dir = root / "bounding_box_test"
    names = sorted(set(pairs["from"]) | set(pairs["to"]))
    cache = {}
    for name in tqdm(names, desc="decode", unit="img", disable=None):
        cache[name] = torch.from_numpy(np.array(Image.open(image_dir / name).convert("RGB"))).permute(2, 0, 1)
    src = torch.stack([cache[x] for x in pairs["from"]])
    tgt = torch.stack([cache[x] for x in pairs["to"]])
    kps = read_annotations(root / "annotations" / "market-annotation-test.csv")
    tgt_kp = torch.from_numpy(np.stack([kps[x] for x in pairs["to"]]).astype(np.int64))
    mask = pose_masks(tgt_kp, (128, 64))
    return src, tgt, mask, len(names)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import skimage

    load = os.getloadavg() if hasattr(os, "getloadavg") else ("?",)
    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
            f"scikit-image {skimage.__version__}, numpy {np.__version__}; load average at start "
            f"{', '.join(f'{x:.1f}' for x in load)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(os.environ.get("REID_AUG_MARKET_ROOT",
                                                                    "../shared/datasets/market1501")))
    ap.add_argument("--n", type=int, default=None, help="first N pairs only (default: all 12,000)")
    ap.add_argument("--protocols", default="defgan,pg2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = machine()

    (src, tgt, mask, n_images), t_load = timed(lambda: load_pairs(args.root, args.n))
    n = src.shape[0]
    print(f"loaded {n} pairs ({n_images} distinct images) + target pose masks in {t_load:.1f} s")

    rows = []
    for proto in [p.strip() for p in args.protocols.split(",") if p.strip()]:
        assert proto in PROTOCOLS, proto
        ours, t_ours = timed(lambda: ssim(src, tgt, proto))
        t_compile = t_comp = None
        diff_comp = None
        if not args.no_compile:
            _, t_compile = timed(lambda: ssim(src[:8], tgt[:8], proto, compile=True))
            comp, t_comp = timed(lambda: ssim(src, tgt, proto, compile=True))
        ref, t_ref = timed(lambda: ssim_skimage(src, tgt, proto))
        diff = float(np.abs(ours.numpy() - ref).max())
        if not args.no_compile:
            diff_comp = float(np.abs(comp.numpy() - ref).max())
        mask_floor, t_mask = timed(lambda: ssim(src, tgt, proto, mask=mask))
        k = min(500, n)
        mask_ref = ssim_skimage(src[:k], tgt[:k], proto, mask=mask[:k])
        mask_diff = float(np.abs(mask_floor[:k].numpy() - mask_ref).max())
        row = dict(protocol=proto, n=n, t_ours=t_ours, t_compile=t_compile, t_comp=t_comp, t_ref=t_ref, diff=diff,
                   diff_comp=diff_comp, floor=float(ref.mean()), floor_ours=float(ours.mean()),
                   mask_floor=float(mask_floor.mean()), t_mask=t_mask, mask_diff=mask_diff, mask_k=k)
        rows.append(row)
        comp_txt = (f"compiled {t_comp:.2f} s ({t_ref / t_comp:.1f}x, compile {t_compile:.1f} s, max diff "
                    f"{diff_comp:.1e}); " if t_comp else "")
        print(f"{proto}: ours {t_ours:.2f} s ({t_ref / t_ours:.1f}x); {comp_txt}skimage {t_ref:.1f} s; "
              f"max |ours - skimage| {diff:.1e}; copy-source floor {ref.mean():.4f}; mask-SSIM floor "
              f"{mask_floor.mean():.4f} (max diff on {k} pairs {mask_diff:.1e})")

    md = [f"# SSIM: batched torch vs scikit-image's per-image loop ({n} Market-1501 test pairs)", "",
          "Command (from the repository root):", "",
          f"    OMP_NUM_THREADS={args.threads} python benchmarks/bench_ssim.py"
          + (f" --n {args.n}" if args.n else "") + (" --no-compile" if args.no_compile else "")
          + (f" --out {args.out}" if args.out else ""), "",
          f"Machine: {info}.", "",
          f"Decoding the {n_images} distinct images of the {n} pairs (+ target pose masks) took {t_load:.1f} s and is "
          "not part of any timing below. Inputs: the pairs of `market-pairs-test.csv` with the source image as the "
          "'generated' one, i.e. the copy-the-source floor.", "",
          "| protocol | scikit-image loop (s) | ours eager (s) | speed-up | ours compiled (s) | speed-up | "
          "max abs diff (eager / compiled) | copy-source floor SSIM | mask-SSIM floor |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        comp = (f"{r['t_comp']:.2f} (+{r['t_compile']:.0f} s compile once) | {r['t_ref'] / r['t_comp']:.1f}x"
                if r["t_comp"] else "n/a | n/a")
        dc = f"{r['diff_comp']:.1e}" if r["diff_comp"] is not None else "n/a"
        md.append(f"| {r['protocol']} | {r['t_ref']:.1f} | {r['t_ours']:.2f} | {r['t_ref'] / r['t_ours']:.1f}x | "
                  f"{comp} | {r['diff']:.1e} / {dc} | {r['floor']:.4f} | {r['mask_floor']:.4f} |")
    md += ["", "- speed-up = scikit-image seconds / ours seconds, both on the same decoded uint8 images in this run.",
           "- max abs diff: over all pairs, per-image SSIM, ours vs scikit-image (target < 1e-4).",
           "- copy-source floor: mean scikit-image SSIM of (source, target); the published Market-1501 figure for "
           "`defgan` is about 0.151.",
           "- mask-SSIM floor: ours, both images multiplied by the target pose mask (`reid_aug.pose.pose_masks`); "
           + "; ".join(f"{r['protocol']}: max diff to scikit-image {r['mask_diff']:.1e} on the first {r['mask_k']} "
                       "pairs" for r in rows) + "."]
    text = "\n".join(md) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
