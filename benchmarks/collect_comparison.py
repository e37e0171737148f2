"""Two generators compared on real Market-1501 and through Re-ID: the records of a comparison script as one table.

    python benchmarks/collect_comparison.py defgan_vs_pg2 --runs runs/dg --out benchmarks/results/defgan_vs_pg2
    python benchmarks/collect_comparison.py identity_losses --runs runs/idloss --out benchmarks/results/identity_losses

Comparisons (``COMPARISONS``): ``defgan_vs_pg2`` (issue 13, ``benchmarks/defgan_vs_pg2_cpu.sh``; this script was
``collect_defgan_vs_pg2.py``), ``identity_losses`` and ``identity_losses_defgan`` (issue 20,
``benchmarks/identity_losses_cpu.sh``, PG² and ``FAMILY=defgan``), ``market_lowdata`` / ``market_lowdata_n4`` /
``market_lowdata_n1`` / ``market_full`` (issue 14, ``benchmarks/market_lowdata_cpu.sh`` at N = 2, 4, 1, 0 = all: one
generator, ``a == b``, so no generator deltas; ``benchmarks/collect_regimes.py`` puts the regimes side by side).

- Generator quality on the standard Market-1501 test pairs (both evaluated on the same pairs): SSIM and mask-SSIM
  in both published protocols, L1, identity retrieval where the evaluation had a judge (``--reid-model``), the
  copy-the-source floor; A - B per pair with a 95 % paired bootstrap interval over the pairs (one generator seed
  each: the interval covers the pairs, not training noise).
- Training cost: steps, batch, pairs seen and the measured wall time of each training (``walltimes.txt``).
- Side-by-side grids: the evaluation's first 8 pairs (source | target pose | B | A | target) and the synthesized
  sets (the same identities, each generator's K images).
- Re-ID: the sweeps' cells (augmented - baseline, paired by seed, 95 % t interval) and contrasts between cells
  (augmented runs paired by seed; the baselines are shared).
- Identity judge (``benchmarks/identity_judge.py``): how often a baseline model ranks a synthesized image's own
  identity first.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from collect_annotate_pg2 import bootstrap, t_interval  # noqa: E402
from collect_results import copy_record  # noqa: E402

from reid_aug.records import EvaluationRecord  # noqa: E402
from reid_aug.rundir import GeneratorRun, SynthesizedSet  # noqa: E402
from reid_aug.utils.images import save_png  # noqa: E402

METRICS = {"ssim": "ssim_defgan", "ssim_pg2": "ssim_pg2", "mask_ssim": "mask_ssim_defgan",
           "mask_ssim_pg2": "mask_ssim_pg2", "l1": "l1", "id_retrieval": "id_retrieval"}
LOWER_IS_BETTER = {"l1"}


@dataclass(frozen=True)
class Comparison:
    """Generator ``a`` against reference ``b``: run folders ``RUNS/<name>``, synthesized sets ``RUNS/syn_<name>``.
    ``contrasts``: ((sweep, set), (sweep, reference set)) pairs of cells whose augmented runs are compared by seed."""
    labels: dict                # run folder name -> label, reference first
    a: str
    b: str
    sweeps: tuple = ("sweep",)
    contrasts: tuple = ()
    extra_sets: tuple = ()      # more synthesized sets whose descriptors are copied
    similarity: str = "source_similarity.json"   # benchmarks/source_similarity.py's record in RUNS
    recorded_elsewhere: tuple = ()   # sweeps read for the tables whose records another comparison holds (not copied)
    benchmarks: tuple = ()      # benchmark folders in RUNS whose records are copied (a validation curve, baselines)

    @property
    def names(self) -> tuple:
        """The generators' run names, reference first; one name where a == b (a single generator's records)."""
        return tuple(dict.fromkeys((self.b, self.a)))


def _lowdata(label: str, benchmarks: tuple = ("val_base", "base0", "base12")) -> Comparison:
    """issue 14's low-data regime (benchmarks/market_lowdata_cpu.sh, one record per N): one generator, ``a == b``.
    ``benchmarks``: the validation curves and baselines copied with the record."""
    return Comparison(
        {"defgan": label}, a="defgan", b="defgan",
        sweeps=("sweep", "sweep_sources_hard", "sweep_teacher", "sweep_sources", "sweep_filter", "sweep_per_image"),
        contrasts=((("sweep", "syn_defgan"), ("sweep_sources_hard", "syn_defgan")),
                   (("sweep_teacher", "syn_defgan"), ("sweep_sources", "syn_defgan")),
                   (("sweep_teacher", "syn_defgan"), ("sweep", "syn_defgan")),
                   (("sweep_filter", "syn_defgan_filtered"), ("sweep", "syn_defgan")),
                   (("sweep_per_image", "syn_defgan_img2"), ("sweep", "syn_defgan"))),
        extra_sets=("syn_defgan_filtered", "syn_defgan_img2"),
        similarity="", benchmarks=benchmarks)


COMPARISONS = {
    "defgan_vs_pg2": Comparison(
        {"pg2": "PG²", "defgan": "Deformable GAN"}, a="defgan", b="pg2", sweeps=("sweep", "sweep_views"),
        contrasts=((("sweep", "syn_defgan"), ("sweep", "syn_pg2")),
                   (("sweep_views", "syn_pg2_views"), ("sweep", "syn_pg2")),
                   (("sweep_views", "syn_pg2_rotate"), ("sweep", "syn_pg2"))),
        extra_sets=("syn_pg2_views", "syn_pg2_rotate")),
    "identity_losses": Comparison(
        {"plain": "PG² G1", "id": "PG² G1 + identity losses"}, a="id", b="plain",
        sweeps=("sweep", "sweep_teacher", "sweep_teacher_plain", "sweep_teacher_sources", "sweep_teacher_copies",
                "sweep_sources"),
        contrasts=((("sweep", "syn_id"), ("sweep", "syn_plain")),
                   (("sweep_teacher", "syn_id"), ("sweep", "syn_id")),
                   (("sweep_teacher_plain", "syn_plain"), ("sweep", "syn_plain")),
                   (("sweep_teacher", "syn_id"), ("sweep_teacher_plain", "syn_plain")),
                   # the no-generation control, the same teacher on the sources themselves: the script's `sources`
                   # part (train.augmented_images=sources), or as recorded on 2026-12-04, the same images copied
                   # into a set of their own (benchmarks/source_copies.py of 3a77de1)
                   (("sweep_teacher", "syn_id"), ("sweep_teacher_sources", "syn_id")),
                   (("sweep_teacher_plain", "syn_plain"), ("sweep_teacher_sources", "syn_id")),
                   (("sweep_teacher", "syn_id"), ("sweep_teacher_copies", "copies_id")),
                   (("sweep_teacher_copies", "copies_id"), ("sweep_sources", "syn_id")),   # teacher - hard, sources
                   (("sweep", "syn_id"), ("sweep_sources", "syn_id")),
                   (("sweep_teacher_plain", "syn_plain"), ("sweep_teacher_copies", "copies_id")))),
    # identity_losses_cpu.sh with FAMILY=defgan; defgan_plain = defgan_vs_pg2's Deformable GAN run (same recipe,
    # steps and seed), its set and judge record copied in, and RUNS/defgan_vs_pg2_sweep a link to that comparison's
    # sweep (its hard-label cell of the plain Deformable GAN's images)
    "identity_losses_defgan": Comparison(
        {"defgan_plain": "Deformable GAN", "defgan_id": "Deformable GAN + identity losses"}, a="defgan_id",
        b="defgan_plain",
        sweeps=("defgan_sweep", "defgan_sweep_teacher", "defgan_vs_pg2_sweep", "sweep_teacher", "sweep_teacher_copies",
                "sweep_sources", "sweep"),
        # the sets share one plan (same sources, identities, target poses), so PG²'s cells and the sources control
        # are the Deformable GAN cells' exact references
        contrasts=((("defgan_sweep_teacher", "syn_defgan_id"), ("defgan_sweep", "syn_defgan_id")),
                   (("defgan_sweep_teacher", "syn_defgan_id"), ("sweep_teacher_copies", "copies_id")),
                   (("defgan_sweep_teacher", "syn_defgan_id"), ("sweep_teacher", "syn_id")),
                   (("defgan_sweep", "syn_defgan_id"), ("defgan_vs_pg2_sweep", "syn_defgan")),
                   (("defgan_sweep", "syn_defgan_id"), ("sweep_sources", "syn_id")),
                   (("defgan_sweep", "syn_defgan_id"), ("sweep", "syn_id"))),
        similarity="defgan_source_similarity.json",
        recorded_elsewhere=("defgan_vs_pg2_sweep", "sweep_teacher", "sweep_teacher_copies", "sweep_sources", "sweep")),
    "market_lowdata": _lowdata("Deformable GAN (kept images only)"),           # N = 2
    "market_lowdata_n4": _lowdata("Deformable GAN (kept images only)"),
    "market_lowdata_n1": _lowdata("Deformable GAN (trained on CUHK03-mini)"),   # GEN_DATA: no pairs at N = 1
    # N = 0, every image: two validation budgets side by side chose the epochs
    "market_full": _lowdata("Deformable GAN (all training pairs)",
                            ("val_base_e20", "val_base_e40", "base0", "base12")),
}


def wall_times(runs: Path) -> dict:
    """``{family: {"train": s, "evaluate": s}}`` summed over the calls in ``walltimes.txt``."""
    out: dict = {}
    path = runs / "walltimes.txt"
    for line in path.read_text().splitlines() if path.is_file() else []:
        fam, what = line.split()[:2]
        out.setdefault(fam, {}).setdefault(what, 0)
        out[fam][what] += int(line.rsplit(":", 1)[1])
    return out


def scores(r: dict) -> dict:
    """The compared columns of one evaluation row (identity retrieval: None without a judge)."""
    by, mby = r["ssim_by_protocol"], r["mask_ssim_by_protocol"]
    return {"ssim": by["defgan"], "ssim_pg2": by["pg2"], "mask_ssim": mby["defgan"], "mask_ssim_pg2": mby["pg2"],
            "l1": r["l1"], "id_retrieval": (r.get("id_retrieval") or {}).get("mean")}


def generator_rows(runs: Path, comp: Comparison) -> tuple[list[dict], dict]:
    """One row per generator (its scores, its copy-the-source floor, its budget) and the per-pair frames."""
    import yaml

    rows, per_pair = [], {}
    walls = wall_times(runs)
    for fam, label in comp.labels.items():
        run = GeneratorRun(runs / fam)
        ev = run.eval_dir()
        if not ev.metrics_json.is_file():
            continue
        rec = EvaluationRecord.read(ev.metrics_json)
        model = rec.row("model")
        train = yaml.safe_load(run.config.read_text()).get("train", {})
        steps = train.get("steps") or sum(train.get(f"{st}_iters", 0) for st in train.get("stages", ("g1", "g2")))
        per_pair[fam] = pd.read_csv(ev.path / "per_pair.csv")
        rows.append({"family": fam, "label": label, "n_pairs": model["n_pairs"], "steps": steps,
                     "batch": train.get("batch_size"), "pairs_seen": steps * train.get("batch_size", 0),
                     "train_s": walls.get(fam, {}).get("train"), "eval_s": model.get("seconds"),
                     "checkpoint_sha256": model["checkpoint_sha256"], "judge_sha256": model.get("reid_model_sha256"),
                     **scores(model), "floor": scores(rec.row("copy_source")),
                     "real_vs_real": scores(rec.row("real_vs_real"))})
    return rows, per_pair


def generator_deltas(per_pair: dict, comp: Comparison) -> list[dict]:
    """A - B per metric, mean over the pairs with a 95 % paired bootstrap interval (identity retrieval: a 0/1 per
    pair, where both evaluations had a judge)."""
    if set(per_pair) != set(comp.labels) or comp.a == comp.b:
        return []
    a, b = per_pair[comp.a], per_pair[comp.b]
    if list(a["to"]) != list(b["to"]) or list(a["from"]) != list(b["from"]):
        raise SystemExit("the two generators were evaluated on different pairs")
    out = []
    for k, c in METRICS.items():
        if c not in a or c not in b:
            continue
        diff = (a[c].astype(float) - b[c].astype(float)).to_numpy()
        lo, hi = bootstrap(diff)
        out.append({"metric": k, "delta": float(diff.mean()), "lo": lo, "hi": hi,
                    "share_a_better": float(np.mean(diff < 0) if k in LOWER_IS_BETTER else np.mean(diff > 0))})
    return out


def _augmented_runs(runs: Path, comp: Comparison) -> dict:
    """``{(sweep, set name): {seed: run record}}`` of the finished augmented runs of every sweep cell."""
    aug: dict = {}
    for sweep in comp.sweeps:
        for res in sorted((runs / sweep / "cells").glob("augmented=*/results.json")):
            name = res.parent.name.split("=", 1)[1]
            r = json.loads(res.read_text())["runs"]
            aug[sweep, name] = {int(v["seed"]): v for v in r.values()
                                if v.get("variant") == "augmented" and "rank1" in v}
    return aug


def _cell_label(key: tuple) -> str:
    sweep, name = key
    return name if sweep == "sweep" else f"{name} ({sweep})"


def reid(runs: Path, seeds: list[int], comp: Comparison) -> dict:
    """The sweeps' cells (summarised from each cell's results.json, so a sweep stopped part-way shows the seeds it
    finished) and the contrasts between cells' augmented runs (paired by seed)."""
    from reid_aug.reid.sweep import summarize_cell

    cells = []
    for sweep in comp.sweeps:
        for res in sorted((runs / sweep / "cells").glob("augmented=*/results.json")):
            cell = {"augmented": res.parent.name.split("=", 1)[1]}
            cells.append(dict(summarize_cell(res.parent, cell, seeds), sweep=sweep))
    if not cells:
        return {}
    aug, between = _augmented_runs(runs, comp), []
    for cell, ref in comp.contrasts:
        common = sorted(set(aug.get(cell, {})) & set(aug.get(ref, {})))
        for metric in ("rank1", "mAP"):
            d = [100 * (aug[cell][s][metric] - aug[ref][s][metric]) for s in common]
            if d:
                m, lo, hi = t_interval(d)
                between.append({"cell": _cell_label(cell), "reference": _cell_label(ref), "metric": metric,
                                "seeds": common,
                                "per_seed": [round(x, 2) for x in d], "mean": m, "lo": lo, "hi": hi})
    return {"cells": cells, "seeds": seeds, "contrasts": between}


