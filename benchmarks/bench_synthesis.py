"""End-to-end speed of ``reid-aug synthesize``: images/s, with the time split into load / generate / encode+write.

The Market-1501 train split at K = 10: 751 identities x 10 = 7,510 images (the 6 identities without any
image whose shoulders and hips are annotated -- 53, 79, 84, 98, 122, 1218 -- use their images with partial
poses as sources; before that rule they were skipped and a full run wrote 7,450). The generator is an untrained one of the chosen recipe's size (the speed
does not depend on the weights), written through the generator's own checkpoint API.

Reference measured in the same run: the generator alone (batches of random tensors already on the
device, no loading or writing; measured before and after the run, the faster kept, since this machine
may be shared) -- the pipeline's ceiling. ``efficiency`` = the generation loop's images/s divided by it,
and the share of the loop's wall time spent inside the generator: 1.0 means loading and JPEG writing
are fully hidden behind generation.

    python benchmarks/bench_synthesis.py --device cpu --recipe pg2_market_cpu       # subset if > 5 min
    python benchmarks/bench_synthesis.py --device cuda --recipe pg2_market          # where a GPU exists

Writes/updates one section (per device kind) of ``benchmarks/results/synthesis.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "synthesis.md"


def write_untrained_generator(recipe: str, path: Path, seed: int = 0):
    import torch

    from reid_aug.config import load_config, to_dict
    from reid_aug.generator.checkpoint import save_checkpoint
    from reid_aug.generator.pg2 import FAMILY as PG2
    from reid_aug.generator.config import PG2Config

    cfg = load_config(PG2Config, recipe)
    torch.manual_seed(seed)
    nets = PG2.build_networks(cfg, ("g1", "g2"))
    save_checkpoint({"config": to_dict(cfg), "models": {k: v.state_dict() for k, v in nets.items()},
                     "stage_index": len(cfg.train.stages), "step": 0, "global_step": 0, "trained": ["g1", "g2"],
                     "complete": True}, path)
    params = {k: sum(p.numel() for p in v.parameters()) for k, v in nets.items()}
    return cfg, params


def generator_only_rate(ckpt: Path, device: str, batch: int, n_batches: int) -> float:
    """Images/s of G1+G2 alone on random inputs already on the device (after one warm-up batch)."""
    import torch

    from reid_aug.generator.inference import load_generator

    gen = load_generator(ckpt, device=device)
    h, w = gen.image_size
    src = torch.rand(batch, 3, h, w, device=device) * 2 - 1
    pose = torch.rand(batch, 18, h, w, device=device) * 2 - 1
    gen.generate(src, pose)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n_batches):
        out = gen.generate(src, pose)
    out.cpu()
    return n_batches * batch / (time.perf_counter() - t0)


def update_results(section: str, body: str) -> None:
    """Replace (or add) ``## {section}`` in the results file, keeping the other sections."""
    header = ("# Synthesis throughput (`benchmarks/bench_synthesis.py`)\n\n"
              "End to end = index + plan + load sources + generate + JPEG encode + atomic write + manifest, "
              "untrained generator of the recipe's size. Time split: summed busy time of each stage "
              "(they overlap: loading and writing run in threads beside the generator); `waited` = time the "
              "generator loop was blocked on that stage.\n\n"
              "Market-1501 train at K = 10: 751 identities x 10 = 7,510 images. 745 identities have an image whose "
              "shoulders and hips are annotated; the other 6 (53, 79, 84, 98, 122, 1218) use their images with "
              "partial poses as sources (before that rule they were skipped: 7,450 images; the CPU section below "
              "was measured then).\n")
    text = RESULTS.read_text() if RESULTS.is_file() else header
    parts = re.split(r"(?m)^(?=## )", text)
    head, sections = parts[0], {p.split("\n", 1)[0][3:].strip(): p for p in parts[1:]}
    sections[section] = f"## {section}\n\n{body.strip()}\n\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from reid_aug.utils.io import atomic_write_text

    atomic_write_text(RESULTS, head.rstrip() + "\n\n" + "".join(sections[k] for k in sorted(sections)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="market", help="market | synthetic | PATH")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--recipe", default=None, help="generator size (default: pg2_market_cpu on CPU, pg2_market on GPU)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--strategy", default="diverse")
    ap.add_argument("--batch-size", type=int, default=None, help="default 32 on CPU, 128 on GPU")
    ap.add_argument("--workers", type=int, default=2, help="JPEG encode/write threads")
    ap.add_argument("--loader-threads", type=int, default=2)
    ap.add_argument("--max-identities", type=int, default=None,
                    help="only the first N identities (default: all, or fewer when the run would exceed --budget-s)")
    ap.add_argument("--budget-s", type=float, default=300.0, help="cap on the projected end-to-end time")
    ap.add_argument("--section", default=None, help="results section title (default from the device)")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()

    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    from reid_aug.synthesis.synthesize import SynthesisConfig, synthesize

    cuda = args.device.startswith("cuda")
    recipe = args.recipe or ("pg2_market" if cuda else "pg2_market_cpu")
    batch = args.batch_size or (128 if cuda else 32)
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as tmp:
        tmp = Path(tmp)
        ckpt = tmp / "checkpoint.pt"
        cfg, params = write_untrained_generator(recipe, ckpt)
        n_ref = 20 if cuda else 4
        ref_before = generator_only_rate(ckpt, args.device, batch, n_batches=n_ref)
        from reid_aug.dataset.market import load_dataset

        train = load_dataset(args.dataset).split("train")
        full_ids = int(train.loc[train["pose_ok"] & (train["kind"] == "normal"), "pid"].nunique())
        max_ids = args.max_identities
        subset_note = f"subset: the first {max_ids} identities (--max-identities)" if max_ids else ""
        if max_ids is None and full_ids is not None:
            projected = full_ids * args.k / ref_before
            if projected > args.budget_s:
                max_ids = max(1, int(args.budget_s * 0.5 * ref_before / args.k))
                subset_note = (f"subset: the first {max_ids} of {full_ids} identities (the full run would take "
                               f"~{projected / 60:.0f} min at the generator's own speed, over the "
                               f"{args.budget_s / 60:.0f}-min cap)")
        opts = SynthesisConfig(generator=str(ckpt), out=str(tmp / "out"), dataset=args.dataset, poses_per_id=args.k,
                               strategy=args.strategy, seed=0, batch_size=batch, workers=args.workers,
                               loader_threads=args.loader_threads, device=args.device, max_identities=max_ids)
        t0 = time.perf_counter()
        summary = synthesize(opts)
        wall = time.perf_counter() - t0
        loop_rate = summary["written"] / max(summary["timings"]["loop"], 1e-9)
        # the machine may be shared: measure the reference again after the run and keep the faster one
        ref_rate = max(ref_before, generator_only_rate(ckpt, args.device, batch, n_batches=n_ref))

    t = summary["timings"]
    n = summary["written"]
    dev_name = torch.cuda.get_device_name() if cuda else (platform.processor() or platform.machine())
    section = args.section or ("GPU" if cuda else "CPU")
    rows = [
        ("images written", f"{n} ({summary['identities']} identities x K={args.k})"),
        ("end to end", f"{wall:.1f} s -> **{n / wall:.1f} images/s**"),
        ("generation loop", f"{t['loop']:.1f} s -> {loop_rate:.1f} images/s (first batch to last file written)"),
        ("generator alone (reference, best of before/after)", f"{ref_rate:.1f} images/s"),
        ("efficiency = loop rate / generator alone", f"{loop_rate / ref_rate:.2f}"),
        ("share of the loop spent generating", f"{t['generate'] / max(t['loop'], 1e-9):.3f} (1 = loading and "
                                               f"writing fully hidden)"),
        ("load (busy, threads)", f"{t.get('load', 0):.1f} s (waited {t.get('load_wait', 0):.1f} s)"),
        ("generate", f"{t.get('generate', 0):.1f} s"),
        ("encode+write (busy, threads)", f"{t.get('encode_write', 0):.1f} s (waited {t.get('write_wait', 0):.1f} s)"),
        ("start-up, index, plan, manifest, contact sheet", f"{wall - t['loop']:.1f} s"),
    ]
    m = cfg.model
    body = "\n".join([
        f"- device: {args.device} ({dev_name}); torch {torch.__version__}; torch threads {torch.get_num_threads()}; "
        f"CPU cores visible {os.cpu_count()}",
        f"- generator: recipe `{recipe}` (G1 width {m.g1_width}, G2 width {m.g2_width}, {m.image_size[0]}x"
        f"{m.image_size[1]}; G1 {params['g1'] / 1e6:.2f}M + G2 {params['g2'] / 1e6:.2f}M parameters), untrained",
        f"- dataset `{args.dataset}`, strategy {args.strategy}, batch {batch}, {args.workers} writer threads, "
        f"{args.loader_threads} loader threads, JPEG quality 95",
        f"- {subset_note}" if subset_note else "- full train split",
        f"- command: `python benchmarks/bench_synthesis.py {' '.join(sys.argv[1:])}`",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
    ])
    print(body)
    print(json.dumps(summary, indent=1))
    if not args.no_write:
        update_results(section, body)
        print(f"-> {RESULTS}")


if __name__ == "__main__":
    main()
