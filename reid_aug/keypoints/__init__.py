from reid_aug.keypoints.skeleton import (  # noqa: F401
    FLIP_PAIRS,
    FLIP_PERMUTATION,
    KEYPOINT_NAMES,
    LIMBS,
    MASK_LIMBS,
    MISSING,
    NUM_KEYPOINTS,
)
