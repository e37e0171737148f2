"""The experiment behind ``reid-aug benchmark``: torchreid baseline vs augmented, same recipe and seed, one report.

For every seed: train the baseline (real train split) and the augmented model (real +
synthesized images under their source pid), extract query/gallery features, evaluate with our
vectorized Market evaluator (+ k-reciprocal re-ranking if asked) and record rank-1/5/10, mAP
and wall time. Finished ``(variant, seed)`` runs are kept in ``OUT/results.json`` and skipped
on a restart; an unfinished one continues from its last epoch (``OUT/runs/<variant>_seed<S>/``).

Training length (``train.budget``): "epochs" trains both variants for the recipe's epochs (the
augmented model, with more images, takes more optimizer steps); "iterations" gives the baseline
exactly the augmented run's number of steps and learning-rate schedule (see :func:`training_plan`).

Output folder::

    config.yaml              resolved recipe
    results.json / .csv      {"setup", "seeds", "runs"}: one record per (variant, seed) with its
                             "iterations" and "training_plan"; "setup" must match to resume
    report.md, bars.png      see reid_aug.reid.tables
    models/<variant>_seed<S>.pt   trained weights + config (load_reid_model)
    runs/<variant>_seed<S>/checkpoint.pt   per-epoch resume state (deleted when the run is done)
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from reid_aug.config import load_config, save_config, to_dict
from reid_aug.errors import ReidAugError, WeightsMissingError
from reid_aug.reid.budget import iters_per_epoch, training_plan
from reid_aug.reid.config import BenchmarkConfig, lr_schedule, schedule_warning, with_cli
from reid_aug.reid.models import (build_model, extract_features, find_imagenet_weights, load_backbone_weights,
                                  save_reid_model)
from reid_aug.reid.results import load_results, normalized_setup, reuse_baselines, run_seeds, write_results
from reid_aug.rundir import BenchmarkDir, GeneratorRun, SynthesizedSet
from reid_aug.runtime import resolve_device
from reid_aug.utils.io import sha256_file

log = logging.getLogger(__name__)

VARIANTS = ("baseline", "augmented")


# --------------------------------------------------------------------------- config
DEFAULT_RECIPE = "reid_resnet50_market"


def resolve_benchmark(model: str | None = None, recipe: str | None = None, overrides: Sequence[str] = (),
                      labels: str | None = None, pretrained: bool | None = None,
                      rerank: bool = False) -> BenchmarkConfig:
    """Recipe (default ``reid_resnet50_market``) + ``--set`` overrides + the CLI's own options
    (``None`` keeps the recipe's value: e.g. ``--recipe reid_cpu_market`` keeps its model)."""
    cfg = load_config(BenchmarkConfig, recipe or DEFAULT_RECIPE, overrides)
    warning = schedule_warning(cfg.train)
    if warning:
        log.warning("%s", warning)
    return with_cli(cfg, model=model, labels=labels, pretrained=pretrained, rerank=rerank)


# --------------------------------------------------------------------------- devices


# --------------------------------------------------------------------------- evaluation
def evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, cfg: BenchmarkConfig) -> dict:
    """Market metrics (and re-ranked ones if ``cfg.eval.rerank``) of query/gallery features."""
    import torch.nn.functional as F

    from reid_aug.reid.data import import_torchreid
    from reid_aug.reid.ranking import evaluate_rank, summarize

    reid = import_torchreid()
    e = cfg.eval
    if e.normalize_feature:
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    distmat = reid.metrics.compute_distance_matrix(qf, gf, e.dist_metric)
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=e.max_rank)
    out = {**summarize(cmc, mAP, e.ranks), "cmc": [float(x) for x in cmc]}
    if e.rerank:
        from reid_aug.reid.rerank import re_ranking_features

        t0 = time.time()
        # cosine distances give the same re-ranking as squared Euclidean on L2-normalised features
        # (re_ranking divides every row by its maximum, so the factor 2 cancels)
        rq, rg = (F.normalize(qf, dim=1), F.normalize(gf, dim=1)) if e.dist_metric == "cosine" else (qf, gf)
        rr = re_ranking_features(rq, rg, k1=e.k1, k2=e.k2, lambda_value=e.lambda_value)
        cmc_r, map_r = evaluate_rank(rr, q_pids, g_pids, q_cams, g_cams, max_rank=e.max_rank)
        out["rerank"] = {**summarize(cmc_r, map_r, e.ranks), "seconds": time.time() - t0}
    return out


