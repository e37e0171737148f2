"""The ``reid-aug`` command line: a thin click layer over library functions.

Each command resolves its recipe/options and calls one function of ``reid_aug`` that the
tests call directly.
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

log = logging.getLogger("reid_aug.cli")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


class _CleanErrors(click.Group):
    """Turn the library's input errors into one clear message instead of a traceback."""

    def invoke(self, ctx):
        from reid_aug.errors import ReidAugError

        try:
            return super().invoke(ctx)
        except ReidAugError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_CleanErrors)
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
def main(verbose: int) -> None:
    """Pose-transfer data augmentation for person re-identification."""
    _setup_logging(verbose)


# --------------------------------------------------------------------------- dataset
@main.command("make-toy")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True, help="Folder to write the dataset into.")
@click.option("--seed", default=0, show_default=True)
@click.option("--n-train-ids", default=None, type=int, help="Training identities (default: the built-in size).")
@click.option("--n-test-ids", default=None, type=int, help="Test identities (default: the built-in size).")
@click.option("--images-per-id", default=None, type=int, help="Images per identity (default: the built-in size).")
def make_toy_cmd(out, seed, n_train_ids, n_test_ids, images_per_id):
    """Draw the built-in toy pedestrian dataset in the Market-1501 layout."""
    from reid_aug.toyset import make_toy

    kwargs = {k: v for k, v in dict(n_train_ids=n_train_ids, n_test_ids=n_test_ids,
                                    images_per_id=images_per_id).items() if v is not None}
    path = make_toy(out, seed=seed, **kwargs)
    click.echo(f"toy dataset written to {path}")


def _hidden_alias(command: click.Command, name: str) -> None:
    """Keep an old command name working (not listed in --help)."""
    import copy

    alias = copy.copy(command)
    alias.hidden = True
    main.add_command(alias, name)


_hidden_alias(make_toy_cmd, "make-synthetic")      # the toy dataset's command before 0.2


@main.command("prepare")
@click.argument("dataset")
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="Dataset folder (default: resolved from DATASET: market, toy or a path).")
@click.option("--work", "work_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the index (default: work/DATASET).")
@click.option("--check-images/--no-check-images", default=False, help="Decode every JPEG once to find corrupt files.")
def prepare_cmd(dataset, root, work_dir, check_images):
    """Index a dataset in the Market-1501 layout and print its statistics."""
    from reid_aug.dataset.prepare import format_summary, prepare_dataset

    summary = prepare_dataset(root if root is not None else dataset, work_dir or Path("work") / Path(dataset).name,
                              check_images=check_images)
    click.echo(format_summary(summary))


@main.command("annotate")
@click.argument("dataset")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Write the annotation files here (default: DATASET/annotations/ when writable, else the cache); "
                   "every command then finds them through a recorded pointer.")
@click.option("--overwrite", is_flag=True, help="Replace existing annotation files (never touched without it).")
@click.option("--workers", type=int, default=None, help="Estimator processes (default: one per CPU core).")
@click.option("--limit", type=int, default=None, help="Annotate only the first N images of each file (a quick look).")
@click.option("--recipe", default=None, help="Recipe name or YAML file (default: annotate).")
@click.option("--set", "overrides", multiple=True, help="Dotted override, e.g. --set visibility=0.6 (repeatable).")
def annotate_cmd(dataset, out_dir, overwrite, workers, limit, recipe, overrides):
    """Estimate 18-joint poses (MediaPipe Pose) for every image of DATASET, for datasets without keypoints."""
    from reid_aug.keypoints.annotate import annotate_dataset, format_report, load_annotate_config

    cfg = load_annotate_config(recipe, list(overrides) + ([f"workers={workers}"] if workers is not None else []))
    try:
        report = annotate_dataset(dataset, cfg, out=out_dir, overwrite=overwrite, limit=limit)
    except KeyboardInterrupt:
        click.echo("interrupted: the rows written so far are kept; the same command continues", err=True)
        sys.exit(130)
    click.echo(format_report(report))


