"""The pose bank of the train split and the choice of target poses per identity.

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

Strategies (:func:`assign_target_poses`)
    ``random``  K poses drawn uniformly, without replacement, from the poses of *other*
                identities.
    ``diverse`` the bank is clustered into ``C >= K`` clusters (default ``C = K``) and each
                identity gets one pose of another identity from each of K different clusters
                (visited in a per-identity random order), so a person is shown in K clearly
                different poses -- the idea behind PN-GAN's canonical poses. Inside a cluster the
                10 % of poses farthest from their centre are left out (they are mostly annotation
                errors); the first pose is uniform, each further one is drawn uniformly among the
                10 % of candidates (at most 256, drawn at random) whose masked distance to the
                poses already chosen is largest. On Market-1501 (K = 10) this raises the mean
                pairwise pose distance per identity from 0.41 (random) to about 0.45 torso
                lengths; a uniform pick inside each cluster only reaches 0.43.
    Both draw from ``numpy.random.default_rng([seed, pid, salt])``: the choice for an identity
    depends only on the seed, the identity and the bank, not on which other identities are
    planned or in which order (so shards agree with a single run).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from reid_aug.errors import DatasetError
from reid_aug.keypoints import MISSING, NUM_KEYPOINTS

log = logging.getLogger(__name__)

R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = 2, 5, 8, 11
TORSO = (R_SHOULDER, L_SHOULDER, R_HIP, L_HIP)
STRATEGIES = ("random", "diverse")

# diverse: poses farther from their cluster centre than this quantile are left out (annotation
# outliers); the next pose is drawn among the FAR_FRACTION of (at most MAX_CANDIDATES) candidates
# farthest from the poses already chosen.
CORE_QUANTILE = 0.9
FAR_FRACTION = 0.1
MAX_CANDIDATES = 256

# Salts of the per-identity random streams (so sources and targets draw independent numbers).
SALT_SOURCES, SALT_RANDOM, SALT_DIVERSE = 1, 2, 3


@dataclass(frozen=True)
class PoseBank:
    """Training poses usable as targets.

    ``names``: (N,) image names, sorted; ``pids``: (N,) int64 identity of each pose;
    ``keypoints``: (N, 18, 2) int16 ``(y, x)``, ``-1`` = missing, torso always present.
    """

    names: np.ndarray
    pids: np.ndarray
    keypoints: np.ndarray

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
            raise DatasetError(
                f"dataset {getattr(index, 'root', '?')} has no valid training pose: none of its {n_train} train images "
                f"has an annotation with both shoulders and both hips (annotations looked up in "
                f"{getattr(index, 'annotations_dir', '?')}); add the keypoint annotation CSV "
                f"(annotations/*annotation-train.csv) or run `reid-aug prepare` to see the keypoint coverage")
        names = rows["name"].to_numpy(dtype=object)
        kps = np.asarray(index.keypoints_for(list(names)), dtype=np.int16)
        return cls.from_arrays(names, rows["pid"].to_numpy(dtype=np.int64), kps)

    @classmethod
    def from_arrays(cls, names, pids, keypoints) -> "PoseBank":
        """Build from arrays; rows without a full torso are dropped, the rest sorted by name."""
        names = np.asarray(names, dtype=object)
        pids = np.asarray(pids, dtype=np.int64)
        keypoints = np.asarray(keypoints, dtype=np.int16).reshape(-1, NUM_KEYPOINTS, 2)
        if not (len(names) == len(pids) == len(keypoints)):
            raise ValueError("names, pids and keypoints must have the same length")
        ok = torso_present(keypoints)
        order = np.argsort(names[ok].astype(str), kind="stable")
        return cls(names[ok][order], pids[ok][order], keypoints[ok][order])

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


@dataclass(frozen=True)
class TargetAssignment:
    """Target poses per identity: ``targets[pid]`` = (K,) bank row indices, ``clusters[pid]`` = (K,)
    cluster of each (``-1`` for ``random``), and the cluster labels of the bank (or None)."""

    targets: dict
    clusters: dict
    labels: np.ndarray | None
    n_clusters: int


def assign_target_poses(bank: PoseBank, pids, k: int, strategy: str = "random", seed: int = 0,
                        n_clusters: int | None = None) -> TargetAssignment:
    """Choose ``k`` target poses (bank rows) of *other* identities for each identity in ``pids``.

    See the module docstring for the strategies. Raises ``DatasetError`` when the bank has no
    pose of another identity, ``ValueError`` for an unknown strategy.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if k < 1:
        raise ValueError("poses per identity must be >= 1")
    pids = [int(p) for p in pids]
    targets, clusters = {}, {}
    labels = None
    c = 0
    if strategy == "diverse":
        c = int(n_clusters) if n_clusters is not None else k
        if c < k:
            raise ValueError(f"diverse needs at least K={k} clusters, got n_clusters={c}")
        labels = cluster_poses(bank, c, seed=seed)
        norm = bank.normalized()
        feats = pose_features(norm)
        members = [np.flatnonzero(labels == j) for j in range(c)]  # sorted bank rows per cluster
        centre_dist = np.zeros(len(bank))
        core = np.zeros(len(bank), dtype=bool)
        for rows in members:
            if len(rows):
                centre_dist[rows] = np.linalg.norm(feats[rows] - feats[rows].mean(axis=0), axis=1)
                core[rows] = centre_dist[rows] <= np.quantile(centre_dist[rows], CORE_QUANTILE)
    for pid in pids:
        others = bank.pids != pid
        if not others.any():
            raise DatasetError(f"the pose bank holds no pose of an identity other than {pid}; "
                               f"a dataset with at least two training identities is needed")
        if strategy == "random":
            rng = np.random.default_rng([int(seed), pid, SALT_RANDOM])
            cand = np.flatnonzero(others)
            chosen = rng.choice(cand, size=k, replace=len(cand) < k)
            targets[pid] = chosen.astype(np.int64)
            clusters[pid] = np.full(k, -1, dtype=np.int64)
            continue
        rng = np.random.default_rng([int(seed), pid, SALT_DIVERSE])
        usable = [j for j in range(c) if others[members[j]].any()]
        order = rng.permutation(np.asarray(usable, dtype=np.int64))
        if len(order) < k:
            # Only when a cluster holds nothing but this identity's own poses: reuse clusters.
            log.warning("identity %d: only %d of %d pose clusters hold other identities' poses; "
                        "some clusters are used twice", pid, len(order), c)
            order = np.resize(order, k)
        chosen, chosen_clusters = [], []
        for j in order[:k]:
            chosen.append(_pick_in_cluster(members[j], others, core, chosen, norm, rng))
            chosen_clusters.append(int(j))
        targets[pid] = np.asarray(chosen, dtype=np.int64)
        clusters[pid] = np.asarray(chosen_clusters, dtype=np.int64)
    return TargetAssignment(targets, clusters, labels, c)


def _pick_in_cluster(rows: np.ndarray, others: np.ndarray, core: np.ndarray, chosen: list, norm: np.ndarray,
                     rng: np.random.Generator) -> int:
    """One bank row of cluster ``rows`` for the diverse strategy (see the module docstring)."""
    cand = rows[others[rows]]
    trimmed = cand[core[cand]]
    cand = trimmed if len(trimmed) else cand
    if chosen:
        fresh = np.setdiff1d(cand, chosen, assume_unique=True)
        cand = fresh if len(fresh) else cand
    if len(cand) > MAX_CANDIDATES:
        cand = np.sort(rng.choice(cand, MAX_CANDIDATES, replace=False))
    if not chosen:
        return int(cand[rng.integers(len(cand))])
    d = pose_distance_matrix(norm[cand], norm[np.asarray(chosen)])           # (n_cand, n_chosen)
    score = np.nan_to_num(d, nan=0.0).min(axis=1)
    top = cand[np.argsort(-score, kind="stable")[: max(1, int(np.ceil(len(cand) * FAR_FRACTION)))]]
    return int(top[rng.integers(len(top))])
