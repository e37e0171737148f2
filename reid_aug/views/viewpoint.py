"""Viewpoint of each image: yaw relative to the camera and a front / side / back label.

The yaw is the lifted torso's orientation (:func:`reid_aug.views.lift.lift_poses`: shoulder and
hip lines in 3D, front or back from the left/right labels, the face where the lines are
edge-on, the nearer side from the nose offset and the one-sided ears, eyes and arms).
0 = facing the camera, +90 = facing the image's right, 180 = back to the camera.

Bins: ``front`` for ``|yaw| < FRONT_MAX`` (60), ``back`` for ``|yaw| > BACK_MIN`` (120), ``side``
in between (either side); ``unknown`` where the pose cannot be lifted (a shoulder or a hip
missing). So a 90-degree turn always changes the bin of a front or back view, and 45 degrees
never turns a front view into a back one.
"""
from __future__ import annotations

import numpy as np

from reid_aug.views.lift import lift_poses

VIEWS = ("front", "side", "back")
UNKNOWN = "unknown"
FRONT_MAX = 60.0
BACK_MIN = 120.0


def wrap_degrees(angle) -> np.ndarray:
    """Angles (degrees) wrapped into ``(-180, 180]``; NaN stays NaN."""
    a = np.asarray(angle, dtype=np.float64)
    out = -((-a + 180.0) % 360.0) + 180.0
    return out


def view_labels(yaw) -> np.ndarray:
    """(N,) object array of ``front`` / ``side`` / ``back`` / ``unknown`` for yaws in degrees."""
    yaw = np.abs(wrap_degrees(yaw))
    out = np.full(yaw.shape, UNKNOWN, dtype=object)
    with np.errstate(invalid="ignore"):
        out[yaw < FRONT_MAX] = "front"
        out[(yaw >= FRONT_MAX) & (yaw <= BACK_MIN)] = "side"
        out[yaw > BACK_MIN] = "back"
    return out


def estimate_views(kps) -> tuple[np.ndarray, np.ndarray]:
    """Yaw (N,) degrees (NaN where the pose cannot be lifted) and view labels (N,) of keypoints
    (N, 18, 2) ``(y, x)``, ``-1`` = missing."""
    yaw = lift_poses(kps).yaw
    return yaw, view_labels(yaw)


def view_table(index, split: str | None = "train"):
    """Per-image yaw and view of a dataset.

    index: a :class:`reid_aug.dataset.market.DatasetIndex` (its ``table`` with ``name``, ``pid``,
    ``split``; keypoints through ``keypoints_for``); split: keep only that split (None = all).
    Returns a DataFrame ``name, pid, split, yaw, view`` (images without a keypoint annotation or
    without their torso get ``yaw = NaN``, ``view = unknown``), in the table's order.
    """
    table = index.table
    if split is not None:
        table = table[table["split"] == split]
    names = table["name"].tolist()
    yaw, labels = estimate_views(np.asarray(index.keypoints_for(names)).reshape(len(names), -1, 2))
    out = table[["name", "pid", "split"]].reset_index(drop=True).copy()
    out["yaw"] = yaw
    out["view"] = labels
    return out


def views_per_identity(table):
    """Which views each identity has: DataFrame indexed by ``pid`` with bool columns ``front``,
    ``side``, ``back`` and ``n_views`` (0-3), from a :func:`view_table` (``unknown`` counts as none)."""
    import pandas as pd

    flags = {v: table.assign(_v=table["view"] == v).groupby("pid")["_v"].any() for v in VIEWS}
    out = pd.DataFrame(flags)
    out["n_views"] = out[list(VIEWS)].sum(axis=1).astype(np.int64)
    return out


def view_count_shares(table) -> dict[int, float]:
    """``{n: share of identities with exactly n of the 3 views}`` for n = 0..3, from a view table."""
    counts = views_per_identity(table)["n_views"]
    return {n: float((counts == n).mean()) if len(counts) else float("nan") for n in range(4)}
