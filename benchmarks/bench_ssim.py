"""SSIM over the real Market-1501 test pairs: ours (batched torch) vs scikit-image's per-image loop, same run.

The pairs of ``annotations/market-pairs-test.csv`` (12,000) with the source image standing in for the generated
one -- which is exactly the copy-the-source floor of ``evaluate-generator``. All images are decoded first (timed
separately), then for each protocol, ``--rounds`` times (the machine is shared; every figure is the minimum over
the rounds, the per-round ratios are printed too):

- ours, default (``ssim(src, tgt, protocol)``: the native C kernel on CPU; its one-off build is timed
  separately) and the eager torch fallback (``ssim_native.NATIVE = False``: what runs where no C compiler works);
- the published loop: ``skimage.metrics.structural_similarity`` per image, exactly as the Deformable GAN / PATN
  (``defgan``) and PG² (``pg2``) scripts call it;
- speed-up = skimage seconds / ours seconds; max |ours - skimage| over all pairs;
- float32 accuracy of the default path: max |float32 - float64| of ours (the kernel's raw values), how many
  images the error estimate sent to float64, and
  the largest measured error in units of the estimate (``err / (2^-24 est)``, the calibration of ``EST_FACTOR``),
  plain and masked;
- the copy-source floor (mean SSIM) and the mask-SSIM floor (target pose masks; checked against scikit-image on
  the first ``--mask-check`` pairs);
- small batches as ``evaluate_generator`` makes them: 12 calls on 64 pairs (3 rows x 2 protocols x plain/masked);
- the machine's copy bandwidth (an L3-sized and a DRAM-sized buffer), to judge the memory traffic.

    OMP_NUM_THREADS=1 python benchmarks/bench_ssim.py --protocols defgan --out FILE.md

Runs on one thread by default (the scikit-image loop is single-threaded); ``--threads`` changes it.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reid_aug.metrics import ssim as ssim_mod  # noqa: E402
from reid_aug.metrics import ssim_native as native_mod  # noqa: E402
from reid_aug.metrics.ssim import PROTOCOLS, apply_mask, ssim, ssim_skimage  # noqa: E402
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

    return (f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} ({torch.get_num_threads()} thread(s)), "
            f"scikit-image {skimage.__version__}, numpy {np.__version__}")


def load_avg() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def copy_bandwidth(n_bytes: int, repeats: int = 5) -> float:
    """GB/s of a tensor copy (read + write counted) for a buffer of ``n_bytes``, best of ``repeats``."""
    a = torch.ones(n_bytes // 4)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(timed(lambda: b.copy_(a))[1] for _ in range(repeats))
    return 2 * n_bytes / best / 1e9


@contextlib.contextmanager
def torch_only():
    """The eager torch path (as where no C compiler works)."""
    before = native_mod.NATIVE
    native_mod.NATIVE = False
    try:
        yield
    finally:
        native_mod.NATIVE = before


def float32_accuracy(src, tgt, proto_name):
    """Raw float32 values of the default path (the native kernel; eager where it is unavailable), before the float64
    re-computation, vs float64: (max error, flagged count, max error in units of 2^-24 est, max final error)."""
    proto = PROTOCOLS[proto_name]
    r = ssim_mod.data_range_of(src, proto)
    v64 = ssim(src, tgt, proto_name, dtype=torch.float64)
    raw = native_mod.ssim_native(src, tgt, r, proto)
    if raw is not None:
        v32, est = raw
    else:
        vals, ests = [], []
        step = ssim_mod.CPU_CHUNK
        for i in range(0, len(src), step):
            v, e = ssim_mod._ssim_chunk(src[i:i + step], tgt[i:i + step], r[i:i + step], proto, torch.float32, True)
            vals.append(v)
            ests.append(e)
        v32, est = torch.cat(vals), torch.cat(ests)
    flagged = ssim_mod._float32_suspect(est, r, v32)
    err = (v32 - v64).abs()
    final = (ssim(src, tgt, proto_name) - v64).abs().max()
    return float(err.max()), int(flagged.sum()), float((err / (ssim_mod.F32_UNIT * est)).max()), float(final)


def small_batches(src, tgt, mask, n=64):
    """12 calls on n pairs, as evaluate_generator makes per batch: ms per call, ours default / eager / skimage."""
    n = min(n, len(src) // 2)  # the third row needs n more pairs (--n below 128)
    rows = (src[:n], tgt[:n], src[n:2 * n])

    def run(fn):
        for g in rows:
            for p in PROTOCOLS:
                fn(g, tgt[:n], p, None)
                fn(g, tgt[:n], p, mask[:n])

    out = {}
    def eager(a, b, p, m):
        with torch_only():
            return ssim(a, b, p, mask=m)

    for name, fn in (("default", lambda a, b, p, m: ssim(a, b, p, mask=m)),
                     ("eager", eager),
                     ("skimage", lambda a, b, p, m: ssim_skimage(a, b, p, mask=m))):
        run(fn)  # warm (workspaces, the native kernel)
        out[name] = min(timed(lambda: run(fn))[1] for _ in range(3 if name != "skimage" else 1)) / 12 * 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path(os.environ.get("REID_AUG_MARKET_ROOT",
                                                                    "../shared/datasets/market1501")))
    ap.add_argument("--n", type=int, default=None, help="first N pairs only (default: all 12,000)")
    ap.add_argument("--protocols", default="defgan,pg2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2, help="timing rounds (minimum reported)")
    ap.add_argument("--mask-check", type=int, default=500, help="pairs checked against scikit-image when masked")
    ap.add_argument("--out", type=Path, default=None, help="write the markdown report here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info, load_start = machine(), load_avg()
    bw_l3, bw_dram = copy_bandwidth(8 << 20), copy_bandwidth(256 << 20)

    cached = any(native_mod._native_cache_dir().glob("ssim_*.so"))
    lib, t_build = timed(native_mod._native_lib)
    native = (f"native kernel {'loaded from the cache' if cached else 'built'} in {t_build:.1f} s" if lib is not None
              else "native kernel UNAVAILABLE: the default is the eager torch path")
    print(native)
    (src, tgt, mask, n_images), t_load = timed(lambda: load_pairs(args.root, args.n))
    n = src.shape[0]
    print(f"loaded {n} pairs ({n_images} distinct images) + target pose masks in {t_load:.1f} s; copy bandwidth "
          f"{bw_l3:.0f} GB/s (8 MB), {bw_dram:.0f} GB/s (256 MB)")
    msrc, mtgt = apply_mask(src, mask).contiguous(), apply_mask(tgt, mask).contiguous()

    rows = []
    for proto in [p.strip() for p in args.protocols.split(",") if p.strip()]:
        assert proto in PROTOCOLS, proto
        times = {"default": [], "eager": [], "skimage": []}
        for rnd in range(args.rounds):
            ours, t = timed(lambda: ssim(src, tgt, proto))
            times["default"].append(t)
            with torch_only():
                eager, t = timed(lambda: ssim(src, tgt, proto))
            times["eager"].append(t)
            ref, t = timed(lambda: ssim_skimage(src, tgt, proto))
            times["skimage"].append(t)
            print(f"{proto} round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items() if v)
                  + f" -> default {times['skimage'][-1] / times['default'][-1]:.1f}x (load {load_avg()})", flush=True)
        best = {k: min(v) for k, v in times.items() if v}
        diff = float(np.abs(ours.numpy() - ref).max())
        diff_eager = float(np.abs(eager.numpy() - ref).max())
        acc_plain = float32_accuracy(src, tgt, proto)
        acc_mask = float32_accuracy(msrc, mtgt, proto)
        mask_floor = ssim(msrc, mtgt, proto)
        k = min(args.mask_check, n)
        mask_diff = float(np.abs(mask_floor[:k].numpy() - ssim_skimage(msrc[:k], mtgt[:k], proto)).max())
        row = dict(protocol=proto, n=n, best=best, times=times, diff=diff,
                   diff_eager=diff_eager, load=load_avg(),
                   floor=float(ref.mean()), floor_ours=float(ours.mean()), mask_floor=float(mask_floor.mean()),
                   mask_diff=mask_diff, mask_k=k, acc_plain=acc_plain, acc_mask=acc_mask)
        rows.append(row)
        ratios = ", ".join(f"{k} {best['skimage'] / v:.1f}x" for k, v in best.items() if k != "skimage")
        print(f"{proto}: best of {args.rounds}: skimage {best['skimage']:.1f} s, " + ", ".join(
            f"{k} {v:.2f} s" for k, v in best.items() if k != "skimage") + f" -> {ratios}; max |ours - skimage| "
              f"{diff:.1e} (eager {diff_eager:.1e}); float32 vs float64 plain {acc_plain}, masked {acc_mask}; "
              f"floor {ref.mean():.4f}, "
              f"mask floor {mask_floor.mean():.4f} (max diff on {k} pairs {mask_diff:.1e})", flush=True)
    small = small_batches(src, tgt, mask)
    print("small batches (12 calls x 64 pairs), ms per call: " + ", ".join(f"{k} {v:.1f}" for k, v in small.items()))

    cmd = (f"OMP_NUM_THREADS={args.threads} python benchmarks/bench_ssim.py --protocols {args.protocols}"
           + (f" --n {args.n}" if args.n else "")
           + f" --rounds {args.rounds}" + (f" --out {args.out}" if args.out else ""))
    md = [f"# SSIM: batched torch vs scikit-image's per-image loop ({n} Market-1501 test pairs)", "",
          f"Command (from the repository root): `{cmd}`; {time.strftime('%Y-%m-%d')}.", "",
          f"Machine: {info}; load average {load_start} at the start. Copy bandwidth {bw_l3:.0f} GB/s (8 MB buffer), "
          f"{bw_dram:.0f} GB/s (256 MB). Default path: {native}.", "",
          f"Decoding the {n_images} distinct images of the {n} pairs (+ target pose masks) took {t_load:.1f} s, not "
          "part of any timing. Inputs: the pairs of `market-pairs-test.csv` with the source image as the "
          "'generated' one, i.e. the copy-the-source floor. Times: best of "
          f"{args.rounds} rounds, each round ours default, ours eager, scikit-image in turn.", "",
          "| protocol | scikit-image loop (s) | ours default (s) | speed-up | ours eager torch (s) | speed-up | "
          "max abs diff to skimage (default / eager) | copy-source floor | mask-SSIM floor | load at the end |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = r["best"]
        md.append(f"| {r['protocol']} | {b['skimage']:.1f} | {b['default']:.2f} | {b['skimage'] / b['default']:.1f}x | "
                  f"{b['eager']:.2f} | {b['skimage'] / b['eager']:.1f}x | {r['diff']:.1e} / "
                  f"{r['diff_eager']:.1e} | {r['floor']:.4f} | {r['mask_floor']:.4f} | {r['load']} |")
    md += ["", "Float32 accuracy (default path, all pairs; float64 re-computation decided by the error estimate):", "",
           "| protocol | images | max abs float32 - float64 before re-computation | recomputed in float64 | "
           "max error / (2^-24 est) | max abs final - float64 |", "|---|---|---|---|---|---|"]
    for r in rows:
        for label, acc in (("plain", r["acc_plain"]), ("masked", r["acc_mask"])):
            md.append(f"| {r['protocol']} | {label} | {acc[0]:.1e} | {acc[1]} of {r['n']} | {acc[2]:.2f} | "
                      f"{acc[3]:.1e} |")
    md += ["", f"Small batches as `evaluate_generator` makes them (12 calls on 64 pairs: 3 rows x 2 protocols x "
           f"plain/masked), ms per call: default {small['default']:.1f}, eager {small['eager']:.1f}, scikit-image "
           f"{small['skimage']:.1f}.", ""]
    text = "\n".join(md) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"written {args.out}")


if __name__ == "__main__":
    main()
