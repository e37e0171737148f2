"""The 18-keypoint COCO/OpenPose skeleton, in the order the Market-1501 pose-transfer
annotations (PG², Deformable GAN, PATN) use.

Coordinates everywhere in reid-aug are ``(y, x)`` pixel indices in the 128x64 image, with
``MISSING = -1`` for a joint the pose estimator did not find.
"""
from __future__ import annotations

NUM_KEYPOINTS = 18
MISSING = -1

KEYPOINT_NAMES: tuple[str, ...] = (
    "nose", "neck",
    "r_shoulder", "r_elbow", "r_wrist",
    "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle",
    "l_hip", "l_knee", "l_ankle",
    "r_eye", "l_eye", "r_ear", "l_ear",
)
KP = {name: i for i, name in enumerate(KEYPOINT_NAMES)}

# Left/right partners: a horizontal flip moves the right shoulder onto the left one.
FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (14, 15), (16, 17),
)


def _flip_permutation() -> tuple[int, ...]:
    perm = list(range(NUM_KEYPOINTS))
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return tuple(perm)


# ``flipped[:, i] = original[:, FLIP_PERMUTATION[i]]`` (an involution).
FLIP_PERMUTATION: tuple[int, ...] = _flip_permutation()

# The 19 OpenPose limbs (for drawing skeletons).
LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10),
    (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
    (2, 16), (5, 17),
)

# The 23 limbs of the PG² / Deformable GAN pose mask (``produce_ma_mask``): the OpenPose
# limbs plus neck-ears, hip-hip, hip-shoulder and ear-ear links, so that the torso and head
# become filled regions rather than a stick figure.
MASK_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9),
    (9, 10), (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16),
    (0, 15), (15, 17), (1, 16), (1, 17), (8, 11), (11, 5), (8, 2), (16, 17),
)

# Joints that must all be present for an image to take part in a training pair
# (Deformable GAN / PATN rule): both shoulders and both hips.
TORSO_JOINTS: tuple[int, ...] = (2, 5, 8, 11)
