"""``reid-aug train-generator``: resolve a recipe, set up a run and train it.

:func:`train_generator` checks the run folder before writing anything, warns at once when a
GPU-sized recipe meets a CPU, loads the data, builds (or restores) the networks of the config's
generator family (:mod:`reid_aug.generator.family`; PG² in :mod:`reid_aug.generator.pg2`) and hands
them to the loop (:class:`reid_aug.generator.trainer.Trainer`).

Resume: the networks, optimizers, RNG states and the logging interval come back from
``checkpoint.pt`` and the batches of every step are a pure function of (seed, stage, step)
(:class:`~reid_aug.generator.data.PairSchedule`), so a resumed CPU run ends with bit-identical
weights.

Run folder (:class:`reid_aug.rundir.GeneratorRun`): ``config.yaml``, ``run.json``, ``checkpoint.pt``,
``log.csv``, ``samples/step_XXXXXX.png``, ``tb/``.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch

from reid_aug.config import apply_overrides, from_dict, load_recipe, resolve_recipe, to_dict
from reid_aug.errors import CheckpointError, TrainingDivergedError
from reid_aug.generator.checkpoint import family_and_config, load_checkpoint, load_weights
from reid_aug.generator.config import config_differences
from reid_aug.generator.data import TrainingData, load_training_data
from reid_aug.generator.family import GeneratorFamily, family_of, get_family
from reid_aug.generator.hooks import (CheckpointHook, DurationEstimateHook, LogHook, SampleHook, StepHook, StopHook,
                                      UserHook, cpu_recipe_hint)
from reid_aug.generator.runfiles import check_new_run, mark_run, write_run_files
from reid_aug.generator.trainer import Placement, Trainer, TrainState
from reid_aug.rundir import GeneratorRun
from reid_aug.runtime import init_distributed, loader_workers, set_rng_state

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- config
def default_recipe(dataset: str) -> str:
    """``market`` -> ``pg2_market``, ``toy`` -> ``pg2_toy``, a folder -> ``pg2_market``."""
    from reid_aug.dataset import is_toy_spec

    return "pg2_toy" if is_toy_spec(dataset) else "pg2_market"


def resolve_training(dataset: str, recipe: str | Path | None = None, overrides=(),
                     out_dir: str | Path | None = None):
    """Recipe (default ``pg2_<dataset>``) + dotted overrides -> ``(config, run folder)``.

    The recipe's ``family`` (default ``pg2``) picks the config class. The run folder defaults to
    ``runs/<recipe stem>-<dataset label>``.
    """
    recipe = recipe or default_recipe(str(dataset))
    data = apply_overrides(load_recipe(recipe), list(overrides or ()))
    cfg = from_dict(get_family(str(data.get("family", "pg2"))).config_class, data)
    out = Path(out_dir) if out_dir is not None else GeneratorRun.default(resolve_recipe(recipe).stem, dataset).path
    return cfg, out


# --------------------------------------------------------------------------- entry point
def train_generator(cfg, dataset: str, out_dir: str | Path, resume: bool = False, dry_run: bool = False,
                    *, step_hook: StepHook | None = None) -> Path:
    """Train ``cfg``'s generator family on ``dataset`` (market | toy | PATH) into the run folder ``out_dir``.

    ``resume`` continues from ``out_dir/checkpoint.pt`` (same config and pairs required); without
    it an existing run folder is refused before anything is written. ``dry_run`` resolves
    everything, runs one forward pass on one batch, logs what a run would do and writes nothing.
    ``step_hook(stage, step, values)`` is called after every step (tests use it to interrupt a run).
    Returns the run folder. Raises :class:`TrainingDivergedError` on a NaN/inf loss and
    ``KeyboardInterrupt`` on Ctrl-C, after checkpointing the last completed step.
    """
    family = family_of(cfg)
    run = GeneratorRun(out_dir)
    check_new_run(run, resume)
    dist, own_group = init_distributed(cfg.runtime.device)
    try:
        placement = Placement.create(cfg.runtime, dist)
        if dist.main:
            _warn_gpu_recipe_on_cpu(cfg, placement)
        t = cfg.train
        pose = getattr(cfg, "pose", None)     # the loss's pose mask (families without one: the default)
        data = load_training_data(dataset, cfg.model.image_size, cfg.model.pose_mode, t.n_samples, t.seed,
                                  mask_style=pose.mask_style if pose is not None else "defgan",
                                  train_per_id=cfg.data.train_per_id, subset_seed=cfg.data.subset_seed,
                                  annotations=cfg.data.annotations)
        if dry_run:
            _dry_run(cfg, family, data, placement)
            return run.path
        nets, state = _start_state(cfg, family, run, data, resume)
        nets = {k: v.to(placement.device) for k, v in nets.items()}
        if dist.main:
            write_run_files(cfg, family.name, dataset, run, data.info, state.trained(t.stages), state.init_info)
        try:
            Trainer(cfg, family, run, data, nets, state, placement, _hooks(cfg, placement, step_hook)).run()
        finally:   # finished, stopped or interrupted: run.json says how far it got
            if dist.main:
                mark_run(run, state.stage_index >= len(t.stages), state.trained(t.stages))
        if dist.enabled:
            _leave_together()
    finally:
        if own_group:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    return run.path


def _leave_together() -> None:
    """After a finished run: every rank waits for rank 0's last writes before the group goes.

    Without this, a worker destroyed the gloo group and exited while rank 0 was still writing, and
    now and then died in teardown ("terminate called without an active exception": CI, and 1 of 42
    two-process test runs on the 2-core machine). The DDP wrappers that hold the group are freed first.
    """
    import gc

    import torch.distributed as tdist

    gc.collect()
    tdist.barrier()


def _hooks(cfg, placement: Placement, step_hook: StepHook | None) -> list:
    hooks = [LogHook(), StopHook(), CheckpointHook(), SampleHook()]
    if placement.device.type == "cpu" and cfg.runtime.expects_gpu and placement.dist.main:
        hooks.append(DurationEstimateHook())
    if step_hook is not None:
        hooks.append(UserHook(step_hook))
    return hooks


def _warn_gpu_recipe_on_cpu(cfg, placement: Placement) -> None:
    """Say at once (before the data loads) that a GPU-sized recipe is about to run on a CPU."""
    if placement.device.type != "cpu" or not cfg.runtime.expects_gpu:
        return
    t = cfg.train
    log.warning("this is a GPU recipe (runtime.expects_gpu: %s, %s iterations, batch %d) and it runs on the CPU "
                "(runtime.device=%s): expect days, not hours. For a CPU run use %s; the duration at this speed "
                "follows after the first steps", "+".join(t.stages), "+".join(str(t.iters(s)) for s in t.stages),
                t.batch_size, cfg.runtime.device, cpu_recipe_hint(cfg))


# --------------------------------------------------------------------------- start state
def _start_state(cfg, family: GeneratorFamily, run: GeneratorRun, data: TrainingData,
                 resume: bool) -> tuple[dict, TrainState]:
    """Fresh networks (from ``train.seed``), the checkpoint's on ``--resume``, or ``train.init_from``'s."""
    torch.manual_seed(cfg.train.seed)
    nets = family.build_networks(cfg, family.base_networks)
    if resume and run.checkpoint.is_file():
        ckpt = load_checkpoint(run.checkpoint)
        _check_resumable(ckpt, cfg, family, run, data)
        for name in ckpt["models"]:
            if name not in nets:
                nets.update(family.build_networks(cfg, (name,)))
        load_weights(nets, ckpt["models"], list(ckpt["models"]), run.checkpoint)
        state = TrainState.from_checkpoint(ckpt)
        set_rng_state(ckpt["rng"])
        log.info("resuming %s at stage %s step %d (global step %d)", run.checkpoint, ckpt.get("stage"), state.step,
                 state.global_step)
        return nets, state
    if resume:
        log.warning("--resume: no checkpoint in %s yet; starting from scratch", run.path)
    state = TrainState()
    if cfg.train.init_from:
        _init_from(Path(cfg.train.init_from), cfg, family, data, nets, state)
    return nets, state


def _check_resumable(ckpt: dict, cfg, family: GeneratorFamily, run: GeneratorRun, data: TrainingData) -> None:
    if ckpt["family"] != family.name:
        raise CheckpointError(f"{run.checkpoint} holds a {ckpt['family']!r} generator, this config is "
                              f"{family.name!r}; start a new run with --out")
    _, old_cfg = family_and_config(ckpt, run.checkpoint)   # fills fields added since (0.1 files) with defaults
    diffs = config_differences(to_dict(old_cfg), to_dict(cfg))
    fatal = [d for d in diffs if any(d == f or d.startswith(f + ".") for f in family.identity_fields)]
    if fatal:
        raise CheckpointError(f"{run.checkpoint} was trained with a different config ({', '.join(fatal)} differ); "
                              f"resume with the run's own config ({run.config}) or start a new run with --out")
    if diffs:
        log.warning("resuming with changed settings: %s", ", ".join(diffs))
    old_data = ckpt.get("dataset", {})
    if old_data.get("pairs_sha256") not in (None, data.info["pairs_sha256"]):
        raise CheckpointError(f"{run.checkpoint} was trained on other pairs ({old_data.get('spec')}: "
                              f"{old_data.get('n_pairs')} pairs) than {data.spec} gives now "
                              f"({data.info['n_pairs']}); resume on the same dataset")


def _init_from(path: Path, cfg, family: GeneratorFamily, data: TrainingData, nets: dict, state: TrainState) -> None:
    """Take over the finished first stage of another run (``train.init_from``): the networks that stage
    trained (G1; G1 and D after "g1+d"); this run starts at its second stage."""
    from reid_aug.rundir import checkpoint_file
    from reid_aug.utils.io import sha256_file

    ckpt_file = checkpoint_file(path)
    src = load_checkpoint(ckpt_file)
    src_family, src_cfg = family_and_config(src, ckpt_file)
    stages, src_stages = cfg.train.stages, tuple(src_cfg.train.stages)
    if len(stages) < 2:
        raise CheckpointError(f"train.init_from takes over the first stage of a two-stage run; this run's stages "
                              f"are {list(stages)}")
    if src_family is not family or stages[0] != src_stages[0] or int(src["stage_index"]) < 1:
        raise CheckpointError(
            f"train.init_from={ckpt_file}: it has no finished stage {stages[0]!r} to take over (a "
            f"{src_family.name} run, its stages {list(src_stages)}, finished {src.get('trained', [])})")
    for field_name in ("image_size", "pose_mode"):
        ours, theirs = getattr(cfg.model, field_name), getattr(src_cfg.model, field_name)
        if ours != theirs:
            raise CheckpointError(f"train.init_from={ckpt_file} has model.{field_name}={theirs!r}, this run {ours!r}")
    old_pairs = src.get("dataset", {}).get("pairs_sha256")
    if old_pairs not in (None, data.info["pairs_sha256"]):
        raise CheckpointError(f"train.init_from={ckpt_file} was trained on other pairs ({src['dataset'].get('spec')}: "
                              f"{src['dataset'].get('n_pairs')} pairs) than {data.spec} gives ({data.info['n_pairs']})")
    first = family.stage(stages[0])
    names = sorted(set(first.g + first.d))
    for name in names:
        if name not in nets:
            nets.update(family.build_networks(cfg, (name,)))
    load_weights(nets, src["models"], names, f"train.init_from={ckpt_file}",
                 "this run's model config (widths/levels must match)")
    state.stage_index = 1
    state.global_step = src_cfg.train.iters(stages[0])
    state.init_info = {"checkpoint": str(ckpt_file), "sha256": sha256_file(ckpt_file), "stages": [stages[0]],
                       "networks": names, "global_step": state.global_step}
    log.info("train.init_from: %s from %s (stage %s, %d steps); starting at stage %s",
             "+".join(n.upper() for n in names), ckpt_file, stages[0], state.global_step, stages[1])


# --------------------------------------------------------------------------- dry run
@torch.no_grad()
def _dry_run(cfg, family: GeneratorFamily, data: TrainingData, placement: Placement) -> None:
    """Build every network of every stage, run one forward pass and log what a run would do; writes nothing."""
    stages = cfg.train.stages
    names = [n for n in family.network_names if any(n in family.stage(s).networks for s in stages)]
    torch.manual_seed(cfg.train.seed)
    nets = {k: v.to(placement.device).eval() for k, v in family.build_networks(cfg, names).items()}
    sizes = ", ".join(f"{k.upper()} {sum(p.numel() for p in v.parameters()) / 1e6:.2f}M" for k, v in nets.items())
    outputs = family.output_stages(stages)
    batch = placement.to_device(data.sample_batch)
    out = family.generate(nets, batch, outputs[-1])
    log.info("dry run (nothing written): %s pairs from %s; family %s (%s); parameters %s; output %s of stage %s; "
             "device %s; stages %s (%s iterations, batch %d); %d loader workers", data.info["n_pairs"], data.root,
             family.name, family.describe(cfg), sizes, tuple(out.shape), outputs[-1], placement.device,
             "+".join(stages), "+".join(str(cfg.train.iters(s)) for s in stages), cfg.train.batch_size,
             loader_workers(cfg.train.num_workers))
    if not math.isfinite(float(out.abs().max())):
        raise TrainingDivergedError(f"dry run: stage {outputs[-1]} produced NaN/inf on the first batch")
