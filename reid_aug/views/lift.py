"""Analytic 2D -> 3D lift of 18-joint skeletons (no weights).

Scaled orthographic projection with fixed bone-length ratios (Taylor, "Reconstruction of
articulated objects from point correspondences in a single uncalibrated image", CVIU 2000).

Frames
    Image points are ``(y, x)`` pixels (``x`` right, ``y`` down). The lifted points are
    ``(y, x, z)`` pixels with ``z`` the depth *away from the camera*, relative to the hip centre
    (the mean of the two hips), which lies at ``z = 0``.
    The body frame of :data:`TEMPLATE` is ``(lateral, up, forward)`` in torso lengths: lateral
    points to the person's *right*, forward to where the chest faces; origin = the hip centre.

Yaw ``phi`` (degrees, in ``(-180, 180]``)
    0 = facing the camera, +90 = facing the image's right (the person's right side towards the
    camera), -90 = facing the image's left, 180 = back to the camera. A body point at
    ``(a, u, c)`` in the body frame lands at ``x = -a cos(phi) + c sin(phi)``,
    ``z = -a sin(phi) - c cos(phi)`` (times the scale) relative to the hip centre.

Lift, per image with both shoulders and both hips (else everything is ``NaN``)
    1. Scale ``s`` (pixels per torso length) = the 2D distance neck -> hip centre (the neck, or
       the shoulder midpoint where the neck is missing). The torso is assumed upright and parallel
       to the image plane (the neck and the hip centre get ``z = 0``).
    2. Torso yaw from the shoulder and hip lines together (a Taylor bone each):
       ``cos(phi) = -(dx_shoulders + dx_hips) / (s (W_shoulders + W_hips))`` with
       ``dx = x_right - x_left``: the left/right labels say front (right joint on the image's
       left) or back. Face rule: when the lines are nearly edge-on (``|cos| < FACE_RULE_COS``)
       the labels are unreliable, so a visible nose or eye means facing the camera
       (``cos >= 0``) and no face joint means facing away.
    3. Which side is nearer (the sign of ``sin(phi)``) by a vote (:func:`near_side_vote`): the
       nose's horizontal offset from the neck (weight 2: the face points where the body faces),
       and which ear, which eye and which arm (elbow + wrist) OpenPose found on one side only
       (far-side joints are the ones it loses; see docs/views.md for the counts).
    4. Shoulders and hips take the depth of their template point at that yaw.
    5. Every other joint hangs from its parent (the first present joint of :data:`PARENTS`) with
       relative depth ``+-sqrt(L^2 - d^2 / s^2) * s`` (``d`` the 2D length, ``L`` the template
       distance; 0 when ``d > L s``). The sign is the sign of the template bone's depth at the
       yaw, which encodes the bend rules: knees bend forward (thigh forward, shin backward, so the
       knee lies in front of the hip-ankle line), elbows bend backward (upper arm backward,
       forearm forward), the nose lies in front of the neck, eyes beside and ears behind it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_aug.keypoints.skeleton import KP, MISSING, NUM_KEYPOINTS

# Template skeleton, body frame (lateral to the person's right, up, forward), torso lengths,
# hip centre at the origin, neck at (0, 1, 0). Widths and bone lengths are the upper quartile of
# the 2D length / torso length over Market-1501's annotated training images (OpenPose's
# landmarks). A projection is never longer than its bone, but per-person proportions and keypoint
# noise spread the projections above the typical length, and the projected widths pile up just
# below the frontal width (the arcsine law of ``W cos(yaw)``), so the upper quartile, not the
# maximum: shoulder width 0.82, hip width 0.52, upper arm 0.58, forearm 0.50, thigh 0.80, shin
# 0.79, neck->nose 0.51, nose->eye 0.12, eye->ear 0.24, ear->ear 0.45. Drillis & Contini (via
# Winter, Biomechanics and Motor Control of Human Movement) give 0.90, 0.66, 0.65, 0.51, 0.85, 0.85
# for the first six (docs/views.md). The forward offsets encode the bend rules.
TEMPLATE = np.array([
    (0.0, 1.46, 0.22),                                          # nose
    (0.0, 1.0, 0.0),                                            # neck
    (0.41, 1.0, 0.0), (0.41, 0.43, -0.10), (0.41, -0.05, 0.04),        # right shoulder, elbow, wrist
    (-0.41, 1.0, 0.0), (-0.41, 0.43, -0.10), (-0.41, -0.05, 0.04),     # left shoulder, elbow, wrist
    (0.26, 0.0, 0.0), (0.26, -0.79, 0.12), (0.26, -1.57, 0.0),         # right hip, knee, ankle
    (-0.26, 0.0, 0.0), (-0.26, -0.79, 0.12), (-0.26, -1.57, 0.0),      # left hip, knee, ankle
    (0.08, 1.53, 0.17), (-0.08, 1.53, 0.17),                    # right, left eye
    (0.225, 1.50, -0.02), (-0.225, 1.50, -0.02),                # right, left ear
], dtype=np.float64)

R_SHOULDER, L_SHOULDER, R_HIP, L_HIP = KP["r_shoulder"], KP["l_shoulder"], KP["r_hip"], KP["l_hip"]
NECK, NOSE = KP["neck"], KP["nose"]
TORSO = (R_SHOULDER, L_SHOULDER, R_HIP, L_HIP)
FACE = (NOSE, KP["r_eye"], KP["l_eye"])
SHOULDER_WIDTH = float(TEMPLATE[R_SHOULDER, 0] - TEMPLATE[L_SHOULDER, 0])
HIP_WIDTH = float(TEMPLATE[R_HIP, 0] - TEMPLATE[L_HIP, 0])

# Below this |cos(yaw)| the shoulder/hip lines are nearly edge-on and their left/right order is
# noise: the face decides front or back instead (about 70 to 110 degrees from the camera).
FACE_RULE_COS = 0.35
# A nose offset from the neck below this many torso lengths does not vote on the near side.
NOSE_VOTE_MIN = 0.08

# Parents of the joints lifted by the bone rule, in lifting order; the first present one is used
# (the last one is a torso joint, present whenever the pose can be lifted).
PARENTS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (KP["r_elbow"], (R_SHOULDER,)), (KP["r_wrist"], (KP["r_elbow"], R_SHOULDER)),
    (KP["l_elbow"], (L_SHOULDER,)), (KP["l_wrist"], (KP["l_elbow"], L_SHOULDER)),
    (KP["r_knee"], (R_HIP,)), (KP["r_ankle"], (KP["r_knee"], R_HIP)),
    (KP["l_knee"], (L_HIP,)), (KP["l_ankle"], (KP["l_knee"], L_HIP)),
    (NOSE, (NECK, R_SHOULDER)), (KP["r_eye"], (NOSE, NECK, R_SHOULDER)), (KP["l_eye"], (NOSE, NECK, L_SHOULDER)),
    (KP["r_ear"], (KP["r_eye"], NOSE, NECK, R_SHOULDER)), (KP["l_ear"], (KP["l_eye"], NOSE, NECK, L_SHOULDER)),
)


@dataclass(frozen=True)
class LiftedPoses:
    """Lifted skeletons.

    ``points``: (N, 18, 3) float64 ``(y, x, z)`` pixels, ``z`` away from the camera relative to the
    hip centre, ``NaN`` for a missing joint (and for a whole pose without its torso);
    ``scale``: (N,) pixels per torso length (``NaN`` without torso); ``yaw``: (N,) degrees
    (see the module docstring; ``NaN`` without torso).
    """

    points: np.ndarray
    scale: np.ndarray
    yaw: np.ndarray

    def __len__(self) -> int:
        return len(self.points)

    @property
    def ok(self) -> np.ndarray:
        """(N,) bool: the pose could be lifted (both shoulders and both hips present)."""
        return ~np.isnan(self.scale)


def check_keypoints(kps) -> np.ndarray:
    """``kps`` as an int64 (N, 18, 2) array; ValueError naming the shape otherwise."""
    kps = np.asarray(kps)
    if kps.ndim != 3 or kps.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must be (N, {NUM_KEYPOINTS}, 2) (y, x), got {kps.shape}")
    return kps.astype(np.int64)


def present_mask(kps: np.ndarray) -> np.ndarray:
    """(N, 18) bool: both coordinates present."""
    return (kps[..., 0] != MISSING) & (kps[..., 1] != MISSING)


def template_depth(joints, yaw_rad: np.ndarray) -> np.ndarray:
    """Depth (torso lengths, away from the camera) of template joints at yaws.

    joints: index or list of k joints; yaw_rad: (N,). Returns (N, k) (or (N,) for one joint)."""
    t = TEMPLATE[joints]
    lateral, forward = t[..., 0], t[..., 2]
    sin, cos = np.sin(yaw_rad), np.cos(yaw_rad)
    if t.ndim == 1:
        return -lateral * sin - forward * cos
    return -lateral[None] * sin[:, None] - forward[None] * cos[:, None]


def near_side_vote(pts: np.ndarray, present: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N,) +1 where the person's right side is the nearer one (``sin(yaw) > 0``), -1 for the left.

    pts: (N, 18, 2) float ``(y, x)`` (NaN missing); present: (N, 18); scale: (N,). Votes: the nose's
    horizontal offset from the neck (x2, when above NOSE_VOTE_MIN torso lengths), and ``+1`` / ``-1``
    for an ear, an eye or an arm (elbow and wrist counted together) found on the right / left side
    only. A tie goes to the right side.
    """
    with np.errstate(invalid="ignore"):
        nose_dx = (pts[:, NOSE, 1] - pts[:, NECK, 1]) / scale
    nose = np.where(np.abs(nose_dx) > NOSE_VOTE_MIN, np.sign(np.nan_to_num(nose_dx)), 0.0)
    p = present.astype(np.int64)
    ears = p[:, KP["r_ear"]] - p[:, KP["l_ear"]]
    eyes = p[:, KP["r_eye"]] - p[:, KP["l_eye"]]
    arms = np.sign(p[:, [KP["r_elbow"], KP["r_wrist"]]].sum(1) - p[:, [KP["l_elbow"], KP["l_wrist"]]].sum(1))
    vote = 2 * nose + ears + eyes + arms
    return np.where(vote >= 0, 1.0, -1.0)


