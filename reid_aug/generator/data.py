"""Training data of a generator run: the pairs, the deterministic batch schedule, flips, sample pairs.

Determinism: the pairs of step ``s`` of a stage and their flip flags are a pure function of
``(seed, stage, s)`` (a per-epoch permutation drawn from a seeded ``torch.Generator``), so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run sees, whatever the number
of DataLoader workers.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path

import numpy as np
import torch

from reid_aug.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)


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


class StepBatchSampler(torch.utils.data.Sampler):
    """Yields this rank's pair indices for steps ``start .. stop-1`` of a :class:`PairSchedule`."""

    def __init__(self, schedule: PairSchedule, start: int, stop: int):
        self.schedule, self.start, self.stop = schedule, start, stop

    def __iter__(self):
        for s in range(self.start, self.stop):
            yield self.schedule.local_batch_of(s)[0].tolist()

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def flip_batch(batch: dict, flips: torch.Tensor) -> dict:
    """Mirror the pairs flagged in ``flips`` (B,): both images, both pose maps, the target mask, keypoints."""
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


def _ignore_sigint(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C to the main process, which finishes its step and checkpoints."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclasses.dataclass
class TrainingData:
    """The pairs a run trains on and the fixed batch its sample grids show.

    ``info`` = ``{"spec", "root", "n_pairs", "pairs_sha256"}`` (recorded in checkpoints and run.json);
    ``sample_batch``: a collated batch dict of ``train.n_samples`` held-out test pairs (training pairs
    where the dataset has no test pairs).
    """

    spec: str
    root: Path
    pairs: object                     # pandas DataFrame of (from, to) training pairs
    train_set: torch.utils.data.Dataset
    sample_batch: dict
    info: dict

    def loader(self, schedule: PairSchedule, start: int, stop: int, workers: int, pin_memory: bool):
        """Batches of steps ``start .. stop-1``; their content does not depend on ``workers``."""
        return torch.utils.data.DataLoader(
            self.train_set, batch_sampler=StepBatchSampler(schedule, start, stop), num_workers=workers,
            pin_memory=pin_memory, persistent_workers=False, worker_init_fn=_ignore_sigint,
            generator=torch.Generator(),  # keeps the global torch RNG out of the loader
        )


def load_training_data(dataset: str, image_size, pose_mode: str, n_samples: int, seed: int,
                       mask_style: str = "defgan", train_per_id: int = 0, subset_seed: int = 0,
                       annotations: str | None = None) -> TrainingData:
    """Index ``dataset`` (market | toy | PATH) and set up its training pairs and sample pairs.

    ``annotations``: a folder of annotation files read instead of the dataset's own (recorded in ``info`` with the
    files' sha256, so evaluate-generator and synthesize read the same keypoints).

    ``train_per_id`` > 0: only pairs among the images :func:`reid_aug.dataset.regime.kept_train` keeps (the
    low-data regime); the subset is recorded in ``info`` (and so in the checkpoint and run.json)."""
    from reid_aug.dataset.market import annotation_record, load_dataset, resolve_dataset_root
    from reid_aug.pairs.pairs import pairs_sha256, test_pairs, train_pairs
    from reid_aug.pairs.torch_dataset import PosePairDataset

    root = resolve_dataset_root(dataset)
    index = load_dataset(root, annotations_dir=annotations)
    pairs = train_pairs(index)
    subset = {}
    if train_per_id > 0:
        from reid_aug.dataset.regime import kept_train, subset_record

        kept = set(kept_train(index, train_per_id, subset_seed)["name"])
        before = len(pairs)
        pairs = pairs[pairs["from"].isin(kept) & pairs["to"].isin(kept)].reset_index(drop=True)
        rec = subset_record(index, train_per_id, subset_seed)
        subset = {"train_per_id": int(train_per_id), "subset_seed": int(subset_seed),
                  "kept_sha256": rec["kept_sha256"], "n_kept": rec["n_kept"]}
        log.info("low-data regime: %d image(s) per identity (subset seed %d) -> %d of %d training pairs",
                 train_per_id, subset_seed, len(pairs), before)
    if len(pairs) == 0:
        raise DatasetError(f"no training pairs in {index.image_root}: the generator trains on two images of one "
                           f"identity whose shoulders and hips are annotated (annotations/*annotation-train.csv)")
    info = {"spec": str(dataset), "root": str(root), "n_pairs": int(len(pairs)), "pairs_sha256": pairs_sha256(pairs),
            **subset, **annotation_record(index, annotations)}
    size = tuple(image_size)
    train_set = PosePairDataset(index, pairs, flip=False, pose_mode=pose_mode, size=size, mask_style=mask_style)
    try:
        sample_pairs, _ = test_pairs(index, n=n_samples, seed=seed)
    except DatasetError as e:
        log.warning("no test pairs for the sample grids (%s); using training pairs", e)
        sample_pairs = pairs
    sample_pairs = sample_pairs.iloc[:n_samples].reset_index(drop=True)
    sample_set = PosePairDataset(index, sample_pairs, flip=False, pose_mode=pose_mode, size=size,
                                 mask_style=mask_style)
    sample_batch = torch.utils.data.default_collate([sample_set[i] for i in range(len(sample_set))])
    return TrainingData(str(dataset), root, pairs, train_set, sample_batch, info)
