"""The demo's report: ``report.md`` and ``report.html`` (its result first, then the tables, then the pictures).

Pictures: source | target pose | generated | target for test pairs (``evaluate-generator``'s
``samples.png``), the rank-1/mAP bar chart (``benchmark``'s ``bars.png``), the generator's
training-loss curves (drawn here from ``log.csv``) and the synthesized contact sheet.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from reid_aug.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd;margin:.3em 0}table{border-collapse:collapse;font-size:.9em;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f3f3f3}code{background:#f6f6f6}
h2{border-bottom:1px solid #eee;padding-bottom:.2em}"""

# Curves drawn per stage: reconstruction terms and the adversarial terms.
_CURVES = (("posemask_l1", "pose-mask L1"), ("l1", "L1"), ("adv", "G adversarial"), ("d_loss", "D loss"))


def plot_loss_curves(log_csv: str | Path, out_png: str | Path) -> bool:
    """Draw the generator's loss terms against the global step; False if there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from reid_aug.errors import RecordError
    from reid_aug.records import read_csv

    log_csv = Path(log_csv)
    if not log_csv.is_file():
        return False
    try:
        df = read_csv(log_csv, "a generator training log", required=("stage", "global_step"))
    except RecordError as e:
        log.warning("no loss curves: %s", e)
        return False
    if df.empty:
        return False
    stages = list(dict.fromkeys(df["stage"]))
    fig, axes = plt.subplots(1, len(stages), figsize=(5 * len(stages), 3.6), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        part = df[df["stage"] == stage]
        for col, label in _CURVES:
            if col in part and part[col].notna().any():
                ax.plot(part["global_step"], part[col], label=label)
        ax.set_title(f"stage {stage}")
        ax.set_xlabel("iteration")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        # below the axes: inside, the legend hid the L1 curves
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, frameon=False)
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return True


def d_loss_caption(run) -> str:
    """A sentence on the discriminator loss of the adversarial stage of ``run`` (a
    :class:`reid_aug.rundir.GeneratorRun`): why it can fall to ~0.01 and what that means, or ""."""
    from reid_aug.errors import RecordError
    from reid_aug.records import read_csv, read_yaml

    try:
        df = read_csv(run.log_csv, "a generator training log")
        cfg = read_yaml(run.config, "a generator run config") if run.config.is_file() else {}
    except RecordError:
        return ""
    if "d_loss" not in df or not df["d_loss"].notna().any():
        return ""
    last = float(df["d_loss"].dropna().iloc[-1])
    pg2 = (cfg or {}).get("family", "pg2") == "pg2"
    g = "G2" if pg2 else "the generator"
    if last >= 0.1:
        return f"The discriminator loss ends at {last:.2g}: D and {g} are still competing."
    lam = ((cfg or {}).get("loss") or {}).get("lambda_l1" if pg2 else "nn_weight")
    weight = f" (weight λ = {lam:g})" if isinstance(lam, (int, float)) else ""
    text = (f"The discriminator loss falls to {last:.2g}: D tells real from generated images almost perfectly "
            f"(it wins, and the G adversarial loss rises). Its gradient to {g} then saturates, so {g} learns "
            f"mostly from the {'L1' if pg2 else 'reconstruction'} term{weight}")
    return text + ("; i.e. G2 refines G1's image rather than being pushed towards realism; compare the two stages "
                   "with `reid-aug evaluate-generator RUN --stage g1`." if pg2 else ".")


def _generator_table(metrics_json: Path) -> tuple[str, str]:
    """(markdown table of the evaluate-generator records, one-line notes)."""
    from reid_aug.errors import RecordError
    from reid_aug.records import EvaluationRecord

    try:
        doc = EvaluationRecord.read(metrics_json)
    except RecordError as e:
        return f"no generator evaluation records ({e})", ""
    head = doc.headline or {}
    recs = [r for r in doc.records if r.get("stage") == head.get("stage") and r.get("protocol") == head.get("protocol")]

    def num(v, d=4):
        return "n/a" if v is None else f"{v:.{d}f}"

    def score(d):
        return "n/a" if d.get("mean") is None else f"{d['mean']:.3f} ± {d['std']:.3f}"

    lines = ["| row | SSIM | mask-SSIM | IS | mask-IS | L1 |", "|---|---|---|---|---|---|"]
    for r in recs:
        lines.append(f"| {r['row']} | {num(r['ssim'])} | {num(r['mask_ssim'])} | {score(r['is'])} | "
                     f"{score(r['mask_is'])} | {num(r['l1'])} |")
    notes = sorted({d.get("reason") for r in recs for d in (r.get("is", {}),) if d.get("reason")})
    r0 = recs[0] if recs else {}
    info = (f"Stage {r0.get('stage')}, SSIM protocol `{r0.get('protocol')}`, {r0.get('n_pairs')} test pairs "
            f"({r0.get('pairs_source')}). " + " ".join(f"IS: {n}." for n in notes))
    return "\n".join(lines), info


def _copy(src: Path, dst: Path) -> str | None:
    if not src.is_file():
        return None
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst.name


def seeds_note(seeds) -> str:
    """The report's sentence on how far the Re-ID numbers can be trusted, given the seeds run."""
    seeds = list(seeds)
    if len(seeds) <= 1:
        return ("**One Re-ID seed.** OSNet trained from scratch for a few hundred steps on this small dataset moves by "
                "about ten rank-1 points from seed to seed (3-seed records in `benchmarks/results/demo/`), so one "
                "seed's delta is an anecdote, not a result: `reid-aug demo --seeds 0,1,2` (about 2 minutes more per "
                "seed) reports mean ± std.")
    return (f"{len(seeds)} Re-ID seeds ({', '.join(map(str, seeds))}); mean ± std over them. Read the delta against "
            f"its std: from scratch at this size single runs vary by about ten rank-1 points.")


