"""Collect benchmarks/stage2_cpu.sh's runs into benchmarks/results/stage2_cpu/ (records, pictures, README table).

    python benchmarks/collect_stage2.py /work/longruns/stage2_cpu
"""
from __future__ import annotations

import sys
from pathlib import Path

from collect_runs import ROOT, collect, commit, timeline

RUNS = (("g1", "G1 (stage I, pg2_market_cpu)"), ("g2_pair_l100", "G1 + G2, pair D, lambda 100"),
        ("g2_pair_l10", "G1 + G2, pair D, lambda 10 (the paper's)"))


def main(src: Path) -> None:
    out = ROOT / "benchmarks" / "results" / "stage2_cpu"
    lines, _ = collect(src, out, RUNS)
    text = "\n".join(["# Stage II with PG²'s published (pair) discriminator at CPU scale", "",
                      f"Command: `OUT={src} bash benchmarks/stage2_cpu.sh`, then `python benchmarks/collect_stage2.py "
                      f"{src}`; code at commit {commit()} (collected). Real Market-1501, the 12,000 standard test pairs; "
                      "2 shared CPU cores.", "", *lines, "", *timeline(src), ""])
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