def judges(runs: Path, comp: Comparison) -> dict:
    out = {}
    for p in sorted(runs / f"judge_{name}.json" for name in comp.names):
        if p.is_file():
            out[p.stem.split("_", 1)[1]] = [{"reid_model": Path(j["reid_model"]).name, **j["generated"],
                         "chance_top1": j["chance_top1"], "n_identities": j["n_identities"],
                         "real_top1": j["real_leave_one_out"]["top1"]} for j in json.loads(p.read_text())["judges"]]
    return out


def _columns(png: Path) -> list[np.ndarray]:
    """The 4 columns (source | target pose | generated | target) of an evaluation's samples.png."""
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    w = img.shape[1] // 4
    return [img[:, i * w:(i + 1) * w] for i in range(4)]


def eval_grid(runs: Path, dest: Path, comp: Comparison) -> Path | None:
    """source | target pose | B | A | target for the evaluation's first 8 pairs."""
    pngs = {fam: GeneratorRun(runs / fam).eval_dir().samples_png for fam in comp.names}
    if comp.a == comp.b or not all(p.is_file() for p in pngs.values()):
        return None
    b, a = _columns(pngs[comp.b]), _columns(pngs[comp.a])
    if not np.array_equal(b[0], a[0]) or not np.array_equal(b[3], a[3]):
        raise SystemExit("the two evaluations' sample pairs differ")
    grid = np.concatenate([b[0], b[1], b[2], a[2], b[3]], axis=1)
    return save_png(grid, dest / "eval_pairs_side_by_side.png")


