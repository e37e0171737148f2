"""After-step hooks of the generator training loop (as fast-reid's ``HookBase``).

The loop (:class:`reid_aug.generator.trainer.Trainer`) runs one step, then every hook's
``after_step`` in order: log, stop decision (time budget / Ctrl-C), checkpoint, samples, the CPU
duration estimate, then the caller's ``step_hook``. A hook reads the trainer's ``state``
(:class:`~reid_aug.generator.trainer.TrainState`) and the stage in progress (``StageRun``: ``stage``,
``total``, ``bar``); it may set ``trainer.stop_reason``.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

import torch

log = logging.getLogger(__name__)

StepHook = Callable[[str, int, dict], None]


class Hook:
    """Base class: every method is optional."""

    def before_train(self, trainer) -> None:
        pass

    def before_stage(self, trainer, run) -> None:
        pass

    def after_step(self, trainer, run, values: dict[str, float]) -> None:
        pass


def _last(trainer, run) -> bool:
    return trainer.state.step == run.total


class LogHook(Hook):
    """Interval means of the loss terms into log.csv and TensorBoard, and onto the progress bar."""

    def __init__(self):
        self.start, self.steps = time.monotonic(), 0

    def before_stage(self, trainer, run) -> None:
        self.start, self.steps = time.monotonic(), 0

    def after_step(self, trainer, run, values) -> None:
        self.steps += 1
        s = trainer.state
        if s.step % trainer.cfg.train.log_every and not _last(trainer, run):
            return
        pairs_per_s = self.steps * trainer.cfg.train.batch_size / max(time.monotonic() - self.start, 1e-9)
        self.start, self.steps = time.monotonic(), 0
        means = s.take_interval_means()
        if trainer.outputs is None:   # DDP ranks > 0 write nothing
            return
        stage = run.stage.name
        row = {"stage": stage, "step": s.step, "global_step": s.global_step, "pairs_per_s": f"{pairs_per_s:.2f}",
               "wall_s": f"{time.monotonic() - trainer.start_time:.1f}", **{k: f"{v:.6g}" for k, v in means.items()}}
        scalars = {f"{stage}/{k}": v for k, v in means.items()}
        scalars[f"{stage}/pairs_per_s"] = pairs_per_s
        s.log_rows = trainer.outputs.add_row(row, scalars, s.global_step)
        run.bar.set_postfix({k: f"{means[k]:.4f}" for k in trainer.family.progress_terms if k in means})


class StopHook(Hook):
    """Decides, the same on every DDP rank, whether to stop: ``train.max_minutes`` or Ctrl-C."""

    def after_step(self, trainer, run, values) -> None:
        minutes = trainer.cfg.train.max_minutes
        time_up = minutes > 0 and time.monotonic() - trainer.start_time > 60 * minutes
        code = 2 if trainer.interrupt.requested else 1 if time_up else 0
        if trainer.placement.dist.enabled:   # rank 0 decides: a split group would hang
            import torch.distributed as dist

            t = torch.tensor([float(code)], device=trainer.placement.device)
            dist.broadcast(t, 0)
            code = int(t.item())
        trainer.stop_reason = {0: None, 1: "time", 2: "interrupt"}[code]


class CheckpointHook(Hook):
    """Every ``train.checkpoint_every`` steps, and before an early stop."""

    def after_step(self, trainer, run, values) -> None:
        if trainer.state.step % trainer.cfg.train.checkpoint_every == 0 or (
                trainer.stop_reason and not _last(trainer, run)):
            trainer.save(run)


class SampleHook(Hook):
    """A sample grid at the start, every ``train.sample_every`` steps, at stage ends and on a stop."""

    def before_train(self, trainer) -> None:
        if trainer.state.global_step == 0:
            trainer.write_samples()

    def after_step(self, trainer, run, values) -> None:
        if trainer.state.step % trainer.cfg.train.sample_every == 0 or _last(trainer, run) or trainer.stop_reason:
            trainer.write_samples()


class DurationEstimateHook(Hook):
    """For a GPU recipe on a CPU: after the first few steps, how long all stages take at this speed."""

    def __init__(self, steps: int = 5):
        self.steps, self.done, self.t0, self.counted = steps, False, 0.0, -1

    def after_step(self, trainer, run, values) -> None:
        if self.done:
            return
        self.counted += 1
        if self.counted == 0:             # the first step warms up: time the ones after it
            self.t0 = time.monotonic()
            return
        if self.counted < self.steps:
            return
        self.done = True
        per_step = (time.monotonic() - self.t0) / self.counted
        cfg, s = trainer.cfg, trainer.state
        stages = cfg.train.stages
        left = cfg.train.iters(stages[s.stage_index]) - s.step + sum(cfg.train.iters(x) for x in
                                                                   stages[s.stage_index + 1:])
        total = sum(cfg.train.iters(x) for x in stages)
        log.warning("at %.2f s per step, stages %s (%d steps, %d left) take about %s on this machine; for a CPU "
                    "run use %s (Ctrl-C saves a checkpoint; --resume continues)", per_step, "+".join(stages), total,
                    left, human_duration(per_step * left), cpu_recipe_hint(cfg))


class UserHook(Hook):
    """The caller's ``step_hook(stage, step, values)`` (tests use it to interrupt a run)."""

    def __init__(self, fn: StepHook):
        self.fn = fn

    def after_step(self, trainer, run, values) -> None:
        self.fn(run.stage.name, trainer.state.step, values)


def cpu_recipe_hint(cfg) -> str:
    return f"--recipe {cfg.runtime.cpu_recipe}" if cfg.runtime.cpu_recipe else "a recipe sized for a CPU"


def human_duration(seconds: float) -> str:
    """``5400`` -> ``"1.5 hours"``."""
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days ({seconds / 3600:.0f} hours)"
