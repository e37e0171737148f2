"""18-joint poses from MediaPipe Pose (BlazePose, full model) for datasets without keypoints.

BlazePose finds one person in a frame and returns 33 landmarks (normalised x, y, a depth z and a
visibility in [0, 1]). Re-ID crops are small (Market: 64 x 128) and tight, while BlazePose's detector
expects a person inside a larger frame, so each crop is first *framed*: put in the middle of a square
canvas ``pad`` of its longer side larger on each side (filled with the crop's mean colour), and the
canvas resized to ``frame x frame`` pixels. Landmarks are mapped back to the crop's own pixels.

The 33 -> 18 mapping (OpenPose/COCO order of :mod:`reid_aug.keypoints.skeleton`); BlazePose's "left"
is the person's left, as in the Market annotations::

    nose 0, neck = midpoint(11, 12), r shoulder/elbow/wrist 12/14/16, l 11/13/15,
    r hip/knee/ankle 24/26/28, l 23/25/27, r eye 5, l eye 2, r ear 8, l ear 7

A joint whose visibility is below ``visibility`` (or that falls outside the crop) becomes -1; the neck
needs both shoulders.

Only ``model_complexity=1`` (the "full" model) is used: it ships inside the mediapipe wheel, while
the lite and heavy models are downloaded on first use, which cannot happen offline.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reid_aug.errors import ReidAugError
from reid_aug.keypoints.skeleton import MISSING, NUM_KEYPOINTS

# BlazePose landmark index of each of the 18 joints; -1: the neck (midpoint of the shoulders 11 and 12).
BLAZEPOSE_TO_18 = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
NECK_FROM = (11, 12)
NUM_LANDMARKS = 33
INSTALL_HINT = "pip install -e '.[pose]'"


class PoseExtraMissing(ReidAugError, ImportError):
    """MediaPipe (the ``pose`` extra) is not installed."""


@dataclass(frozen=True)
class Framing:
    """Where a crop sits in the frame the estimator sees: ``frame = (crop + offset) * scale``."""

    offset_y: float
    offset_x: float
    scale: float
    side: int            # the frame is side x side pixels

    def to_crop(self, fy: np.ndarray, fx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Frame pixel coordinates -> crop pixel coordinates (continuous)."""
        return fy / self.scale - self.offset_y, fx / self.scale - self.offset_x