def _thumb(path: Path, size=(64, 128)) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        return np.full((size[1], size[0], 3), 200, np.uint8)
    return np.asarray(Image.open(path).convert("RGB").resize(size))


def synthesized_grid(runs: Path, dest: Path, comp: Comparison, n_ids: int = 8, per_id: int = 6) -> Path | None:
    """One row per (identity, generator): its source of k = 0, then its first ``per_id`` images (B above A)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.records import SynthesisDescriptor

    sets = {fam: SynthesizedSet(runs / f"syn_{fam}") for fam in comp.names}
    if not all(s.manifest.is_file() for s in sets.values()):
        return None
    man = {fam: pd.read_csv(s.manifest).sort_values(["pid", "k"]) for fam, s in sets.items()}
    pids = sorted(set(man[comp.b]["pid"]) & set(man[comp.a]["pid"]))
    pick = [pids[i] for i in np.linspace(0, len(pids) - 1, n_ids).astype(int)]
    # the sources' paths from the dataset the set was synthesized from (its descriptor names it)
    real = load_dataset(SynthesisDescriptor.read(sets[comp.b].descriptor).info["dataset"]).split("train")
    source_path = dict(zip(real["name"], real["path"]))
    rows = []
    for pid in pick:
        for fam in comp.names:
            m = man[fam][man[fam]["pid"] == pid].head(per_id)
            src = _thumb(Path(source_path.get(str(m["source"].iloc[0]), "")))
            imgs = [_thumb(sets[fam].images / f) for f in m["file"]]
            imgs += [np.full_like(src, 255)] * (per_id - len(imgs))
            gap = np.full((src.shape[0], 8, 3), 255, np.uint8)
            rows.append(np.concatenate([src, gap] + imgs, axis=1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    return save_png(np.concatenate(rows[:-1], axis=0), dest / "synthesized_side_by_side.png")


def filter_grids(runs: Path, dest: Path, comp: Comparison, n_ids: int = 8, per_side: int = 4) -> list[Path]:
    """For every filtered set among ``extra_sets`` (a ``kept`` column and scores.csv): one row per identity with
    kept and rejected images, source | its kept images (best rank first) | its rejected ones (worst first)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.records import SynthesisDescriptor

    out = []
    for name in comp.extra_sets:
        sset = SynthesizedSet(runs / name)
        if not (sset.scores.is_file() and sset.manifest.is_file()):
            continue
        man = pd.read_csv(sset.manifest).merge(pd.read_csv(sset.scores)[["file", "rank"]], on="file")
        if "kept" not in man:
            continue
        both = sorted(p for p, g in man.groupby("pid") if 0 < g["kept"].sum() < len(g))
        pick = [both[i] for i in np.linspace(0, len(both) - 1, min(n_ids, len(both))).astype(int)]
        real = load_dataset(SynthesisDescriptor.read(sset.descriptor).info["dataset"]).split("train")
        source_path = dict(zip(real["name"], real["path"]))
        rows = []
        for pid in pick:
            g = man[man["pid"] == pid].sort_values("rank")
            kept, rejected = g[g["kept"] == 1].head(per_side), g[g["kept"] == 0].iloc[::-1].head(per_side)
            src = _thumb(Path(source_path.get(str(g["source"].iloc[0]), "")))
            blank, gap = np.full_like(src, 255), np.full((src.shape[0], 8, 3), 255, np.uint8)
            side = [[_thumb(sset.images / f) for f in part["file"]] for part in (kept, rejected)]
            side = [imgs + [blank] * (per_side - len(imgs)) for imgs in side]
            rows.append(np.concatenate([src, gap, *side[0], gap, gap, *side[1]], axis=1))
        if rows:
            out.append(save_png(np.concatenate(rows, axis=0), dest / f"{name}_kept_rejected.png"))
    return out