# --------------------------------------------------------------------------- one run
def _train_and_evaluate(cfg: BenchmarkConfig, splits, variant: str, seed: int, out_dir: Path,
                        weights: Path | None, device: torch.device, plan: dict | None = None) -> dict:
    from reid_aug.reid.data import build_datamanager, import_torchreid
    from reid_aug.reid.engine import make_engine_class, train_epochs
    from reid_aug.runtime import seed_everything

    reid = import_torchreid()
    t_start = time.time()
    tag = f"{variant}_seed{seed}"
    seed_everything(seed)
    use_gpu = device.type == "cuda"
    dm = build_datamanager(splits, cfg.data.height, cfg.data.width, cfg.data.transforms, cfg.train.batch_size,
                           cfg.data.batch_size_test, cfg.data.workers, use_gpu=use_gpu)
    model = build_model(cfg.model.name, dm.num_train_pids)
    init = {"pretrained": False}
    if cfg.model.pretrained:
        init = {"pretrained": True, **load_backbone_weights(model, weights or find_imagenet_weights(cfg.model.name))}
        init["discarded"] = len(init["discarded"])
    model = model.to(device)
    t = cfg.train
    if plan is None:
        plan = training_plan(cfg, {variant: len(splits.train)})[variant]
    if len(dm.train_loader) != iters_per_epoch(len(splits.train), t.batch_size):
        raise AssertionError(f"torchreid's train loader has {len(dm.train_loader)} batches, the plan expected "
                             f"{iters_per_epoch(len(splits.train), t.batch_size)} (drop_last changed?)")
    optimizer = reid.optim.build_optimizer(model, optim=t.optimizer, lr=t.lr, weight_decay=t.weight_decay)
    sched_name, stepsize = lr_schedule(t)
    # always a scheduler: torchreid's checkpoint code breaks on scheduler=None. It counts the recipe's
    # epochs; an iteration-matched baseline steps it once per augmented epoch length (plan["lr_step_iters"])
    scheduler = reid.optim.build_lr_scheduler(optimizer, lr_scheduler=sched_name, stepsize=stepsize,
                                              gamma=t.gamma, max_epoch=t.epochs)
    engine = make_engine_class()(dm, model, optimizer, scheduler, use_gpu=use_gpu, label_smooth=t.label_smooth,
                                 labels=t.labels)
    resume_ckpt = BenchmarkDir(out_dir).resume_checkpoint(tag)
    resume_ckpt.parent.mkdir(parents=True, exist_ok=True)
    train = train_epochs(engine, plan["epochs"], resume_ckpt, desc=tag,
                         max_iters_per_epoch=t.max_iters_per_epoch, total_iters=plan["total_iters"],
                         lr_step_iters=plan["lr_step_iters"])
    if train["iterations"] != plan["total_iters"]:
        raise AssertionError(f"{tag} took {train['iterations']} iterations, the plan said {plan['total_iters']}")
    model_path = BenchmarkDir(out_dir).model_file(tag)
    save_reid_model(model, cfg, model_path, {"num_classes": dm.num_train_pids, "variant": variant, "seed": seed,
                                             "pid2label": {str(k): v for k, v in splits.pid2label.items()}})
    t_eval = time.time()
    bs = cfg.data.batch_size_test
    qf = extract_features(model, [p for p, *_ in splits.query], cfg.data.height, cfg.data.width, bs,
                          workers=cfg.data.workers, desc=f"{tag} query features", device=device)
    gf = extract_features(model, [p for p, *_ in splits.gallery], cfg.data.height, cfg.data.width, bs,
                          workers=cfg.data.workers, desc=f"{tag} gallery features", device=device)
    q_pids = np.array([p for _, p, _ in splits.query])
    q_cams = np.array([c for _, _, c in splits.query])
    g_pids = np.array([p for _, p, _ in splits.gallery])
    g_cams = np.array([c for _, _, c in splits.gallery])
    metrics = evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, cfg)
    now = time.time()
    rec = {"variant": variant, "seed": seed, **{k: v for k, v in metrics.items()},
           "n_train_real": splits.n_real, "n_train_synthesized": splits.n_synthesized,
           "num_train_pids": splits.num_train_pids, "train_s": train["train_s"], "eval_s": now - t_eval,
           "wall_s": train["train_s"] + (now - t_eval), "session_s": now - t_start, "epochs": train["epochs"],
           "iterations": train["iterations"], "budget": plan["budget"], "training_plan": plan,
           "final_loss": train["history"][-1]["loss"] if train["history"] else None,
           "history": train["history"], "init": init, "model_path": str(model_path),
           "feature_dim": int(qf.shape[1])}
    log.info("%s: rank-1 %.4f  mAP %.4f  (train %.0fs, eval %.0fs)", tag, rec.get("rank1", float("nan")),
             rec["mAP"], rec["train_s"], rec["eval_s"])
    return rec


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
                  baseline_from: str | Path | None = None, baseline_only: bool = False) -> Path:
    """Train/evaluate baseline and augmented models for every seed; write the report. Returns ``out_dir``.

    ``dataset`` / ``augmented_dir`` None: the newest synthesized set under runs/ and its dataset
    (:func:`reid_aug.reid.inputs.resolve_benchmark_inputs`); ``baseline_only``: no synthesized set.
    ``baseline_from``: another benchmark folder whose baseline runs are taken over instead of trained again, where
    they are exactly comparable (same dataset, config, weights and baseline training plan; only the augmented
    folder differs), e.g. to compare several augmented sets against one baseline.
    """
    from reid_aug.reid.inputs import resolve_benchmark_inputs

    if not seeds:
        raise ReidAugError("no seeds given (e.g. --seeds 0,1,2)")
    dataset, augmented_dir = resolve_benchmark_inputs(dataset, augmented_dir, baseline_only)
    out_dir = Path(out_dir) if out_dir is not None else BenchmarkDir.default(cfg.model.name, dataset,
                                                                             augmented_dir).path
    out_dir.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    if cfg.runtime.threads > 0:
        torch.set_num_threads(cfg.runtime.threads)
    try:
        return _run(cfg, dataset, augmented_dir, seeds, weights, generator_eval, out_dir, baseline_from)
    finally:
        torch.set_num_threads(threads_before)