def torso_yaw(pts: np.ndarray, present: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(N,) yaw in radians from the shoulder and hip lines, the face rule and the near-side vote."""
    dx = (pts[:, R_SHOULDER, 1] - pts[:, L_SHOULDER, 1]) + (pts[:, R_HIP, 1] - pts[:, L_HIP, 1])
    with np.errstate(invalid="ignore"):
        cos = np.clip(-dx / (scale * (SHOULDER_WIDTH + HIP_WIDTH)), -1.0, 1.0)
    face = present[:, list(FACE)].any(axis=1)
    edge_on = np.abs(cos) < FACE_RULE_COS
    cos = np.where(edge_on, np.where(face, np.abs(cos), -np.abs(cos)), cos)
    sin = near_side_vote(pts, present, scale) * np.sqrt(np.clip(1.0 - cos ** 2, 0.0, 1.0))
    return np.arctan2(sin, cos)


def lift_poses(kps) -> LiftedPoses:
    """Lift (N, 18, 2) int ``(y, x)`` keypoints (``-1`` = missing) to 3D; see the module docstring.

    Returns :class:`LiftedPoses` (points (N, 18, 3) ``(y, x, z)``, scale (N,), yaw (N,) degrees).
    """
    kps = check_keypoints(kps)
    n = len(kps)
    present = present_mask(kps)
    pts = kps.astype(np.float64)
    pts[~present] = np.nan
    torso_ok = present[:, list(TORSO)].all(axis=1)
    neck = np.where(present[:, NECK, None], pts[:, NECK], pts[:, [R_SHOULDER, L_SHOULDER]].mean(axis=1))
    hip_centre = pts[:, [R_HIP, L_HIP]].mean(axis=1)
    scale = np.maximum(np.linalg.norm(neck - hip_centre, axis=1), 1.0)
    scale[~torso_ok] = np.nan
    yaw = torso_yaw(pts, present, scale)

    z = np.full((n, NUM_KEYPOINTS), np.nan)
    z[:, NECK] = 0.0
    body = list(TORSO)
    z[:, body] = template_depth(body, yaw) * scale[:, None]
    for child, parents in PARENTS:
        parent = _first_present(present, parents)                        # (N,) joint index
        rows = np.arange(n)
        d = np.linalg.norm(pts[:, child] - pts[rows, parent], axis=1)
        length = np.linalg.norm(TEMPLATE[child] - TEMPLATE[parent], axis=1)    # (N,)
        with np.errstate(invalid="ignore"):
            mag = np.sqrt(np.clip(length ** 2 - (d / scale) ** 2, 0.0, None)) * scale
        sign = np.where(_bone_template_depth(child, parent, yaw) >= 0, 1.0, -1.0)
        z[:, child] = z[rows, parent] + sign * mag
    points = np.concatenate([pts, z[..., None]], axis=-1)
    points[~present] = np.nan
    points[~torso_ok] = np.nan
    return LiftedPoses(points, scale, np.where(torso_ok, np.degrees(yaw), np.nan))


def _bone_template_depth(child: int, parent: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """(N,) depth change of the template bone parent -> child at each image's yaw."""
    delta = TEMPLATE[child][None] - TEMPLATE[parent]                      # (N, 3)
    return -delta[:, 0] * np.sin(yaw) - delta[:, 2] * np.cos(yaw)


def _first_present(present: np.ndarray, candidates: tuple[int, ...]) -> np.ndarray:
    """(N,) the first of ``candidates`` present in each row (the last one where none is)."""
    out = np.full(len(present), candidates[-1], dtype=np.int64)
    for j in reversed(candidates):
        out = np.where(present[:, j], j, out)
    return out
