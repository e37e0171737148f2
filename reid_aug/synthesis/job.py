"""Everything around the generation loop: resolve and check the inputs, plan, prepare the folder,
cut this shard's work; afterwards hash, write and merge the manifests, draw the contact sheet."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_aug.errors import CheckpointError
from reid_aug.records import SynthesisDescriptor
from reid_aug.rundir import SynthesizedSet, dataset_label
from reid_aug.synthesis.config import SynthesisConfig, check_config
from reid_aug.synthesis.folder import (
    contact_sheet,
    hash_files,
    manifest_frame,
    merge_shard_manifests,
    prepare_out_dir,
    read_descriptor,
    remove_stale_temps,
    write_manifest,
)
from reid_aug.synthesis.filter import check_filter_model, reapply_recorded_filter
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
    backgrounds: object = None      # a BackgroundPicker for a background-conditioned generator (defgan use_bg)

    @property
    def n_todo(self) -> int:
        return int(self.todo[self.shard_rows].sum())

    @property
    def label(self) -> str:
        return f" shard {self.shard[0]}/{self.shard[1]}" if self.shard else ""

    @property
    def on_cuda(self) -> bool:
        return str(self.device).startswith("cuda")


SIZE_POLICY = ("every source image is resized (PIL bilinear, aspect ratio not kept) to the generator's size "
               "and every image is written at that size; target keypoints are rescaled from their own image's size")


def _native_sizes(plan: SynthesisPlan, sample: int = 256) -> dict:
    """What the source images' own sizes are (header reads of up to ``sample`` evenly spread sources)."""
    from reid_aug.synthesis.plan import image_sizes

    paths = list(plan.source_paths.values())
    picked = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, min(sample, len(paths))).astype(int))]
    sizes = np.asarray(image_sizes(picked), dtype=np.int64)
    distinct = np.unique(sizes, axis=0)
    return {"checked": len(picked), "of": len(paths), "distinct": int(len(distinct)),
            "min": sizes.min(axis=0).tolist(), "max": sizes.max(axis=0).tolist()}


def _check_stage(inputs: Inputs) -> str:
    """The stage to run: the requested one, or the last trained."""
    cfg, gen = inputs.cfg, inputs.gen
    stage = cfg.stage or gen.stages[-1]
    if stage not in gen.stages:
        raise CheckpointError(f"{cfg.generator} has no trained {stage.upper()} (trained: {', '.join(gen.stages)}); "
                              f"pass --stage {gen.stages[-1]}")
    return stage


def _source_size(inputs: Inputs, plan: SynthesisPlan) -> dict:
    """The descriptor's ``source_size``: the policy and the sources' own sizes (said when they differ)."""
    native = _native_sizes(plan)
    h, w = (int(v) for v in inputs.gen.image_size)
    if native["distinct"] > 1 or native["min"] != [h, w]:
        log.info("source images are %s (%d sizes among %d checked); they are resized to the generator's %dx%d",
                 "x".join(map(str, native["min"])) if native["distinct"] == 1 else
                 f"{native['min'][0]}x{native['min'][1]} to {native['max'][0]}x{native['max'][1]}",
                 native["distinct"], native["checked"], h, w)
    return {"policy": SIZE_POLICY, "generator": [h, w], "native": native}


def make_descriptor(inputs: Inputs, plan: SynthesisPlan, stage: str, block_identities: int,
                    extra: dict | None = None) -> SynthesisDescriptor:
    """What decides the images (``run``), how the work is cut (``layout``) and notes (``info``).

    ``extra``: ``{"run": {...}, "info": {...}}`` added by the options of the run (per-image K, subset,
    pose bank, every-image sources; generator regime, source sizes); keys of options left at their
    default are absent, so folders of earlier versions stay resumable."""
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
    if cfg.strategy == "rotate":
        run["angles"] = [float(a) for a in cfg.angles]
    run.update((extra or {}).get("run", {}))
    info.update((extra or {}).get("info", {}))
    return SynthesisDescriptor(run=run, layout={"block_identities": int(block_identities)}, info=info)


def _backgrounds(inputs: Inputs, plan: SynthesisPlan):
    """The background picker of a background-conditioned generator, over the plan's own source images (so a
    low-data subset stays closed: no dropped image lends its background); None for other generators."""
    if inputs.gen.background_grow is None:
        return None
    import pandas as pd

    from reid_aug.generator.defgan.background import BackgroundPicker
    from reid_aug.keypoints.skeleton import TORSO_JOINTS

    first = plan.table.drop_duplicates("source")
    table = pd.DataFrame({"name": first["source"], "path": [plan.source_paths[n] for n in first["source"]],
                          "pid": first["pid"], "camid": first["camid"]})
    table["pose_ok"] = [bool(np.all(plan.source_kps[n][list(TORSO_JOINTS)] >= 0)) for n in table["name"]]
    return BackgroundPicker(table, plan.source_kps, inputs.cfg.seed, inputs.gen.background_grow)


