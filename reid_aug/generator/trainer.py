"""The architecture-independent training loop: stages of a generator family, one step at a time,
then the after-step hooks (:mod:`reid_aug.generator.hooks`).

Under ``torchrun --nproc_per_node W`` each process takes its ``batch_size / W`` slice of the
global batch of every step (DistributedDataParallel, gloo on CPU, nccl on CUDA); rank 0 alone
logs and writes files. Ctrl-C lets the step in progress finish, writes a checkpoint of the state
after it and raises ``KeyboardInterrupt`` (a second Ctrl-C stops at once).
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from reid_aug.config import to_dict
from reid_aug.errors import TrainingDivergedError
from reid_aug.generator.checkpoint import save_checkpoint
from reid_aug.generator.data import PairSchedule, TrainingData, flip_batch
from reid_aug.generator.family import GeneratorFamily, Stage, StepModules
from reid_aug.generator.runfiles import RunOutputs, log_columns
from reid_aug.generator.samples import sample_grid
from reid_aug.rundir import GeneratorRun
from reid_aug.runtime import DistInfo, get_rng_state, loader_workers, resolve_device
from reid_aug.utils.images import save_png

log = logging.getLogger(__name__)


@dataclasses.dataclass
class TrainState:
    """Where training stands; everything a checkpoint restores besides weights and RNG states."""

    stage_index: int = 0             # index into train.stages of the stage in progress (len: done)
    step: int = 0                    # steps done in that stage
    global_step: int = 0
    log_rows: int | None = None      # rows of log.csv that belong to this state (None: a new log)
    log_acc: dict = dataclasses.field(default_factory=dict)     # loss sums of the logging interval
    optimizers: dict = dataclasses.field(default_factory=dict)  # saved optimizer states to resume with
    init_info: dict | None = None    # what train.init_from took over

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "TrainState":
        return cls(stage_index=int(ckpt["stage_index"]), step=int(ckpt["step"]),
                   global_step=int(ckpt["global_step"]), log_rows=int(ckpt.get("log_rows", 0)),
                   log_acc=dict(ckpt.get("log_acc", {})), optimizers=dict(ckpt.get("optimizers") or {}))

    def trained(self, stages) -> list[str]:
        done = list(stages[: self.stage_index])
        if self.stage_index < len(stages) and self.step > 0:
            done.append(stages[self.stage_index])
        return done

    def advance(self, values: dict[str, float]) -> None:
        self.step += 1
        self.global_step += 1
        for k, v in values.items():
            self.log_acc[k] = self.log_acc.get(k, 0.0) + v
        self.log_acc["n"] = self.log_acc.get("n", 0) + 1

    def next_stage(self) -> None:
        self.stage_index, self.step, self.optimizers = self.stage_index + 1, 0, {}

    def take_interval_means(self) -> dict[str, float]:
        n = self.log_acc.pop("n", 0)
        means = {k: v / max(n, 1) for k, v in self.log_acc.items()}
        self.log_acc = {}
        return means


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where and how the networks run: device, DDP membership, bf16 autocast, channels_last, compile."""

    device: torch.device
    dist: DistInfo
    amp: bool = False
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def create(cls, runtime, dist: DistInfo) -> "Placement":
        """From a :class:`~reid_aug.generator.config.RuntimeConfig`; sets threads and CUDA math flags."""
        device = resolve_device(runtime.device, local_rank=dist.local_rank if dist.enabled else None)
        cuda = device.type == "cuda"
        if runtime.threads > 0:
            torch.set_num_threads(runtime.threads)
        if cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return cls(device, dist, cuda and runtime.amp, cuda and runtime.channels_last, runtime.compile)

    def prepare(self, net: nn.Module, train: bool):
        """The callable used in the loop: channels_last, DDP (when trained), torch.compile."""
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        run = net
        if train and self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            run = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        return torch.compile(run) if self.compile else run

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.channels_last and v.ndim == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out


class InterruptFlag:
    """While active (main thread only), the first Ctrl-C only asks the loop to stop after this step."""

    def __init__(self):
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: finishing this step, then writing a checkpoint (Ctrl-C again stops at once)")

    def __enter__(self) -> "InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


@dataclasses.dataclass
class StageRun:
    """The stage in progress: its spec, length, step modules, batch schedule, loader, progress bar."""

    stage: Stage
    total: int
    mods: StepModules
    schedule: PairSchedule
    loader: Any
    bar: Any

    def optimizer_states(self) -> dict:
        out = {"stage": self.stage.name, "g": self.mods.opt_g.state_dict()}
        if self.mods.opt_d is not None:
            out["d"] = self.mods.opt_d.state_dict()
        return out


