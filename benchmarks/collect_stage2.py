"""Collect benchmarks/stage2_cpu.sh's runs into benchmarks/results/stage2_cpu/ (records, pictures, README table).

    python benchmarks/collect_stage2.py /work/longruns/stage2_cpu
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

RUNS = (("g1", "G1 (stage I, pg2_market_cpu)"), ("g2_pair_l100", "G1 + G2, pair D, lambda 100"),
        ("g2_pair_l10", "G1 + G2, pair D, lambda 10 (the paper's)"))


def _row(label: str, rec: EvaluationRecord, row: str = "model") -> str:
    r = rec.row(row) or {}
    by, mby = r.get("ssim_by_protocol", {}), r.get("mask_ssim_by_protocol", {})

    def f(v):
        return "n/a" if v is None else f"{v:.4f}"

    return (f"| {label} | {f(by.get('defgan'))} | {f(by.get('defgan-2018'))} | {f(by.get('pg2'))} | "
            f"{f(mby.get('defgan'))} | {f(mby.get('pg2'))} | {f(r.get('l1'))} | {r.get('n_pairs')} | "
            f"{r.get('seconds')} |")


def main(src: Path) -> None:
    out = ROOT / "benchmarks" / "results" / "stage2_cpu"
    out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    lines = ["| run | SSIM defgan | SSIM defgan-2018 | SSIM pg2 | mask-SSIM defgan | mask-SSIM pg2 | L1 | pairs | "
             "eval s |", "|---|---|---|---|---|---|---|---|---|"]
    floor = None
    for name, label in RUNS:
        run = GeneratorRun(src / name)
        try:
            rec = EvaluationRecord.read(run.eval_dir().metrics_json)
        except RecordError:
            lines.append(f"| {label} | not finished | | | | | | | |")
            continue
        lines.append(_row(label, rec))
        floor = floor or rec
        dst = out / name
        dst.mkdir(exist_ok=True)
        for f in (run.eval_dir().metrics_json, run.eval_dir().samples_png, run.config, run.run_json, run.log_csv):
            if f.is_file():
                shutil.copyfile(f, dst / (f"eval_{f.name}" if f.parent.name.startswith("eval") else f.name))
    if floor is not None:
        lines.append(_row("copy the source (floor)", floor, "copy_source"))
    timeline = (src / "timeline.txt").read_text() if (src / "timeline.txt").is_file() else ""
    text = "\n".join(["# Stage II with PG²'s published (pair) discriminator at CPU scale", "",
                      f"Command: `OUT={src} bash benchmarks/stage2_cpu.sh`, then `python benchmarks/collect_stage2.py "
                      f"{src}`; code at commit {commit} (collected). Real Market-1501, the 12,000 standard test pairs; "
                      "2 shared CPU cores.", "", *lines, "", "Timeline:", "", "```", timeline.rstrip(), "```", ""])
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