def _run(cfg, dataset, augmented_dir, seeds, weights, generator_eval, out_dir: Path, baseline_from=None) -> Path:
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import build_splits, read_augmented, validate_images
    from reid_aug.reid.tables import write_report

    device = resolve_device(cfg.runtime.device)
    weights = Path(weights) if weights is not None else None
    if cfg.model.pretrained:
        if weights is not None and not weights.is_file():
            raise WeightsMissingError(f"--weights {weights} does not exist; pass an existing ImageNet weights file "
                                      f"or use `--no-pretrained`")
        weights = weights or find_imagenet_weights(cfg.model.name)   # fail before any training

    index = load_dataset(dataset)
    aug_table = read_augmented(augmented_dir) if augmented_dir is not None else None
    d = cfg.data
    splits = {"baseline": build_splits(index, None, d.train_per_id, d.subsample_seed, d.test_ids)}
    if aug_table is not None:
        splits["augmented"] = build_splits(index, aug_table, d.train_per_id, d.subsample_seed, d.test_ids)
    variants = [v for v in VARIANTS if v in splits]
    plan = training_plan(cfg, {v: len(splits[v].train) for v in variants})
    for v in variants:
        p = plan[v]
        log.info("%s: %s budget, %d epoch(s) x %d it%s = %d iterations", v, p["budget"], p["epochs"],
                 p["iters_per_epoch"], " (last epoch cut)" if p["total_iters"] % p["iters_per_epoch"] else "",
                 p["total_iters"])

    manifest = SynthesizedSet(augmented_dir).manifest if augmented_dir is not None else None
    # the compared setup: what makes two runs comparable. Seeds are not part of it (extending --seeds 0 to
    # 0,1,2 on the same folder adds runs); they are kept in results["seeds"].
    setup = {"dataset": str(index.image_root), "augmented_dir": str(augmented_dir) if augmented_dir else None,
             "augmented_manifest_sha256": sha256_file(manifest) if manifest is not None and manifest.is_file()
             else None, "weights": str(weights) if (cfg.model.pretrained and weights) else None,
             "config": to_dict(cfg)}
    results_path = BenchmarkDir(out_dir).results_json
    results = load_results(results_path)
    if results and normalized_setup(results.get("setup")) != setup:
        raise ReidAugError(f"{out_dir} holds results of a different benchmark (config incl. train.budget, dataset, "
                           f"synthesized set or weights differ; see {results_path}); pass another --out NEW_FOLDER "
                           f"or delete that folder")
    results = {"setup": setup, "seeds": run_seeds(results.get("runs", {})), "runs": results.get("runs", {})}
    if baseline_from is not None:
        reuse_baselines(results, setup, plan, seeds, Path(baseline_from), out_dir)
        results["seeds"] = run_seeds(results["runs"])
    save_config(cfg, out_dir / "config.yaml")
    # written before any training: a later run with another setup is refused instead of resuming these checkpoints
    write_results(results_path, results)

    todo = [(v, s) for s in seeds for v in variants if f"{v}_seed{s}" not in results["runs"]]
    done = len(seeds) * len(variants) - len(todo)
    if done:
        log.info("%d of %d run(s) already in %s: skipped", done, len(seeds) * len(variants), results_path)
    if todo and d.check_images:
        validate_images(splits.get("augmented", splits["baseline"]), workers=max(1, d.workers))
    gen_eval = Path(generator_eval) if generator_eval is not None else _default_generator_eval(
        Path(augmented_dir) if augmented_dir is not None else None)
    for variant, seed in todo:
        rec = _train_and_evaluate(cfg, splits[variant], variant, seed, out_dir, weights, device, plan[variant])
        results["runs"][f"{variant}_seed{seed}"] = rec
        results["seeds"] = run_seeds(results["runs"])
        write_results(results_path, results)
        BenchmarkDir(out_dir).resume_checkpoint(f"{variant}_seed{seed}").unlink(missing_ok=True)   # the finished model lives in models/; results.json marks it done
    write_results(results_path, results)
    write_report(out_dir, results, seeds=list(seeds), generator_eval=gen_eval,
                 train_info={"plan": plan, "train_per_id": d.train_per_id, "subsample_seed": d.subsample_seed,
                             "n_real": splits["baseline"].n_real,
                             "n_synthesized": splits["augmented"].n_synthesized if "augmented" in splits else 0,
                             "num_train_pids": splits["baseline"].num_train_pids,
                             "n_query": splits["baseline"].info["n_query"],
                             "n_gallery": splits["baseline"].info["n_gallery"]})
    return out_dir


__all__ = ["resolve_benchmark", "run_benchmark", "evaluate_features", "VARIANTS"]
