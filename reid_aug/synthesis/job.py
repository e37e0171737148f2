"""Everything around the generation loop: resolve and check the inputs, plan, prepare the folder,
cut this shard's work; afterwards hash, write and merge the manifests, draw the contact sheet."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_aug.errors import CheckpointError, DatasetError
from reid_aug.records import SynthesisDescriptor
from reid_aug.rundir import SynthesizedSet
from reid_aug.synthesis.config import SynthesisConfig, check_config
from reid_aug.synthesis.folder import (
    contact_sheet,
    hash_files,
    manifest_frame,
    merge_shard_manifests,
    prepare_out_dir,
    remove_stale_temps,
    write_manifest,
)
from reid_aug.synthesis.inputs import Inputs, resolve_inputs
from reid_aug.synthesis.plan import SynthesisPlan, build_plan, default_block_identities, plan_batches, uses_clusters

log = logging.getLogger(__name__)


@dataclass
class SynthesisJob:
    """One process's share of a run: the resolved ``cfg``, the loaded generator ``gen`` and its
    ``stage``, the ``device``, the whole ``plan``, the folder ``sset``, this shard's ``batches``
    (plan row indices, those with something to write), ``todo`` ((N,) bool over the plan: file
    absent), ``shard_rows`` (this shard's rows, sorted) and ``skipped_existing``."""

    cfg: SynthesisConfig
    gen: object
    stage: str
    device: object
    plan: SynthesisPlan
    sset: SynthesizedSet
    shard: tuple[int, int] | None
    batches: list
    todo: np.ndarray
    shard_rows: np.ndarray
    skipped_existing: int
    t_start: float

    @property
    def n_todo(self) -> int:
        return int(self.todo[self.shard_rows].sum())

    @property
    def label(self) -> str:
        return f" shard {self.shard[0]}/{self.shard[1]}" if self.shard else ""

    @property
    def on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")


def _native_size(path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"cannot read image {path} ({type(e).__name__}: {e}); replace it or run "
                           f"`reid-aug prepare DATASET --check-images`") from None


def _check_generator_fits(inputs: Inputs, plan: SynthesisPlan) -> str:
    """The stage to run (the requested one, or the last trained); the generator's size must be the images'."""
    cfg, gen = inputs.cfg, inputs.gen
    stage = cfg.stage or gen.stages[-1]
    if stage not in gen.stages:
        raise CheckpointError(f"{cfg.generator} has no trained {stage.upper()} (trained: {', '.join(gen.stages)}); "
                              f"pass --stage {gen.stages[-1]}")
    h, w = (int(v) for v in gen.image_size)
    first_src = plan.source_paths[plan.table["source"].iloc[0]]
    native = _native_size(first_src)
    if native != (h, w):
        raise CheckpointError(f"generator {cfg.generator} was trained at {h}x{w} but the images of {inputs.root} are "
                              f"{native[0]}x{native[1]} (e.g. {first_src}); use a generator trained on this "
                              f"dataset's resolution")
    return stage


def make_descriptor(inputs: Inputs, plan: SynthesisPlan, stage: str, block_identities: int) -> SynthesisDescriptor:
    """What decides the images (``run``), how the work is cut (``layout``) and notes (``info``)."""
    cfg, gen = inputs.cfg, inputs.gen
    run = {"generator_sha256": gen.sha256, "stage": stage, "image_size": [int(v) for v in gen.image_size],
           "dataset_fingerprint": plan.dataset_fingerprint, "poses_per_id": cfg.poses_per_id,
           "strategy": cfg.strategy, "seed": cfg.seed,
           "n_clusters": plan.n_clusters if uses_clusters(cfg.strategy) else None,
           "max_identities": cfg.max_identities, "jpeg_quality": cfg.jpeg_quality, "plan_sha256": plan.sha256,
           "n_images": int(len(plan.table)), "n_identities": len(plan.identities)}
    info = {"generator": str(getattr(gen, "path", cfg.generator)), "dataset": cfg.dataset,
            "dataset_root": str(inputs.root), "skipped_identities": [int(p) for p in plan.skipped],
            "partial_pose_identities": [int(p) for p in plan.partial_pose_identities], **inputs.info}
    return SynthesisDescriptor(run=run, layout={"block_identities": int(block_identities)}, info=info)


def _cut_work(job: SynthesisJob, block_identities: int) -> SynthesisJob:
    """This shard's batches, the files still to write; removes a killed writer's temp files."""
    table = job.plan.table
    batches = plan_batches(table, block_identities, job.cfg.batch_size, job.shard)
    job.shard_rows = np.sort(np.concatenate(batches)) if batches else np.zeros(0, dtype=np.int64)
    img_dir = job.sset.images
    removed = remove_stale_temps(img_dir, set(table["file"].iloc[job.shard_rows]))
    on_disk = {e.name for e in os.scandir(img_dir) if not e.name.startswith(".")}
    extra = on_disk - set(table["file"])
    if extra:
        log.warning("%s holds %d file(s) that are not part of this run (e.g. %s); they stay, and --verify "
                    "reports them", img_dir, len(extra), sorted(extra)[0])
    job.todo = np.array([f not in on_disk for f in table["file"]], dtype=bool)
    job.batches = [b for b in batches if job.todo[b].any()]
    job.skipped_existing = len(job.shard_rows) - job.n_todo
    log.info("synthesis%s: %d images planned for %d identities (%d skipped), %d already on disk, %d to write, "
             "%d stale temp file(s) removed; device %s, stage %s", job.label, len(job.shard_rows),
             len(job.plan.identities), len(job.plan.skipped), job.skipped_existing, job.n_todo, removed,
             job.device, job.stage)
    return job


def prepare_job(cfg: SynthesisConfig) -> SynthesisJob:
    """Check every option, pick and load the generator and dataset, plan the run, claim the folder
    (descriptor + resolved ``config.yaml``) and cut this shard's work. Nothing is written before the
    inputs are known to fit."""
    from reid_aug.config import save_config
    from reid_aug.dataset.market import load_dataset
    from reid_aug.runtime import resolve_device

    t_start = time.perf_counter()
    check_config(cfg)
    shard = cfg.shard_spec
    device = resolve_device(cfg.device)
    inputs = resolve_inputs(cfg, device)
    cfg = inputs.cfg
    plan = build_plan(load_dataset(inputs.root), cfg.poses_per_id, cfg.strategy, cfg.seed, cfg.n_clusters,
                      cfg.max_identities)
    stage = _check_generator_fits(inputs, plan)
    sset = SynthesizedSet(cfg.out)
    block = default_block_identities(cfg.batch_size, cfg.poses_per_id, len(plan.identities))
    desc = prepare_out_dir(sset.path, make_descriptor(inputs, plan, stage, block))
    save_config(cfg, sset.config)
    sset.images.mkdir(parents=True, exist_ok=True)
    job = SynthesisJob(cfg, inputs.gen, stage, device, plan, sset, shard, [], np.zeros(0, bool),
                       np.zeros(0, np.int64), 0, t_start)
    return _cut_work(job, int(desc.layout["block_identities"]))


def _write_manifests(job: SynthesisJob, records: dict) -> tuple[Path | None, Path | None]:
    """This shard's manifest (hashes of the bytes written now, or of the files found on disk); the merged
    manifest and the contact sheet once the run is complete. Returns their paths (None while incomplete)."""
    shard_table = job.plan.table.iloc[job.shard_rows]
    need_hash = [job.sset.images / f for f in shard_table["file"] if f not in records]
    disk = dict(zip((p.name for p in need_hash), hash_files(need_hash, job.cfg.workers)))
    hashes = [(records[f].sha256, records[f].bytes) if f in records else disk[f] for f in shard_table["file"]]
    meta = {"strategy": job.cfg.strategy, "seed": job.cfg.seed, "stage": job.stage,
            "generator_sha256": job.gen.sha256}
    frame = manifest_frame(shard_table, meta, hashes)
    if job.shard is not None and job.shard[1] > 1:
        write_manifest(frame, job.sset.shard_manifest(*job.shard))
        merged = merge_shard_manifests(job.sset.path, job.shard[1], job.plan.table["file"].tolist())
    else:
        write_manifest(frame, job.sset.manifest)
        merged = frame
    if merged is None:
        return None, None
    return job.sset.manifest, contact_sheet(job.sset.path, merged, job.plan.source_paths, job.cfg.contact_sheet_ids)


def finish_job(job: SynthesisJob, records: dict, timing: dict, written: int) -> dict:
    """Write the manifests and the contact sheet; the run's summary (see :func:`~reid_aug.synthesis.synthesize.synthesize`)."""
    manifest_path, sheet = _write_manifests(job, records)
    wall = time.perf_counter() - job.t_start
    timing["wall"] = wall
    plan = job.plan
    summary = {
        "written": written,
        "skipped_existing": job.skipped_existing,
        "out_dir": str(job.sset.path),
        "manifest": str(manifest_path) if manifest_path else None,
        "contact_sheet": str(sheet) if sheet else None,
        "n_planned": int(len(job.shard_rows)),
        "n_images": int(len(plan.table)),
        "identities": len(plan.identities),
        "skipped_identities": [int(p) for p in plan.skipped],
        "partial_pose_identities": [int(p) for p in plan.partial_pose_identities],
        "shard": list(job.shard) if job.shard else None,
        "device": str(job.device),
        "stage": job.stage,
        "timings": {k: round(float(v), 4) for k, v in timing.items()},
        "images_per_s": round(written / wall, 2) if wall > 0 else None,
    }
    log.info("synthesis%s done: %d written, %d already there, %.1f images/s; manifest %s", job.label, written,
             job.skipped_existing, summary["images_per_s"] or 0.0, manifest_path or "(waiting for other shards)")
    return summary
