"""The benchmark report: ``results.csv``, ``report.md`` (one table) and ``bars.png``.

The table has rows baseline / augmented / delta (augmented - baseline, paired by seed) and
columns rank-1, rank-5, mAP for every seed, then their mean +- std over seeds, then the
generator's SSIM, IS, mask-SSIM and mask-IS read from the evaluate-generator records (shown
on the augmented row; "n/a" with the reason where a value is null or the file is absent).
Above the table, :func:`budget_note` says how long each variant trained: the epoch budget (the
augmented model takes more optimizer steps) or the iteration-matched one (``train.budget``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from reid_aug.reid.ranking import MAP_DEFINITION
from reid_aug.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

METRICS = (("rank1", "rank-1"), ("rank5", "rank-5"), ("mAP", "mAP"))
GENERATOR_METRICS = (("ssim", "SSIM"), ("is", "IS"), ("mask_ssim", "mask-SSIM"), ("mask_is", "mask-IS"))


# --------------------------------------------------------------------------- generator records
def _fmt_value(v: Any) -> str:
    """An evaluation record's value -> text: a number, ``{"mean", "std"}`` or ``{"mean": None, "reason"}``."""
    if isinstance(v, dict):
        mean, std, reason = v.get("mean"), v.get("std"), v.get("reason")
        if mean is None:
            if reason and str(reason).startswith("n/a"):
                return str(reason)
            return f"n/a ({reason or 'null in the records'})"
        return f"{mean:.4g} ± {std:.2g}" if isinstance(std, (int, float)) else f"{mean:.4g}"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return "n/a (NaN)" if isinstance(v, float) and math.isnan(v) else f"{v:.4g}"
    return "n/a (null in the records)"


def read_generator_metrics(path: str | Path | None) -> dict:
    """``{"ssim": text, "is": text, "mask_ssim": text, "mask_is": text, "source": str}`` from an
    ``evaluate-generator`` record (:class:`reid_aug.records.EvaluationRecord`, its ``model`` row of the
    headline stage and protocol); never raises: a missing or unreadable record gives "n/a (why)"."""
    from reid_aug.errors import RecordError
    from reid_aug.records import EvaluationRecord
    from reid_aug.rundir import EvalDir, GeneratorRun

    if path is None:
        reason = "n/a (no evaluate-generator records: pass --generator-eval RUN/eval/metrics.json)"
        return {k: reason for k, _ in GENERATOR_METRICS} | {"source": None}
    path = Path(path)
    if path.is_dir():
        own = EvalDir(path).metrics_json
        path = own if own.is_file() else GeneratorRun(path).eval_dir().metrics_json
    if not path.is_file():
        return {k: f"n/a ({path} not found)" for k, _ in GENERATOR_METRICS} | {"source": str(path)}
    try:
        rec = EvaluationRecord.read(path)
    except RecordError as e:
        return {k: f"n/a ({path.name} unreadable: {e})" for k, _ in GENERATOR_METRICS} | {"source": str(path)}
    head = rec.headline or {}
    model = next((r for r in rec.records if r.get("row") == "model" and r.get("stage") == head.get("stage")
                  and r.get("protocol") == head.get("protocol")), rec.row("model"))
    if model is None:
        return {k: f"n/a (no model row in {path.name})" for k, _ in GENERATOR_METRICS} | {"source": str(path)}
    out = {"source": f"{path} (stage {model.get('stage')}, {model.get('protocol')} protocol, "
                     f"{model.get('n_pairs', '?')} pairs)"}
    for key, _ in GENERATOR_METRICS:
        out[key] = _fmt_value(model.get(key)) if key in model else f"n/a (not in {path.name})"
    return out