# --------------------------------------------------------------------------- generator
@main.command("train-generator")
@click.argument("dataset", default="toy")
@click.option("--recipe", default=None, help="Recipe name or YAML file (default: pg2_<dataset>).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder (default: runs/<recipe>-<dataset>).")
@click.option("--set", "overrides", multiple=True, help="Dotted override, e.g. --set train.lr=1e-4 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue from the run folder's latest checkpoint.")
@click.option("--annotations", type=click.Path(path_type=Path), default=None,
              help="Read keypoints from this folder (e.g. `annotate --out DIR`) instead of the dataset's own "
                   "(= --set data.annotations=DIR).")
@click.option("--dry-run", is_flag=True,
              help="Resolve the config, build the networks and data, run one forward pass; write nothing.")
def train_generator_cmd(dataset, recipe, out_dir, overrides, resume, annotations, dry_run):
    """Train a pose-transfer generator (PG²: stage I, then stage II) on DATASET (market | toy | PATH)."""
    from reid_aug.generator.train import resolve_training, train_generator
    from reid_aug.rundir import GeneratorRun

    if annotations is not None:
        overrides = (*overrides, f"data.annotations={json.dumps(str(annotations.resolve()))}")
    cfg, out_dir = resolve_training(dataset, recipe, overrides, out_dir)
    try:
        run_dir = train_generator(cfg, dataset, out_dir, resume=resume, dry_run=dry_run)
    except KeyboardInterrupt:
        ckpt = GeneratorRun(out_dir).checkpoint
        click.echo(f"interrupted: {ckpt} holds the last completed step; the same command with --resume continues"
                   if ckpt.is_file() and not dry_run else "interrupted before the first checkpoint", err=True)
        sys.exit(130)
    click.echo(f"{'dry run done, nothing written' if dry_run else 'run folder: ' + str(run_dir)}")


@main.command("evaluate-generator")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--dataset", default=None, help="market | toy | PATH (default: the one the run trained on).")
@click.option("--pairs", "pairs_csv", type=click.Path(path_type=Path), default=None,
              help="Test pairs CSV (header from,to); default: the dataset's *pairs-test.csv.")
@click.option("--inception-weights", type=click.Path(path_type=Path), default=None,
              help="pt_inception-2015-12-05 weights file for IS / mask-IS.")
@click.option("--protocol", type=click.Choice(["defgan", "defgan-2018", "pg2"]), default=None,
              help="SSIM shown as `ssim`: defgan (default; Deformable GAN/PATN's call with today's scikit-image, "
                   "11-tap Gaussian), defgan-2018 (the same call as their published tables ran it: skimage "
                   "0.13/0.14, 13 taps), pg2 (PG²'s: 7x7 uniform window). Every protocol is recorded, and each "
                   "record names the one its `ssim` used.")
@click.option("--stage", type=click.Choice(["g1", "g2"]), default=None,
              help="Default: the last trained stage (records in RUN/eval); an earlier one writes RUN/eval-<stage>.")
@click.option("--reid-model", type=click.Path(path_type=Path), default=None,
              help="A Re-ID checkpoint from `benchmark` for the identity-retrieval score.")
@click.option("--batch-size", type=int, default=None, help="Pairs per batch (default 64).")
@click.option("--limit", default=None, type=int, help="Evaluate only the first N pairs.")
@click.option("--force", is_flag=True, help="Recompute even if eval/metrics.json holds this exact evaluation.")
@click.option("--annotations", default=None,
              help="Keypoints of the test pairs: a folder (`annotate --out DIR`) or `dataset` (its own); default: "
                   "what the run trained with. Other keypoints than the run's write RUN/eval-kp-<name>.")
@click.option("--recipe", default=None, help="Recipe name or YAML file (default: recipes/evaluate.yaml).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Dotted override, e.g. --set workers=0.")
def evaluate_generator_cmd(run_dir, dataset, pairs_csv, inception_weights, protocol, stage, reid_model, batch_size,
                           limit, force, annotations, recipe, overrides):
    """SSIM, mask-SSIM, IS, mask-IS of a trained generator on the test pairs."""
    from reid_aug.metrics.evaluate_generator import evaluate_generator, format_records, load_evaluation_config

    cfg = load_evaluation_config(recipe, overrides, dict(
        dataset=dataset, pairs=pairs_csv, inception_weights=inception_weights, protocol=protocol, stage=stage,
        reid_model=reid_model, batch_size=batch_size, limit=limit, force=force, annotations=annotations))
    click.echo(format_records(evaluate_generator(run_dir, cfg)))


