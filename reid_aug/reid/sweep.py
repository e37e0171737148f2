"""``reid-aug sweep``: a grid of benchmark cells (levers x regimes) x seeds, one table and one plot.

Each cell is one ``benchmark`` (baseline and augmented, every seed) in ``OUT/cells/<cell>/`` with its recipe
plus the cell's overrides; a finished cell (or seed) is skipped on a restart, as in ``benchmark``. The grid's
keys are dotted config keys (``train.mix=pool,batch``, ``data.train_per_id=2,4``) or ``augmented`` (synthesized
folders, e.g. K per identity vs K per image). The summary gives per cell the paired delta (augmented - baseline,
same seed) of rank-1 and mAP with its 95 % t-interval over seeds, and marks the cells whose interval excludes 0.
"""
from __future__ import annotations

import itertools
import json
import logging
import math
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from reid_aug.errors import ConfigError
from reid_aug.utils.io import atomic_write_text

log = logging.getLogger(__name__)

AUGMENTED_KEY = "augmented"


def parse_grid(specs: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``["train.mix=pool,batch", ...]`` -> ``[("train.mix", ["pool", "batch"]), ...]`` (one line errors)."""
    grid = []
    for spec in specs:
        key, sep, values = str(spec).partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not vals:
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2 (e.g. train.mix=pool,batch)")
        if key.strip() in [k for k, _ in grid]:
            raise ConfigError(f"--grid names {key.strip()!r} twice")
        grid.append((key.strip(), vals))
    if not grid:
        raise ConfigError("give at least one --grid KEY=V1,V2")
    return grid


def cells(grid) -> list[dict[str, str]]:
    """The cartesian product of the grid, in the order given (the last key varies fastest)."""
    keys = [k for k, _ in grid]
    return [dict(zip(keys, combo)) for combo in itertools.product(*[v for _, v in grid])]


def cell_name(cell: dict[str, str]) -> str:
    """A folder name: ``train.mix=batch__data.train_per_id=2`` (a folder value by its name)."""
    parts = [f"{k}={Path(v).name if k == AUGMENTED_KEY else v}" for k, v in cell.items()]
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "__".join(parts))


def run_sweep(grid, *, recipe=None, overrides=(), dataset=None, augmented=None, seeds=(0, 1, 2), out_dir,
              model=None, pretrained=None, labels=None, weights=None, baseline_from=()) -> Path:
    """Run (or resume) every cell, then write ``OUT/sweep.{md,csv,json,png}``. Returns ``OUT``.

    ``baseline_from``: benchmark folders (e.g. another sweep's cells) whose comparable baselines the cells take
    over, tried before this sweep's earlier cells; a folder whose baselines are not comparable is passed over."""
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    out = Path(out_dir)
    todo = cells(grid)
    configs = []
    for cell in todo:                       # every cell's config is checked before any training
        extra = [f"{k}={v}" for k, v in cell.items() if k != AUGMENTED_KEY]
        cfg = resolve_benchmark(model=model, recipe=recipe, overrides=list(overrides) + extra, labels=labels,
                                pretrained=pretrained)
        aug = cell.get(AUGMENTED_KEY, augmented)
        if aug is None:
            raise ConfigError("the sweep needs a synthesized set: --augmented DIR or --grid augmented=DIR1,DIR2")
        configs.append((cell, cfg, aug))
    folders = [out / "cells" / cell_name(c) for c, _, _ in configs]
    for i, ((cell, cfg, aug), folder) in enumerate(zip(configs, folders), start=1):
        log.info("sweep cell %d/%d: %s", i, len(configs), cell_name(cell))
        # cells whose baselines are the same runs (e.g. only the synthesized set or train.synthetic_ratio
        # differs) take them over from an earlier cell instead of training them again
        run_benchmark(cfg, dataset=dataset, augmented_dir=aug, seeds=list(seeds), weights=weights,
                      out_dir=folder, shared_baselines=[*map(Path, baseline_from), *folders[:i - 1]])
    # the table covers every seed finished in the cells, not only this call's: seeds run in separate shells
    # (--seeds 3 and --seeds 4) would otherwise leave a one-seed table behind whichever finished last
    table_seeds = sorted(set(seeds).union(*(finished_seeds(f) for f in folders)))
    if table_seeds != sorted(seeds):
        log.info("sweep table: seeds %s (finished in the cells; this call ran %s)", table_seeds, list(seeds))
    rows = [summarize_cell(out / "cells" / cell_name(c), c, table_seeds) for c, _, _ in configs]
    write_summary(out, rows, [k for k, _ in grid], table_seeds)
    return out


def finished_seeds(folder: Path) -> set[int]:
    """The seeds whose baseline and augmented runs both finished in a cell folder's ``results.json``."""
    from reid_aug.records import read_json_object

    path = Path(folder) / "results.json"
    if not path.is_file():
        return set()
    runs = read_json_object(path, "benchmark results").get("runs", {})
    done = {(v.get("variant"), v.get("seed")) for v in runs.values() if "rank1" in v}
    return {s for variant, s in done if variant == "augmented" and ("baseline", s) in done}


def _interval(vals: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95 % t-interval, in percentage points; a single value has no interval."""
    from scipy import stats

    m = 100 * float(np.mean(vals))
    if len(vals) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(vals) - 1)) * 100 * float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    return m, m - half, m + half


def summarize_cell(folder: Path, cell: dict, seeds) -> dict:
    from reid_aug.records import read_json_object
    from reid_aug.reid.tables import paired_deltas

    runs = read_json_object(folder / "results.json", "benchmark results").get("runs", {})
    row = {**cell, "cell": cell_name(cell), "n_seeds": 0}
    for key in ("rank1", "mAP"):
        d = paired_deltas(runs, seeds, key)
        row["n_seeds"] = len(d)
        mean, lo, hi = _interval(d) if d else (float("nan"),) * 3
        base = [runs[f"baseline_seed{s}"][key] for s in seeds if f"baseline_seed{s}" in runs]
        row.update({f"baseline_{key}": 100 * float(np.mean(base)) if base else float("nan"),
                    f"delta_{key}": mean, f"delta_{key}_lo": lo, f"delta_{key}_hi": hi,
                    f"{key}_ci_excludes_0": bool(lo > 0 or hi < 0)})
    return row


def _delta_text(mean: float, lo: float, hi: float) -> str:
    """``+1.2 [-0.3, +2.7]``; one seed has no interval (a t interval needs two), which is said, not printed as nan."""
    if math.isnan(lo) or math.isnan(hi):
        return f"{mean:+.1f} [no interval: 1 seed]"
    return f"{mean:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def _sentence(rows: list[dict]) -> str:
    up = [r["cell"] for r in rows if r["rank1_ci_excludes_0"] and r["delta_rank1_lo"] > 0]
    down = [r["cell"] for r in rows if r["rank1_ci_excludes_0"] and r["delta_rank1_hi"] < 0]
    best = max(rows, key=lambda r: r["delta_rank1"] if not math.isnan(r["delta_rank1"]) else -1e9)
    return (f"{len(up)} of {len(rows)} cells raised rank-1 with a 95 % interval above 0"
            + (f" ({', '.join(up)})" if up else "") + f", {len(down)} lowered it with an interval below 0; "
            f"the best cell is {best['cell']} at "
            f"{_delta_text(best['delta_rank1'], best['delta_rank1_lo'], best['delta_rank1_hi'])} points.")


def write_summary(out: Path, rows: list[dict], keys: list[str], seeds: list[int]) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    atomic_write_text(out / "sweep.csv", df.to_csv(index=False))
    atomic_write_text(out / "sweep.json", json.dumps({"seeds": seeds, "keys": keys, "cells": rows}, indent=1) + "\n")
    lines = [f"# Sweep over {', '.join(keys)} ({len(rows)} cells, seeds {', '.join(map(str, seeds))})", "",
             _sentence(rows), "",
             "Deltas are augmented - baseline in percentage points, paired by seed, with the 95 % t-interval; "
             "* = the interval excludes 0. Each cell's own report: `cells/<cell>/report.md`.", "",
             "| cell | seeds | baseline rank-1 | delta rank-1 [95 % CI] | baseline mAP | delta mAP [95 % CI] |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        def d(k):
            star = " *" if r[f"{k}_ci_excludes_0"] else ""
            return _delta_text(r[f"delta_{k}"], r[f"delta_{k}_lo"], r[f"delta_{k}_hi"]) + star
        lines.append(f"| {r['cell']} | {r['n_seeds']} | {r['baseline_rank1']:.1f} | {d('rank1')} | "
                     f"{r['baseline_mAP']:.1f} | {d('mAP')} |")
    lines += ["", "![deltas](sweep.png)", ""]
    atomic_write_text(out / "sweep.md", "\n".join(lines))
    _plot(rows, out / "sweep.png")


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reid_aug.utils.io import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(max(6.0, 1.2 * len(rows) + 2), 3.6))
    x = np.arange(len(rows))
    for ax, key, title in zip(axes, ("rank1", "mAP"), ("delta rank-1 (points)", "delta mAP (points)")):
        m = np.array([r[f"delta_{key}"] for r in rows])
        lo = np.array([r[f"delta_{key}_lo"] for r in rows])
        hi = np.array([r[f"delta_{key}_hi"] for r in rows])
        err = np.nan_to_num(np.vstack([m - lo, hi - m]))
        ax.bar(x, m, color=["tab:green" if v > 0 else "tab:red" for v in m], yerr=err, capsize=4)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, [r["cell"] for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