def _ci(lo: float, hi: float, fmt: str) -> str:
    return "(one seed)" if math.isnan(lo) else f"[{lo:{fmt}}, {hi:{fmt}}]"


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _generator_md(res: dict, comp: Comparison) -> list[str]:
    g = res["generators"]
    if not g:
        return ["The generator(s) were not evaluated on the test pairs in these records (no `eval/metrics.json`)."]
    judged = any(r["id_retrieval"] is not None for r in g)
    idc = (" identity retrieval |", "---|") if judged else ("", "")
    out = ["| generator | steps x batch | pairs seen | train wall s | pairs | SSIM | SSIM (pg2) | mask-SSIM | "
           "mask-SSIM (pg2) | L1 |" + idc[0], "|---|---|---|---|---|---|---|---|---|---|" + idc[1]]
    rows = [(r["label"], r, f"{r['steps']} x {r['batch']} | {r['pairs_seen']:,} | {r['train_s']}") for r in g]
    if g:
        rows.append(("copy the source (floor)", g[0]["floor"], " | | "))
        if judged:
            rows.append(("the real target image", g[0]["real_vs_real"], " | | "))
    for label, r, budget in rows:
        out.append(f"| {label} | {budget} | {g[0]['n_pairs']:,} | {r['ssim']:.4f} | {r['ssim_pg2']:.4f} | "
                   f"{r['mask_ssim']:.4f} | {r['mask_ssim_pg2']:.4f} | {r['l1']:.4f} |"
                   + (f" {_pct(r['id_retrieval'])} |" if judged else ""))
    if res["generator_deltas"]:
        la, lb = comp.labels[comp.a], comp.labels[comp.b]
        out += ["", f"{la} - {lb} over the pairs [95 % paired bootstrap, 2,000 resamples]; share of pairs "
                f"where {la} is better (one generator seed each).", "",
                f"| metric | delta [95 % CI] | pairs {la} better |", "|---|---|---|"]
        out += [f"| {d['metric']} | {d['delta']:+.4f} {_ci(d['lo'], d['hi'], '+.4f')} | "
                f"{100 * d['share_a_better']:.1f} % |" for d in res["generator_deltas"]]
    return out