# --------------------------------------------------------------------------- synthesis
@main.command("synthesize")
@click.option("--run", "run_dir", type=click.Path(path_type=Path), default=None,
              help="Generator run folder (default: the newest finished run under runs/).")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Generator checkpoint file.")
@click.option("--dataset", default=None, help="market | toy | PATH (default: the one the generator was trained on).")
@click.option("--poses-per-id", "poses_per_id", type=int, default=None, help="K images per identity (recipe: 10).")
@click.option("--per-image", "per_image", type=int, default=None,
              help="K images for EVERY real training image instead of K per identity (Deformable GAN's protocol).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: RUN/synthesized-K, RUN/synthesized-imgK with --per-image).")
@click.option("--strategy", default=None,
              help="Target poses: random | diverse (other people's poses) | rotate | views (the source's own pose "
                   "seen from another viewpoint) (recipe: random).")
@click.option("--angles", default=None, help="strategy rotate: rotations in degrees, e.g. 45,90,180,270.")
@click.option("--pose-bank", "pose_bank", default=None,
              help="market | toy | PATH whose training poses are the targets (default: the dataset's own).")
@click.option("--train-per-id", "train_per_id", type=int, default=None,
              help="Low-data regime: only the N real images kept per identity are sources.")
@click.option("--subset-seed", "subset_seed", type=int, default=None,
              help="Which N images are kept (the benchmark's data.subsample_seed; recipe: 0).")
@click.option("--allow-leak", "allow_leak", is_flag=True, default=None,
              help="Use a generator that saw images the regime drops anyway (recorded as leak: true).")
@click.option("--filter", "filter_model", type=click.Path(path_type=Path), default=None,
              help="A benchmark Re-ID model: keep only images it places near their own identity.")
@click.option("--filter-rule", type=click.Choice(["top-k", "threshold"]), default=None, help="Recipe: top-k.")
@click.option("--filter-k", type=int, default=None, help="top-k: own identity among the k nearest (recipe: 1).")
@click.option("--filter-threshold", type=float, default=None, help="threshold: cosine to own centroid (recipe: 0.5).")
@click.option("--seed", type=int, default=None, help="Seed of the plan (recipe: 0).")
@click.option("--batch-size", type=int, default=None, help="Images per generator batch (recipe: 64).")
@click.option("--shard", default=None, help="i/n: this process writes shard i of n (0-based).")
@click.option("--stage", default=None, help="g1 | g2 (PG²), defgan (default: the last trained stage).")
@click.option("--jpeg-quality", type=int, default=None, help="JPEG quality 1..100 (recipe: 95).")
@click.option("--workers", type=int, default=None, help="Image encode/write workers (recipe: 2).")
@click.option("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available).")
@click.option("--cross-dataset", is_flag=True, default=None,
              help="The generator was trained on another dataset on purpose (no mismatch warning).")
@click.option("--recipe", default=None, help="Recipe name or YAML file (default: synthesize).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Dotted override of the synthesis config, e.g. --set strategy=diverse (repeatable).")
@click.option("--verify", "verify_dir", type=click.Path(path_type=Path), default=None,
              help="Only check that DIR's manifest matches its files.")
