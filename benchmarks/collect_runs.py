"""Collect finished generator runs and their 12,000-pair evaluations into benchmarks/results/<name>/:
each run's records (metrics, samples, config, run.json, log.csv) and a README table.

    from collect_runs import collect          (used by collect_stage2.py and collect_table1.py)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reid_aug.errors import RecordError  # noqa: E402
from reid_aug.records import EvaluationRecord  # noqa: E402
from reid_aug.rundir import GeneratorRun  # noqa: E402

HEADER = ["| run | SSIM defgan | SSIM defgan-2018 | SSIM pg2 | mask-SSIM defgan | mask-SSIM pg2 | L1 | pairs | eval s |",
          "|---|---|---|---|---|---|---|---|---|"]


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def row(label: str, rec: EvaluationRecord, which: str = "model") -> str:
    r = rec.row(which) or {}
    by, mby = r.get("ssim_by_protocol", {}), r.get("mask_ssim_by_protocol", {})
    return (f"| {label} | {_f(by.get('defgan'))} | {_f(by.get('defgan-2018'))} | {_f(by.get('pg2'))} | "
            f"{_f(mby.get('defgan'))} | {_f(mby.get('pg2'))} | {_f(r.get('l1'))} | {r.get('n_pairs')} | "
            f"{r.get('seconds')} |")


def commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()


def collect(src: Path, out: Path, runs, with_samples: bool = False) -> tuple[list[str], dict]:
    """Copy the records of ``runs`` (``[(folder name, label)]``) from ``src`` into ``out``; returns the table
    lines (a copy-the-source floor row at the end) and ``{name: EvaluationRecord}`` of the finished runs."""
    out.mkdir(parents=True, exist_ok=True)
    lines, records = list(HEADER), {}
    for name, label in runs:
        run = GeneratorRun(src / name)
        try:
            rec = EvaluationRecord.read(run.eval_dir().metrics_json)
        except RecordError:
            lines.append(f"| {label} | not finished | | | | | | | |")
            continue
        records[name] = rec
        lines.append(row(label, rec))
        dst = out / name
        dst.mkdir(exist_ok=True)
        for f in (run.eval_dir().metrics_json, run.eval_dir().samples_png, run.config, run.run_json, run.log_csv):
            if f.is_file():
                shutil.copyfile(f, dst / (f"eval_{f.name}" if f.parent.name.startswith("eval") else f.name))
        grids = sorted(run.samples.glob("*.png")) if with_samples and run.samples.is_dir() else []
        if grids:
            shutil.copyfile(grids[-1], dst / "train_samples_last.png")
    if records:
        lines.append(row("copy the source (floor)", next(iter(records.values())), "copy_source"))
    return lines, records


def timeline(src: Path) -> list[str]:
    text = (src / "timeline.txt").read_text() if (src / "timeline.txt").is_file() else ""
    return ["Timeline:", "", "```", text.rstrip(), "```"]