def _reid_md(rd: dict) -> list[str]:
    out = ["", f"Re-ID (seeds {', '.join(map(str, rd['seeds']))}): augmented - baseline in points, paired by "
           "seed [95 % t interval].", "", "| cell | seeds | baseline rank-1 | delta rank-1 | baseline mAP | "
           "delta mAP |", "|---|---|---|---|---|---|"]
    for c in rd["cells"]:
        if not c["n_seeds"]:
            out.append(f"| {c['sweep']}: {c['cell']} | 0 | not finished | | | |")
            continue
        out.append(f"| {c['sweep']}: {c['cell']} | {c['n_seeds']} | {c['baseline_rank1']:.1f} | {c['delta_rank1']:+.1f} "
                   f"{_ci(c['delta_rank1_lo'], c['delta_rank1_hi'], '+.1f')} | {c['baseline_mAP']:.1f} | "
                   f"{c['delta_mAP']:+.1f} {_ci(c['delta_mAP_lo'], c['delta_mAP_hi'], '+.1f')} |")
    if not rd["contrasts"]:   # a regime that ran one cell
        return out
    out += ["", "Between cells (augmented runs paired by seed; the baselines are shared) [95 % t interval]:", "",
            "| cell - reference | metric | seeds | mean | per seed |", "|---|---|---|---|---|"]
    out += [f"| {b['cell']} - {b['reference']} | {b['metric']} | {len(b['seeds'])} | {b['mean']:+.1f} "
            f"{_ci(b['lo'], b['hi'], '+.1f')} | {b['per_seed']} |" for b in rd["contrasts"]]
    return out


