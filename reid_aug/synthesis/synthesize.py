"""``reid-aug synthesize``: K pose-transferred images per training identity (or per training image with
``per_image``), as a Market-layout folder; optionally filtered by a Re-ID model (``filter.model``).

    cfg = load_synthesis_config(overrides=["poses_per_id=10"])     # recipes/synthesize.yaml + overrides
    summary = synthesize(cfg)

The modules of the package, in the order of the data flow:

- :mod:`~reid_aug.synthesis.config`: :class:`SynthesisConfig`, its checks, shards;
- :mod:`~reid_aug.synthesis.inputs`: which generator (the newest finished run by default), which
  dataset (the generator's by default), cross-dataset warning, another dataset's pose bank;
- :mod:`~reid_aug.synthesis.lineage`: the low-data regime's check of what the generator saw;
- :mod:`~reid_aug.synthesis.plan`: sources, target poses (:mod:`~reid_aug.synthesis.strategies` over
  :mod:`~reid_aug.synthesis.posebank`), file names (:mod:`~reid_aug.synthesis.naming`), blocks, batches;
- :mod:`~reid_aug.synthesis.folder`: descriptor, manifests, contact sheet; :mod:`~reid_aug.synthesis.verify`;
- :mod:`~reid_aug.synthesis.filter`: scores and the kept images (run once the set is complete);
- :mod:`~reid_aug.synthesis.job`: the work around the loop; this module: the loop;
- :mod:`~reid_aug.synthesis.writer`: the bounded pool of atomic JPEG writers.

Source images are read (and, on a CPU, their target pose maps drawn) in loader threads a few
batches ahead of the generator, and the JPEGs are encoded and written in writer threads behind it,
so the generator waits on neither.
"""
from __future__ import annotations

import collections
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reid_aug.synthesis.config import SynthesisConfig, load_synthesis_config  # noqa: F401 - the entry points
from reid_aug.synthesis.job import SynthesisJob, finish_job, prepare_job
from reid_aug.synthesis.verify import verify_synthesis  # noqa: F401 - `synthesize --verify`


class BatchLoader:
    """Iterates over a job's batches as ``(rows, src, pose, extra)``: source images (B,3,H,W) in [-1, 1],
    target poses (B,18,H,W) maps on a CPU, or (B,18,2) keypoints on CUDA (drawn there, cheaper than
    copying maps), and what the generator family needs besides (``extra``: ``src_pose``, ``src_kp``,
    ``tgt_kp`` for Deformable GAN; empty for PG²), read ``threads + 1`` batches ahead in ``threads`` threads."""

    def __init__(self, job: SynthesisJob, timing: collections.Counter, threads: int):
        self.job, self.timing = job, timing
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="synth-loader")
        self._depth = threads + 1                       # bounded read-ahead
        self._work = iter(job.batches)
        self._ahead = collections.deque()

    def _load(self, rows: np.ndarray):
        import torch

        from reid_aug.pairs.torch_dataset import load_image_and_size, scale_keypoints

        t0 = time.perf_counter()
        job = self.job
        names = job.plan.table["source"].iloc[rows].tolist()
        size = tuple(int(v) for v in job.gen.image_size)
        cache = {}
        for name in names:
            if name not in cache:
                cache[name] = load_image_and_size(job.plan.source_paths[name], size)
        src = torch.stack([cache[n][0] for n in names])
        kps = torch.from_numpy(job.plan.target_kps[rows].astype(np.int64))
        extra = {}
        if job.gen.family.conditions:       # the source's own pose, in the generator's frame
            src_kp = torch.from_numpy(np.stack([scale_keypoints(job.plan.source_kps[n].astype(np.int64), cache[n][1],
                                                                size) for n in names]))
            extra = {"src_kp": src_kp, "tgt_kp": kps, "src_pose": job.gen.pose_maps(src_kp)}
        if job.backgrounds is not None:     # Deformable GAN use_bg: another image of the output's camera
            table = job.plan.table.iloc[rows]
            picks = [job.backgrounds.pick(f, int(p), int(c)) for f, p, c in zip(table["file"], table["pid"],
                                                                                table["camid"])]
            extra["bg"] = job.backgrounds.load(picks, size)
        src, pose = (src.pin_memory(), kps) if job.on_cuda else (src, job.gen.pose_maps(kps))
        with self._lock:
            self.timing["load"] += time.perf_counter() - t0
        return src, pose, extra

    def _refill(self) -> None:
        while len(self._ahead) < self._depth:
            rows = next(self._work, None)
            if rows is None:
                return
            self._ahead.append((rows, self._pool.submit(self._load, rows)))

    def __iter__(self):
        self._refill()
        while self._ahead:
            rows, fut = self._ahead.popleft()
            t0 = time.perf_counter()
            src, pose, extra = fut.result()
            self.timing["load_wait"] += time.perf_counter() - t0
            self._refill()
            yield rows, src, pose, extra

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _generate(job: SynthesisJob, src, pose, extra: dict) -> np.ndarray:
    """(B,H,W,3) uint8 on the CPU: the job's stage on ``src``, the target ``pose`` and the family's ``extra``
    conditions (see BatchLoader)."""
    from reid_aug.synthesis.writer import tensor_to_uint8

    src = src.to(job.device, non_blocking=True)
    pose = job.gen.pose_maps(pose.to(job.device, non_blocking=True)) if job.on_cuda else pose.to(job.device)
    return tensor_to_uint8(job.gen.generate(src, pose, job.stage, **extra))   # syncs with the device


