"""Copy the records of a finished ``reid-aug sweep`` into ``benchmarks/results/...`` (no models, no checkpoints).

    python benchmarks/collect_sweep.py /work/longruns/cuhk/test benchmarks/results/cuhk03_mini/test

Takes ``sweep.{md,csv,json,png}`` and, per cell, ``config.yaml``, ``results.json`` (per-epoch history and
training curves included), ``results.csv``, ``report.md``, ``bars.png`` and ``curves.png`` where there is one.
A missing file is listed at the end and does not stop the copy; the sweep folder is not changed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from collect_results import copy_record  # noqa: E402


def collect(sweep: Path, dest: Path) -> list[str]:
    from reid_aug.rundir import BenchmarkDir

    files = [(sweep / f"sweep.{ext}", True) for ext in ("md", "csv", "json", "png")]
    for cell in sorted((sweep / "cells").glob("*")):
        b = BenchmarkDir(cell)
        files += [(p, True) for p in (b.config, b.results_json, b.results_csv, b.report_md, b.bars_png)]
        files.append((b.curves_png, False))
    missing = []
    for src, required in files:
        if not src.is_file():
            if required:
                missing.append(str(src))
            continue
        copy_record(src, dest / src.relative_to(sweep))
    return missing


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args()
    missing = collect(args.sweep, args.dest)
    print(f"copied into {args.dest}" + (f"; missing: {', '.join(missing)}" if missing else ""))


if __name__ == "__main__":
    main()