class Trainer:
    """Trains ``nets`` through the stages of ``cfg.train.stages`` from ``state``; see :meth:`run`."""

    def __init__(self, cfg, family: GeneratorFamily, run: GeneratorRun, data: TrainingData,
                 nets: dict[str, nn.Module], state: TrainState, placement: Placement, hooks: list):
        self.cfg, self.family, self.run_dir, self.data = cfg, family, run, data
        self.nets, self.state, self.placement, self.hooks = nets, state, placement, hooks
        self.main = placement.dist.main
        self.outputs: RunOutputs | None = None   # rank 0, while run() runs
        self.stop_reason: str | None = None      # "time" | "interrupt", set by the StopHook
        self.interrupt = InterruptFlag()
        self.start_time = time.monotonic()
        self._mid_step = False                   # weights may be half-updated: no checkpoint now

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        """All remaining stages; raises ``KeyboardInterrupt`` after checkpointing on Ctrl-C."""
        stages, s = self.cfg.train.stages, self.state
        if self.main:
            self.outputs = RunOutputs(self.run_dir, log_columns(self.family.log_terms), s.log_rows,
                                      self.cfg.train.tensorboard, s.global_step or None)
            s.log_rows = self.outputs.csv.rows
        try:
            if s.stage_index >= len(stages):
                log.info("%s is already complete (global step %d)", self.run_dir.path, s.global_step)
                return
            for hook in self.hooks:
                hook.before_train(self)
            with self.interrupt:
                while s.stage_index < len(stages) and self.stop_reason is None:
                    self._run_stage()
        finally:
            if self.outputs is not None:
                self.outputs.close()
                self.outputs = None
        self._report_end()

    def _run_stage(self) -> None:
        run = self._start_stage()
        try:
            finished = self._train_steps(run)
        finally:
            run.bar.close()
        if finished:
            self.state.next_stage()
            self.save(None)

    def _train_steps(self, run: StageRun) -> bool:
        """Steps of ``run`` from ``state.step``; False when a stop cut the stage short."""
        try:
            for batch in run.loader:
                values = self._step(run, batch)
                run.bar.update(1)
                for hook in self.hooks:
                    hook.after_step(self, run, values)
                if self.stop_reason and self.state.step < run.total:
                    return False
        except KeyboardInterrupt:
            if not self._mid_step:      # the state after the last completed step is consistent: keep it
                self.save(run)
                log.warning("interrupted at stage %s step %d; %s holds the state after it: continue with "
                            "--resume", run.stage.name, self.state.step, self.run_dir.checkpoint)
            raise
        return True

    def _step(self, run: StageRun, batch: dict) -> dict[str, float]:
        flips = torch.from_numpy(run.schedule.local_batch_of(self.state.step)[1])
        batch = self.placement.to_device(flip_batch(batch, flips))
        self._mid_step = True
        values = self.family.train_step(run.stage.name, batch, self.cfg, run.mods)
        self._mid_step = False
        self.state.advance(values)
        return values

    def _report_end(self) -> None:
        s, where = self.state, self.run_dir.path
        if self.stop_reason == "interrupt":
            log.warning("interrupted at global step %d; checkpoint %s written: continue with --resume", s.global_step,
                        self.run_dir.checkpoint)
            raise KeyboardInterrupt
        if self.stop_reason == "time":
            log.info("stopped after %.1f min (train.max_minutes) at global step %d; continue with --resume",
                     self.cfg.train.max_minutes, s.global_step)
        elif s.stage_index >= len(self.cfg.train.stages):
            log.info("training complete: %s", where)

    # ---------------------------------------------------------------- stages
    def _start_stage(self) -> StageRun:
        """Networks, optimizers, batch schedule and loader of the stage ``state.stage_index``."""
        cfg, s = self.cfg, self.state
        stage = self.family.stage(cfg.train.stages[s.stage_index])
        self._build_missing(stage)
        total = cfg.train.iters(stage.name)
        dist = self.placement.dist
        schedule = PairSchedule(len(self.data.pairs), cfg.train.batch_size, cfg.train.seed, s.stage_index,
                                cfg.train.flip, dist.rank, dist.world)
        loader = self.data.loader(schedule, s.step, total, loader_workers(cfg.train.num_workers),
                                  pin_memory=self.placement.device.type == "cuda") if s.step < total else []
        run = StageRun(stage, total, self._modules(stage, total), schedule, loader, self._progress_bar(stage.name, total))
        for hook in self.hooks:
            hook.before_stage(self, run)
        return run

    def _build_missing(self, stage: Stage) -> None:
        """Create the networks a stage adds (seeded by (seed, stage index): a resumed run creates the same)."""
        missing = [n for n in stage.networks if n not in self.nets]
        if missing:
            seq = np.random.SeedSequence([self.cfg.train.seed, self.state.stage_index, 1 << 20])
            torch.manual_seed(int(seq.generate_state(1)[0]))
            built = self.family.build_networks(self.cfg, missing)
            self.nets.update({k: v.to(self.placement.device) for k, v in built.items()})

    def _modules(self, stage: Stage, total: int) -> StepModules:
        nets = {n: self.nets[n] for n in stage.networks}
        for name, net in nets.items():
            trained = name not in stage.frozen
            net.requires_grad_(trained)
            net.train(trained)
        run = {n: self.placement.prepare(net, train=n not in stage.frozen) for n, net in nets.items()}

        def params(names):
            return [p for n in names for p in nets[n].parameters()]

        opt_g = self.family.make_optimizer(self.cfg, stage.name, "g", params(stage.g))
        opt_d = self.family.make_optimizer(self.cfg, stage.name, "d", params(stage.d)) if stage.d else None
        saved = self.state.optimizers
        if saved and saved.get("stage") == stage.name:
            opt_g.load_state_dict(saved["g"])
            if opt_d is not None:
                opt_d.load_state_dict(saved["d"])
        return StepModules(nets=nets, run=run, opt_g=opt_g, opt_d=opt_d, autocast=self.placement.autocast,
                           check=lambda terms: self._check_finite(stage.name, terms),
                           position=lambda: (self.state.step, total))

    def _progress_bar(self, stage: str, total: int):
        from tqdm import tqdm

        # miniters=1 and a short mininterval: the rate and ETA appear after the first (long) step.
        bar = tqdm(total=total, initial=self.state.step, desc=f"{self.family.name} {stage}", unit="it",
                   dynamic_ncols=True, mininterval=0.5, miniters=1, smoothing=0.1,
                   disable=None if self.main else True)
        bar.refresh()
        return bar

    def _check_finite(self, stage: str, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """Average the loss terms over DDP ranks and stop on NaN/inf (all ranks agree)."""
        names = list(terms)
        vals = torch.stack([terms[k].detach().float() for k in names])
        if self.placement.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(vals)
            vals = vals / self.placement.dist.world
        vals = vals.cpu()
        if not torch.isfinite(vals).all():
            shown = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, vals.tolist()))
            ckpt = self.run_dir.checkpoint
            kept = f"the last good checkpoint {ckpt} is kept" if ckpt.is_file() else "no checkpoint had been written yet"
            raise TrainingDivergedError(
                f"non-finite loss at stage {stage} step {self.state.step + 1} (global step "
                f"{self.state.global_step + 1}): {shown}; {kept}. Lower train.lr / train.d_lr (or check the data), "
                f"then --resume")
        return dict(zip(names, vals.tolist()))

    # ---------------------------------------------------------------- files
    def save(self, run: StageRun | None) -> None:
        """Checkpoint the state between steps (rank 0); refuses non-finite weights."""
        s, stages = self.state, self.cfg.train.stages
        for name, net in self.nets.items():
            bad = [n for n, p in net.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
            if bad:
                raise TrainingDivergedError(
                    f"{name.upper()} weights became NaN/inf ({bad[0]}, ...) at global step {s.global_step}; not "
                    f"overwriting the last good checkpoint {self.run_dir.checkpoint}. Lower train.lr / train.d_lr, "
                    f"then --resume")
        if not self.main:
            return
        done = s.stage_index >= len(stages)
        stage = "done" if done else stages[s.stage_index]
        save_checkpoint({
            "family": self.family.name, "config": to_dict(self.cfg), "image_size": list(self.cfg.model.image_size),
            "pose_mode": self.cfg.model.pose_mode, "stage_index": s.stage_index, "stage": stage, "step": s.step,
            "global_step": s.global_step, "trained": s.trained(stages), "complete": done,
            "models": {k: {n: t.detach().cpu().contiguous() for n, t in v.state_dict().items()}
                       for k, v in self.nets.items()},
            "optimizers": run.optimizer_states() if run is not None else {},
            "rng": get_rng_state(),
            "sampler": {"stage": stage, "position": s.step * self.cfg.train.batch_size, "seed": self.cfg.train.seed},
            "dataset": self.data.info, "log_rows": s.log_rows or 0, "log_acc": dict(s.log_acc),
        }, self.run_dir.checkpoint)
        log.debug("checkpoint written at global step %d", s.global_step)

    @torch.no_grad()
    def write_samples(self) -> None:
        if not self.main:
            return
        b = self.placement.to_device(self.data.sample_batch)
        with self.placement.autocast():
            images = self.family.sample_images(self.nets, b, self.state.trained(self.cfg.train.stages))
        grid = sample_grid(b["src_img"], b["tgt_pose"], [x if x is None else x.float() for x in images],
                           b["tgt_img"], self.cfg.model.pose_mode)
        save_png(grid, self.run_dir.sample_png(self.state.global_step))
        if self.outputs is not None:
            self.outputs.add_image(grid, self.state.global_step)
