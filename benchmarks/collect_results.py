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

FILES = {
    "generator": ["config.yaml", "run.json", "log.csv", "eval/metrics.json", "eval/metrics.csv", "eval/samples.png"],
    "synthesized": ["synthesis.json", "contact_sheet.png"],
    "benchmark": ["config.yaml", "results.json", "results.csv", "report.md", "bars.png"],
}
# Copied where present, not reported where absent: G1 evaluated on its own (`evaluate-generator --stage g1`).
OPTIONAL = {"generator": ["eval-g1/metrics.json", "eval-g1/metrics.csv", "eval-g1/samples.png"]}
# Large or data-carrying files never copied: checkpoints, Re-ID models, per-pair tables, the image folders.
MAX_BYTES = 4 << 20


def collect(run: Path, dest: Path) -> list[str]:
    """Copy the record files; return the ones that were missing."""
    from reid_aug.report.demo_report import plot_loss_curves
    from reid_aug.utils.io import atomic_write_bytes

    missing = []
    wanted = [(part, name, True) for part, names in FILES.items() for name in names]
    wanted += [(part, name, False) for part, names in OPTIONAL.items() for name in names]
    for part, name, required in wanted:
        src = run / part / name
        if not src.is_file():
            if required:
                missing.append(str(src))
            continue
        if src.stat().st_size > MAX_BYTES:
            raise SystemExit(f"{src} is {src.stat().st_size >> 20} MiB: too large for the repository")
        dst = dest / part / name.replace("/", "_")             # eval/metrics.json -> eval_metrics.json
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(dst, src.read_bytes())
    samples = sorted((run / "generator" / "samples").glob("step_*.png"))
    if samples:
        shutil.copyfile(samples[-1], dest / "generator" / f"train_{samples[-1].name}")
    if (run / "generator" / "log.csv").is_file():
        plot_loss_curves(run / "generator" / "log.csv", dest / "generator" / "loss_curves.png")
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