def frame_crop(rgb: np.ndarray, pad: float, side: int) -> tuple[np.ndarray, Framing]:
    """``rgb`` (H, W, 3) uint8 -> the (side, side, 3) uint8 frame the estimator sees, and its :class:`Framing`.

    The crop sits centred on a square canvas of side ``max(H, W) * (1 + 2 * pad)`` filled with its mean
    colour, which is resized (bilinear, OpenCV) to ``side``.
    """
    import cv2

    h, w = rgb.shape[:2]
    canvas_side = int(round(max(h, w) * (1 + 2 * pad)))
    oy, ox = (canvas_side - h) // 2, (canvas_side - w) // 2
    canvas = np.empty((canvas_side, canvas_side, 3), np.uint8)
    canvas[:] = rgb.reshape(-1, 3).mean(axis=0).round().astype(np.uint8)
    canvas[oy:oy + h, ox:ox + w] = rgb
    scale = side / canvas_side
    frame = cv2.resize(canvas, (side, side), interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
    return frame, Framing(float(oy), float(ox), scale, side)


def landmarks_to_crop(landmarks: np.ndarray, framing: Framing) -> np.ndarray:
    """``(33, 4)`` landmarks (x, y normalised to the frame, z, visibility) -> ``(33, 3)`` (y, x, visibility)
    in crop pixel coordinates (continuous: pixel k covers [k, k + 1))."""
    fy, fx = landmarks[:, 1] * framing.side, landmarks[:, 0] * framing.side
    cy, cx = framing.to_crop(fy, fx)
    return np.stack([cy, cx, landmarks[:, 3]], axis=1)


def to_openpose18(points: np.ndarray | None, size: tuple[int, int], visibility: float) -> np.ndarray:
    """``(33, 3)`` (y, x, visibility) crop coordinates (None: no person found) -> int16 ``(18, 2)`` (y, x).

    A joint below ``visibility`` or outside the ``size = (H, W)`` crop is ``MISSING``; the neck is the
    midpoint of the two shoulders and needs both.
    """
    out = np.full((NUM_KEYPOINTS, 2), MISSING, np.int16)
    if points is None:
        return out
    h, w = size
    for j, lm in enumerate(BLAZEPOSE_TO_18):
        if lm >= 0:
            y, x, vis = points[lm]
        else:
            a, b = points[NECK_FROM[0]], points[NECK_FROM[1]]
            y, x, vis = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2, min(a[2], b[2])
        iy, ix = int(np.floor(y)), int(np.floor(x))
        if vis >= visibility and 0 <= iy < h and 0 <= ix < w:
            out[j] = (iy, ix)
    return out


def require_mediapipe():
    """MediaPipe's pose solution module, or :class:`PoseExtraMissing` naming the install command."""
    try:
        from mediapipe.python.solutions import pose as mp_pose
    except ImportError as e:
        raise PoseExtraMissing(f"reid-aug annotate needs MediaPipe: {INSTALL_HINT} (it brings mediapipe with "
                               f"its full pose model inside the wheel; nothing is downloaded)") from e
    return mp_pose


def world_to_openpose18(world: np.ndarray, visibility: float) -> np.ndarray:
    """(33, 4) world landmarks -> (18, 3) (x, y, z) in metres, NaN for a joint below ``visibility`` (the neck:
    midpoint of the shoulders, needs both)."""
    out = np.full((NUM_KEYPOINTS, 3), np.nan)
    for j, lm in enumerate(BLAZEPOSE_TO_18):
        if lm >= 0:
            if world[lm, 3] >= visibility:
                out[j] = world[lm, :3]
        elif min(world[NECK_FROM[0], 3], world[NECK_FROM[1], 3]) >= visibility:
            out[j] = (world[NECK_FROM[0], :3] + world[NECK_FROM[1], :3]) / 2
    return out


def world_yaw(joints: np.ndarray) -> float:
    """Yaw (degrees) of an (18, 3) world skeleton, in :mod:`reid_aug.views`' convention (0 = facing the camera,
    +90 = facing the image's right, 180 = the back): the direction of the person's left-pointing shoulder and
    hip lines in the ground plane, ``atan2(s_z, s_x)``. NaN without both shoulders or both hips."""
    from reid_aug.keypoints.skeleton import KP

    lines = [joints[KP[f"l_{p}"]] - joints[KP[f"r_{p}"]] for p in ("shoulder", "hip")]
    s = np.nanmean(np.stack(lines), axis=0) if not np.isnan(np.stack(lines)).all() else np.full(3, np.nan)
    if np.isnan(s).any():
        return float("nan")
    return float(np.degrees(np.arctan2(s[2], s[0])))


FACE_JOINTS = (0, 14, 15, 16, 17)    # nose, eyes, ears


def openpose_visibility(kps: np.ndarray, joints=FACE_JOINTS) -> np.ndarray:
    """(N, 18, 2) keypoints with the ``joints`` OpenPose would not report at each pose's view set to -1: BlazePose
    places nose, eyes and ears in back views too, OpenPose (and so Market's annotations) does not. The view is the
    analytic lift's yaw (:mod:`reid_aug.views`), the rule :func:`reid_aug.views.rotate.visible_at` (fitted on
    Market's annotations); a pose that cannot be lifted is kept as it is. Only the face by default: on Market the
    rule for arms hid more wrists than OpenPose misses (benchmarks/results/annotate/)."""
    from reid_aug.views.lift import lift_poses
    from reid_aug.views.rotate import visible_at

    kps = np.array(kps, dtype=np.int16, copy=True)
    lifted = lift_poses(kps)
    ok = lifted.ok
    if ok.any():
        hide = ~visible_at(lifted.yaw[ok])
        keep_rule = np.zeros(hide.shape[1], dtype=bool)
        keep_rule[list(joints)] = True
        hide &= keep_rule
        sub = kps[ok]
        sub[hide] = MISSING
        kps[ok] = sub
    return kps


class BlazePose:
    """One MediaPipe Pose estimator (one per process): ``points(rgb)`` -> (33, 3) crop coordinates or None."""

    def __init__(self, pad: float = 0.75, side: int = 384):
        mp_pose = require_mediapipe()
        self.pad, self.side = pad, side
        self._pose = mp_pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)

    def points(self, rgb: np.ndarray) -> np.ndarray | None:
        """``rgb`` (H, W, 3) uint8 -> (33, 3) (y, x, visibility) in crop pixels, None without a person."""
        return self.points_and_world(rgb)[0]

    def points_and_world(self, rgb: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """:meth:`points` and the (33, 4) world landmarks (x right, y down, z away from the camera, metres,
        hip-centred; visibility): MediaPipe's learned 3D lift, from the image itself."""
        frame, framing = frame_crop(rgb, self.pad, self.side)
        result = self._pose.process(frame)
        if result.pose_landmarks is None:
            return None, None
        lms = np.array([(p.x, p.y, p.z, p.visibility) for p in result.pose_landmarks.landmark], np.float64)
        world = None
        if result.pose_world_landmarks is not None:
            world = np.array([(p.x, p.y, p.z, p.visibility) for p in result.pose_world_landmarks.landmark])
        return landmarks_to_crop(lms, framing), world

    def close(self) -> None:
        self._pose.close()
