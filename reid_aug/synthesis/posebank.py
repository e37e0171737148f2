"""The pose bank of the train split: normalisation, masked pose distance, clustering.

Bank
    Every training image (``split == "train"``, ``kind == "normal"``) whose annotation has both
    shoulders and both hips (``pose_ok``, the Deformable GAN / PATN rule also used for the
    training pairs). Rows are sorted by image name, so the bank is the same however the dataset
    table was ordered.

Normalisation (:func:`normalize_poses`)
    Each pose is centred on its torso centre (the mean of the two shoulders and two hips) and
    divided by its torso length (the distance from the shoulder midpoint to the hip midpoint,
    at least one pixel), so that poses compare independently of the person's position and
    scale in the crop. Missing joints become ``NaN``.

Distance (:func:`pose_distance_matrix`)
    Mean Euclidean distance, in torso lengths, over the joints present in *both* poses
    (missing joints are masked out, not guessed). Two poses with no joint in common (impossible
    for bank poses: the torso is always there) get ``NaN``.

Clustering (:func:`cluster_poses`)
    k-means needs dense vectors, so a missing joint is imputed with that joint's mean
    normalised position over the bank (0 if no pose has it); the 36-d vectors are clustered
    with ``faiss.Kmeans`` (k-means++ initialisation, fixed seed, one OpenMP thread so the result
    does not depend on the thread count).

Target-pose strategies (``random``, ``diverse``, ...) live in :mod:`reid_aug.synthesis.strategies`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_aug.errors import DatasetError
from reid_aug.keypoints import MISSING, NUM_KEYPOINTS

log = logging.getLogger(__name__)

R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = 2, 5, 8, 11
TORSO = (R_SHOULDER, L_SHOULDER, R_HIP, L_HIP)

# Salts of the per-identity random streams (so sources and targets draw independent numbers).
SALT_SOURCES, SALT_RANDOM, SALT_DIVERSE = 1, 2, 3


@dataclass(frozen=True)
class PoseBank:
    """Training poses usable as targets.

    ``names``: (N,) image names, sorted; ``pids``: (N,) int64 identity of each pose;
    ``keypoints``: (N, 18, 2) int16 ``(y, x)`` in the frame of each pose's own image, ``-1`` =
    missing, torso always present; ``paths``: (N,) image files (None for a bank built from arrays);
    ``dataset_root``: the resolved folder of the dataset the poses come from (None: unknown), which
    tells the strategies whether a bank identity is the synthesized identity (same dataset) or
    merely shares its number (another dataset).
    """

    names: np.ndarray
    pids: np.ndarray
    keypoints: np.ndarray
    paths: np.ndarray | None = None
    dataset_root: str | None = None

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_index(cls, index) -> "PoseBank":
        """The bank of a :class:`reid_aug.dataset.market.DatasetIndex` (train split, ``pose_ok``)."""
        table = index.table
        rows = table[(table["split"] == "train") & (table["kind"] == "normal") & table["pose_ok"].astype(bool)]
        rows = rows.sort_values("name", kind="stable")
        if len(rows) == 0:
            n_train = int((table["split"] == "train").sum())
            where = getattr(index, "annotations_dir", None)
            raise DatasetError(
                f"dataset {getattr(index, 'root', '?')} has no valid training pose: none of its {n_train} train images "
                f"has an annotation with both shoulders and both hips ("
                f"{f'annotations looked up in {where}' if where else 'no annotations/ folder'}); take the target "
                f"poses from another dataset (`synthesize --pose-bank market`), add the keypoint annotation CSV "
                f"(annotations/*annotation-train.csv) or run `reid-aug prepare` to see the keypoint coverage")
        names = rows["name"].to_numpy(dtype=object)
        kps = np.asarray(index.keypoints_for(list(names)), dtype=np.int16)
        return cls.from_arrays(names, rows["pid"].to_numpy(dtype=np.int64), kps, paths=rows["path"].to_numpy(object),
                               dataset_root=str(Path(index.root).resolve()) if hasattr(index, "root") else None)

    @classmethod
    def from_arrays(cls, names, pids, keypoints, paths=None, dataset_root: str | None = None) -> "PoseBank":
        """Build from arrays; rows without a full torso are dropped, the rest sorted by name."""
        names = np.asarray(names, dtype=object)
        pids = np.asarray(pids, dtype=np.int64)
        keypoints = np.asarray(keypoints, dtype=np.int16).reshape(-1, NUM_KEYPOINTS, 2)
        if not (len(names) == len(pids) == len(keypoints)):
            raise ValueError("names, pids and keypoints must have the same length")
        ok = torso_present(keypoints)
        order = np.argsort(names[ok].astype(str), kind="stable")
        paths = None if paths is None else np.asarray(paths, dtype=object)[ok][order]
        return cls(names[ok][order], pids[ok][order], keypoints[ok][order], paths, dataset_root)

    def same_dataset(self, root) -> bool:
        """The poses come from the dataset at ``root`` (True when the bank's dataset is unknown)."""
        return self.dataset_root is None or Path(self.dataset_root) == Path(root).resolve()

    def fingerprint(self) -> str:
        """sha256 over the bank's ``name,pid,keypoints`` lines (which poses a run could be shown in)."""
        from reid_aug.utils.io import sha256_lines

        return sha256_lines(f"{n},{p},{','.join(map(str, k.reshape(-1).tolist()))}"
                            for n, p, k in zip(self.names, self.pids, self.keypoints))

    def normalized(self) -> np.ndarray:
        """(N, 18, 2) float32 normalised poses, ``NaN`` for missing joints."""
        return normalize_poses(self.keypoints)

    def index_of(self) -> dict[str, int]:
        return {str(n): i for i, n in enumerate(self.names)}


def torso_present(kps: np.ndarray) -> np.ndarray:
    """(N,) bool: both shoulders and both hips present in ``kps`` (N, 18, 2)."""
    kps = np.asarray(kps)
    return np.all(kps[:, TORSO, 0] != MISSING, axis=1) & np.all(kps[:, TORSO, 1] != MISSING, axis=1)


def normalize_poses(kps: np.ndarray) -> np.ndarray:
    """Centre on the torso and scale by the torso length.

    kps: (N, 18, 2) ``(y, x)`` with ``-1`` = missing; every pose must have its torso.
    Returns (N, 18, 2) float32 in torso lengths, ``NaN`` where a joint is missing.
    """
    kps = np.asarray(kps)
    if kps.ndim != 3 or kps.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must be (N, {NUM_KEYPOINTS}, 2), got {kps.shape}")
    if not torso_present(kps).all():
        raise ValueError("normalize_poses needs both shoulders and both hips in every pose")
    pts = kps.astype(np.float64)
    missing = (kps[..., 0] == MISSING) | (kps[..., 1] == MISSING)
    pts[missing] = np.nan
    centre = pts[:, TORSO].mean(axis=1, keepdims=True)                     # (N, 1, 2)
    shoulder_mid = pts[:, [R_SHOULDER, L_SHOULDER]].mean(axis=1)
    hip_mid = pts[:, [R_HIP, L_HIP]].mean(axis=1)
    # Torso length, not width: the width collapses in side views, the length does not.
    scale = np.maximum(np.linalg.norm(shoulder_mid - hip_mid, axis=1), 1.0)  # (N,)
    return ((pts - centre) / scale[:, None, None]).astype(np.float32)


def pose_features(norm: np.ndarray) -> np.ndarray:
    """(N, 36) float32 dense vectors for k-means: a missing joint takes its mean over ``norm``."""
    norm = np.asarray(norm, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        present = ~np.isnan(norm)
        counts = present.sum(axis=0)
        mean = np.where(counts > 0, np.nansum(norm, axis=0) / np.maximum(counts, 1), 0.0)  # (18, 2)
    dense = np.where(present, norm, mean[None])
    return np.ascontiguousarray(dense.reshape(len(norm), -1), dtype=np.float32)


def pose_distance_matrix(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Masked pose distance between normalised poses.

    a: (n, 18, 2), b: (m, 18, 2) normalised (``NaN`` = missing); b defaults to a.
    Returns (n, m) float64: the mean over joints present in both poses of the Euclidean distance
    between them (in torso lengths); ``NaN`` where the two poses share no joint.
    """
    a = np.asarray(a, dtype=np.float32)
    b = a if b is None else np.asarray(b, dtype=np.float32)
    pa, pb = ~np.isnan(a[..., 0]), ~np.isnan(b[..., 0])                    # (n, 18), (m, 18)
    a0, b0 = np.nan_to_num(a), np.nan_to_num(b)
    diff = a0[:, None] - b0[None]                                            # (n, m, 18, 2)
    d = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2)                       # (n, m, 18)
    valid = pa[:, None] & pb[None]
    n_common = valid.sum(axis=-1)
    total = (d * valid).sum(axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_common > 0, total / np.maximum(n_common, 1), np.nan)


def mean_pairwise_pose_distance(kps: np.ndarray) -> float:
    """Mean masked distance over all unordered pairs of the poses ``kps`` (K, 18, 2); NaN if K < 2."""
    kps = np.asarray(kps)
    if len(kps) < 2:
        return float("nan")
    d = pose_distance_matrix(normalize_poses(kps))
    iu = np.triu_indices(len(kps), k=1)
    return float(np.nanmean(d[iu]))


def pose_diversity_per_identity(target_kps: dict) -> dict:
    """``{pid: (K, 18, 2) target keypoints}`` -> ``{pid: mean pairwise normalised pose distance}``."""
    return {pid: mean_pairwise_pose_distance(k) for pid, k in target_kps.items()}


def cluster_poses(bank: PoseBank, n_clusters: int, seed: int = 0, niter: int = 25) -> np.ndarray:
    """(N,) int64 cluster label of every bank pose (faiss k-means on :func:`pose_features`).

    Deterministic for a seed: k-means++ initialisation from the seed and a single OpenMP
    thread during the clustering.
    """
    from reid_aug.utils.deps import import_faiss

    faiss = import_faiss()

    n = len(bank)
    if n_clusters < 1:
        raise ValueError("n_clusters must be >= 1")
    if n_clusters > n:
        raise DatasetError(f"cannot form {n_clusters} pose clusters from {n} valid training poses; "
                           f"lower --poses-per-id (K) to at most {n} or use --strategy random")
    x = pose_features(bank.normalized())
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        km = faiss.Kmeans(x.shape[1], n_clusters, niter=niter, seed=int(seed) % (2 ** 31), verbose=False,
                          init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 20)
        km.train(x)
        _, labels = km.index.search(x, 1)
    finally:
        faiss.omp_set_num_threads(threads)
    return labels[:, 0].astype(np.int64)