# --------------------------------------------------------------------------- numbers
def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def _mean_std(vals: Sequence[float], signed: bool = False) -> str:
    vals = [v for v in vals if v is not None]
    if not vals:
        return "–"
    m = float(np.mean(vals))
    m = 0.0 if abs(100 * m) < 0.05 else m          # no "-0.0"
    head = f"{100 * m:+.1f}" if signed else f"{100 * m:.1f}"
    return f"{head} ± {100 * float(np.std(vals, ddof=1)):.1f}" if len(vals) > 1 else head


def _metric(rec: dict | None, key: str, rerank: bool) -> float | None:
    if rec is None:
        return None
    src = rec.get("rerank") if rerank else rec
    return None if src is None else src.get(key)


def _short(text: str) -> str:
    """Table cell: a value, or just "n/a" (the reason goes under the table)."""
    return "n/a" if text.startswith("n/a") else text


def generator_notes(gen: dict) -> str:
    """One line per distinct n/a reason, e.g. ``IS, mask-IS: n/a (no Inception weights)``."""
    by_reason: dict[str, list[str]] = {}
    for k, lab in GENERATOR_METRICS:
        if gen[k].startswith("n/a"):
            by_reason.setdefault(gen[k], []).append(lab)
    return " ".join(f"{', '.join(labs)}: {reason}." for reason, labs in by_reason.items())


