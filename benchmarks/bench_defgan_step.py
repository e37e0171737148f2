"""Deformable GAN training-step cost at the paper size (128x64, batch 4) and the NN loss's share.

One step = G forward (two streams + 4 deformable skips), D step (real + fake, BCE), G step
(D on the fake, BCE + 0.01 * nearest-neighbour loss, backward through G) and two Adam updates, on
random images and real-looking keypoints (no data loading). Reported:

- s/step of the full step (NN loss with the offline 5x5-patch features, and with VGG-19 conv1_2
  features: random-init weights, the cost does not depend on their values);
- the NN loss's share: (a) its own forward + backward on a generated-image leaf, divided by the full
  step; (b) full step minus the same step with the NN loss left out, divided by the full step;
- the per-batch deformation (10 affine fits + masks, batched) and FLOPs per step (FlopCounterMode).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_defgan_step.py --iters 3
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reid_aug.generator.defgan import (DeformableGenerator, NearestNeighbourLoss, PatchDiscriminator,  # noqa: E402
                                       deformation)
from reid_aug.generator.defgan.vgg import VGGConv12  # noqa: E402
from reid_aug.pose.maps import pose_heatmaps  # noqa: E402
from reid_aug.utils.io import atomic_write_text  # noqa: E402

KP = torch.tensor([[10, 32], [20, 32], [22, 24], [35, 22], [48, 21], [22, 40], [35, 42], [48, 43],
                   [60, 26], [80, 27], [100, 27], [60, 38], [80, 37], [100, 37],
                   [8, 30], [8, 34], [9, 27], [9, 37]])


def make_keypoints(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 18, 2)`` source and target skeletons: a standing pose jittered by a few pixels."""
    g = torch.Generator().manual_seed(seed)
    jitter = lambda: torch.randint(-6, 7, (batch, 18, 2), generator=g)  # noqa: E731
    src = (KP + jitter()).clamp(min=0)
    tgt = (KP + jitter()).clamp(min=0)
    return src.clamp(max=torch.tensor([127, 63])), tgt.clamp(max=torch.tensor([127, 63]))


def make_batch(batch: int) -> dict:
    src, tgt = make_keypoints(batch)
    d = deformation(src, tgt)
    return {"x_a": torch.rand(batch, 3, 128, 64) * 2 - 1, "x_b": torch.rand(batch, 3, 128, 64) * 2 - 1,
            "h_a": pose_heatmaps(src, (128, 64), mode="gaussian", sigma=6),
            "h_b": pose_heatmaps(tgt, (128, 64), mode="gaussian", sigma=6),
            "theta": d.theta, "masks": d.masks, "src_kp": src, "tgt_kp": tgt}


def train_step(g, d, nn_loss, opt_g, opt_d, b: dict, lam: float) -> None:
    """One official iteration: D step, then G step (cGAN BCE + lam * NN loss)."""
    y = g(b["x_a"], b["h_a"], b["h_b"], b["theta"], b["masks"])
    real = d(b["x_a"], b["h_a"], b["x_b"], b["h_b"])
    fake = d(b["x_a"], b["h_a"], y.detach(), b["h_b"])
    loss_d = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
              + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    fake = d(b["x_a"], b["h_a"], y, b["h_b"])
    loss_g = F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if lam:
        loss_g = loss_g + lam * nn_loss(y, b["x_b"])
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()


def timed(fn, iters: int) -> float:
    """Median seconds of ``iters`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def step_flops(g, d, nn_loss, opt_g, opt_d, b) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        train_step(g, d, nn_loss, opt_g, opt_d, b, 0.01)
    return counter.get_total_flops()


def nn_only(nn_loss, b) -> None:
    y = (torch.rand_like(b["x_b"]) * 2 - 1).requires_grad_()
    nn_loss(y, b["x_b"]).backward()


def run(batch: int, iters: int) -> list[dict]:
    torch.manual_seed(0)
    b = make_batch(batch)
    g, d = DeformableGenerator(), PatchDiscriminator()
    opt_g = torch.optim.Adam(g.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 2e-4, betas=(0.5, 0.999))
    rows = []
    base = timed(lambda: train_step(g, d, None, opt_g, opt_d, b, 0.0), iters)
    for name, feats in (("5x5 patches (offline default)", None), ("VGG-19 conv1_2", VGGConv12())):
        nn_loss = NearestNeighbourLoss(feats, k=3)
        full = timed(lambda: train_step(g, d, nn_loss, opt_g, opt_d, b, 0.01), iters)
        alone = timed(lambda: nn_only(nn_loss, b), iters)
        flops = step_flops(g, d, nn_loss, opt_g, opt_d, b)
        rows.append({"features": name, "step": full, "no_nn": base, "nn": alone, "gflop": flops / 1e9})
    rows[0]["deform"] = timed(lambda: deformation(b["src_kp"], b["tgt_kp"]), iters)
    return rows


def report(rows: list[dict], args, load: tuple[float, float]) -> str:
    lines = ["# Deformable GAN training step (paper size)", "",
             f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
             f"- device: {platform.machine()} CPU; torch {torch.__version__}; os.cpu_count() {os.cpu_count()}; "
             f"torch threads {torch.get_num_threads()}",
             f"- batch {args.batch}, 128x64, fp32; median of {args.iters} timed steps after one warm-up",
             f"- load average before/after: {load[0]:.2f} / {load[1]:.2f} (the machine is shared with other "
             "jobs: absolute times are pessimistic)",
             f"- per-batch deformation (10 affine fits + 10 masks for {args.batch} pairs, batched): "
             f"{rows[0]['deform'] * 1e3:.1f} ms",
             f"- command: `python benchmarks/bench_defgan_step.py --batch {args.batch} --iters {args.iters}`", "",
             "| NN features | s/step | s/step without NN loss | NN loss fwd+bwd alone | NN share (alone / step) "
             "| NN share (step difference) | GFLOP/step |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['features']} | {r['step']:.3f} | {r['no_nn']:.3f} | {r['nn']:.3f} | "
                     f"{100 * r['nn'] / r['step']:.1f}% | {100 * (r['step'] - r['no_nn']) / r['step']:.1f}% | "
                     f"{r['gflop']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "defgan_step.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    before = os.getloadavg()[0]
    rows = run(args.batch, args.iters)
    text = report(rows, args, (before, os.getloadavg()[0]))
    atomic_write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
