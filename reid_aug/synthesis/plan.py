"""The plan of a synthesis run: every image, its source, its target pose, and how the work is cut.

Plan (deterministic for a seed)
    Every training identity (sorted by pid) gets K rows. Its source images are its images whose pose
    has both shoulders and hips (the rule of the training pairs, so sources look like what the
    generator was trained on); an identity with no such image falls back to its images with at least
    one annotated joint (PG² reads only the source *image*, never its pose, and a Re-ID user wants
    every identity augmented: on Market-1501 this keeps identities 53, 79, 84, 98, 122 and 1218, so
    K = 10 gives 751 x 10 = 7,510 images). Sources cycle in a per-identity shuffled order (all are
    used before any repeats); target poses come from the pose bank by the chosen strategy
    (:mod:`reid_aug.synthesis.strategies`). Identities with no annotated image at all are skipped and
    reported; identities on the fallback are reported too.

Blocks and batches
    Identities are cut into fixed blocks of ``block_identities`` consecutive identities (fixed by the
    first run, stored in the descriptor); shard ``i`` of ``n`` takes the blocks ``b`` with
    ``b % n == i``, and a batch never straddles two blocks, so every image is computed in the same
    batch whatever the sharding or the restarts (bit-identical outputs on CPU).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reid_aug.errors import DatasetError
from reid_aug.keypoints import MISSING
from reid_aug.synthesis.naming import synthesized_name
from reid_aug.synthesis.posebank import SALT_SOURCES, PoseBank
from reid_aug.synthesis.strategies import STRATEGIES, assign_target_poses
from reid_aug.utils.io import sha256_lines

log = logging.getLogger(__name__)

PLAN_COLUMNS = ("file", "pid", "camid", "k", "source", "target_pose", "target_pid", "cluster")


@dataclass
class SynthesisPlan:
    """Every image of a run, in order (identity, then k).

    ``table``: one row per image, columns :data:`PLAN_COLUMNS`; ``target_kps``: int16 (N, 18, 2)
    aligned with the rows; ``source_paths``: name -> path; ``skipped``: identities with no usable
    source image; ``sha256``: hash of the ``file,source,target`` lines; ``dataset_fingerprint``:
    hash of the train split (names, sizes, keypoints); ``partial_pose_identities``: identities whose
    sources are images without a full torso (fallback); ``n_clusters``: the strategy's clusters (0
    without clusters).
    """

    table: pd.DataFrame
    target_kps: np.ndarray
    source_paths: dict
    skipped: list
    n_clusters: int
    sha256: str
    dataset_fingerprint: str
    identities: list = field(default_factory=list)
    partial_pose_identities: list = field(default_factory=list)


@dataclass(frozen=True)
class _Sources:
    """The train split's normal images, and the source images of each identity."""

    train: pd.DataFrame
    by_pid: dict
    partial: list
    skipped: list
    pids: list


def dataset_fingerprint(index) -> str:
    """sha256 over the train split's names, file sizes and keypoints (cheap: no image is read)."""
    train = index.split("train").sort_values("name", kind="stable")
    kps = index.keypoints_for(train["name"].tolist())
    lines = []
    for (name, path), kp in zip(zip(train["name"], train["path"]), kps):
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        lines.append(f"{name},{size},{','.join(map(str, kp.reshape(-1).tolist()))}")
    return sha256_lines(lines)


def plan_sha256(table: pd.DataFrame) -> str:
    return sha256_lines(f"{f},{s},{t}" for f, s, t in zip(table["file"], table["source"], table["target_pose"]))


def _first(ids: list, n: int = 10) -> str:
    return ", ".join(map(str, ids[:n])) + (", ..." if len(ids) > n else "")


