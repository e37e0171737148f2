"""Target poses from the source's own pose seen from another viewpoint (issue 16; :mod:`reid_aug.views`).

Instead of borrowing another person's pose from the bank, each synthesized image shows its source
person's own skeleton lifted to 3D, rotated about the body's vertical axis and projected back
(:func:`reid_aug.views.rotate.rotate_poses`). Two strategies, registered beside ``random`` and ``diverse``:

``rotate``  item k of a unit uses the rotation ``angles[k % len(angles)]`` (``--set angles=[45,90,180,270]``).
``views``   per identity: the views it already has (front / side / back, estimated from its sources' lifted
            poses) are counted, and each of its K images goes to the view it has fewest of (ties broken at
            random), at that view's canonical yaw (0, +-90, 180 degrees) plus a uniform jitter of
            +-:data:`JITTER` degrees; the source of each image is a random one of the identity's sources.

Only sources whose pose can be lifted (both shoulders and both hips) are used; identities without one are
skipped (and reported). Everything is drawn from ``default_rng([seed, *unit, SALT_VIEWS])``, so the choice
for a unit depends only on the seed, the unit and its sources. The plan records per image the rotation
(``angle``) and the source's estimated view (``source_view``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_aug.views.viewpoint import VIEWS, view_labels, wrap_degrees

SALT_VIEWS = 4
JITTER = 15.0
CANONICAL_YAW = {"front": (0.0,), "side": (90.0, -90.0), "back": (180.0,)}
DEFAULT_ANGLES = (45.0, 90.0, 180.0, 270.0)


@dataclass(frozen=True)
class ViewStrategy:
    """A registered from-the-source strategy: ``choose(units, yaw, seed, angles)`` returns, per unit, the
    ``[(source name, angle)]`` of its K images (see :func:`choose_rotate`)."""

    name: str
    choose: object
    summary: str = ""


VIEW_STRATEGIES: dict[str, ViewStrategy] = {}


def register_view_strategy(name: str, summary: str = ""):
    def deco(fn):
        VIEW_STRATEGIES[name] = ViewStrategy(name, fn, summary)
        return fn
    return deco


@register_view_strategy("rotate", summary="each source's own pose rotated by the listed angles")
def choose_rotate(units: list, yaw: dict, seed: int, angles) -> dict:
    """``units``: ``[(unit, k, [(source, k_of_unit)])]`` (sources already liftable); ``yaw``: source -> degrees.
    Item k keeps its source and turns by ``angles[k % len(angles)]``."""
    angles = [float(a) for a in angles]
    return {unit: [(name, angles[k % len(angles)]) for name, k in items] for unit, _, items in units}


@register_view_strategy("views", summary="fill the views (front/side/back) each identity lacks")
def choose_views(units: list, yaw: dict, seed: int, angles=None) -> dict:
    """For each unit: K (source, angle) pairs that balance its views (module docstring)."""
    out = {}
    for unit, k, items in units:
        rng = np.random.default_rng([int(seed), *[int(v) for v in unit], SALT_VIEWS])
        sources = sorted({name for name, _ in items})
        have = view_labels([yaw[s] for s in sources])
        counts = {v: int((have == v).sum()) for v in VIEWS}
        chosen = []
        for _ in range(k):
            least = min(counts.values())
            view = VIEWS[int(rng.choice([i for i, v in enumerate(VIEWS) if counts[v] == least]))]
            counts[view] += 1
            canon = CANONICAL_YAW[view]
            target = canon[int(rng.integers(len(canon)))] + rng.uniform(-JITTER, JITTER)
            src = sources[int(rng.integers(len(sources)))]
            chosen.append((src, float(np.round(wrap_degrees(target - yaw[src]), 1))))
        out[unit] = chosen
    return out


def liftable_sources(names, kps) -> tuple[dict, set]:
    """``({name: yaw}, {names that cannot be lifted})`` of source images with their own keypoints (N, 18, 2)."""
    from reid_aug.views.lift import lift_poses

    lifted = lift_poses(np.asarray(kps))
    yaw = {n: float(y) for n, y, ok in zip(names, lifted.yaw, lifted.ok) if ok}
    return yaw, {n for n, ok in zip(names, lifted.ok) if not ok}


def rotated_targets(source_kps: np.ndarray, angles: np.ndarray, own_sizes, image_size) -> np.ndarray:
    """int16 (N, 18, 2): source ``i``'s own keypoints (in its ``own_sizes[i]`` frame) rotated by ``angles[i]``,
    projected in that frame, then rescaled to ``image_size`` (None: kept)."""
    from reid_aug.pairs.torch_dataset import scale_keypoints
    from reid_aug.views.rotate import rotate_poses

    out = np.empty((len(source_kps), 18, 2), np.int16)
    sizes = np.asarray(own_sizes, dtype=np.int64).reshape(-1, 2)
    angles = np.asarray(angles, dtype=np.float64)
    groups = np.concatenate([sizes, angles[:, None]], axis=1)
    for g in np.unique(groups, axis=0):        # one rotate_poses call per (frame size, angle)
        idx = np.flatnonzero((groups == g).all(axis=1))
        size = (int(g[0]), int(g[1]))
        rot = rotate_poses(source_kps[idx], [g[2]], size).keypoints[:, 0]
        out[idx] = scale_keypoints(rot, size, tuple(image_size)) if image_size else rot
    return out


def view_shares_before_after(index, plan) -> dict:
    """``{"before": {n: share}, "after": {n: share}}``: the share of the plan's identities with n of the 3 views
    (front / side / back) among their real training images, and with the synthesized targets added (a target's
    view is its source's yaw plus the rotation)."""
    import pandas as pd

    from reid_aug.views.viewpoint import view_count_shares, view_table

    real = view_table(index)
    real = real[real["pid"].isin(plan.identities)]
    t = plan.table
    yaw = dict(zip(real["name"], real["yaw"]))
    synth = pd.DataFrame({"pid": t["pid"].to_numpy(),
                          "view": view_labels([yaw[s] + a for s, a in zip(t["source"], t["angle"])])})
    both = pd.concat([real[["pid", "view"]], synth], ignore_index=True)
    return {"before": view_count_shares(real), "after": view_count_shares(both)}