def _options_record(inputs: Inputs, index, plan: SynthesisPlan, every_image: bool, regime: dict) -> dict:
    """The descriptor entries of the run's options (see :func:`make_descriptor`)."""
    from reid_aug.dataset.regime import subset_record

    cfg = inputs.cfg
    run = {}
    if cfg.per_image:
        run.update(per_image=int(cfg.per_image), poses_per_id=None)
    if cfg.subset:
        run["subset"] = subset_record(index, *cfg.subset)
    if inputs.bank is not None:
        run["pose_bank"] = inputs.bank_run
    if every_image:
        run["every_image"] = True
    info = {**regime, "n_sources": plan.n_sources, "source_size": _source_size(inputs, plan),
            "pose_bank_root": str(inputs.bank_root or inputs.root), "exclude_own_poses": plan.exclude_own}
    if "angle" in plan.table.columns:       # the view strategies: identities per number of views, before/after
        from reid_aug.synthesis.view_strategies import view_shares_before_after

        info["identities_by_number_of_views"] = view_shares_before_after(index, plan)
    if inputs.gen.background_grow is not None:
        info["background"] = (f"another source image of the synthesized image's camera (another identity), its "
                              f"person cut out (pose mask grown {inputs.gen.background_grow} px), picked by "
                              f"sha256(seed, file)")
    if cfg.subset:
        info["target_poses"] = (f"the pose bank of {dataset_label(cfg.pose_bank)}" if inputs.bank is not None else
                                "the dataset's own train split: every image with a full torso, also those the "
                                "subset drops (poses only, never their appearance)")
    return {"run": run, "info": info}


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


def _plan(inputs: Inputs, index) -> tuple[SynthesisPlan, bool, dict]:
    """The run's plan, whether every image is a source, and the generator's regime (refuses a leak)."""
    from reid_aug.dataset.regime import kept_train
    from reid_aug.synthesis.lineage import generator_regime

    cfg = inputs.cfg
    regime = generator_regime(inputs, index, cfg)
    keep = kept_train(index, *cfg.subset)["name"].tolist() if cfg.subset else None
    # A generator that never reads the source pose can start from any image once the target poses
    # come from elsewhere (another dataset's bank) or every image must be used (K per image).
    every_image = not inputs.gen.family.conditions and (inputs.bank is not None or bool(cfg.per_image))
    plan = build_plan(index, cfg.poses_per_id, cfg.strategy, cfg.seed, cfg.n_clusters, cfg.max_identities,
                      inputs.bank, per_image=cfg.per_image, keep=keep, every_image=every_image,
                      image_size=tuple(int(v) for v in inputs.gen.image_size), angles=cfg.angles)
    return plan, every_image, regime


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
    index = load_dataset(inputs.root, annotations_dir=inputs.annotations)
    plan, every_image, regime = _plan(inputs, index)
    if inputs.gen.family.conditions and plan.partial_pose_identities:
        log.warning("%d identities have no source image with both shoulders and hips: %s's deformable skips get "
                    "no transform for their missing parts (those parts add nothing); they are synthesized anyway "
                    "and listed as partial_pose_identities in the descriptor", len(plan.partial_pose_identities),
                    inputs.gen.family.name)
    stage = _check_stage(inputs)
    if cfg.filter.model is not None:
        check_filter_model(cfg.filter.model, index, cfg.subset)
    sset = SynthesizedSet(cfg.out)
    per_identity = -(-len(plan.table) // max(1, len(plan.identities)))
    block = default_block_identities(cfg.batch_size, per_identity, len(plan.identities))
    extra = _options_record(inputs, index, plan, every_image, regime)
    desc = prepare_out_dir(sset.path, make_descriptor(inputs, plan, stage, block, extra))
    save_config(cfg, sset.config)
    sset.images.mkdir(parents=True, exist_ok=True)
    job = SynthesisJob(cfg, inputs.gen, stage, device, plan, sset, shard, [], np.zeros(0, bool),
                       np.zeros(0, np.int64), 0, t_start, _backgrounds(inputs, plan))
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
    reapply_recorded_filter(job.sset, merged, read_descriptor(job.sset.path))     # a filtered set stays filtered
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
        "filter": None,
    }
    if manifest_path is not None and job.cfg.filter.model is not None:
        from reid_aug.synthesis.filter import filter_set

        summary["filter"] = filter_set(job.sset.path, job.cfg.filter, job.device)
    log.info("synthesis%s done: %d written, %d already there, %.1f images/s; manifest %s", job.label, written,
             job.skipped_existing, summary["images_per_s"] or 0.0, manifest_path or "(waiting for other shards)")
    return summary