def results_table(runs: dict, seeds: Sequence[int], gen: dict, rerank: bool) -> str:
    """The single markdown table (values in %)."""
    header = [""] + [f"{lab} s{s}" for s in seeds for _, lab in METRICS] + \
             [f"{lab} {'mean ± std' if len(seeds) > 1 else 'mean'}" for _, lab in METRICS] + \
             [lab for _, lab in GENERATOR_METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    blocks = [(False, "")] + ([(True, " (re-ranked)")] if rerank else [])
    for rr, suffix in blocks:
        rows = {}
        for variant in ("baseline", "augmented"):
            per_seed = {s: runs.get(f"{variant}_seed{s}") for s in seeds}
            cells = [_pct(_metric(per_seed[s], k, rr)) for s in seeds for k, _ in METRICS]
            cells += [_mean_std([_metric(per_seed[s], k, rr) for s in seeds]) for k, _ in METRICS]
            rows[variant] = per_seed
            gen_cells = [_short(gen[k]) if variant == "augmented" and not rr else "" for k, _ in GENERATOR_METRICS]
            lines.append("| " + " | ".join([variant + suffix] + cells + gen_cells) + " |")
        cells, deltas = [], {}
        for k, _ in METRICS:
            deltas[k] = []
            for s in seeds:
                a, b = _metric(rows["augmented"][s], k, rr), _metric(rows["baseline"][s], k, rr)
                deltas[k].append(None if a is None or b is None else a - b)
        cells = ["–" if deltas[k][i] is None else f"{100 * deltas[k][i]:+.1f}"
                 for i, _ in enumerate(seeds) for k, _ in METRICS]
        cells += [_mean_std(deltas[k], signed=True) for k, _ in METRICS]
        lines.append("| " + " | ".join([f"delta{suffix}"] + cells + [""] * len(GENERATOR_METRICS)) + " |")
    return "\n".join(lines)


def results_frame(runs: dict) -> pd.DataFrame:
    cols = ["variant", "seed", "rank1", "rank5", "rank10", "rank20", "mAP", "rerank_rank1", "rerank_rank5",
            "rerank_mAP", "train_s", "eval_s", "wall_s", "budget", "epochs", "iterations", "final_loss",
            "n_train_real", "n_train_synthesized", "num_train_pids"]
    rows = []
    for rec in runs.values():
        row = {c: rec.get(c) for c in cols}
        rr = rec.get("rerank") or {}
        row.update(rerank_rank1=rr.get("rank1"), rerank_rank5=rr.get("rank5"), rerank_mAP=rr.get("mAP"))
        rows.append(row)
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values(["seed", "variant"], ascending=[True, False]).reset_index(drop=True) if len(df) else df


# --------------------------------------------------------------------------- chart
def bar_chart(runs: dict, seeds: Sequence[int], path: Path) -> None:
    """rank-1 and mAP, baseline vs augmented, mean over seeds with std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=120)
    width = 0.36
    colors = {"baseline": "#7f8c9a", "augmented": "#2a7ab9"}
    for j, variant in enumerate(("baseline", "augmented")):
        means, stds = [], []
        for key in ("rank1", "mAP"):
            vals = [runs[f"{variant}_seed{s}"][key] for s in seeds if f"{variant}_seed{s}" in runs]
            means.append(100 * float(np.mean(vals)) if vals else 0.0)
            stds.append(100 * float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0)
        x = np.arange(2) + (j - 0.5) * width
        # error bars only where there is a spread to show (>= 2 seeds)
        bars = ax.bar(x, means, width, yerr=stds if len(seeds) > 1 else None, capsize=4, color=colors[variant],
                      label=variant)
        for b, m, sd in zip(bars, means, stds):
            ax.annotate(f"{m:.1f}", (b.get_x() + b.get_width() / 2, m + sd), xytext=(0, 3), textcoords="offset points",
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(np.arange(2))
    ax.set_xticklabels(["rank-1", "mAP"])
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    spread = f"{len(seeds)} seeds, mean ± std" if len(seeds) > 1 else "one seed: no spread shown"
    ax.set_title(f"Re-ID: baseline vs augmented ({spread})", fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def curve_chart(runs: dict, path: Path, split: str = "test") -> bool:
    """Rank-1 and mAP against training iterations of every run with a ``curve`` (``eval.curve_every``), one
    line per run (baseline grey, augmented blue). Returns False (nothing drawn) where no run has one."""
    with_curve = {tag: rec for tag, rec in runs.items() if rec.get("curve")}
    if not with_curve:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=120)
    colors = {"baseline": "#7f8c9a", "augmented": "#2a7ab9"}
    for tag, rec in sorted(with_curve.items()):
        its = [p["iterations"] for p in rec["curve"]]
        for ax, key in zip(axes, ("rank1", "mAP")):
            ax.plot(its, [100 * (p[key] or 0.0) for p in rec["curve"]], marker="o", ms=3, lw=1.2,
                    color=colors.get(rec.get("variant"), "#444444"), label=tag)
    for ax, name in zip(axes, ("rank-1", "mAP")):
        ax.set_xlabel("training iterations")
        ax.set_ylabel(f"{name} on {split} (%)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Re-ID during training, evaluated on the {split} split", fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return True


# --------------------------------------------------------------------------- report
def _plan_of(variant: str, runs: dict, plan: dict | None) -> dict | None:
    if plan and variant in plan:
        return plan[variant]
    rec = next((r for r in runs.values() if r.get("variant") == variant and r.get("training_plan")), None)
    return rec["training_plan"] if rec else None


def _epochs_text(rec: dict) -> str:
    p = rec.get("training_plan") or {}
    if p and p["total_iters"] % p["iters_per_epoch"]:
        return f"{rec['epochs']} epoch(s), the last cut ({p['epochs_equivalent']:.2f} epochs)"
    return f"{rec['epochs']} epoch(s)"


def budget_note(train: dict, runs: dict, plan: dict | None = None) -> str:
    """The report's sentence on how long each variant trained (``train``: the config's train section;
    ``plan``: :func:`reid_aug.reid.budget.training_plan`, else read from the run records)."""
    requested = train.get("budget", "epochs")
    base, aug = _plan_of("baseline", runs, plan), _plan_of("augmented", runs, plan)
    if base is None and aug is None:        # records written before training plans existed
        return ("Both variants train for the same number of epochs with the same recipe and seed, so the "
                "augmented model takes more iterations (see Runs).")
    if aug is None:
        note = f"Baseline only: {base['epochs']} epoch(s) = {base['total_iters']} optimizer steps."
        return note + (" (`train.budget: iterations` has no effect without an augmented folder.)"
                       if requested == "iterations" else "")
    if base is None:
        return f"Augmented: {aug['epochs']} epoch(s) = {aug['total_iters']} optimizer steps."
    if train.get("mix") == "batch" and aug["total_iters"] == base["total_iters"]:
        return (f"Training budget: **batch mixing: both variants take the same {aug['total_iters']} optimizer steps "
                f"over the same real batches** ({aug['epochs']} epoch(s) x {aug['iters_per_epoch']} iterations; every "
                f"augmented batch is the baseline's batch plus synthesized images), so the augmented model sees "
                f"every real image as often as the baseline: the delta is what the synthesized images add"
                + (" with their teacher's soft labels (`train.augmented_images=sources` tells the two apart)."
                   if train.get("labels") == "teacher" else "."))
    if requested == "iterations":
        note = (f"Training budget: **iteration-matched: both variants take {aug['total_iters']} optimizer steps** "
                f"(augmented: {aug['epochs']} epoch(s) x {aug['iters_per_epoch']} iterations; baseline: "
                f"{base['epochs_equivalent']:.2f} epochs of {base['iters_per_epoch']} iterations")
        if base["total_iters"] % base["iters_per_epoch"]:
            note += f", i.e. {base['epochs']} epochs with the last one cut"
        note += ")"
        if base.get("lr_step_iters"):
            note += (f"; the baseline's learning-rate schedule steps every {base['lr_step_iters']} iterations as the "
                     f"augmented run's does, so both see the same learning rate at every step")
        return note + (". Training length is thus controlled: the delta is not a training-length effect (the augmented "
                       "model sees each real image fewer times instead).")
    ratio = aug["total_iters"] / max(1, base["total_iters"])
    return (f"Training budget: epochs: both variants train for {aug['epochs']} epoch(s) with the same recipe and "
            f"seed (as the papers' recipes do), so the augmented model takes {ratio:.2f}x the optimizer steps "
            f"({aug['total_iters']} vs {base['total_iters']}); part of the delta can be a training-length effect. "
            f"`--set train.budget=iterations` gives the iteration-matched control.")


def paired_deltas(runs: dict, seeds: Sequence[int], key: str, rerank: bool = False) -> list[float]:
    """augmented - baseline of ``key`` for every seed that has both runs."""
    out = []
    for s in seeds:
        a = _metric(runs.get(f"augmented_seed{s}"), key, rerank)
        b = _metric(runs.get(f"baseline_seed{s}"), key, rerank)
        if a is not None and b is not None:
            out.append(a - b)
    return out


def _delta_text(vals: list[float]) -> str:
    if len(vals) == 1:
        return f"{100 * vals[0]:+.1f}"
    from scipy import stats

    m, sd = 100 * float(np.mean(vals)), 100 * float(np.std(vals, ddof=1))
    half = float(stats.t.ppf(0.975, len(vals) - 1)) * sd / math.sqrt(len(vals))
    return f"{m:+.1f} ± {sd:.1f} (95 % CI [{m - half:+.1f}, {m + half:+.1f}])"


def headline(runs: dict, seeds: Sequence[int], augmented: bool = False) -> str:
    """The report's first sentence: what happened, in numbers (``augmented``: the benchmark has a synthesized
    set, so a report without augmented runs is one whose augmented runs have not finished yet)."""
    d1, d2 = paired_deltas(runs, seeds, "rank1"), paired_deltas(runs, seeds, "mAP")
    if not d1:
        base = [r for r in runs.values() if r.get("variant") == "baseline"]
        if not base:
            return "No run has finished yet."
        r1 = _mean_std([r["rank1"] for r in base])
        mp = _mean_std([r["mAP"] for r in base])
        what = ("; no augmented run has finished yet, stopped or still training elsewhere" if augmented
                else ", no synthesized set")
        return f"Only the baseline was trained ({len(base)} seed(s){what}): rank-1 {r1} %, mAP {mp} %."
    if len(d1) == 1:
        how = "one seed: an anecdote, not a measurement; run --seeds 0,1,2"
    else:
        how = f"mean ± std over {len(d1)} seeds, paired by seed"
    return (f"Augmentation changed rank-1 by {_delta_text(d1)} points and mAP by {_delta_text(d2)} points "
            f"({how}).")


def write_report(out_dir: str | Path, results: dict, seeds: Sequence[int], generator_eval=None,
                 train_info: dict | None = None) -> Path:
    """``results.csv``, ``report.md`` and ``bars.png`` in ``out_dir`` from the ``results.json`` dict: the
    result sentence first, then the table, then the setup and the picture."""
    from reid_aug.rundir import BenchmarkDir

    folder = BenchmarkDir(out_dir)
    runs, setup = results.get("runs", {}), results.get("setup", {})
    cfg = setup.get("config", {})
    atomic_write_text(folder.results_csv, results_frame(runs).to_csv(index=False))
    bar_chart(runs, seeds, folder.bars_png)
    gen = read_generator_metrics(generator_eval)
    ev = cfg.get("eval", {})
    curves = curve_chart(runs, folder.curves_png, ev.get("split", "test"))
    rerank = bool(ev.get("rerank"))
    notes = generator_notes(gen)
    lines = [
        "# Re-ID benchmark: baseline vs augmented", "",
        headline(runs, seeds, bool(setup.get("augmented_dir"))), "",
        results_table(runs, seeds, gen, rerank), "",
        "Values in %; s<N> = seed N; delta = augmented - baseline (paired by seed, percentage points); "
        "generator metrics from " + (f"`{gen['source']}`" if gen.get("source") else "no records") + ".",
        *([notes] if notes else []), "",
        "## Setup", "",
        *setup_lines(setup, train_info or {}), "",
        budget_note(cfg.get("train", {}), runs, (train_info or {}).get("plan")), "",
        f"![rank-1 and mAP, baseline vs augmented]({folder.bars_png.name})", "",
        *([f"![rank-1 and mAP during training]({folder.curves_png.name})", ""] if curves else []),
        f"mAP definition: {MAP_DEFINITION}. CMC/mAP computed by `reid_aug.reid.ranking.evaluate_rank`, equal to "
        "torchreid's `eval_market1501`." + (f" Re-ranking: k-reciprocal (k1 = {ev.get('k1')}, k2 = {ev.get('k2')}, "
                                            f"lambda = {ev.get('lambda_value')})." if rerank else ""), "",
        "## Runs", "",
        *run_lines(runs, seeds),
        "", f"Seeds: {', '.join(str(s) for s in seeds)}.", "", "## Config", "", "```yaml",
        yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", ""]
    atomic_write_text(folder.report_md, "\n".join(lines))
    return folder.report_md


def mix_phrase(train: dict) -> str:
    """How the synthesized images were mixed in (``train.mix`` and its weights), in words."""
    weight, eps = train.get("synthetic_weight", 1.0), train.get("synthetic_label_smooth", -1.0)
    extra = "".join([f", loss weight {weight:g}" if weight != 1.0 else "",
                     f", label smoothing {eps:g}" if eps is not None and eps >= 0 else ""])
    if train.get("mix", "pool") == "batch":
        n = max(1, round(train.get("synthetic_ratio", 0.36) * train.get("batch_size", 0)))
        return (f"mixed per batch (`train.mix: batch`: the baseline's {train.get('batch_size')} real images + {n} "
                f"synthesized in every batch, loss mean(real) + w mean(synthesized){extra})")
    return f"pooled with the real images (`train.mix: pool`{extra})"


def _teacher_phrase(train: dict) -> str:
    if train.get("labels") != "teacher":
        return ""
    who = ("this benchmark's own baseline of its first seed" if train.get("teacher") == "baseline"
           else f"`{train.get('teacher')}`")
    return f" (soft labels of the frozen teacher {who}, T {train.get('teacher_temperature', 1.0):g})"


def setup_lines(setup: dict, info: dict) -> list[str]:
    """Two sentences: the model and its training, then the train and test data (a ``data.test_ids``
    smoke setting is said in bold)."""
    cfg = setup.get("config", {})
    model, data, train = cfg.get("model", {}), cfg.get("data", {}), cfg.get("train", {})
    per_id = info.get("train_per_id") or 0
    subsample = (f"at most {per_id} real image(s) per identity (subsample seed {info.get('subsample_seed', 0)})"
                 if per_id else "all real train images")
    synthesized = (f" + {info.get('n_synthesized')} synthesized images from `{setup.get('augmented_dir')}` under "
                   f"their source pid, {mix_phrase(train)}" if setup.get("augmented_dir") else
                   "; no synthesized set given (augmented row empty)")
    if setup.get("augmented_dir") and train.get("augmented_images") == "sources":
        synthesized += (" -- **no-generation control**: each replaced by its own real source image "
                        "(`train.augmented_images=sources`)")
    test = (f"(**smoke setting**: only the first {data.get('test_ids')} test identities, no distractors; not "
            "comparable with the full protocol)." if data.get("test_ids") else
            "(Market protocol: same pid + camera removed, junk out, distractors in).")
    evaluated = "Test"
    if (cfg.get("eval") or {}).get("split") == "val":
        evaluated = "**Validation** (not the test split)"
        test = (f"({data.get('val_ids')} training identities held out with seed {data.get('val_seed', 0)}: one "
                "image per camera as query, the rest as gallery; their real and synthesized images are not trained on).")
    init = "ImageNet-initialised" if model.get("pretrained") else "from scratch"
    return [f"torchreid `{model.get('name')}` ({init}) "
            f"at {data.get('height')}x{data.get('width')}, {train.get('epochs')} epoch(s) "
            f"(budget `{train.get('budget', 'epochs')}`), batch {train.get('batch_size')}, "
            f"synthesized labels `{train.get('labels')}`{_teacher_phrase(train)}; dataset `{setup.get('dataset')}`.",
            f"Train: {info.get('num_train_pids', '?')} identities, {info.get('n_real', '?')} real images ({subsample})"
            f"{synthesized}. {evaluated}: {info.get('n_query', '?')} queries, {info.get('n_gallery', '?')} gallery images "
            f"{test}"]


def run_lines(runs: dict, seeds: Sequence[int]) -> list[str]:
    """One line per finished run (time, length, loss, images, initialisation), then the runs not done."""
    lines = []
    for key in sorted(runs, key=lambda k: (runs[k]["seed"], runs[k]["variant"] != "baseline")):
        r = runs[key]
        init = r.get("init", {})
        lines.append(f"- `{key}`: wall {r['wall_s'] / 60:.1f} min (train {r['train_s'] / 60:.1f}, eval "
                     f"{r['eval_s'] / 60:.1f}), {_epochs_text(r)} = {r.get('iterations', '?')} iterations, "
                     f"final loss {r.get('final_loss') or float('nan'):.3f}, "
                     f"{r['n_train_real']} real + {r['n_train_synthesized']} synthesized train images, "
                     f"init: {'ImageNet ' + str(init.get('path')) if init.get('pretrained') else 'random'}"
                     + (f" (taken over from `{r['reused_from']}`)" if r.get("reused_from") else "")
                     + (f", teacher `{r['teacher']}` (sha256 {r['teacher_sha256'][:12]})" if r.get("teacher") else ""))
    missing = [f"{v}_seed{s}" for s in seeds for v in ("baseline", "augmented") if f"{v}_seed{s}" not in runs]
    if missing:
        lines.append(f"- not run: {', '.join(missing)}")
    return lines
