"""Rotate lifted skeletons about the body's vertical axis and project them back to the image.

Rotation (:func:`rotate_points`)
    About the vertical axis through the hip centre, by ``theta`` degrees with the yaw convention
    of :mod:`reid_aug.views.lift` (the new yaw is ``yaw + theta``; +90 turns a frontal person to
    face the image's right): ``x' = xc + (x - xc) cos(theta) - z sin(theta)``,
    ``z' = (x - xc) sin(theta) + z cos(theta)``, ``y' = y``. Joint labels do not move: the
    person's right wrist stays the right wrist, wherever it lands in the image.

Projection and placement (:func:`project`)
    Orthographic, at the source image's scale: ``(y', x')`` rounded to pixels. The axis passes
    through the hip centre and rotating about a vertical axis leaves every ``y`` alone, so the
    scale, the foot line (the lowest ankle / knee) and the horizontal centre (the hip centre) of
    the source image are kept by construction. Joints that land outside the frame become ``-1``.

Visibility (:data:`VISIBILITY`, :func:`visible_at`)
    A joint the rotation turns away from the camera becomes ``-1``, following OpenPose's behaviour
    as Market-1501's annotations show it. For each joint kind the rule is an interval of
    ``psi``: the yaw for the nose, and for a left/right joint the yaw signed so that positive
    means *its* side turned towards the camera (``psi = yaw`` for right joints, ``-yaw`` for left
    ones). The intervals were fitted on Market (:func:`fit_visibility_intervals`, majority rule;
    ``benchmarks/views_visibility.py``, counts in ``docs/views.md``). Neck, shoulders and hips are
    always kept; a joint missing in the source stays missing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_aug.keypoints.skeleton import KP, MISSING, NUM_KEYPOINTS
from reid_aug.views.lift import LiftedPoses, check_keypoints, lift_poses
from reid_aug.views.viewpoint import wrap_degrees

# Visibility intervals (degrees of psi, see the module docstring), fitted on the 27,052 liftable
# Market-1501 annotations (train + test) by benchmarks/views_visibility.py; an interval
# ``(lo, hi)`` with ``hi > 180`` wraps past the back view. ``None`` = always kept.
VISIBILITY: dict[str, tuple[float, float] | None] = {
    "nose": (-90.0, 90.0),
    "eye": (-45.0, 90.0),
    "ear": (0.0, 185.0),
    "elbow": (-50.0, 215.0),
    "wrist": (-40.0, 175.0),
    "knee": None,
    "ankle": None,
}

# (joint, kind, side): side +1 = the person's right, -1 = left, 0 = centre.
JOINT_RULES: tuple[tuple[int, str, int], ...] = (
    (KP["nose"], "nose", 0),
    (KP["r_eye"], "eye", 1), (KP["l_eye"], "eye", -1),
    (KP["r_ear"], "ear", 1), (KP["l_ear"], "ear", -1),
    (KP["r_elbow"], "elbow", 1), (KP["l_elbow"], "elbow", -1),
    (KP["r_wrist"], "wrist", 1), (KP["l_wrist"], "wrist", -1),
    (KP["r_knee"], "knee", 1), (KP["l_knee"], "knee", -1),
    (KP["r_ankle"], "ankle", 1), (KP["l_ankle"], "ankle", -1),
)


def joint_psi(yaw, side: int) -> np.ndarray:
    """``psi`` of a joint on ``side`` (+1 right, -1 left, 0 centre) at yaws (degrees), in (-180, 180]."""
    return wrap_degrees(np.asarray(yaw, dtype=np.float64) * (side if side else 1))


def in_interval(psi: np.ndarray, interval: tuple[float, float] | None) -> np.ndarray:
    """psi (degrees) inside the cyclic interval ``[lo, hi]`` (``None`` = everything)."""
    psi = np.asarray(psi, dtype=np.float64)
    if interval is None:
        return np.ones(psi.shape, dtype=bool)
    lo, hi = interval
    if hi - lo >= 360.0:
        return np.ones(psi.shape, dtype=bool)
    return (psi - lo) % 360.0 <= (hi - lo)


def visible_at(yaw, rules: dict | None = None) -> np.ndarray:
    """(N, 18) bool: the joints OpenPose would report for a person at yaw (N,) degrees."""
    rules = VISIBILITY if rules is None else rules
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    out = np.ones((len(yaw), NUM_KEYPOINTS), dtype=bool)
    for joint, kind, side in JOINT_RULES:
        out[:, joint] = in_interval(joint_psi(yaw, side), rules[kind])
    return out


def rotate_points(points: np.ndarray, theta) -> np.ndarray:
    """Rotate lifted points (N, 18, 3) ``(y, x, z)`` by ``theta`` degrees (scalar or (N,)) about the
    vertical axis through each pose's hip centre; NaN stays NaN. Returns (N, 18, 3)."""
    points = np.asarray(points, dtype=np.float64)
    t = np.radians(np.broadcast_to(np.asarray(theta, dtype=np.float64), (len(points),)))[:, None]
    xc = points[:, [KP["r_hip"], KP["l_hip"]], 1].mean(axis=1)[:, None]
    x, z = points[..., 1] - xc, points[..., 2]
    out = points.copy()
    out[..., 1] = xc + x * np.cos(t) - z * np.sin(t)
    out[..., 2] = x * np.sin(t) + z * np.cos(t)
    return out


