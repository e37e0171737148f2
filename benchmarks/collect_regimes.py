"""Issue 14 across regimes: one protocol's cell from each regime's record, as one table and one plot.

    python benchmarks/collect_regimes.py                      # -> benchmarks/results/regimes/{summary.md,json,png}

Each regime's record was written by its own collector (``collect_comparison.py``, ``collect_sweep.py``); this
script only reads their ``summary.json`` / ``sweep.json`` and puts the cell of the protocol that measured best in
the low-data regime (CamStyle batch mixing, hard labels, K = 10 per identity, every generated image) side by side,
with the no-generation control's contrast where the regime ran it. A regime whose record is missing is listed as
"not recorded", never guessed.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))

from reid_aug.utils.io import atomic_path, atomic_write_text  # noqa: E402


@dataclass(frozen=True)
class Regime:
    """``record``: a folder of ``benchmarks/results``; ``source``: the JSON in it with a ``cells`` list (under
    ``reid`` for a comparison's summary); the cell is the one whose ``cell`` name is ``cell`` (and ``sweep``)."""
    name: str
    real: str                  # real training images per identity
    generator: str
    reid: str                  # the Re-ID budget
    record: str
    source: str = "summary.json"
    cell: str = "augmented=syn_defgan"
    sweep: str | None = "sweep"
    control: str | None = "sweep_sources_hard"   # the no-generation control's sweep in the same record


REGIMES = (
    Regime("Market-1501, N = 1", "1", "Deformable GAN trained on CUHK03-mini (cross-dataset)", "60 epochs",
           "market_lowdata_n1"),
    Regime("Market-1501, N = 2", "2", "Deformable GAN on the kept images only", "60 epochs", "market_lowdata"),
    Regime("Market-1501, N = 4", "4", "Deformable GAN on the kept images only", "60 epochs", "market_lowdata_n4"),
    Regime("Market-1501, all", "17.2 (all)", "Deformable GAN on all training pairs", "40 epochs (validation)",
           "market_full"),
    Regime("Market-1501, all, short", "17.2 (all)", "Deformable GAN on all training pairs", "3 epochs (not converged)",
           "defgan_vs_pg2", control=None),
    Regime("CUHK03-mini", "9.7 (all)", "PG² G1 trained on Market-1501 (cross-dataset)", "60 epochs",
           "cuhk03_mini", source="test_batch/sweep.json", cell="augmented=syn_k10", sweep=None, control=None),
)


def _contrast(data: dict, regime: Regime, metric: str) -> dict | None:
    """generated - real sources (both hard labels, paired by seed) from a comparison's summary, or None."""
    if regime.control is None:
        return None
    ref = f"{regime.cell.split('=', 1)[1]} ({regime.control})"
    return next((c for c in data.get("reid", {}).get("contrasts", [])
                 if c["reference"] == ref and c["metric"] == metric and "(" not in c["cell"]), None)


def row(regime: Regime, results: Path = RESULTS) -> dict:
    """The regime's cell: deltas and intervals in rank-1 / mAP points, or ``recorded: False``."""
    out = {"regime": regime.name, "real_per_id": regime.real, "generator": regime.generator, "reid": regime.reid,
           "record": regime.record, "recorded": False}
    path = results / regime.record / regime.source
    if not path.is_file():
        return out
    data = json.loads(path.read_text())
    cells = data["reid"]["cells"] if "reid" in data else data["cells"]   # a comparison's summary or a sweep's
    cell = next((c for c in cells if c["cell"] == regime.cell
                 and (regime.sweep is None or c.get("sweep") == regime.sweep)), None)
    if cell is None or not cell.get("n_seeds"):   # absent, or no seed finished yet
        return out
    out.update(recorded=True, n_seeds=cell["n_seeds"], **{k: cell[k] for k in (
        "baseline_rank1", "delta_rank1", "delta_rank1_lo", "delta_rank1_hi", "rank1_ci_excludes_0",
        "baseline_mAP", "delta_mAP", "delta_mAP_lo", "delta_mAP_hi", "mAP_ci_excludes_0")})
    control = _contrast(data, regime, "rank1")
    if control:
        out.update(vs_sources_rank1=control["mean"], vs_sources_lo=control["lo"], vs_sources_hi=control["hi"],
                   vs_sources_seeds=len(control["seeds"]))
    return out


def _interval(mean: float, lo: float, hi: float, n_seeds: int, mark: str = "") -> str:
    """``+m [+lo, +hi]`` in points, bold with ``mark``; a 1-seed figure has no interval and says so."""
    if n_seeds < 2:
        return f"{mean:+.1f} [no interval: 1 seed]"
    return f"{mark}{mean:+.1f} [{lo:+.1f}, {hi:+.1f}]{mark}"


def _ci(r: dict, key: str) -> str:
    mark = "**" if r[f"{'rank1' if key == 'delta_rank1' else 'mAP'}_ci_excludes_0"] else ""
    return _interval(r[key], r[key + "_lo"], r[key + "_hi"], r["n_seeds"], mark)


def _vs_sources(r: dict) -> str:
    """the no-generation contrast's cell (generated - real sources, rank-1), or "not run"."""
    if "vs_sources_rank1" not in r:
        return "not run"
    cell = _interval(r["vs_sources_rank1"], r["vs_sources_lo"], r["vs_sources_hi"], r["vs_sources_seeds"])
    return cell if r["vs_sources_seeds"] < 2 else f"{cell} ({r['vs_sources_seeds']} seeds)"


def markdown(rows: list[dict]) -> str:
    lines = ["| regime | real images per identity | generator | Re-ID budget | seeds | baseline rank-1 | "
             "delta rank-1 [95 % CI] | delta mAP [95 % CI] | generated - real sources, rank-1 | record |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if not r["recorded"]:
            lines.append(f"| {r['regime']} | {r['real_per_id']} | {r['generator']} | {r['reid']} | | | not recorded "
                         f"| | | `{r['record']}/` |")
            continue
        lines.append(f"| {r['regime']} | {r['real_per_id']} | {r['generator']} | {r['reid']} | {r['n_seeds']} | "
                     f"{r['baseline_rank1']:.1f} | {_ci(r, 'delta_rank1')} | {_ci(r, 'delta_mAP')} | "
                     f"{_vs_sources(r)} | `{r['record']}/` |")
    return "\n".join(lines) + "\n\nBold: the 95 % interval (t, paired by seed) excludes 0.\n"


def plot(rows: list[dict], path: Path) -> bool:
    """Delta rank-1 and delta mAP per regime recorded over 2 or more seeds with their 95 % intervals; False where
    none is."""
    rec = [r for r in rows if r["recorded"] and r["n_seeds"] >= 2]   # a one-seed cell has no interval to draw
    if not rec:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * len(rec) + 1.6), dpi=120, sharey=True)
    y = list(range(len(rec)))[::-1]
    for ax, key, name in zip(axes, ("delta_rank1", "delta_mAP"), ("rank-1", "mAP")):
        for yi, r in zip(y, rec):
            lo, hi, m = r[f"{key}_lo"], r[f"{key}_hi"], r[key]
            color = "#2a7ab9" if lo > 0 else ("#c0392b" if hi < 0 else "#7f8c9a")
            ax.errorbar(m, yi, xerr=[[m - lo], [hi - m]], fmt="o", color=color, capsize=4)
            ax.annotate(f"{m:+.1f}", (m, yi), xytext=(0, 6), textcoords="offset points", ha="center", fontsize=8)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_ylim(-0.6, len(rec) - 0.3)   # room for the top row's label
        ax.set_xlabel(f"augmented - baseline, {name} (points)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([f"{r['regime']} ({r['n_seeds']} seeds)" for r in rec], fontsize=8)
    fig.suptitle("Pose-transfer augmentation by regime: batch mixing, hard labels, 95 % intervals paired by seed",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=RESULTS, help="the records' folder (benchmarks/results)")
    ap.add_argument("--out", type=Path, help="default: RESULTS/regimes")
    args = ap.parse_args()
    out = args.out or args.results / "regimes"
    out.mkdir(parents=True, exist_ok=True)
    rows = [row(r, args.results) for r in REGIMES]
    atomic_write_text(out / "summary.json", json.dumps(rows, indent=1) + "\n")
    atomic_write_text(out / "summary.md", markdown(rows))
    plot(rows, out / "regimes.png")
    print(markdown(rows))


if __name__ == "__main__":
    main()
