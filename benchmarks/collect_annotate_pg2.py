"""Issue 15: the PG² records of ``benchmarks/annotate_pg2_cpu.sh`` as one table (what annotate's keypoints cost).

    python benchmarks/collect_annotate_pg2.py --runs runs/annotate_pg2 --out benchmarks/results/annotate

Per seed and stage (G1, G2) on the standard Market-1501 test pairs (all 12,000, or the first N when the
benchmark ran with LIMIT=N; the table gives the count):
- ``provided``: trained and evaluated on the provided (OpenPose) keypoints;
- ``annotate``: trained on ``reid-aug annotate``'s keypoints, evaluated with the provided test keypoints (the
  same target poses and masks as ``provided``: only the training keypoints differ);
- ``annotate_e2e``: trained and evaluated on annotate's keypoints (a user's chain; its mask-SSIM uses annotate's
  masks, so only its SSIM compares with the others).
The difference annotate - provided per seed with a 95 % paired bootstrap interval over the pairs (2,000
resamples), and across seeds the mean with a Student-t interval. Copies each run's records (config, run.json,
log.csv, eval*/metrics.json, the first seed's sample grids) beside the table.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from collect_results import copy_record  # noqa: E402

ARMS = {"provided": ("provided", ""), "annotate": ("annotate", "-kp-dataset"), "annotate_e2e": ("annotate", "")}
METRICS = {"ssim": "ssim_defgan", "ssim_pg2": "ssim_pg2", "mask_ssim": "mask_ssim_defgan", "l1": "l1"}


def eval_dir(run: Path, stage: str, suffix: str) -> Path:
    return run / (("eval" if stage == "g2" else "eval-g1") + suffix)


def bootstrap(diff: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``diff`` (per-pair differences) over ``n`` resamples."""
    rng = np.random.default_rng(seed)
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def t_interval(vals: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    m = float(np.mean(vals))
    if len(vals) < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(vals) - 1)) * float(np.std(vals, ddof=1)) / math.sqrt(len(vals))
    return m, m - half, m + half


def collect(runs: Path, seeds: list[int]) -> dict:
    rows, deltas = [], []
    for seed in seeds:
        for stage in ("g1", "g2"):
            per_pair = {}
            for arm, (prefix, suffix) in ARMS.items():
                d = eval_dir(runs / f"{prefix}_s{seed}", stage, suffix)
                if not (d / "per_pair.csv").is_file():
                    continue
                pp = pd.read_csv(d / "per_pair.csv")
                rec = json.loads((d / "metrics.json").read_text())["records"]
                rec = next(r for r in rec if r["row"] == "model" and r["stage"] == stage)
                per_pair[arm] = pp
                rows.append({"seed": seed, "stage": stage, "arm": arm, "n_pairs": len(pp),
                             **{k: float(pp[c].mean()) for k, c in METRICS.items()},
                             "checkpoint_sha256": rec["checkpoint_sha256"], "annotations": rec.get("annotations"),
                             "seconds": rec["seconds"]})
            for arm in ("annotate", "annotate_e2e"):
                if arm in per_pair and "provided" in per_pair:
                    a, b = per_pair[arm], per_pair["provided"]
                    assert list(a["to"]) == list(b["to"]), "the arms were evaluated on different pairs"
                    for k, c in METRICS.items():
                        if arm == "annotate_e2e" and k == "mask_ssim":
                            continue   # its masks come from annotate's keypoints (empty where none was found)
                        diff = (a[c] - b[c]).to_numpy()
                        lo, hi = bootstrap(diff)
                        deltas.append({"seed": seed, "stage": stage, "arm": arm, "metric": k,
                                       "delta": float(diff.mean()), "lo": lo, "hi": hi})
    summary = []
    frame = pd.DataFrame(deltas)
    for (stage, arm, metric), g in (frame.groupby(["stage", "arm", "metric"]) if len(frame) else []):
        m, lo, hi = t_interval(g["delta"].tolist())
        summary.append({"stage": stage, "arm": arm, "metric": metric, "n_seeds": len(g), "mean": m, "lo": lo,
                        "hi": hi, "per_seed": [round(v, 4) for v in g["delta"]]})
    return {"rows": rows, "deltas": deltas, "summary": summary}


def markdown(res: dict) -> str:
    out = ["| seed | stage | arm | pairs | SSIM | SSIM (pg2) | mask-SSIM | L1 |", "|---|---|---|---|---|---|---|---|"]
    out += [f"| {r['seed']} | {r['stage']} | {r['arm']} | {r['n_pairs']} | {r['ssim']:.4f} | {r['ssim_pg2']:.4f} | "
            f"{r['mask_ssim']:.4f} | {r['l1']:.4f} |" for r in res["rows"]]
    out += ["", "Difference to `provided` (annotate - provided): per seed [95 % bootstrap over the pairs]; "
            "across seeds mean [95 % t interval].", "",
            "| stage | arm | metric | seeds | mean [t interval] | per seed |", "|---|---|---|---|---|---|"]
    for s in res["summary"]:
        per = "; ".join(f"{d['delta']:+.4f} [{d['lo']:+.4f}, {d['hi']:+.4f}]" for d in res["deltas"]
                        if (d["stage"], d["arm"], d["metric"]) == (s["stage"], s["arm"], s["metric"]))
        ci = f"[{s['lo']:+.4f}, {s['hi']:+.4f}]" if not math.isnan(s["lo"]) else "(one seed)"
        out.append(f"| {s['stage']} | {s['arm']} | {s['metric']} | {s['n_seeds']} | {s['mean']:+.4f} {ci} | {per} |")
    return "\n".join(out) + "\n"


def copy_runs(runs: Path, dest: Path, seeds: list[int]) -> None:
    for run in sorted(runs.glob("*_s*")) + [runs / "cuhk_generator"]:
        if not run.is_dir():
            continue
        for name in ("config.yaml", "run.json", "log.csv"):
            if (run / name).is_file():
                copy_record(run / name, dest / run.name / name)
        for d in sorted(run.glob("eval*")):
            for name in ("metrics.json", "metrics.csv") + (("samples.png",) if run.name.endswith(f"_s{seeds[0]}")
                                                             or run.name == "cuhk_generator" else ()):
                if (d / name).is_file():
                    copy_record(d / name, dest / run.name / d.name / name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    res = collect(args.runs, seeds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pg2_keypoints.json").write_text(json.dumps(res, indent=1) + "\n")
    (args.out / "pg2_keypoints.md").write_text(markdown(res))
    copy_runs(args.runs, args.out / "runs", seeds)
    print(markdown(res))


if __name__ == "__main__":
    main()
