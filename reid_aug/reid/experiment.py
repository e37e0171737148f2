"""The experiment behind ``reid-aug benchmark``: torchreid baseline vs augmented, same recipe and seed, one report.

For every seed: train the baseline (real train split) and the augmented model (real +
synthesized images under their source pid), extract query/gallery features, evaluate with our
vectorized Market evaluator (+ k-reciprocal re-ranking if asked) and record rank-1/5/10, mAP
and wall time. Finished ``(variant, seed)`` runs are kept in ``OUT/results.json`` and skipped
on a restart; an unfinished one continues from its last epoch (``OUT/runs/<variant>_seed<S>/``).

Training length (``train.budget``): "epochs" trains both variants for the recipe's epochs (the
augmented model, with more images, takes more optimizer steps); "iterations" gives the baseline
exactly the augmented run's number of steps and learning-rate schedule (:mod:`reid_aug.reid.budget`).

How a benchmark runs (the pieces another protocol plugs into):

1. :func:`prepare_experiment`: the inputs, once, checked before any training -> :class:`Experiment`
   (config, folder, ``splits`` per variant from :func:`reid_aug.reid.data.build_splits`, the training
   ``plan`` per variant, the comparable ``setup``, weights, device). A variant is a name with its own
   training list; how synthesized images are mixed into it is decided there.
2. :func:`train_and_evaluate` ``(experiment, variant, seed)``: the per-seed driver; one record. It
   builds the data manager, the model (:func:`init_model`), optimizer and schedule
   (:func:`reid_aug.reid.budget.build_optimizer`) and the engine (its ``forward_backward`` holds the
   per-sample loss: same-id or LSRO labels), trains (:func:`reid_aug.reid.engine.train_epochs`),
   saves and evaluates (:func:`reid_aug.reid.evaluation.evaluate_model`).
3. :func:`run_benchmark`: the folder's results (:mod:`reid_aug.reid.results`: typed record, resume,
   ``--baseline-from``), the missing ``(variant, seed)`` runs, then the report
   (:mod:`reid_aug.reid.tables`).

Output folder: see :class:`reid_aug.rundir.BenchmarkDir`.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Sequence

import torch

from reid_aug.config import load_config, save_config, to_dict
from reid_aug.errors import ReidAugError, WeightsMissingError
from reid_aug.reid.budget import build_optimizer, describe_plan, iters_per_epoch, schedule_warning, training_plan
from reid_aug.reid.claims import claim, claim_path, held_elsewhere, release, results_lock
from reid_aug.reid.config import OWN_BASELINE, BenchmarkConfig, with_cli
from reid_aug.reid.models import build_model, find_imagenet_weights, load_backbone_weights, save_reid_model
from reid_aug.reid.results import (check_same_setup, load_results, reuse_baselines, reuse_shared_baselines, run_seeds,
                                   write_results)
from reid_aug.rundir import BenchmarkDir, GeneratorRun, SynthesizedSet
from reid_aug.runtime import resolve_device

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "augmented")
DEFAULT_RECIPE = "reid_resnet50_market"


def resolve_benchmark(model: str | None = None, recipe: str | None = None, overrides: Sequence[str] = (),
                      labels: str | None = None, pretrained: bool | None = None,
                      rerank: bool = False) -> BenchmarkConfig:
    """Recipe (default ``reid_resnet50_market``) + ``--set`` overrides + the CLI's own options
    (``None`` keeps the recipe's value: e.g. ``--recipe reid_cpu_market`` keeps its model).
    Warns when the learning-rate schedule does not fit the epochs it is given."""
    cfg = load_config(BenchmarkConfig, recipe or DEFAULT_RECIPE, overrides)
    warning = schedule_warning(cfg.train)
    if warning:
        log.warning("%s", warning)
    return with_cli(cfg, model=model, labels=labels, pretrained=pretrained, rerank=rerank)


# --------------------------------------------------------------------------- the prepared experiment
@dataclasses.dataclass
class Experiment:
    """What every ``(variant, seed)`` run of one benchmark shares."""

    cfg: BenchmarkConfig
    folder: BenchmarkDir
    splits: dict                  # variant -> reid_aug.reid.data.ReidSplits
    plan: dict                    # variant -> reid_aug.reid.budget.training_plan entry
    setup: dict                   # what makes two runs comparable (results.json "setup"; seeds are not part of it)
    weights: Path | None          # ImageNet weights (cfg.model.pretrained)
    device: torch.device
    synthetic_items: list = dataclasses.field(default_factory=list)   # train.mix = batch: the synthesized images
    teacher: str = ""             # labels = teacher: the model file (train.teacher=baseline: set by _run)

    @property
    def variants(self) -> list[str]:
        return [v for v in VARIANTS if v in self.splits]


def _check_weights(cfg: BenchmarkConfig, weights) -> Path | None:
    """The ImageNet weights file a pretrained model starts from; found (or refused) before any training."""
    if not cfg.model.pretrained:
        return None
    weights = Path(weights) if weights is not None else None
    if weights is not None and not weights.is_file():
        raise WeightsMissingError(f"--weights {weights} does not exist; pass an existing ImageNet weights file "
                                  f"or use `--no-pretrained`")
    return weights or find_imagenet_weights(cfg.model.name)


def prepare_experiment(cfg: BenchmarkConfig, dataset: str, augmented_dir: Path | None, weights, out_dir: Path,
                       ) -> Experiment:
    """Read the dataset and the synthesized set, build each variant's lists and training plan."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import SYNTHESIZED_DSETID, build_splits, read_augmented, source_images_of
    from reid_aug.utils.io import sha256_file

    device = resolve_device(cfg.runtime.device)
    weights = _check_weights(cfg, weights)
    index = load_dataset(dataset)
    d = cfg.data
    tables = {"baseline": None}
    if augmented_dir is not None:
        tables["augmented"] = read_augmented(augmented_dir)
        if cfg.train.augmented_images == "sources":     # the no-generation control
            tables["augmented"] = source_images_of(tables["augmented"], augmented_dir, index)
            log.info("augmented: every synthesized image replaced by its own source image (no-generation control)")
    splits = {v: build_splits(index, table, d.train_per_id, d.subsample_seed, d.test_ids, d.val_ids, d.val_seed,
                              cfg.eval.split) for v, table in tables.items()}
    synthetic_items = []
    if "augmented" in splits and cfg.train.mix == "batch":    # the baseline's list; the synthesized come on top
        aug = splits["augmented"]
        synthetic_items = [it for it in aug.train if it[3] == SYNTHESIZED_DSETID]
        splits["augmented"] = dataclasses.replace(aug, train=[it for it in aug.train if it[3] != SYNTHESIZED_DSETID])
    plan = training_plan(cfg, {v: len(s.train) for v, s in splits.items()})
    for v, p in plan.items():
        log.info("%s", describe_plan(v, p))
    own_teacher = cfg.train.teacher == OWN_BASELINE    # trained by this benchmark: checked when it is loaded
    if cfg.train.labels == "teacher" and "augmented" in splits and not own_teacher:   # refused before any training
        from reid_aug.reid.teacher import Teacher

        teacher = Teacher(cfg.train.teacher, splits["augmented"].pid2label, d.height, d.width, "cpu",
                          (d.train_per_id, d.subsample_seed))
        log.info("teacher soft labels from %s (T %g, weight %g, ramp %g)", teacher.path, cfg.train.teacher_temperature,
                 cfg.train.teacher_weight, cfg.train.teacher_ramp)
    manifest = SynthesizedSet(augmented_dir).manifest if augmented_dir is not None else None
    setup = {"dataset": str(index.image_root), "augmented_dir": str(augmented_dir) if augmented_dir else None,
             "augmented_manifest_sha256": sha256_file(manifest) if manifest is not None and manifest.is_file()
             else None, "weights": str(weights) if weights else None, "config": to_dict(cfg)}
    if cfg.train.labels == "teacher" and "augmented" in splits and not own_teacher:
        setup["teacher_sha256"] = teacher.sha256
    return Experiment(cfg=cfg, folder=BenchmarkDir(out_dir), splits=splits, plan=plan, setup=setup, weights=weights,
                      device=device, synthetic_items=synthetic_items, teacher="" if own_teacher else cfg.train.teacher)


# --------------------------------------------------------------------------- one (variant, seed) run
def init_model(exp: Experiment, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """A fresh torchreid model on the device, from ImageNet weights where the config asks; ``(model, init record)``."""
    model = build_model(exp.cfg.model.name, num_classes)
    init = {"pretrained": False}
    if exp.weights is not None:
        loaded = load_backbone_weights(model, exp.weights)
        init = {"pretrained": True, **loaded, "discarded": len(loaded["discarded"])}
    return model.to(exp.device), init


def train_and_evaluate(exp: Experiment, variant: str, seed: int) -> dict:
    """Train ``variant`` with ``seed`` (resuming its epoch checkpoint), save it, evaluate it: its run record."""
    from reid_aug.reid.data import build_datamanager
    from reid_aug.reid.engine import make_engine_class, train_epochs
    from reid_aug.reid.evaluation import evaluate_model
    from reid_aug.runtime import seed_everything

    cfg, splits, plan, t = exp.cfg, exp.splits[variant], exp.plan[variant], exp.cfg.train
    t_start, tag = time.time(), f"{variant}_seed{seed}"
    seed_everything(seed)
    use_gpu = exp.device.type == "cuda"
    dm = build_datamanager(splits, cfg.data.height, cfg.data.width, cfg.data.transforms, t.batch_size,
                           cfg.data.batch_size_test, cfg.data.workers, use_gpu=use_gpu)
    if len(dm.train_loader) != iters_per_epoch(len(splits.train), t.batch_size):
        raise AssertionError(f"torchreid's train loader has {len(dm.train_loader)} batches, the plan expected "
                             f"{iters_per_epoch(len(splits.train), t.batch_size)} (drop_last changed?)")
    model, init = init_model(exp, dm.num_train_pids)
    optimizer, scheduler = build_optimizer(model, t)
    engine = make_engine_class()(dm, model, optimizer, scheduler, use_gpu=use_gpu, label_smooth=t.label_smooth,
                                 labels=t.labels, mixing=_mixing(t), synthetic=_synthetic_stream(exp, variant, seed))
    if t.labels == "teacher" and variant == "augmented":
        from reid_aug.reid.teacher import Teacher

        teacher = Teacher(exp.teacher, splits.pid2label, cfg.data.height, cfg.data.width, exp.device,
                          (cfg.data.train_per_id, cfg.data.subsample_seed))
        engine.teacher = (teacher, 0.1 if t.label_smooth else 0.0, t.teacher_temperature, t.teacher_weight,
                          t.teacher_ramp)
    engine.total_iters = plan["total_iters"]
    ckpt = exp.folder.resume_checkpoint(tag)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    train = train_epochs(engine, plan["epochs"], ckpt, desc=tag, max_iters_per_epoch=t.max_iters_per_epoch,
                         total_iters=plan["total_iters"], lr_step_iters=plan["lr_step_iters"],
                         evaluate_epoch=_curve_hook(exp, model, splits, tag))
    if train["iterations"] != plan["total_iters"]:
        raise AssertionError(f"{tag} took {train['iterations']} iterations, the plan said {plan['total_iters']}")
    model_path = exp.folder.model_file(tag)
    save_reid_model(model, cfg, model_path, {"num_classes": dm.num_train_pids, "variant": variant, "seed": seed,
                                             "pid2label": {str(k): v for k, v in splits.pid2label.items()}})
    t_eval = time.time()
    metrics = evaluate_model(model, splits, cfg, exp.device, tag)
    now = time.time()
    rec = {"variant": variant, "seed": seed, **metrics, "n_train_real": splits.n_real,
           "n_train_synthesized": splits.n_synthesized, "num_train_pids": splits.num_train_pids,
           "train_s": train["train_s"], "eval_s": now - t_eval, "wall_s": train["train_s"] + (now - t_eval),
           "session_s": now - t_start, "epochs": train["epochs"], "iterations": train["iterations"],
           "budget": plan["budget"], "training_plan": plan,
           "final_loss": train["history"][-1]["loss"] if train["history"] else None,
           **({"teacher": str(teacher.path), "teacher_sha256": teacher.sha256} if engine.teacher else {}),
           "history": train["history"], "init": init, "model_path": str(model_path)}
    if cfg.eval.curve_every > 0:
        rec["curve"] = training_curve(train["history"], metrics)
    log.info("%s: rank-1 %.4f  mAP %.4f  (train %.0fs, eval %.0fs)", tag, rec.get("rank1", float("nan")),
             rec["mAP"], rec["train_s"], rec["eval_s"])
    return rec


def _curve_hook(exp: Experiment, model, splits, tag: str):
    """``eval.curve_every = k > 0``: every k-th epoch, rank-1 / mAP on the reported split (val or test). The
    global RNG state is put back afterwards, so that the curve leaves the training itself unchanged."""
    from reid_aug.reid.evaluation import evaluate_model
    from reid_aug.runtime import get_rng_state, set_rng_state

    k = exp.cfg.eval.curve_every
    if k <= 0:
        return None

    def evaluate_epoch(epoch: int, _rec: dict) -> dict:
        if epoch % k:
            return {}
        state = get_rng_state()     # the feature loaders draw their seeds from the global generator
        try:
            m = evaluate_model(model, splits, exp.cfg, exp.device, f"{tag} epoch {epoch}")
        finally:
            set_rng_state(state)
        log.info("%s epoch %d on %s: rank-1 %.4f mAP %.4f", tag, epoch, exp.cfg.eval.split, m.get("rank1", 0.0),
                 m["mAP"])
        return {"curve_rank1": m.get("rank1"), "curve_mAP": m["mAP"]}

    return evaluate_epoch


def training_curve(history: list[dict], final: dict) -> list[dict]:
    """``[{"epoch", "iterations" (cumulative), "rank1", "mAP"}, ...]``: the epochs evaluated during training,
    then the final model (its last epoch) where that epoch was not among them."""
    curve, done = [], 0
    for h in history:
        done += h["iterations"]
        if "curve_mAP" in h:
            curve.append({"epoch": h["epoch"], "iterations": done, "rank1": h["curve_rank1"], "mAP": h["curve_mAP"]})
    if history and (not curve or curve[-1]["epoch"] != history[-1]["epoch"]):
        curve.append({"epoch": history[-1]["epoch"], "iterations": done, "rank1": final.get("rank1"),
                      "mAP": final["mAP"]})
    return curve


def _mixing(t) -> tuple | None:
    """``(mix, eps_real, eps_synthesized, weight)`` for :func:`reid_aug.reid.mixing.mixed_cross_entropy`, or None
    where torchreid's own criterion is the same loss (pool mixing, weight 1, equal smoothing: the 0.2 runs)."""
    eps_real = 0.1 if t.label_smooth else 0.0           # torchreid CrossEntropyLoss's eps
    eps_synth = t.synthetic_label_smooth if t.synthetic_label_smooth >= 0 else eps_real
    if t.mix == "pool" and t.synthetic_weight == 1.0 and eps_synth == eps_real:
        return None
    return (t.mix, eps_real, eps_synth, float(t.synthetic_weight))


def _synthetic_stream(exp: Experiment, variant: str, seed: int):
    """train.mix = batch: the stream of synthesized images appended to each of the augmented run's batches."""
    if variant != "augmented" or not exp.synthetic_items:
        return None
    from reid_aug.reid.data import import_torchreid, quiet_stdout
    from reid_aug.reid.mixing import SyntheticStream

    d, t = exp.cfg.data, exp.cfg.train
    with quiet_stdout():
        transform, _ = import_torchreid().data.transforms.build_transforms(d.height, d.width,
                                                                            transforms=list(d.transforms))
    n = max(1, round(t.synthetic_ratio * t.batch_size))
    log.info("augmented: every batch = %d real (the baseline's) + %d synthesized images of %d", t.batch_size, n,
             len(exp.synthetic_items))
    return SyntheticStream(exp.synthetic_items, n, transform, seed, workers=d.workers)


# --------------------------------------------------------------------------- the benchmark
def _default_generator_eval(augmented_dir: Path | None) -> Path | None:
    """``synthesize`` writes to RUN/synthesized-K by default, and evaluate-generator to RUN/eval/."""
    if augmented_dir is None:
        return None
    cand = GeneratorRun(Path(augmented_dir).resolve().parent).eval_dir().metrics_json
    return cand if cand.is_file() else None


def run_benchmark(cfg: BenchmarkConfig, dataset: str | None = None, augmented_dir: str | Path | None = None,
                  seeds: Sequence[int] = (0,), weights: str | Path | None = None,
                  generator_eval: str | Path | None = None, out_dir: str | Path | None = None,
                  baseline_from: str | Path | None = None, baseline_only: bool = False,
                  shared_baselines: Sequence[str | Path] = ()) -> Path:
    """Train/evaluate baseline and augmented models for every seed; write the report. Returns ``out_dir``.

    ``dataset`` / ``augmented_dir`` None: the newest synthesized set under runs/ and its dataset
    (:func:`reid_aug.reid.inputs.resolve_benchmark_inputs`); ``baseline_only``: no synthesized set.
    ``out_dir`` None: :meth:`reid_aug.rundir.BenchmarkDir.default` (model, dataset and set in the name).
    ``baseline_from``: another benchmark folder whose baseline runs are taken over instead of trained again, where
    they are exactly comparable (same dataset, config, weights and baseline training plan; only the augmented
    folder differs), e.g. to compare several augmented sets against one baseline. ``shared_baselines``: folders
    tried in turn the same way, passing over those that are not comparable (a sweep's earlier cells).
    """
    from reid_aug.reid.inputs import resolve_benchmark_inputs

    if not seeds:
        raise ReidAugError("no seeds given (e.g. --seeds 0,1,2)")
    dataset, augmented_dir = resolve_benchmark_inputs(dataset, augmented_dir, baseline_only)
    out_dir = Path(out_dir) if out_dir is not None else BenchmarkDir.default(cfg.model.name, dataset,
                                                                             augmented_dir).path
    threads_before = torch.get_num_threads()
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    try:
        exp = prepare_experiment(cfg, dataset, augmented_dir, weights, out_dir)
        gen_eval = Path(generator_eval) if generator_eval is not None else _default_generator_eval(augmented_dir)
        return _run(exp, list(seeds), gen_eval, baseline_from, shared_baselines)
    finally:
        torch.set_num_threads(threads_before)


def _open_results(exp: Experiment, seeds: list[int], baseline_from, shared=()) -> dict:
    """The folder's results (refused if another setup wrote them) with ``--baseline-from``'s baselines taken
    over; written before any training, so that a later run with another setup is refused instead of
    resuming these checkpoints. Under the results lock: other processes may work on the same folder."""
    folder = exp.folder
    folder.path.mkdir(parents=True, exist_ok=True)
    with results_lock(folder.results_json):
        results = load_results(folder.results_json)
        check_same_setup(results, exp.setup, folder.path)
        results = {"setup": exp.setup, "seeds": run_seeds(results.get("runs", {})), "runs": results.get("runs", {})}
        if baseline_from is not None:
            reuse_baselines(results, exp.setup, exp.plan, seeds, Path(baseline_from), folder.path)
        if shared:
            reuse_shared_baselines(results, exp.setup, exp.plan, seeds, shared, folder.path)
        results["seeds"] = run_seeds(results["runs"])
        save_config(exp.cfg, folder.config)
        write_results(folder.results_json, results)
    return results


def _merge_runs(exp: Experiment, runs: dict, shared=(), seed=None) -> dict:
    """Add ``runs`` to ``results.json`` as it is on disk now (other processes' runs kept), and with ``shared``
    take over the comparable baseline of ``seed`` from those folders; the merged results."""
    path = exp.folder.results_json
    with results_lock(path):
        results = load_results(path)
        results["runs"] = {**results.get("runs", {}), **runs}
        if shared:
            reuse_shared_baselines(results, exp.setup, exp.plan, [seed], shared, exp.folder.path)
        results["seeds"] = run_seeds(results["runs"])
        write_results(path, results)
    return results


SHARED_POLL_S = 15.0      # how often a process waiting for a shared baseline looks again


def _await_shared_baseline(exp: Experiment, tag: str, shared, seed: int) -> dict:
    """While another process trains baseline ``tag`` in one of the ``shared`` folders, wait for it; then take it
    over where comparable. The merged results."""
    polls = 0
    while any(held_elsewhere(Path(c), tag) for c in shared):
        if polls % 40 == 0:
            log.info("%s: another process is training it in a shared folder; waiting for it", tag)
        time.sleep(SHARED_POLL_S)
        polls += 1
    return _merge_runs(exp, {}, shared, seed)


def _own_baseline_teacher(exp: Experiment, seed: int, shared=()) -> str:
    """``train.teacher=baseline``: the model file of this benchmark's ``baseline_seed<seed>`` (its first seed;
    trained before, by this or another process, or taken over). Waits while another process trains it."""
    tag, polls = f"baseline_seed{seed}", 0
    while tag not in load_results(exp.folder.results_json).get("runs", {}):
        if not held_elsewhere(exp.folder.path, tag) and not any(held_elsewhere(Path(c), tag) for c in shared):
            raise ReidAugError(f"train.teacher=baseline: the teacher {tag} did not finish in {exp.folder.path}; "
                               f"run the benchmark again to train it first")
        if polls % 40 == 0:
            log.info("the teacher %s is being trained by another process; waiting for it", tag)
        time.sleep(SHARED_POLL_S)
        polls += 1
        _merge_runs(exp, {}, shared, seed)
    return load_results(exp.folder.results_json)["runs"][tag]["model_path"]


def _run(exp: Experiment, seeds: list[int], gen_eval: Path | None, baseline_from=None, shared=()) -> Path:
    from reid_aug.reid.data import validate_images
    from reid_aug.reid.tables import write_report

    results = _open_results(exp, seeds, baseline_from, shared)
    todo = [(v, s) for s in seeds for v in exp.variants if f"{v}_seed{s}" not in results["runs"]]
    done = len(seeds) * len(exp.variants) - len(todo)
    if done:
        log.info("%d of %d run(s) already in %s: skipped", done, len(seeds) * len(exp.variants),
                 exp.folder.results_json)
    if todo and exp.cfg.data.check_images:
        validate_images(exp.splits.get("augmented", exp.splits["baseline"]), workers=max(1, exp.cfg.data.workers))
    for variant, seed in todo:
        tag = f"{variant}_seed{seed}"
        if variant == "baseline" and shared:
            results = _await_shared_baseline(exp, tag, shared, seed)
        if tag in load_results(exp.folder.results_json).get("runs", {}):
            continue                                    # finished by another process meanwhile
        if variant == "augmented" and exp.cfg.train.labels == "teacher" and exp.cfg.train.teacher == OWN_BASELINE:
            exp.teacher = _own_baseline_teacher(exp, seeds[0], shared)
        if not claim(exp.folder.path, tag):
            log.info("%s: being trained by another process (%s): passed over", tag,
                     claim_path(exp.folder.path, tag))
            continue
        try:
            results = _merge_runs(exp, {tag: train_and_evaluate(exp, variant, seed)})
            # the finished model lives in models/ and results.json marks the run done: its resume state goes
            exp.folder.resume_checkpoint(tag).unlink(missing_ok=True)
        finally:
            release(exp.folder.path, tag)
    results = load_results(exp.folder.results_json)
    # the report covers every seed in the folder: seeds run by separate calls (--seeds 3, --seeds 4) would
    # otherwise leave the last call's one-seed report behind
    write_report(exp.folder.path, results, seeds=sorted(set(seeds) | set(results["seeds"])), generator_eval=gen_eval,
                 train_info=_report_info(exp))
    return exp.folder.path


def _report_info(exp: Experiment) -> dict:
    d, base, aug = exp.cfg.data, exp.splits["baseline"], exp.splits.get("augmented")
    t = exp.cfg.train
    return {"plan": exp.plan, "train_per_id": d.train_per_id, "subsample_seed": d.subsample_seed,
            "mix": t.mix, "synthetic_ratio": t.synthetic_ratio if t.mix == "batch" else None,
            "synthetic_weight": t.synthetic_weight, "synthetic_label_smooth": t.synthetic_label_smooth,
            "n_real": base.n_real, "n_synthesized": aug.n_synthesized if aug is not None else 0,
            "num_train_pids": base.num_train_pids, "n_query": base.info["n_query"],
            "n_gallery": base.info["n_gallery"]}


__all__ = ["resolve_benchmark", "run_benchmark", "prepare_experiment", "train_and_evaluate", "init_model",
           "training_curve",
           "Experiment", "VARIANTS"]