def synthesize_cmd(run_dir, checkpoint, verify_dir, recipe, overrides, filter_model, filter_rule, filter_k,
                   filter_threshold, out_dir, **flags):
    """Write K pose-transferred images per training identity, or per image (Market layout + manifest)."""
    from reid_aug.errors import SynthesisError
    from reid_aug.synthesis.synthesize import load_synthesis_config, synthesize, verify_synthesis

    if verify_dir is not None:
        report = verify_synthesis(verify_dir)
        click.echo(report.summary())
        sys.exit(0 if report.ok else 1)
    if run_dir is not None and checkpoint is not None:
        raise SynthesisError("pass one of --run RUN_DIR or --checkpoint FILE, not both")
    if flags.get("angles") is not None:
        try:
            flags["angles"] = [float(a) for a in str(flags["angles"]).split(",") if a.strip()]
        except ValueError:
            raise SynthesisError(f"--angles {flags['angles']}: expected degrees separated by commas, "
                                 f"e.g. 45,90,180,270") from None
    cfg = load_synthesis_config(recipe, overrides, {
        **flags, "generator": run_dir or checkpoint, "out": out_dir, "filter.model": filter_model,
        "filter.rule": filter_rule, "filter.k": filter_k, "filter.threshold": filter_threshold})
    summary = synthesize(cfg)
    click.echo(f"{summary['written']} images written, {summary['skipped_existing']} already there -> {summary['out_dir']}")
    if summary.get("filter"):
        from reid_aug.synthesis.filter import describe_filter

        click.echo(f"filter: {describe_filter(summary['filter'])}")


@main.command("filter")
@click.argument("set_dir", type=click.Path(path_type=Path))
@click.option("--reid-model", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="A benchmark Re-ID model (OUT/models/<variant>_seed<S>.pt) trained on the real (kept) images.")
@click.option("--rule", type=click.Choice(["top-k", "threshold"]), default=None, help="Recipe: top-k.")
@click.option("--k", "k", type=int, default=None, help="top-k: own identity among the k nearest centroids (recipe: 1).")
@click.option("--threshold", type=float, default=None, help="threshold: cosine to the own centroid (recipe: 0.5).")
@click.option("--batch-size", type=int, default=None, help="Feature extraction batch (recipe: 64).")
@click.option("--device", default=None, help="cpu | cuda | cuda:N (default: cuda if available).")
def filter_cmd(set_dir, reid_model, rule, k, threshold, batch_size, device):
    """Mark the images of a synthesized SET that a Re-ID model places near their own identity."""
    from reid_aug.synthesis.filter import describe_filter, filter_set
    from reid_aug.synthesis.synthesize import load_synthesis_config

    cfg = load_synthesis_config(None, (), {"filter.model": reid_model, "filter.rule": rule, "filter.k": k,
                                           "filter.threshold": threshold, "filter.batch_size": batch_size,
                                           "device": device})
    rec = filter_set(set_dir, cfg.filter, cfg.device)
    click.echo(f"{describe_filter(rec)} -> {Path(set_dir) / 'manifest.csv'} (kept column), "
               f"{Path(set_dir) / 'scores.csv'}")


# --------------------------------------------------------------------------- re-id benchmark
@main.command("benchmark")
@click.option("--model", default=None, help="torchreid model name (default: the recipe's; resnet50 without --recipe).")
@click.option("--dataset", default=None,
              help="market | toy | PATH (default: the dataset the synthesized set was made for).")
@click.option("--augmented", "augmented_dir", type=click.Path(path_type=Path), default=None,
              help="Output of `synthesize` (manifest.csv + bounding_box_train/); default: the newest under runs/.")
@click.option("--baseline-only", is_flag=True, help="Train only the baseline (no synthesized set; needs --dataset).")
@click.option("--recipe", default=None, help="Recipe name or YAML file.")
@click.option("--set", "overrides", multiple=True, help="Dotted override (repeatable).")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds.")
@click.option("--labels", type=click.Choice(["same-id", "lsro", "teacher"]), default=None,
              help="Labels of synthesized images: their source identity, LSRO's uniform one, or a teacher's soft "
                   "labels (with --set train.teacher=MODEL) (default: the recipe's, same-id).")