def source_images(index) -> _Sources:
    """Source images per identity: full-torso images, else (fallback) images with any annotated joint."""
    train = index.split("train")
    train = train[train["kind"] == "normal"].sort_values("name", kind="stable")
    usable = train[train["pose_ok"].astype(bool)]
    by_pid = {int(p): g["name"].tolist() for p, g in usable.groupby("pid", sort=True)}
    all_pids = sorted(int(p) for p in train["pid"].unique())
    rest = train[~train["pid"].isin(list(by_pid))]
    partial = []
    if len(rest):
        # fallback sources: any annotated joint (the generator never reads the source's pose)
        kps = np.asarray(index.keypoints_for(rest["name"].tolist()))
        annotated = (kps[..., 0] != MISSING).any(axis=1)   # an image without a row is all MISSING
        for p, g in rest[annotated].groupby("pid", sort=True):
            by_pid[int(p)] = g["name"].tolist()
            partial.append(int(p))
    skipped = [p for p in all_pids if p not in by_pid]
    if partial:
        log.info("%d of %d training identities have no image with both shoulders and hips annotated; their "
                 "images with partial poses are the sources: %s", len(partial), len(all_pids), _first(partial))
    if skipped:
        log.warning("%d of %d training identities have no image with an annotated joint and are skipped: %s",
                    len(skipped), len(all_pids), _first(skipped))
    return _Sources(train, by_pid, partial, skipped, [p for p in all_pids if p in by_pid])


def build_plan(index, poses_per_id: int, strategy: str = "random", seed: int = 0, n_clusters: int | None = None,
               max_identities: int | None = None, bank: PoseBank | None = None) -> SynthesisPlan:
    """The full plan of a run (all shards). ``bank``: the target poses (default: ``index``'s train
    split). Raises ``DatasetError`` for a dataset without valid poses or usable sources."""
    bank = bank if bank is not None else PoseBank.from_index(index)   # raises when no train pose has a torso
    src = source_images(index)
    pids = src.pids[: int(max_identities)] if max_identities is not None else src.pids
    if not pids:
        raise DatasetError(f"no training identity of {index.root} has a usable source image")
    assignment = assign_target_poses(bank, pids, poses_per_id, strategy, seed, n_clusters)
    camid_of = dict(zip(src.train["name"], src.train["camid"]))
    rows, tgt_rows = [], []
    for pid in pids:
        rng = np.random.default_rng([int(seed), pid, SALT_SOURCES])
        srcs = [src.by_pid[pid][i] for i in rng.permutation(len(src.by_pid[pid]))]
        for k in range(poses_per_id):
            name = srcs[k % len(srcs)]                      # all sources before any repeat
            t = int(assignment.targets[pid][k])
            cam = int(camid_of[name])
            rows.append((synthesized_name(pid, cam, k, name), pid, cam, k, name, str(bank.names[t]),
                         int(bank.pids[t]), int(assignment.clusters[pid][k])))
            tgt_rows.append(t)
    table = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    paths = dict(zip(src.train["name"], src.train["path"]))
    return SynthesisPlan(table=table, target_kps=bank.keypoints[np.asarray(tgt_rows, dtype=np.int64)],
                         source_paths={s: paths[s] for s in table["source"].unique()}, skipped=src.skipped,
                         n_clusters=assignment.n_clusters, sha256=plan_sha256(table),
                         dataset_fingerprint=dataset_fingerprint(index), identities=pids,
                         partial_pose_identities=sorted(set(src.partial) & set(pids)))


def uses_clusters(strategy: str) -> bool:
    """The strategy reads ``n_clusters`` (so the descriptor records it)."""
    return STRATEGIES[strategy].uses_clusters


def default_block_identities(batch_size: int, poses_per_id: int, n_identities: int) -> int:
    """Identities per block: as many as fit a batch, but at least ~32 blocks so shards stay balanced."""
    return max(1, min(batch_size // poses_per_id, -(-n_identities // 32)))


def plan_blocks(plan_table: pd.DataFrame, block_identities: int) -> np.ndarray:
    """(N,) block number of every plan row: ``block_identities`` consecutive identities per block."""
    pid_rank = pd.factorize(plan_table["pid"], sort=False)[0]
    return (pid_rank // max(1, int(block_identities))).astype(np.int64)


def plan_batches(plan_table: pd.DataFrame, block_identities: int, batch_size: int,
                 shard: tuple[int, int] | None) -> list[np.ndarray]:
    """Row indices of every batch of ``shard``: blocks ``b % n == i``, each cut into <= batch_size rows."""
    blocks = plan_blocks(plan_table, block_identities)
    i, n = shard or (0, 1)
    out = []
    for b in np.unique(blocks):
        if b % n != i:
            continue
        rows = np.flatnonzero(blocks == b)
        out += [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
    return out
