"""Sample grids written during training: ``source | target pose | generated... | target`` per row."""
from __future__ import annotations

import numpy as np
import torch

from reid_aug.pose.maps import pose_maps_to_rgb
from reid_aug.utils.images import image_grid


def _to01(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)


def sample_grid(src_img: torch.Tensor, tgt_pose: torch.Tensor, generated, tgt_img: torch.Tensor,
                pose_mode: str = "pg2") -> np.ndarray:
    """Rows of ``source | target pose | generated[0] | ... | target`` as a uint8 (B*H, C*W, 3) array.

    Images are (B,3,H,W) in [-1, 1], ``tgt_pose`` (B,18,H,W); an entry of ``generated`` may be
    None (a stage not trained yet): a mid-grey column.
    """
    src = _to01(src_img)
    grey = torch.full_like(src, 0.5)
    cols = [src, pose_maps_to_rgb(tgt_pose.detach().float().cpu(), pose_mode)]
    cols += [_to01(g) if g is not None else grey for g in generated]
    cols.append(_to01(tgt_img))
    return image_grid(cols)