def synthesize(cfg: SynthesisConfig, on_batch=None) -> dict:
    """Write this shard's missing images, its manifest, and the merged manifest + contact sheet when complete.

    ``on_batch(batch_number, images_written_so_far)`` is called after each batch has been queued
    (tests use it to interrupt a run). Returns a summary: ``written``, ``skipped_existing``,
    ``out_dir``, ``manifest`` (path or None), ``contact_sheet``, ``n_planned`` (this shard),
    ``n_images`` (whole run), ``identities``, ``skipped_identities``, ``partial_pose_identities``,
    ``shard``, ``device``, ``stage``, ``filter`` (the filter record, or None), ``timings`` (seconds:
    ``wall``; ``loop`` = the generation loop until the last file is written; ``load``, ``generate``,
    ``encode_write`` = summed thread time of each stage; ``load_wait``, ``write_wait`` = time the
    generator loop waited for them) and ``images_per_s`` (written / wall).
    """
    import torch
    from tqdm import tqdm

    from reid_aug.synthesis.writer import JpegWriterPool

    job = prepare_job(cfg)
    cfg, table = job.cfg, job.plan.table
    timing = collections.Counter()
    loader = BatchLoader(job, timing, cfg.loader_threads)
    writer = JpegWriterPool(workers=cfg.workers, quality=cfg.jpeg_quality, max_pending=max(2 * cfg.batch_size, 64))
    written = 0
    try:
        with writer, torch.inference_mode(), tqdm(total=job.n_todo, unit="img", desc=f"synthesizing{job.label}",
                                                  disable=None) as bar:
            t_loop = time.perf_counter()
            for batch_no, (rows, src, pose, extra) in enumerate(loader, start=1):
                t0 = time.perf_counter()
                images = _generate(job, src, pose, extra)
                timing["generate"] += time.perf_counter() - t0
                new = [j for j, r in enumerate(rows) if job.todo[r]]
                for j in new:
                    writer.submit(job.sset.images / table["file"].iat[rows[j]], images[j])
                written += len(new)
                bar.update(len(new))
                if on_batch is not None:
                    on_batch(batch_no, written)
            records = writer.close()
            timing["loop"] = time.perf_counter() - t_loop
    finally:
        loader.close()
    timing["encode_write"] = writer.busy_seconds
    timing["write_wait"] = writer.wait_seconds
    return finish_job(job, records, timing, written)
