"""PG² training throughput: pairs/s of stage I and stage II, and achieved FLOP/s.

Runs the real training step (``reid_aug.generator.pg2.PG2Family.train_step``) on random tensors (no data
loading), at the paper size (pg2_market: n = 128) and at the CPU size (pg2_market_cpu), and
compares the FLOP/s it achieves (FLOPs counted with ``torch.utils.flop_counter.FlopCounterMode``,
forward + backward) with this machine's dense matmul FLOP/s measured in the same run.

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_generator_throughput.py
    PYTHONPATH=. python benchmarks/bench_generator_throughput.py --device cuda --paper-batch 16 --iters 20

Writes ``benchmarks/results/generator_throughput.md`` (``--out``) and prints the same table.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reid_aug.config import load_config  # noqa: E402
from reid_aug.generator.config import PG2Config  # noqa: E402
from reid_aug.generator.family import StepModules  # noqa: E402
from reid_aug.generator.pg2 import FAMILY as PG2  # noqa: E402
from reid_aug.utils.io import atomic_write_text  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, dtype=torch.float32, n: int = 2048, seconds: float = 1.0) -> float:
    """Dense ``n x n`` matmul FLOP/s (2 n^3 per product), best of a few timed bursts."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    _sync(device)
    best = 0.0
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or best == 0.0:
        reps = 4 if device.type == "cpu" else 50
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        _sync(device)
        best = max(best, reps * 2 * n ** 3 / (time.perf_counter() - t0))
    return best


def make_batch(cfg: PG2Config, batch: int, device: torch.device) -> dict:
    h, w = cfg.model.image_size
    g = torch.Generator().manual_seed(0)
    img = lambda: torch.rand(batch, 3, h, w, generator=g) * 2 - 1  # noqa: E731
    pose = (torch.rand(batch, 18, h, w, generator=g) < 0.02).float() * 2 - 1
    mask = (torch.rand(batch, 1, h, w, generator=g) < 0.3).float()
    out = {"src_img": img(), "tgt_img": img(), "tgt_pose": pose, "tgt_mask": mask}
    return {k: v.to(device) for k, v in out.items()}