def markdown(res: dict, comp: Comparison) -> str:
    out = _generator_md(res, comp) + (_reid_md(res["reid"]) if res["reid"] else [])
    for name, js in res["judges"].items():
        for j in js:
            out.append(f"\nIdentity judge, `syn_{name}`, {j['reid_model']}: top-1 {100 * j['top1']:.1f} % "
                       f"of {j['n']:,} (chance {100 * j['chance_top1']:.2f} %, real images leave-one-out "
                       f"{100 * j['real_top1']:.1f} %), median rank {j['median_rank']:.0f} of {j['n_identities']}.")
    for r in res.get("source_similarity") or []:
        g, same, other = r["generated_vs_source"], r["source_vs_same_identity_real"], r["source_vs_other_identity_real"]
        out.append(f"\nSSIM to its own source image, `{Path(r['set']).name}` ({g['n']:,} images): {g['mean']:.3f} "
                   f"(median {g['median']:.3f}); a source against another real image of its identity "
                   f"{same['mean']:.3f}, of another identity {other['mean']:.3f}.")
    return "\n".join(out) + "\n"


def copy_runs(runs: Path, dest: Path, comp: Comparison) -> None:
    for fam in comp.names:
        run = GeneratorRun(runs / fam)
        for f in (run.config, run.run_json, run.log_csv, run.eval_dir().metrics_json, run.eval_dir().samples_png):
            if f.is_file():
                copy_record(f, dest / fam / (f"eval_{f.name}" if f.parent.name == "eval" else f.name))
        syn = SynthesizedSet(runs / f"syn_{fam}")   # its images: synthesized_side_by_side.png (and its contact sheet)
        for f in (syn.descriptor, syn.contact_sheet):
            if f.is_file():
                copy_record(f, dest / f"syn_{fam}" / f.name)
    for name in (n for n in comp.sweeps if n not in comp.recorded_elsewhere):
        sweep = runs / name
        for f in list(sweep.glob("sweep.*")) + list(sweep.glob("cells/*/*")):
            if f.is_file() and f.suffix in (".md", ".json", ".csv", ".png", ".yaml"):
                copy_record(f, dest / name / f.relative_to(sweep))
    for name in comp.extra_sets:
        syn = SynthesizedSet(runs / name)
        for f in (syn.descriptor,) + ((syn.contact_sheet,) if name.endswith("views") else ()):
            if f.is_file():
                copy_record(f, dest / name / f.name)
    controls = [runs / cell / "copies.json" for sweep, cell in (c for pair in comp.contrasts for c in pair)
                if cell.startswith("copies_") and sweep not in comp.recorded_elsewhere]   # benchmarks/source_copies.py's record of a control set
    for f in controls:
        if f.is_file():
            copy_record(f, dest / f.parent.name / f.name)
    for f in [*(runs / f"judge_{name}.json" for name in comp.names), runs / comp.similarity]:
        if f.is_file():
            copy_record(f, dest / f.name)
    for name in comp.benchmarks:    # records only: no models, no resume checkpoints
        for f in (runs / name).glob("*"):
            if f.is_file() and f.suffix in (".md", ".json", ".csv", ".png", ".yaml"):
                copy_record(f, dest / name / f.name)
    if (runs / "walltimes.txt").is_file():
        copy_record(runs / "walltimes.txt", dest / "walltimes.txt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("comparison", choices=sorted(COMPARISONS))
    ap.add_argument("--runs", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/<comparison>")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    comp = COMPARISONS[args.comparison]
    out = args.out or ROOT / "benchmarks" / "results" / args.comparison
    seeds = [int(x) for x in args.seeds.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    rows, per_pair = generator_rows(args.runs, comp)
    res = {"comparison": args.comparison, "generators": rows, "generator_deltas": generator_deltas(per_pair, comp),
           "reid": reid(args.runs, seeds, comp), "judges": judges(args.runs, comp),
           "source_similarity": (json.loads((args.runs / comp.similarity).read_text())["sets"]
                                 if comp.similarity and (args.runs / comp.similarity).is_file() else None)}
    eval_grid(args.runs, out, comp)
    synthesized_grid(args.runs, out, comp)
    filter_grids(args.runs, out, comp)
    copy_runs(args.runs, out, comp)
    (out / "summary.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(res, comp))
    print(markdown(res, comp))


if __name__ == "__main__":
    main()