def project(points: np.ndarray, yaw, size=(128, 64), rules: dict | None = None) -> np.ndarray:
    """Orthographic projection of (N, 18, 3) points of a person at yaw (N,) degrees to int16
    (N, 18, 2) ``(y, x)`` keypoints: ``-1`` where the point is NaN, lands outside the ``size``
    (H, W) frame, or is hidden by the visibility rule."""
    points = np.asarray(points, dtype=np.float64)
    h, w = int(size[0]), int(size[1])
    with np.errstate(invalid="ignore"):
        yx = np.rint(points[..., :2])
        keep = ~np.isnan(yx).any(axis=-1)
        keep &= (yx[..., 0] >= 0) & (yx[..., 0] < h) & (yx[..., 1] >= 0) & (yx[..., 1] < w)
    keep &= visible_at(yaw, rules)
    out = np.full(points.shape[:-1] + (2,), MISSING, dtype=np.int16)
    out[keep] = yx[keep].astype(np.int16)
    return out


@dataclass(frozen=True)
class RotatedPoses:
    """``keypoints``: (N, A, 18, 2) int16 ``(y, x)`` target poses (``-1`` = missing; all ``-1`` where the
    source cannot be lifted); ``yaw``: (N, A) the target yaw (degrees); ``source_yaw``: (N,);
    ``angles``: (A,) the rotations (degrees)."""

    keypoints: np.ndarray
    yaw: np.ndarray
    source_yaw: np.ndarray
    angles: np.ndarray


def rotate_poses(kps, angles, size=(128, 64), lifted: LiftedPoses | None = None) -> RotatedPoses:
    """Each pose of ``kps`` (N, 18, 2) ``(y, x)`` rotated by each of ``angles`` (degrees) and
    projected back into its own frame (``size`` = (H, W)); see the module docstring.

    ``lifted`` may pass the poses' :func:`lift_poses` result to avoid lifting twice.
    """
    kps = check_keypoints(kps)
    angles = np.asarray(angles, dtype=np.float64).reshape(-1)
    lifted = lift_poses(kps) if lifted is None else lifted
    n = len(kps)
    out = np.full((n, len(angles), NUM_KEYPOINTS, 2), MISSING, dtype=np.int16)
    yaws = np.full((n, len(angles)), np.nan)
    ok = lifted.ok
    for a, theta in enumerate(angles):
        yaw = wrap_degrees(lifted.yaw[ok] + theta)
        out[ok, a] = project(rotate_points(lifted.points[ok], theta), yaw, size)
        yaws[ok, a] = yaw
    return RotatedPoses(out, yaws, lifted.yaw, angles)


def fit_visibility_intervals(yaw, present, step: float = 5.0) -> dict[str, tuple[tuple[float, float] | None, float]]:
    """Fit :data:`VISIBILITY` on annotations: for each joint kind, the cyclic interval of ``psi``
    (on a ``step``-degree grid) whose "visible inside, missing outside" rule agrees with the most
    annotations, left and right joints pooled.

    yaw: (N,) degrees (lifted source yaws); present: (N, 18) bool. Returns ``{kind: (interval or
    None for everything, agreement)}``, agreement = share of (image, joint) cases the rule gets right.
    """
    yaw = np.asarray(yaw, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    nbins = int(round(360.0 / step))
    out = {}
    for kind in dict.fromkeys(k for _, k, _ in JOINT_RULES):
        psi, seen = [], []
        for joint, k, side in JOINT_RULES:
            if k == kind:
                psi.append(joint_psi(yaw, side))
                seen.append(present[:, joint])
        psi, seen = np.concatenate(psi), np.concatenate(seen)
        b = np.minimum(((psi + 180.0) // step).astype(np.int64), nbins - 1)
        gain = np.bincount(b, weights=np.where(seen, 1.0, -1.0), minlength=nbins)   # inside: +1 if seen
        cyc = np.concatenate([[0.0], np.cumsum(np.concatenate([gain, gain]))])
        best, best_iv = float(gain.sum()), None                                    # always visible
        for start in range(nbins):
            sums = cyc[start + 1:start + nbins] - cyc[start]                       # lengths 1..nbins-1
            length = int(np.argmax(sums)) + 1
            if sums[length - 1] > best:
                best = float(sums[length - 1])
                lo = -180.0 + start * step
                best_iv = (lo, lo + length * step)
        agreement = (best + float((~seen).sum())) / len(seen)
        out[kind] = (best_iv, agreement)
    return out
