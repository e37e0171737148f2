"""Two-stage PG² training (``reid-aug train-generator``).

Stage I ("g1") trains G1 with the pose-mask L1 (or plain L1). Stage II ("g2") freezes G1 and
trains G2 + D: ``G loss = BCE(D(G2), real) + lambda * posemask_L1(G2, I_B)``; the D loss is the
paper's or the official code's variant (see :mod:`reid_aug.generator.losses`). The one-stage
ablation "g1+d" trains G1 adversarially.

Determinism: the pairs of step ``s`` of a stage and their flip flags are a pure function of
``(seed, stage, s)`` (a per-epoch permutation drawn from a seeded ``torch.Generator``), so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run sees; together with the
saved network/optimizer/RNG states a resumed CPU run ends with bit-identical weights.

Under ``torchrun --nproc_per_node W`` each process takes its ``batch_size / W`` slice of the
global batch of every step (DistributedDataParallel, gloo on CPU, nccl on CUDA); rank 0 alone
logs and writes files.

Run folder: ``config.yaml``, ``run.json``, ``checkpoint.pt``, ``log.csv``, ``samples/step_XXXXXX.png``, ``tb/``.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from reid_aug.config import ConfigError, load_config, resolve_recipe, save_config, to_dict
from reid_aug.errors import CheckpointError, DatasetError, ReidAugError, TrainingDivergedError, TrainingError
from reid_aug.generator.checkpoint import (CHECKPOINT_NAME, build_networks, get_rng_state, load_checkpoint,
                                           save_checkpoint, set_rng_state)
from reid_aug.generator.config import IDENTITY_FIELDS, PG2Config, config_differences
from reid_aug.generator.losses import bce_real, discriminator_loss, recon_loss
from reid_aug.pose.maps import pose_maps_to_rgb
from reid_aug.utils.io import atomic_write_bytes, atomic_write_text

log = logging.getLogger(__name__)

# Columns of log.csv: means over each logging interval; empty where a term does not apply.
LOG_COLUMNS = ("stage", "step", "global_step", "loss", "l1", "mask_l1", "posemask_l1", "adv", "d_loss", "d_real",
               "d_fake", "d_cond", "pairs_per_s", "wall_s")

StepHook = Callable[[str, int, dict], None]


# --------------------------------------------------------------------------- config
def default_recipe(dataset: str) -> str:
    """``market`` -> ``pg2_market``, ``toy`` -> ``pg2_toy``, a folder -> ``pg2_market``."""
    from reid_aug.dataset import is_toy_spec

    return "pg2_toy" if is_toy_spec(dataset) else "pg2_market"


def resolve_training(dataset: str, recipe: str | Path | None = None, overrides=(),
                     out_dir: str | Path | None = None) -> tuple[PG2Config, Path]:
    """Recipe (default ``pg2_<dataset>``) + dotted overrides -> ``(PG2Config, run folder)``.

    The run folder defaults to ``runs/<recipe stem>``.
    """
    recipe = recipe or default_recipe(str(dataset))
    cfg = load_config(PG2Config, recipe, list(overrides or ()))
    out = Path(out_dir) if out_dir is not None else Path("runs") / resolve_recipe(recipe).stem
    return cfg, out


# --------------------------------------------------------------------------- distributed
@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_spec: str) -> tuple[DistInfo, bool]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); returns (info, we_initialized)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), False
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not dist.is_initialized():
        use_cuda = device_spec.startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank), created


def _select_device(spec: str, dist_info: DistInfo) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and dist_info.enabled:
        spec = f"cuda:{dist_info.local_rank}"
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"runtime.device={spec!r} but CUDA is not available; use --set runtime.device=cpu")
    return device


# --------------------------------------------------------------------------- deterministic batches
class PairSchedule:
    """Which pairs (and flips) step ``s`` of a stage uses: a pure function of (seed, stage, s).

    The stream of pairs is the concatenation of per-epoch permutations of ``range(n_pairs)``;
    epoch ``e`` is drawn from ``torch.Generator().manual_seed(SeedSequence([seed, stage, e]))``, and
    so are its flip flags. Step ``s`` takes stream positions ``[s*B, (s+1)*B)``; DDP rank ``r`` of
    ``W`` takes the ``r``-th contiguous slice of ``B / W`` of them.
    """

    def __init__(self, n_pairs: int, batch_size: int, seed: int, stage_index: int, flip: bool,
                 rank: int = 0, world: int = 1):
        if n_pairs < 1:
            raise ValueError("no pairs to train on")
        if batch_size % world:
            raise ConfigError(f"train.batch_size={batch_size} is not divisible by the {world} DDP processes")
        self.n, self.batch, self.seed, self.stage_index, self.flip = n_pairs, batch_size, seed, stage_index, flip
        self.rank, self.world = rank, world
        self.local_batch = batch_size // world
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e not in self._cache:
            seed = int(np.random.SeedSequence([self.seed, self.stage_index, e]).generate_state(1)[0])
            gen = torch.Generator().manual_seed(seed)
            perm = torch.randperm(self.n, generator=gen).numpy()
            flips = (torch.rand(self.n, generator=gen) < 0.5).numpy() if self.flip else np.zeros(self.n, bool)
            self._cache = {e: (perm, flips)}  # one epoch at a time (steps run in order)
        return self._cache[e]

    def global_batch(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(pair indices (B,), flip flags (B,))`` of ``step``."""
        idx, flips = [], []
        pos, end = step * self.batch, (step + 1) * self.batch
        while pos < end:
            e, off = divmod(pos, self.n)
            take = min(end - pos, self.n - off)
            perm, fl = self._epoch(e)
            idx.append(perm[off:off + take])
            flips.append(fl[off:off + take])
            pos += take
        return np.concatenate(idx), np.concatenate(flips)

    def local_batch_of(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        idx, flips = self.global_batch(step)
        sl = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        return idx[sl], flips[sl]


class _StepBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's pair indices for steps ``start .. stop-1`` of a :class:`PairSchedule`."""

    def __init__(self, schedule: PairSchedule, start: int, stop: int):
        self.schedule, self.start, self.stop = schedule, start, stop

    def __iter__(self):
        for s in range(self.start, self.stop):
            yield self.schedule.local_batch_of(s)[0].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def _flip_batch(batch: dict, flips: torch.Tensor) -> dict:
    """Mirror the pairs flagged in ``flips`` (B,): both images, both pose maps and the target mask."""
    from reid_aug.pose.maps import flip_images, flip_keypoints, flip_pose_maps

    if not bool(flips.any()):
        return batch
    f = flips.view(-1, 1, 1, 1)
    out = dict(batch)
    for key in ("src_img", "tgt_img", "tgt_mask"):
        out[key] = torch.where(f, flip_images(batch[key]), batch[key])
    for key in ("src_pose", "tgt_pose"):
        out[key] = torch.where(f, flip_pose_maps(batch[key]), batch[key])
    width = batch["src_img"].shape[-1]
    for key in ("src_kp", "tgt_kp"):
        if key in batch:
            out[key] = torch.where(flips.view(-1, 1, 1), flip_keypoints(batch[key], width), batch[key])
    return out


# --------------------------------------------------------------------------- run-folder files
def _read_log_rows(path: Path) -> list[list[str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [r for r in rows[1:] if len(r) == len(LOG_COLUMNS)]  # drops a torn last line


class _CsvLog:
    """Append-only ``log.csv`` (flushed per row); on resume it is cut back to the checkpoint's rows."""

    def __init__(self, path: Path, keep_rows: int | None):
        self.path = path
        rows = _read_log_rows(path)[:keep_rows] if keep_rows is not None else []
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(LOG_COLUMNS)
        w.writerows(rows)
        atomic_write_text(path, buf.getvalue())
        self.rows = len(rows)
        self._f = open(path, "a", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")

    def write(self, row: dict) -> None:
        self._w.writerow(["" if row.get(c) is None else row[c] for c in LOG_COLUMNS])
        self._f.flush()
        self.rows += 1

    def close(self) -> None:
        self._f.close()


def _fmt(v: float) -> str:
    return f"{v:.6g}"




def sample_grid(src_img, tgt_pose, g1_img, g2_img, tgt_img, pose_mode: str = "pg2") -> np.ndarray:
    """Rows of ``source | target pose | G1 | G2 | target`` as a uint8 (rows*H, 5*W, 3) array.

    Images are (B,3,H,W) in [-1, 1]; ``g2_img`` may be None (a mid-grey column).
    """
    def to01(x):
        return ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)

    cols = [to01(src_img), pose_maps_to_rgb(tgt_pose.detach().float().cpu(), pose_mode), to01(g1_img),
            to01(g2_img) if g2_img is not None else torch.full_like(to01(g1_img), 0.5), to01(tgt_img)]
    grid = torch.cat(cols, dim=3)                       # (B,3,H,5W)
    grid = torch.cat(list(grid), dim=1)                 # (3,B*H,5W)
    return (grid.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def _save_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


@dataclasses.dataclass
class StageModules:
    """What one training step of a stage uses.

    ``g1``: G1's forward (frozen in stage "g2"); ``gen``: the trained generator's forward (G1 in
    "g1" / "g1+d", G2 in "g2"; possibly DDP-wrapped or compiled); ``d``: the raw discriminator
    (used with frozen weights for the G step); ``d_run``: D's forward for the D step.
    """

    g1: Callable
    gen: Callable
    opt_g: torch.optim.Optimizer
    d: nn.Module | None = None
    d_run: Callable | None = None
    opt_d: torch.optim.Optimizer | None = None


def _as_floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in terms.items()}


def train_step(stage: str, batch: dict, cfg: PG2Config, mods: StageModules, autocast=contextlib.nullcontext,
               check: Callable[[dict], dict] = _as_floats) -> dict[str, float]:
    """One optimisation step of ``stage`` on a batch dict (``src_img``, ``tgt_pose``, ``tgt_img``, ``tgt_mask``).

    ``check(terms)`` turns the loss terms into floats before any weight changes (the trainer's
    version averages over DDP ranks and raises on NaN/inf). Returns those floats.
    """
    src, pose, tgt, mask = batch["src_img"], batch["tgt_pose"], batch["tgt_img"], batch["tgt_mask"]
    if stage == "g1":
        with autocast():
            fake = mods.gen(src, pose)
        loss, terms = recon_loss(cfg.loss.g1, fake, tgt, mask)
        values = check({"loss": loss, **terms})
        mods.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        mods.opt_g.step()
        return values

    if stage == "g2":
        with torch.no_grad(), autocast():
            g1_img = mods.g1(src, pose)
        with autocast():
            fake = g1_img + mods.gen(g1_img, src)
        recon_kind = cfg.loss.g2
    else:  # "g1+d": one-stage adversarial G1
        with autocast():
            fake = mods.gen(src, pose)
        recon_kind = cfg.loss.g1
    official = cfg.loss.d_variant == "official"
    # Like the official code, D sees real, (condition,) and fake images in one batch, so that its
    # BatchNorm statistics mix them. The G step goes through the raw module with frozen weights
    # (no DDP hooks, no wasted weight gradients).
    real_parts = [tgt, src] if official else [tgt]
    b = tgt.shape[0]
    d = mods.d
    d.requires_grad_(False)
    with autocast():
        g_logits = d(torch.cat(real_parts + [fake], dim=0))
    d.requires_grad_(True)
    adv = bce_real(g_logits[-b:])
    recon, terms = recon_loss(recon_kind, fake, tgt, mask)
    g_loss = adv + cfg.loss.lambda_l1 * recon
    with autocast():
        d_logits = mods.d_run(torch.cat(real_parts + [fake.detach()], dim=0))
    d_loss, d_terms = discriminator_loss(d_logits[:b], d_logits[-b:], d_logits[b:2 * b] if official else None,
                                         cfg.loss.d_variant)
    values = check({"loss": g_loss, **terms, "adv": adv, "d_loss": d_loss, **d_terms})
    mods.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    mods.opt_g.step()
    mods.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    mods.opt_d.step()
    return values


# --------------------------------------------------------------------------- the trainer
class _Trainer:
    def __init__(self, cfg: PG2Config, dataset: str, run_dir: Path, resume: bool, step_hook: StepHook | None):
        self.cfg, self.dataset_spec, self.run_dir, self.step_hook = cfg, dataset, run_dir, step_hook
        self.dist, self._own_pg = _init_distributed(cfg.runtime.device)
        self.device = _select_device(cfg.runtime.device, self.dist)
        self.cuda = self.device.type == "cuda"
        if cfg.runtime.threads > 0:
            torch.set_num_threads(cfg.runtime.threads)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.amp = self.cuda and cfg.runtime.amp
        self.channels_last = self.cuda and cfg.runtime.channels_last
        self.resume = resume
        self.ckpt_file = run_dir / CHECKPOINT_NAME
        self.writer = None
        self.csv: _CsvLog | None = None
        self.start_time = time.monotonic()

    # ---------------------------------------------------------------- set-up
    def load_data(self) -> None:
        from reid_aug.dataset.market import load_dataset, resolve_dataset_root
        from reid_aug.pairs.pairs import pairs_sha256, test_pairs, train_pairs
        from reid_aug.pairs.torch_dataset import PosePairDataset

        m = self.cfg.model
        self.root = resolve_dataset_root(self.dataset_spec)
        self.index = load_dataset(self.root)
        self.pairs = train_pairs(self.index)
        if len(self.pairs) == 0:
            raise DatasetError(f"no training pairs in {self.index.image_root}: PG² trains on two images of one "
                               f"identity whose shoulders and hips are annotated (annotations/*annotation-train.csv)")
        self.data_info = {"spec": str(self.dataset_spec), "root": str(self.root), "n_pairs": int(len(self.pairs)),
                          "pairs_sha256": pairs_sha256(self.pairs)}
        self.train_set = PosePairDataset(self.index, self.pairs, flip=False, pose_mode=m.pose_mode,
                                         size=tuple(m.image_size))
        # Fixed sample pairs for the grids: held-out test pairs where there are any.
        try:
            sample_pairs, _ = test_pairs(self.index, n=self.cfg.train.n_samples, seed=self.cfg.train.seed)
        except DatasetError as e:
            log.warning("no test pairs for the sample grids (%s); using training pairs", e)
            sample_pairs = self.pairs
        sample_pairs = sample_pairs.iloc[: self.cfg.train.n_samples].reset_index(drop=True)
        sample_set = PosePairDataset(self.index, sample_pairs, flip=False, pose_mode=m.pose_mode,
                                     size=tuple(m.image_size))
        self.sample_batch = torch.utils.data.default_collate([sample_set[i] for i in range(len(sample_set))])

    def build(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.train.seed)
        self.nets: dict[str, nn.Module] = build_networks(cfg.model, ("g1",))
        self.stage_index, self.step, self.global_step = 0, 0, 0
        self.log_rows: int | None = None
        self.log_acc: dict = {}
        self.opt_state: dict | None = None
        if self.resume and self.ckpt_file.is_file():
            ckpt = load_checkpoint(self.ckpt_file)
            self._check_resumable(ckpt)
            for name, sd in ckpt["models"].items():
                if name not in self.nets:
                    self.nets.update(build_networks(cfg.model, (name,)))
                self.nets[name].load_state_dict(sd)
            self.stage_index, self.step = int(ckpt["stage_index"]), int(ckpt["step"])
            self.global_step = int(ckpt["global_step"])
            self.opt_state = ckpt.get("optimizers")
            self.log_rows = int(ckpt.get("log_rows", 0))
            self.log_acc = dict(ckpt.get("log_acc", {}))
            set_rng_state(ckpt["rng"])
            log.info("resuming %s at stage %s step %d (global step %d)", self.ckpt_file,
                     ckpt.get("stage"), self.step, self.global_step)
        elif self.ckpt_file.is_file() and not self.resume:
            raise TrainingError(f"{self.run_dir} already holds a run ({self.ckpt_file}); pass --resume to continue "
                                f"it, or --out NEW_FOLDER to start another")
        else:
            if self.resume:
                log.warning("--resume: no checkpoint in %s yet; starting from scratch", self.run_dir)
            if cfg.train.init_from:
                self._init_from(Path(cfg.train.init_from))
        for net in self.nets.values():
            net.to(self.device)

    def _init_from(self, path: Path) -> None:
        """Take over the finished first stage of another run (``train.init_from``): its networks' weights (G1; G1 and
        D after "g1+d"); this run starts at its second stage."""
        from reid_aug.config import from_dict
        from reid_aug.utils.io import sha256_file

        ckpt_file = path / CHECKPOINT_NAME if path.is_dir() else path
        src = load_checkpoint(ckpt_file)
        src_cfg = from_dict(PG2Config, src["config"])
        stages, src_stages = self.cfg.train.stages, tuple(src_cfg.train.stages)
        if len(stages) < 2:
            raise CheckpointError(f"train.init_from takes over the first stage of a two-stage run; this run's stages "
                                  f"are {list(stages)}")
        if stages[0] != src_stages[0] or int(src["stage_index"]) < 1:
            raise CheckpointError(
                f"train.init_from={ckpt_file}: it has no finished stage {stages[0]!r} to take over (its stages "
                f"{list(src_stages)}, finished {src.get('trained', [])})")
        shared = 1
        ours, theirs = self.cfg.model, src_cfg.model
        for field_name in ("image_size", "pose_mode"):
            if getattr(ours, field_name) != getattr(theirs, field_name):
                raise CheckpointError(f"train.init_from={ckpt_file} has model.{field_name}="
                                      f"{getattr(theirs, field_name)!r}, this run {getattr(ours, field_name)!r}")
        old_pairs = src.get("dataset", {}).get("pairs_sha256")
        if old_pairs not in (None, self.data_info["pairs_sha256"]):
            raise CheckpointError(f"train.init_from={ckpt_file} was trained on other pairs "
                                  f"({src['dataset'].get('spec')}: {src['dataset'].get('n_pairs')} pairs) than "
                                  f"{self.dataset_spec} gives ({self.data_info['n_pairs']})")
        nets = {"g1": ("g1",), "g1+d": ("g1", "d"), "g2": ("g2", "d")}
        names = sorted({n for st in stages[:shared] for n in nets[st]})
        for name in names:
            if name not in self.nets:
                self.nets.update(build_networks(self.cfg.model, (name,)))
            try:
                self.nets[name].load_state_dict(src["models"][name])
            except (KeyError, RuntimeError) as e:
                raise CheckpointError(f"train.init_from={ckpt_file}: its {name.upper()} does not fit this run's "
                                      f"model config (widths/levels must match): {str(e).splitlines()[0]}") from e
        self.stage_index = shared
        self.global_step = sum(src_cfg.train.iters(st) for st in stages[:shared])
        self.init_info = {"checkpoint": str(ckpt_file), "sha256": sha256_file(ckpt_file),
                          "stages": list(stages[:shared]), "networks": names, "global_step": self.global_step}
        log.info("train.init_from: %s from %s (stages %s, %d steps); starting at stage %s",
                 "+".join(n.upper() for n in names), ckpt_file, "+".join(stages[:shared]), self.global_step,
                 stages[shared])

    def _check_resumable(self, ckpt: dict) -> None:
        old, new = ckpt["config"], to_dict(self.cfg)
        diffs = config_differences(old, new)
        fatal = [d for d in diffs if any(d == f or d.startswith(f + ".") for f in IDENTITY_FIELDS)]
        if fatal:
            raise CheckpointError(f"{self.ckpt_file} was trained with a different config ({', '.join(fatal)} "
                                  f"differ); resume with the run's own config ({self.run_dir / 'config.yaml'}) or "
                                  f"start a new run with --out")
        if diffs:
            log.warning("resuming with changed settings: %s", ", ".join(diffs))
        old_data = ckpt.get("dataset", {})
        if old_data.get("pairs_sha256") not in (None, self.data_info["pairs_sha256"]):
            raise CheckpointError(f"{self.ckpt_file} was trained on other pairs ({old_data.get('spec')}: "
                                  f"{old_data.get('n_pairs')} pairs) than {self.dataset_spec} gives now "
                                  f"({self.data_info['n_pairs']}); resume on the same dataset")

    def _prepare(self, net: nn.Module, train: bool) -> nn.Module:
        """The callable used in the loop: channels_last, DDP (when trained), torch.compile."""
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        run = net
        if train and self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            run = DDP(net, device_ids=[self.device.index] if self.cuda else None)
        if self.cfg.runtime.compile:
            run = torch.compile(run)
        return run

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.amp else contextlib.nullcontext()

    def _to_device(self, batch: dict) -> dict:
        out = {}
        for k, v in batch.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device, non_blocking=True)
                if self.channels_last and v.ndim == 4:
                    v = v.contiguous(memory_format=torch.channels_last)
            out[k] = v
        return out

    # ---------------------------------------------------------------- files
    def _open_outputs(self) -> None:
        if not self.dist.main:
            return
        self.csv = _CsvLog(self.run_dir / "log.csv", self.log_rows)
        if self.cfg.train.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.global_step or None)
            except ImportError as e:  # tensorboard is optional at run time
                log.warning("TensorBoard unavailable (%s); writing log.csv and PNG grids only", e)

    def _close_outputs(self) -> None:
        if self.csv is not None:
            self.csv.close()
            self.csv = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def trained_stages(self) -> list[str]:
        stages = self.cfg.train.stages
        done = list(stages[: self.stage_index])
        if self.stage_index < len(stages) and self.step > 0:
            done.append(stages[self.stage_index])
        return done

    def save(self, optimizers: dict | None) -> None:
        """Checkpoint the state between steps (rank 0); refuses non-finite weights."""
        for name, net in self.nets.items():
            bad = [n for n, p in net.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
            if bad:
                raise TrainingDivergedError(
                    f"{name.upper()} weights became NaN/inf ({bad[0]}, ...) at global step {self.global_step}; "
                    f"not overwriting the last good checkpoint {self.ckpt_file}. Lower train.lr / train.d_lr, "
                    f"then --resume")
        if not self.dist.main:
            return
        stages = self.cfg.train.stages
        done = self.stage_index >= len(stages)
        state = {
            "config": to_dict(self.cfg),
            "image_size": list(self.cfg.model.image_size),
            "pose_mode": self.cfg.model.pose_mode,
            "stage_index": self.stage_index,
            "stage": "done" if done else stages[self.stage_index],
            "step": self.step,
            "global_step": self.global_step,
            "trained": self.trained_stages(),
            "complete": done,
            "models": {k: {n: t.detach().cpu().contiguous() for n, t in v.state_dict().items()}
                       for k, v in self.nets.items()},
            "optimizers": optimizers or {},
            "rng": get_rng_state(),
            "sampler": {"stage": "done" if done else stages[self.stage_index],
                        "position": self.step * self.cfg.train.batch_size, "seed": self.cfg.train.seed},
            "dataset": self.data_info,
            "log_rows": self.csv.rows if self.csv else 0,
            "log_acc": dict(self.log_acc),
        }
        save_checkpoint(state, self.ckpt_file)
        log.debug("checkpoint written at global step %d", self.global_step)

    @torch.no_grad()
    def write_samples(self) -> None:
        if not self.dist.main:
            return
        b = self._to_device(self.sample_batch)
        g1, g2 = self.nets["g1"], self.nets.get("g2")
        with self._autocast():
            g1_img = g1(b["src_img"], b["tgt_pose"]).float()
            g2_img = (g1_img + g2(g1_img, b["src_img"]).float()) if g2 is not None and "g2" in self.trained_stages() \
                else None
        grid = sample_grid(b["src_img"], b["tgt_pose"], g1_img, g2_img, b["tgt_img"], self.cfg.model.pose_mode)
        _save_png(grid, self.run_dir / "samples" / f"step_{self.global_step:06d}.png")
        if self.writer is not None:
            self.writer.add_image("samples", grid, self.global_step, dataformats="HWC")

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        stages = self.cfg.train.stages
        self._open_outputs()
        try:
            if self.stage_index >= len(stages):
                log.info("%s is already complete (global step %d)", self.run_dir, self.global_step)
                return
            if self.global_step == 0:
                self.write_samples()
            while self.stage_index < len(stages):
                stopped = self.run_stage(stages[self.stage_index])
                if stopped:
                    return
                self.stage_index, self.step, self.opt_state = self.stage_index + 1, 0, None
                self.save(None)
            log.info("training complete: %s", self.run_dir)
        finally:
            self._close_outputs()

    def _stage_networks(self, stage: str) -> None:
        """Create the networks a stage starts (seeded, so a resumed run creates the same ones)."""
        need = {"g1": (), "g2": ("g2", "d"), "g1+d": ("d",)}[stage]
        missing = [n for n in need if n not in self.nets]
        if missing:
            seed = int(np.random.SeedSequence([self.cfg.train.seed, self.stage_index, 1 << 20]).generate_state(1)[0])
            torch.manual_seed(seed)
            self.nets.update({k: v.to(self.device) for k, v in build_networks(self.cfg.model, missing).items()})

    def run_stage(self, stage: str) -> bool:
        """Train one stage from ``self.step``; returns True when stopped early by ``train.max_minutes``."""
        cfg, t = self.cfg, self.cfg.train
        total = t.iters(stage)
        self._stage_networks(stage)
        g1 = self.nets["g1"]
        gen_name = "g2" if stage == "g2" else "g1"
        gen = self.nets[gen_name]
        d = self.nets.get("d") if stage in ("g2", "g1+d") else None
        # Stage II: G1 is frozen (eval mode, no grads).
        g1.requires_grad_(stage != "g2")
        gen.requires_grad_(True)
        gen.train()
        if stage == "g2":
            g1.eval()
        gen_run = self._prepare(gen, train=True)
        g1_run = g1 if stage != "g2" else self._prepare(g1, train=False)
        d_run = None
        if d is not None:
            d.requires_grad_(True)
            d.train()
            d_run = self._prepare(d, train=True)
        opt_g = torch.optim.Adam(gen.parameters(), lr=t.gen_lr(stage), betas=tuple(t.betas))
        opt_d = torch.optim.Adam(d.parameters(), lr=t.d_lr, betas=tuple(t.betas)) if d is not None else None
        if self.opt_state and self.opt_state.get("stage") == stage:
            opt_g.load_state_dict(self.opt_state["g"])
            if opt_d is not None:
                opt_d.load_state_dict(self.opt_state["d"])

        def optimizer_states():
            out = {"stage": stage, "g": opt_g.state_dict()}
            if opt_d is not None:
                out["d"] = opt_d.state_dict()
            return out

        mods = StageModules(g1=g1_run, gen=gen_run, opt_g=opt_g, d=d, d_run=d_run, opt_d=opt_d)
        schedule = PairSchedule(len(self.pairs), t.batch_size, t.seed, self.stage_index, t.flip,
                                self.dist.rank, self.dist.world)
        if self.step >= total:
            return False
        loader = torch.utils.data.DataLoader(
            self.train_set, batch_sampler=_StepBatchSampler(schedule, self.step, total),
            num_workers=t.num_workers, pin_memory=self.cuda, persistent_workers=False,
            generator=torch.Generator(),  # keeps the global torch RNG out of the loader
        )
        from tqdm import tqdm

        bar = tqdm(total=total, initial=self.step, desc=f"PG² {stage}", unit="it", dynamic_ncols=True,
                   disable=None if self.dist.main else True)
        interval_start, interval_steps = time.monotonic(), 0
        try:
            for batch in loader:
                flips = torch.from_numpy(schedule.local_batch_of(self.step)[1])
                batch = self._to_device(_flip_batch(batch, flips))
                values = train_step(stage, batch, cfg, mods, self._autocast,
                                    lambda terms: self._check_finite(stage, terms))
                self.step += 1
                self.global_step += 1
                interval_steps += 1
                for k, v in values.items():
                    self.log_acc[k] = self.log_acc.get(k, 0.0) + v
                self.log_acc["n"] = self.log_acc.get("n", 0) + 1
                bar.update(1)
                if self.step % t.log_every == 0 or self.step == total:
                    elapsed = time.monotonic() - interval_start
                    self._log_interval(stage, interval_steps * t.batch_size / max(elapsed, 1e-9), bar)
                    interval_start, interval_steps = time.monotonic(), 0
                stop = False
                if t.max_minutes > 0:
                    stop = self._agree(time.monotonic() - self.start_time > 60 * t.max_minutes)
                last = self.step == total
                if self.step % t.checkpoint_every == 0 or (stop and not last):
                    self.save(optimizer_states())
                if self.step % t.sample_every == 0 or last:
                    self.write_samples()
                if self.step_hook is not None:
                    self.step_hook(stage, self.step, values)
                if stop and not last:
                    if self.step % t.sample_every:
                        self.write_samples()
                    log.info("stopped after %.1f min (train.max_minutes) at %s step %d; continue with --resume",
                             t.max_minutes, stage, self.step)
                    return True
        finally:
            bar.close()
        return False

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision for all ranks (time-based stops must not split the group)."""
        if not self.dist.enabled:
            return flag
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag and self.dist.main else 0.0], device=self.device)
        dist.broadcast(t, 0)
        return bool(t.item())

    def _log_interval(self, stage: str, pairs_per_s: float, bar) -> None:
        n = self.log_acc.pop("n", 0)
        means = {k: v / max(n, 1) for k, v in self.log_acc.items()}
        self.log_acc = {}
        if not self.dist.main:
            return
        row = {"stage": stage, "step": self.step, "global_step": self.global_step,
               "pairs_per_s": f"{pairs_per_s:.2f}", "wall_s": f"{time.monotonic() - self.start_time:.1f}"}
        row.update({k: _fmt(v) for k, v in means.items()})
        if self.csv is not None:
            self.csv.write(row)
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"{stage}/{k}", v, self.global_step)
            self.writer.add_scalar(f"{stage}/pairs_per_s", pairs_per_s, self.global_step)
        shown = ("loss", "posemask_l1", "d_loss")
        bar.set_postfix({k: f"{means[k]:.4f}" for k in shown if k in means})

    def _check_finite(self, stage: str, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """Average the loss terms over DDP ranks and stop on NaN/inf (all ranks agree)."""
        names = list(terms)
        vals = torch.stack([terms[k].detach().float() for k in names])
        if self.dist.enabled:
            import torch.distributed as dist

            dist.all_reduce(vals)
            vals = vals / self.dist.world
        vals = vals.cpu()
        if not torch.isfinite(vals).all():
            shown = ", ".join(f"{k}={v:.4g}" for k, v in zip(names, vals.tolist()))
            kept = (f"the last good checkpoint {self.ckpt_file} is kept" if self.ckpt_file.is_file()
                    else "no checkpoint had been written yet")
            raise TrainingDivergedError(
                f"non-finite loss at stage {stage} step {self.step + 1} (global step {self.global_step + 1}): "
                f"{shown}; {kept}. Lower train.lr / train.d_lr (or check the data), then --resume")
        return dict(zip(names, vals.tolist()))

    def close(self) -> None:
        if self._own_pg:
            import torch.distributed as dist

            dist.destroy_process_group()


def _write_run_files(cfg: PG2Config, dataset: str, run_dir: Path, data_info: dict,
                     init_info: dict | None = None) -> None:
    save_config(cfg, run_dir / "config.yaml")
    info = {"dataset": dataset, "data": data_info, "torch": torch.__version__,
            "world_size": int(os.environ.get("WORLD_SIZE", "1"))}
    if init_info is None and (run_dir / "run.json").is_file():   # a resumed init_from run keeps its record
        try:
            init_info = json.loads((run_dir / "run.json").read_text()).get("init_from")
        except ValueError:
            init_info = None
    if init_info:
        info["init_from"] = init_info
    atomic_write_text(run_dir / "run.json", json.dumps(info, indent=2) + "\n")


def train_generator(cfg: PG2Config, dataset: str, out_dir: str | Path, resume: bool = False, dry_run: bool = False,
                    *, step_hook: StepHook | None = None) -> Path:
    """Train PG² on ``dataset`` (market | toy | PATH) into the run folder ``out_dir``.

    ``resume`` continues from ``out_dir/checkpoint.pt`` (same config and pairs required);
    ``dry_run`` resolves everything, runs one forward pass on one batch and stops.
    ``step_hook(stage, step, values)`` is called after every step (tests use it to interrupt a run).
    Returns the run folder. Raises :class:`TrainingDivergedError` on a NaN/inf loss.
    """
    run_dir = Path(out_dir)
    trainer = _Trainer(cfg, dataset, run_dir, resume, step_hook)
    try:
        trainer.load_data()
        if trainer.dist.main:
            run_dir.mkdir(parents=True, exist_ok=True)
        trainer.build()
        if trainer.dist.main:
            _write_run_files(cfg, dataset, run_dir, trainer.data_info, getattr(trainer, "init_info", None))
        if dry_run:
            _dry_run(trainer)
            return run_dir
        trainer.run()
    finally:
        trainer.close()
    return run_dir


@torch.no_grad()
def _dry_run(trainer: _Trainer) -> None:
    cfg = trainer.cfg
    sizes = {k: sum(p.numel() for p in v.parameters()) for k, v in
             build_networks(cfg.model).items()}
    b = trainer._to_device(trainer.sample_batch)
    out = trainer.nets["g1"](b["src_img"], b["tgt_pose"])
    log.info("dry run: %s pairs from %s; parameters %s; G1 output %s; device %s; stages %s (%s iterations)",
             trainer.data_info["n_pairs"], trainer.root,
             ", ".join(f"{k.upper()} {v / 1e6:.2f}M" for k, v in sizes.items()), tuple(out.shape), trainer.device,
             "+".join(cfg.train.stages), "+".join(str(cfg.train.iters(s)) for s in cfg.train.stages))
    if not math.isfinite(float(out.abs().max())):
        raise TrainingDivergedError("dry run: G1 produced NaN/inf on the first batch")
