"""Training-step cost of the generator families, as a ratio measured in one run (issue 13).

Each (recipe, stage) is timed on one fixed Market-like batch of its own batch size, interleaved round by round so
that all see the same machine load; reports the median s/step, s/pair and the ratio to the first entry.

    python benchmarks/bench_family_step.py --iters 5 pg2_market_cpu:g1 pg2_market_cpu:g2 defgan_market_cpu:defgan
    python benchmarks/bench_family_step.py --iters 2 pg2_market:g1 pg2_market:g2 defgan_market:defgan   (paper size)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KP = torch.tensor([[10, 32], [20, 32], [22, 24], [35, 22], [48, 21], [22, 40], [35, 42], [48, 43], [60, 26],
                   [80, 27], [100, 27], [60, 38], [80, 37], [100, 37], [8, 30], [8, 34], [9, 27], [9, 37]])


def make_step(recipe: str, stage: str):
    """A closure running one ``train_step`` of ``stage`` of ``recipe`` on a fixed batch; and its batch size."""
    from reid_aug.config import load_recipe
    from reid_aug.generator.family import StepModules, get_family
    from reid_aug.pose.maps import pose_heatmaps, pose_masks

    fam = get_family(str(load_recipe(recipe).get("family", "pg2")))
    from reid_aug.config import load_config

    cfg = load_config(fam.config_class, recipe, ["runtime.device=cpu"])
    spec = fam.stage(stage)
    torch.manual_seed(0)
    nets = fam.build_networks(cfg, spec.networks)
    b = cfg.train.batch_size
    kps = KP.expand(b, 18, 2).clone()
    mode = cfg.model.pose_mode
    batch = {"src_img": torch.rand(b, 3, 128, 64) * 2 - 1, "tgt_img": torch.rand(b, 3, 128, 64) * 2 - 1,
             "src_kp": kps, "tgt_kp": kps.flip(0), "src_pose": pose_heatmaps(kps, mode=mode),
             "tgt_pose": pose_heatmaps(kps.flip(0), mode=mode), "tgt_mask": pose_masks(kps.flip(0)),
             "src_name": ["0001_c1s1_000001_01.jpg"] * b}
    for n, net in nets.items():
        net.train(n not in spec.frozen).requires_grad_(n not in spec.frozen)
    params = lambda names: [p for n in names for p in nets[n].parameters()]  # noqa: E731
    mods = StepModules(nets=nets, run=nets, opt_g=fam.make_optimizer(cfg, stage, "g", params(spec.g)),
                       opt_d=fam.make_optimizer(cfg, stage, "d", params(spec.d)) if spec.d else None)
    return (lambda: fam.train_step(stage, batch, cfg, mods)), b


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("entries", nargs="+", help="RECIPE:STAGE")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    steps = {e: make_step(*e.split(":")) for e in args.entries}
    times = {e: [] for e in steps}
    for i in range(args.iters + 1):
        for e, (fn, _) in steps.items():
            t0 = time.perf_counter()
            fn()
            if i:
                times[e].append(time.perf_counter() - t0)
    ref = None
    print("| recipe:stage | batch | s/step | s/pair | ratio (s/pair) |\n|---|---|---|---|---|")
    for e, (_, b) in steps.items():
        med = statistics.median(times[e])
        ref = ref or med / b
        print(f"| {e} | {b} | {med:.3f} | {med / b:.4f} | {med / b / ref:.2f} |")


if __name__ == "__main__":
    main()
