"""Copy the records of a finished real-data protocol run into ``benchmarks/results/NAME/`` (no checkpoints).

    python benchmarks/collect_results.py runs/market_cpu benchmarks/results/market_cpu

Takes from ``RUN/generator`` (config, run record, training log, loss curves drawn from it, the last training
sample grid, the evaluate-generator records and sample grid), ``RUN/synthesized`` (synthesis record, contact
sheet) and ``RUN/benchmark`` (config, results, report, bar chart). A file that is missing is listed at the end
and does not stop the copy; the run folders themselves are not changed.
"""
from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

log = logging.getLogger("collect_results")

# Large or data-carrying files never copied: checkpoints, Re-ID models, per-pair tables, the image folders.
MAX_BYTES = 4 << 20


def wanted(run: Path) -> list[tuple[Path, bool]]:
    """``(record file, required)`` of a protocol folder, where reid_aug.rundir puts them. Optional: G1
    evaluated on its own (`evaluate-generator --stage g1`)."""
    from reid_aug.rundir import BenchmarkDir, GeneratorRun, SynthesizedSet

    gen, synth = GeneratorRun(run / "generator"), SynthesizedSet(run / "synthesized")
    bench = BenchmarkDir(run / "benchmark")
    ev, ev_g1 = gen.eval_dir(), gen.eval_dir("g1", last_stage="g2")
    required = [gen.config, gen.run_json, gen.log_csv, ev.metrics_json, ev.metrics_csv, ev.samples_png,
                synth.descriptor, synth.contact_sheet,
                bench.config, bench.results_json, bench.results_csv, bench.report_md, bench.bars_png]
    optional = [ev_g1.metrics_json, ev_g1.metrics_csv, ev_g1.samples_png]
    return [(p, True) for p in required] + [(p, False) for p in optional]


def copy_record(src: Path, dst: Path) -> None:
    """Copy one record file (atomically), refusing one too large for the repository."""
    from reid_aug.utils.io import atomic_write_bytes

    if src.stat().st_size > MAX_BYTES:
        raise SystemExit(f"{src} is {src.stat().st_size >> 20} MiB: too large for the repository")
    dst.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dst, src.read_bytes())


def collect(run: Path, dest: Path) -> list[str]:
    """Copy the record files; return the ones that were missing."""
    from reid_aug.report.demo_report import plot_loss_curves
    from reid_aug.rundir import GeneratorRun

    missing = []
    for src, required in wanted(run):
        if not src.is_file():
            if required:
                missing.append(str(src))
            continue
        part, *rest = src.relative_to(run).parts
        copy_record(src, dest / part / "_".join(rest))         # eval/metrics.json -> eval_metrics.json
    gen = GeneratorRun(run / "generator")
    samples = sorted(gen.samples.glob("step_*.png"))
    if samples:
        shutil.copyfile(samples[-1], dest / "generator" / f"train_{samples[-1].name}")
    if gen.log_csv.is_file():
        plot_loss_curves(gen.log_csv, dest / "generator" / "loss_curves.png")
    return missing


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="protocol output folder (with generator/, synthesized/, benchmark/)")
    ap.add_argument("dest", type=Path, help="destination, e.g. benchmarks/results/market_cpu")
    args = ap.parse_args()
    if not args.run.is_dir():
        raise SystemExit(f"{args.run} is not a folder")
    missing = collect(args.run, args.dest)
    for m in missing:
        log.warning("missing (not copied): %s", m)
    log.info("records of %s copied into %s", args.run, args.dest)


if __name__ == "__main__":
    main()
