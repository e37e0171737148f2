"""Issue 20: what the identity network adds to a generator step (PG² stage I, the CPU recipe's widths, batch 8).

Times ``PG2Family.train_step`` on one fixed real-looking batch with and without ``loss.identity`` (all three terms,
an OSNet x0.25 at 128x64, random init: the cost does not depend on the weights), interleaved so that both see the
same machine load; reports the median of each and the ratio.

    python benchmarks/bench_identity_cost.py --iters 10 [--out benchmarks/results/identity_cost.md]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _reid_file(path: Path, num_classes: int = 751) -> Path:
    from reid_aug.reid.experiment import resolve_benchmark
    from reid_aug.reid.models import build_model, save_reid_model

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_cpu_market", pretrained=False,
                            overrides=["data.height=128", "data.width=64"])
    save_reid_model(build_model("osnet_x0_25", num_classes), cfg, path,
                    {"num_classes": num_classes, "pid2label": {str(p): p - 1 for p in range(1, num_classes + 1)}})
    return path


def main() -> None:
    from reid_aug.config import load_config
    from reid_aug.generator.config import PG2Config
    from reid_aug.generator.family import StepModules, get_family
    from reid_aug.pose.maps import pose_heatmaps, pose_masks

    ap = argparse.ArgumentParser()
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    fam = get_family("pg2")
    tmp = Path(tempfile.mkdtemp())
    reid = _reid_file(tmp / "reid.pt")
    cfgs = {"without": load_config(PG2Config, "pg2_market_cpu"),
            "with": load_config(PG2Config, "pg2_market_cpu", [f"loss.identity.model={reid}",
                                "loss.identity.feature_weight=1", "loss.identity.id_weight=1",
                                "loss.identity.perceptual_weight=1"])}
    torch.manual_seed(0)
    g1 = fam.build_networks(cfgs["without"], ("g1",))["g1"]
    kp = torch.tensor([[10, 32], [20, 32], [22, 24], [35, 22], [48, 21], [22, 40], [35, 42], [48, 43], [60, 26],
                       [80, 27], [100, 27], [60, 38], [80, 37], [100, 37], [8, 30], [8, 34], [9, 27], [9, 37]])
    b = 8
    batch = {"src_img": torch.rand(b, 3, 128, 64) * 2 - 1, "tgt_img": torch.rand(b, 3, 128, 64) * 2 - 1,
             "tgt_pose": pose_heatmaps(kp.expand(b, 18, 2), mode="pg2"), "tgt_mask": pose_masks(kp.expand(b, 18, 2)),
             "src_name": [f"{p:04d}_c1s1_000001_01.jpg" for p in range(1, b + 1)]}
    opt = torch.optim.Adam(g1.parameters(), lr=1e-5)
    mods = StepModules(nets={"g1": g1}, run={"g1": g1}, opt_g=opt)
    times = {k: [] for k in cfgs}
    for i in range(args.iters + 1):
        for name, cfg in cfgs.items():
            t0 = time.perf_counter()
            fam.train_step("g1", batch, cfg, mods)
            if i:                                   # the first round warms up (and loads the network)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    share = (med["with"] - med["without"]) / med["with"]
    text = (f"# Identity loss cost (issue 20)\n\nCommand: `python benchmarks/bench_identity_cost.py --iters {args.iters}`;"
            f" PG² stage-I step of `pg2_market_cpu` (G1 width 16, batch 8, 1 thread), with and without all three "
            f"identity terms (OSNet x0.25 at 128x64), interleaved, median of {args.iters}.\n\n"
            f"| step | s |\n|---|---|\n| without | {med['without']:.3f} |\n| with | {med['with']:.3f} |\n\n"
            f"The identity network takes **{share:.0%}** of the step with it (goal: below a third).\n")
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
