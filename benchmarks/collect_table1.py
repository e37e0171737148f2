"""Collect benchmarks/table1_cpu.sh's and stage2_levers_cpu.sh's runs into benchmarks/results/table1_cpu/:
the records and sample grids of each run and a README with PG²'s Table 1 at CPU scale and the stage-II levers.

    python benchmarks/collect_table1.py /work/longruns/table1_cpu
"""
from __future__ import annotations

import sys
from pathlib import Path

from collect_runs import ROOT, collect, commit, timeline

TABLE1 = (("g1_l1", "G1-L1"), ("g1_posemask", "G1-poseMaskLoss"), ("g1_d", "G1+D"), ("g1_g2_d", "G1+G2+D"),
          ("g1_ce_l1", "G1-CE-L1"), ("g1_hme_l1", "G1-HME-L1"))
LEVERS = (("g1_posemask", "G1 (Table 1's G1-poseMaskLoss)"),
          ("g1_g2_d", "+ G2, pair D, lambda 10: PG² as published (Table 1's G1+G2+D)"),
          ("stage2_d_lr_low", "+ G2, D learning rate / 10 (5e-6)"),
          ("stage2_d_spectral", "+ G2, spectral-norm D (no BatchNorm)"),
          ("stage2_d_every4", "+ G2, one D update per 4 G2 updates"),
          ("stage2_lambda_ramp", "+ G2, lambda 100 -> 10 over the first half"))


def main(src: Path) -> None:
    out = ROOT / "benchmarks" / "results" / "table1_cpu"
    t1, _ = collect(src, out, TABLE1, with_samples=True)
    ran = [(n, label) for n, label in LEVERS if (src / n / "run.json").is_file()]
    lv, _ = collect(src, out, ran, with_samples=True)
    not_run = [(n, label.split(", ", 1)[1]) for n, label in LEVERS if (n, label) not in ran]
    if not_run:
        names = " ".join(n.replace("stage2_", "") for n, _ in not_run)
        lv.append("")
        lv.append(f"Built but not measured (CPU time of the session): {'; '.join(t for _, t in not_run)} "
                  f"(`LEVERS=\"{names}\" bash benchmarks/stage2_levers_cpu.sh`).")
    text = "\n".join([
        "# PG²'s Table 1 at CPU scale, and what makes stage II help", "",
        f"Commands: `OUT={src} bash benchmarks/table1_cpu.sh` (rows in two parallel lists), "
        f"`OUT={src} bash benchmarks/stage2_levers_cpu.sh`, then `python benchmarks/collect_table1.py {src}`; "
        f"code at commit {commit()} (collected). Real Market-1501, the 12,000 standard test pairs; 2 shared CPU "
        "cores (the runs shared them with each other).", "",
        "## Table 1 (every row: pg2_market_cpu widths, 1,100 stage-I iterations, PG²'s pose mask, pair D, lambda 10;"
        " G1+G2+D adds 500 stage-II iterations on the G1-poseMaskLoss row's G1)", "", *t1, "",
        "## Stage II on one G1: PG² as published, then levers that are not PG²'s (500 iterations each)", "", *lv, "",
        *timeline(src), ""])
    (out / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
