"""Pose heatmaps, pose masks and flips, computed on the fly (vectorized, batched torch)."""
from reid_aug.pose.maps import (  # noqa: F401
    binary_closing,
    flip_images,
    flip_keypoints,
    flip_pose_maps,
    pose_heatmaps,
    pose_maps_to_rgb,
    pose_masks,
)