def generator_sentence(metrics_json: Path) -> str:
    """One sentence: the generator's SSIM against the copy-the-source floor."""
    from reid_aug.errors import RecordError
    from reid_aug.records import EvaluationRecord

    try:
        rec = EvaluationRecord.read(metrics_json)
    except RecordError:
        return "The generator was not evaluated."
    model, floor = rec.value("ssim"), rec.value("ssim", row="copy_source")
    if model is None or floor is None:
        return "The generator evaluation has no SSIM."
    verdict = "above" if model > floor else "below"
    return (f"The generator reached SSIM {model:.3f} on the test pairs, {verdict} the {floor:.3f} of copying the "
            f"source image.")


def timings_text(timings: dict) -> str:
    """``toy dataset 3 s, generator training 120 s (from generator/log.csv), ...; total 2.5 min``: each step's
    time as :func:`reid_aug.demo.step_timings` found it (its own record, this run, or the earlier run)."""
    parts, total = [], 0.0
    for name, t in timings.items():
        sec = float(t["seconds"] if isinstance(t, dict) else t)
        total += sec
        source = t.get("source", "this run") if isinstance(t, dict) else "this run"
        mark = "" if source == "this run" else f" ({source})" if source == "earlier run" else f" (from {source})"
        parts.append(f"{name} {sec:.0f} s{mark}")
    return f"Step times: {', '.join(parts)}; total {total / 60:.1f} min."


def write_demo_report(out: Path, data_dir: Path, run_dir: Path, synth_dir: Path, bench_dir: Path,
                      timings: dict) -> Path:
    """Write ``out/report.md`` and ``out/report.html`` (result first, then the tables, then the
    pictures); return the HTML path."""
    import markdown

    from reid_aug.records import BenchmarkResults
    from reid_aug.reid.tables import budget_note, headline, read_generator_metrics, results_table
    from reid_aug.rundir import BenchmarkDir, GeneratorRun, SynthesizedSet

    out, run = Path(out), GeneratorRun(run_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    eval_json = run.eval_dir().metrics_json
    figures = {
        "samples": _copy(run.eval_dir().samples_png, fig_dir / "generated_samples.png"),
        "bars": _copy(BenchmarkDir(bench_dir).bars_png, fig_dir / "rank1_map_bars.png"),
        "curves": "loss_curves.png" if plot_loss_curves(run.log_csv, fig_dir / "loss_curves.png") else None,
        "sheet": _copy(SynthesizedSet(synth_dir).contact_sheet, fig_dir / "synthesized_contact_sheet.png"),
    }
    res = BenchmarkResults.read(BenchmarkDir(bench_dir).results_json)
    seeds = sorted({int(r["seed"]) for r in res.runs.values()})
    rerank = bool(res.setup.get("config", {}).get("eval", {}).get("rerank"))
    gen_table, gen_info = _generator_table(eval_json)
    md = ["# reid-aug demo report", "", f"{headline(res.runs, seeds)} {generator_sentence(eval_json)}", "",
          seeds_note(seeds), "",
          "## Re-ID: baseline vs augmented (values in %, delta = augmented - baseline)", "",
          results_table(res.runs, seeds, read_generator_metrics(eval_json), rerank), "",
          budget_note(res.setup.get("config", {}).get("train", {}), res.runs), "",
          "## Generator on the test pairs", "",
          "`model`: the generator; `copy_source`: the source image as output (the floor); `real_vs_real`: the target "
          "against itself.", "", gen_table, "", gen_info, "",
          *_pictures(figures, d_loss_caption(run)),
          "## Provenance", "",
          f"Built-in toy dataset `{data_dir}` -> generator `{run_dir}` -> `{synth_dir}` -> benchmark `{bench_dir}` "
          f"(details in `{BenchmarkDir(bench_dir).report_md}`). {timings_text(timings)}", ""]
    text = "\n".join(md)
    atomic_write_text(out / "report.md", text)
    body = markdown.markdown(text, extensions=["tables"])
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>reid-aug demo report</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")
    atomic_write_text(out / "report.html", html)
    return out / "report.html"


def _pictures(figures: dict, caption: str) -> list[str]:
    def pic(name, alt):
        return [f"![{alt}](figures/{name})", ""] if name else [f"*({alt}: not produced)*", ""]

    return ["## Pictures", "",
            "Pose transfer on test pairs (source | target pose | generated | target):", "",
            *pic(figures["samples"], "generated samples"),
            "Re-ID rank-1 and mAP:", "", *pic(figures["bars"], "rank-1 and mAP"),
            "Generator training losses:", "", *pic(figures["curves"], "loss curves"),
            *([caption, ""] if caption else []),
            "Synthesized training images (a source image, then its pose-transferred images):", "",
            *pic(figures["sheet"], "contact sheet")]
