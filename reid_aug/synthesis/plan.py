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

Per image (``per_image=K``, Deformable GAN's protocol)
    Every source image gets K rows, ``k = 0..K-1`` counted per source (names stay unique: they carry
    the source's stem); its K target poses are drawn for the unit ``(pid, source key)`` (a stable
    number from the source's stem), so an image's targets do not depend on which other images are kept.

Options that change the sources
    ``keep``: only these image names can be sources (the low-data regime's kept subset,
    :mod:`reid_aug.dataset.regime`). ``every_image``: every (kept) training image is a source, with or
    without keypoints (a generator that never reads the source pose, with target poses from a bank:
    datasets without keypoints such as CUHK03). ``bank``: target poses from another dataset's pose
    bank; across datasets no pose is excluded as "the identity's own" (pid numbers are not shared).
    ``image_size``: target keypoints are rescaled from the size of their own image to the generator's.

Blocks and batches
    Identities are cut into fixed blocks of ``block_identities`` consecutive identities (fixed by the
    first run, stored in the descriptor); shard ``i`` of ``n`` takes the blocks ``b`` with
    ``b % n == i``, and a batch never straddles two blocks, so every image is computed in the same
    batch whatever the sharding or the restarts (bit-identical outputs on CPU).
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reid_aug.errors import DatasetError
from reid_aug.keypoints import MISSING
from reid_aug.synthesis.naming import source_stem, synthesized_name
from reid_aug.synthesis.posebank import SALT_SOURCES, PoseBank
from reid_aug.synthesis.strategies import STRATEGIES, assign_units
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
    without clusters); ``n_sources``: distinct source images; ``exclude_own``: the identity's own
    poses were left out of its targets (bank and identities from one dataset); ``source_kps``: the
    sources' own keypoints (families that read the source pose, e.g. Deformable GAN).
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
    n_sources: int = 0
    exclude_own: bool = True
    source_kps: dict = field(default_factory=dict)   # name -> int16 (18, 2) in the source image's own pixels


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


def source_images(index, keep=None, every_image: bool = False) -> _Sources:
    """Source images per identity: full-torso images, else (fallback) images with any annotated joint;
    with ``every_image`` every image. ``keep``: only these names (None: all)."""
    train = index.split("train")
    train = train[train["kind"] == "normal"].sort_values("name", kind="stable")
    if keep is not None:
        train = train[train["name"].isin(set(keep))]
    all_pids = sorted(int(p) for p in train["pid"].unique())
    if every_image:
        by_pid = {int(p): g["name"].tolist() for p, g in train.groupby("pid", sort=True)}
        return _Sources(train, by_pid, [], [], all_pids)
    usable = train[train["pose_ok"].astype(bool)]
    by_pid = {int(p): g["name"].tolist() for p, g in usable.groupby("pid", sort=True)}
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


def source_key(name: str) -> int:
    """A stable 56-bit number of a source image (its stem): the per-image unit's random stream."""
    return int.from_bytes(hashlib.sha256(source_stem(name).encode()).digest()[:7], "big")


def _units(src: _Sources, pids: list, per_image: int | None, poses_per_id: int, seed: int) -> list:
    """``(unit, k, [(source, k_of_name)] )`` per unit: who is synthesized from which source, in plan order."""
    out = []
    for pid in pids:
        names = src.by_pid[pid]
        if per_image:
            out += [((pid, source_key(n)), per_image, [(n, k) for k in range(per_image)]) for n in names]
            continue
        rng = np.random.default_rng([int(seed), pid, SALT_SOURCES])
        srcs = [names[i] for i in rng.permutation(len(names))]
        out.append(((pid,), poses_per_id, [(srcs[k % len(srcs)], k) for k in range(poses_per_id)]))  # all first
    return out


def build_plan(index, poses_per_id: int, strategy: str = "random", seed: int = 0, n_clusters: int | None = None,
               max_identities: int | None = None, bank: PoseBank | None = None, *, per_image: int | None = None,
               keep=None, every_image: bool = False, image_size=None, angles=None) -> SynthesisPlan:
    """The full plan of a run (all shards); the options are described in the module docstring. ``bank``:
    the target poses (default: ``index``'s train split). Raises ``DatasetError`` for a dataset without
    valid poses or usable sources. The view strategies (``rotate``, ``views``) turn the sources' own poses
    instead (:mod:`reid_aug.synthesis.view_strategies`; ``angles`` for ``rotate``)."""
    from reid_aug.synthesis.view_strategies import VIEW_STRATEGIES

    if strategy in VIEW_STRATEGIES:
        return _build_view_plan(index, poses_per_id, strategy, seed, max_identities, per_image=per_image, keep=keep,
                                image_size=image_size, angles=angles)
    bank = bank if bank is not None else PoseBank.from_index(index)   # raises when no train pose has a torso
    exclude_own = bank.same_dataset(index.root)
    src = source_images(index, keep, every_image)
    pids = src.pids[: int(max_identities)] if max_identities is not None else src.pids
    if not pids:
        raise DatasetError(f"no training identity of {index.root} has a usable source image")
    units = _units(src, pids, per_image, poses_per_id, seed)
    assignment = assign_units(bank, [u for u, _, _ in units], per_image or poses_per_id, strategy, seed, n_clusters,
                              exclude_own)
    camid_of = dict(zip(src.train["name"], src.train["camid"]))
    rows, tgt_rows = [], []
    for unit, _, items in units:
        for j, (name, k) in enumerate(items):
            t, cam = int(assignment.targets[unit][j]), int(camid_of[name])
            rows.append((synthesized_name(unit[0], cam, k, name), unit[0], cam, k, name, str(bank.names[t]),
                         int(bank.pids[t]), int(assignment.clusters[unit][j])))
            tgt_rows.append(t)
    table = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    dup = table["file"][table["file"].duplicated()]
    if len(dup):
        raise DatasetError(f"two source images of {index.root} give the same synthesized name {dup.iloc[0]} "
                           f"(their names differ only in the extension); rename one")
    paths = dict(zip(src.train["name"], src.train["path"]))
    tgt_rows = np.asarray(tgt_rows, dtype=np.int64)
    return SynthesisPlan(table=table, target_kps=target_keypoints(bank, tgt_rows, image_size),
                         source_paths={s: paths[s] for s in table["source"].unique()}, skipped=src.skipped,
                         n_clusters=assignment.n_clusters, sha256=plan_sha256(table),
                         dataset_fingerprint=dataset_fingerprint(index), identities=pids,
                         partial_pose_identities=sorted(set(src.partial) & set(pids)),
                         n_sources=int(table["source"].nunique()), exclude_own=exclude_own,
                         source_kps=dict(zip(table["source"].unique(),
                                             index.keypoints_for(table["source"].unique().tolist()))))


def _liftable(index, src: _Sources) -> tuple[_Sources, dict]:
    """``src`` with only the sources whose pose can be lifted (torso complete), and their yaw; identities left
    without one are skipped (the view strategies turn the source's own pose)."""
    from reid_aug.synthesis.view_strategies import liftable_sources

    names = [n for ns in src.by_pid.values() for n in ns]
    yaw, _ = liftable_sources(names, index.keypoints_for(names))
    by_pid = {p: [n for n in ns if n in yaw] for p, ns in src.by_pid.items()}
    dropped = [p for p, ns in by_pid.items() if not ns]
    if dropped:
        log.warning("%d identities have no source image whose pose can be lifted (both shoulders and hips) and "
                    "are skipped by the view strategies: %s", len(dropped), _first(dropped))
    by_pid = {p: ns for p, ns in by_pid.items() if ns}
    return _Sources(src.train, by_pid, [p for p in src.partial if p in by_pid], sorted(src.skipped + dropped),
                    [p for p in src.pids if p in by_pid]), yaw


def _build_view_plan(index, poses_per_id: int, strategy: str, seed: int, max_identities, *, per_image, keep,
                     image_size, angles) -> SynthesisPlan:
    """:func:`build_plan` for the view strategies: targets are the sources' own poses, rotated."""
    from reid_aug.synthesis.view_strategies import DEFAULT_ANGLES, VIEW_STRATEGIES, rotated_targets
    from reid_aug.views.viewpoint import view_labels

    src, yaw = _liftable(index, source_images(index, keep))
    pids = src.pids[: int(max_identities)] if max_identities is not None else src.pids
    if not pids:
        raise DatasetError(f"no training identity of {index.root} has a source image whose pose can be lifted")
    units = _units(src, pids, per_image, poses_per_id, seed)
    choice = VIEW_STRATEGIES[strategy].choose(units, yaw, int(seed), tuple(angles or DEFAULT_ANGLES))
    camid_of = dict(zip(src.train["name"], src.train["camid"]))
    rows = []
    for unit, _, items in units:
        for (_, k), (name, angle) in zip(items, choice[unit]):
            rows.append((synthesized_name(unit[0], int(camid_of[name]), k, name), unit[0], int(camid_of[name]), k,
                         name, f"{name}@{angle:+g}", unit[0], -1, float(angle), str(view_labels([yaw[name]])[0])))
    table = pd.DataFrame(rows, columns=list(PLAN_COLUMNS) + ["angle", "source_view"])
    paths = dict(zip(src.train["name"], src.train["path"]))
    used = table["source"].unique().tolist()
    sizes = dict(zip(used, image_sizes([paths[n] for n in used])))
    target = rotated_targets(index.keypoints_for(table["source"].tolist()), table["angle"].to_numpy(),
                             [sizes[n] for n in table["source"]], image_size)
    return SynthesisPlan(table=table, target_kps=target, source_paths={n: paths[n] for n in used},
                         skipped=src.skipped, n_clusters=0, sha256=plan_sha256(table),
                         dataset_fingerprint=dataset_fingerprint(index), identities=pids,
                         partial_pose_identities=sorted(set(src.partial) & set(pids)), n_sources=len(used),
                         exclude_own=False, source_kps=dict(zip(used, index.keypoints_for(used))))


def image_sizes(paths) -> list[tuple[int, int]]:
    """``(H, W)`` of each image file (header only)."""
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append((int(im.size[1]), int(im.size[0])))
        except Exception as e:  # noqa: BLE001
            raise DatasetError(f"cannot read image {p} ({type(e).__name__}: {e}); replace it or run "
                               f"`reid-aug prepare DATASET --check-images`") from None
    return out


def target_keypoints(bank: PoseBank, rows: np.ndarray, image_size=None) -> np.ndarray:
    """int16 (N, 18, 2) keypoints of bank ``rows``, rescaled from their own image's size to ``image_size``
    = (H, W) when given (and the bank knows its files)."""
    from reid_aug.pairs.torch_dataset import scale_keypoints

    kps = bank.keypoints[rows]
    if image_size is None or bank.paths is None or not len(rows):
        return kps
    uniq = np.unique(rows)
    row_size = np.asarray(image_sizes(bank.paths[uniq]), dtype=np.int64)[np.searchsorted(uniq, rows)]   # (N, 2)
    out = kps.copy()
    for size in np.unique(row_size, axis=0):
        sel = (row_size == size).all(axis=1)
        out[sel] = scale_keypoints(kps[sel], tuple(int(v) for v in size), tuple(int(v) for v in image_size))
    return out


def uses_clusters(strategy: str) -> bool:
    """The strategy reads ``n_clusters`` (so the descriptor records it)."""
    entry = STRATEGIES.get(strategy)
    return entry is not None and entry.uses_clusters


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