def bench_stage(cfg: PG2Config, stage: str, batch: int, iters: int, device: torch.device, amp: bool,
                channels_last: bool) -> dict:
    torch.manual_seed(0)
    nets = PG2.build_networks(cfg)
    for net in nets.values():
        net.to(device)
        if channels_last:
            net.to(memory_format=torch.channels_last)
    spec = PG2.stage(stage)
    nets["g1"].requires_grad_(stage != "g2")
    opt_g = PG2.make_optimizer(cfg, stage, "g", [p for n in spec.g for p in nets[n].parameters()])
    opt_d = PG2.make_optimizer(cfg, stage, "d", nets["d"].parameters())
    data = make_batch(cfg, batch, device)
    if channels_last:
        data = {k: v.contiguous(memory_format=torch.channels_last) for k, v in data.items()}
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    mods = StepModules(nets=nets, run=nets, opt_g=opt_g, opt_d=opt_d, autocast=autocast)

    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # also the warm-up step
        PG2.train_step(stage, data, cfg, mods)
    flops = counter.get_total_flops()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        PG2.train_step(stage, data, cfg, mods)
    _sync(device)
    dt = (time.perf_counter() - t0) / iters
    return {"s_per_iter": dt, "pairs_per_s": batch / dt, "gflop_per_iter": flops / 1e9, "flops_per_s": flops / dt}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=None, help="timed steps per case (default 2 on CPU, 20 on CUDA)")
    ap.add_argument("--paper-batch", type=int, default=None,
                    help="batch at the paper size (default 1 on CPU, where one step of 16 takes minutes; 16 on CUDA)")
    ap.add_argument("--cpu-batch", type=int, default=None, help="batch at the CPU size (default: the recipe's)")
    ap.add_argument("--configs", default="paper,cpu")
    ap.add_argument("--stages", default="g1,g2")
    ap.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    ap.add_argument("--threads", default=None,
                    help="comma-separated CPU thread counts to measure, e.g. 1,2 (default: torch's current)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "generator_throughput.md")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    amp = cuda and not args.no_amp
    iters = args.iters or (20 if cuda else 2)
    recipes = {"paper": "pg2_market", "cpu": "pg2_market_cpu"}
    load_before = os.getloadavg()
    thread_counts = [int(x) for x in args.threads.split(",")] if args.threads else [torch.get_num_threads()]
    refs, rows = {}, []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        ref32 = matmul_flops(device, torch.float32)
        ref16 = matmul_flops(device, torch.bfloat16) if cuda else None
        refs[threads] = (ref32, ref16)
        for name in args.configs.split(","):
            cfg = load_config(PG2Config, recipes[name])
            if name == "paper":
                batch = args.paper_batch or (16 if cuda else 1)
            else:
                batch = args.cpu_batch or cfg.train.batch_size
            for stage in args.stages.split(","):
                r = bench_stage(cfg, stage, batch, iters, device, amp, channels_last=cuda)
                ref = ref16 if amp else ref32
                r.update(config=f"{name} ({recipes[name]}, n={cfg.model.g1_width}, "
                                f"{cfg.model.image_size[0]}x{cfg.model.image_size[1]})",
                         stage=stage, batch=batch, threads=threads, fraction=r["flops_per_s"] / ref)
                rows.append(r)
                print(f"{threads} thr  {r['config']:<42} {stage}: batch {batch:3d}  {r['s_per_iter']:8.3f} s/it  "
                      f"{r['pairs_per_s']:8.2f} pairs/s  {r['gflop_per_iter']:9.1f} GFLOP/it  "
                      f"{r['flops_per_s'] / 1e9:8.1f} GFLOP/s = {100 * r['fraction']:.1f}% of matmul", flush=True)
    load_after = os.getloadavg()

    dev_name = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()} CPU"
    lines = [
        "# PG² training throughput",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"- device: {dev_name}; torch {torch.__version__}; os.cpu_count() {os.cpu_count()}",
        f"- precision: {'bf16 autocast' if amp else 'fp32'}; channels_last: {cuda}; timed steps per case: {iters} "
        f"(after one warm-up step that also counts the FLOPs)",
        "- reference dense matmul (2048x2048), measured in this run: " + "; ".join(
            f"{t} thread(s): fp32 {r32 / 1e9:.1f} GFLOP/s" + (f", bf16 {r16 / 1e12:.1f} TFLOP/s" if r16 else "")
            for t, (r32, r16) in refs.items()),
        f"- load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        + ("(the machine was shared with other jobs while measuring: absolute numbers are pessimistic, the "
           "ratios to the matmul reference taken in the same run are the comparable figure)"
           if max(load_before[0], load_after[0]) > 0.5 else ""),
        "- step = the real `train_step` on random tensors: stage I = G1 fwd+bwd + Adam; stage II = frozen G1 fwd, "
        "G2 fwd+bwd, D twice (G step, D step) + two Adam updates; FLOPs from FlopCounterMode (matmul/conv only)",
        f"- command: `{' '.join(['python', 'benchmarks/bench_generator_throughput.py'] + (argv or sys.argv[1:]))}`",
    ]
    if len(refs) > 1 and not cuda:
        lines.append("- where a row with more threads is slower than the row with fewer, other jobs held the other "
                     "core(s): OpenMP threads wait for each other at every layer. The CPU recipes therefore run one "
                     "compute thread beside one data-loading worker (`runtime.threads: 1`, `train.num_workers: 1`).")
    lines += [
        "",
        "| config | stage | threads | batch | s/iter | pairs/s | GFLOP/iter | achieved GFLOP/s | fraction of matmul |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['config']} | {r['stage']} | {r['threads']} | {r['batch']} | {r['s_per_iter']:.3f} | "
                     f"{r['pairs_per_s']:.2f} | {r['gflop_per_iter']:.1f} | {r['flops_per_s'] / 1e9:.1f} | "
                     f"{100 * r['fraction']:.1f}% |")
    atomic_write_text(args.out, "\n".join(lines) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