@click.option("--pretrained/--no-pretrained", default=None, help="ImageNet initialisation (default: the recipe's).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="ImageNet weights file.")
@click.option("--rerank", is_flag=True, help="Also report k-reciprocal re-ranking.")
@click.option("--generator-eval", type=click.Path(path_type=Path), default=None,
              help="evaluate-generator metrics.json to show beside the Re-ID numbers.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None, help="Report folder.")
@click.option("--baseline-from", type=click.Path(path_type=Path), default=None,
              help="Another benchmark folder whose comparable baseline runs are taken over instead of retrained.")
def benchmark_cmd(model, dataset, augmented_dir, baseline_only, recipe, overrides, seeds, labels, pretrained, weights,
                  rerank, generator_eval, out_dir, baseline_from):
    """Train torchreid baselines with and without augmentation; write one report."""
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    cfg = resolve_benchmark(model=model, recipe=recipe, overrides=overrides, labels=labels, pretrained=pretrained,
                            rerank=rerank)
    seed_list = _parse_seeds(seeds)
    out = run_benchmark(cfg, dataset=dataset, augmented_dir=augmented_dir, seeds=seed_list, weights=weights,
                        generator_eval=generator_eval, out_dir=out_dir, baseline_from=baseline_from,
                        baseline_only=baseline_only)
    click.echo(f"report: {out / 'report.md'}")


@main.command("sweep")
@click.option("--grid", "grid", multiple=True, required=True,
              help="KEY=V1,V2: a dotted benchmark key (train.mix=pool,batch, data.train_per_id=2,4) or "
                   "augmented=DIR1,DIR2; repeatable, the cells are the product.")
@click.option("--dataset", default=None, help="market | toy | PATH (default: the synthesized set's).")
@click.option("--augmented", "augmented_dir", type=click.Path(path_type=Path), default=None,
              help="The synthesized folder of every cell (unless the grid varies `augmented`).")
@click.option("--model", default=None, help="torchreid model name (default: the recipe's).")
@click.option("--recipe", default=None, help="Recipe name or YAML file.")
@click.option("--set", "overrides", multiple=True, help="Dotted override for every cell (repeatable).")
@click.option("--seeds", default="0,1,2", show_default=True, help="Comma-separated seeds.")
@click.option("--labels", type=click.Choice(["same-id", "lsro", "teacher"]), default=None)
@click.option("--pretrained/--no-pretrained", default=None, help="ImageNet initialisation (default: the recipe's).")
@click.option("--weights", type=click.Path(path_type=Path), default=None, help="ImageNet weights file.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Sweep folder.")
@click.option("--baseline-from", "baseline_from", multiple=True, type=click.Path(path_type=Path),
              help="A benchmark folder (e.g. another sweep's cell) whose comparable baselines the cells take over "
                   "instead of training them again (repeatable; folders that are not comparable are passed over).")
def sweep_cmd(grid, dataset, augmented_dir, model, recipe, overrides, seeds, labels, pretrained, weights, out_dir,
              baseline_from):
    """Run a grid of benchmark cells x seeds (resumable); one table and plot of paired deltas with 95 % intervals."""
    from reid_aug.reid.sweep import parse_grid, run_sweep

    out = run_sweep(parse_grid(grid), recipe=recipe, overrides=overrides, dataset=dataset, augmented=augmented_dir,
                    seeds=_parse_seeds(seeds), out_dir=out_dir, model=model, pretrained=pretrained, labels=labels,
                    weights=weights, baseline_from=baseline_from)
    click.echo(f"sweep: {out / 'sweep.md'}")


def _parse_seeds(text) -> list[int]:
    """``"0, 1,2"`` -> ``[0, 1, 2]``."""
    return [int(s) for s in str(text).split(",") if s.strip()]


# --------------------------------------------------------------------------- demo
@main.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("reid-aug-demo"), show_default=True)
@click.option("--quick", is_flag=True, help="A smaller version (for tests).")
@click.option("--seeds", default=None,
              help="Comma-separated Re-ID seeds (default 0; each seed adds about 2 minutes: baseline + augmented).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Dotted override of the demo config, e.g. poses_per_id=4 (repeatable).")
def demo_cmd(out_dir, quick, seeds, overrides):
    """Toy data -> generator -> evaluation -> synthesis -> Re-ID benchmark -> one report."""
    from reid_aug.demo import run_demo

    overrides = list(overrides)
    if seeds is not None:
        overrides.append(f"seeds=[{', '.join(map(str, _parse_seeds(seeds)))}]")
    report = run_demo(out_dir, quick=quick, overrides=overrides)
    click.echo(f"report: {report}")


if __name__ == "__main__":
    main()
