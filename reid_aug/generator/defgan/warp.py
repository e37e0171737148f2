"""Deformable skip connection: warp a feature map by each part's affine transform, mask, max-aggregate.

The official ``AffineTransformLayer(10, 'max', image_size)`` of ``pose_transform.py``: the feature
map is transformed once per part (``tf.contrib.image.transform``, whose default interpolation is
``NEAREST`` and whose outside fill is 0), each result is multiplied by that part's mask (resized to
the feature map by nearest neighbour) and the maximum over the parts is taken.

Note (official behaviour, kept): the masked-out pixels of a part are zeros that take part in the
maximum, so wherever some part's mask is 0 the output is ``max(0, ...)``: negative features survive
only where every part covers the pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reid_aug.generator.defgan.affine import resize_masks


def deform_skip(feat: torch.Tensor, theta: torch.Tensor, masks: torch.Tensor, mode: str = "nearest") -> torch.Tensor:
    """Warp ``feat`` by every part, mask, max over parts.

    - ``feat``: ``(B, C, h, w)`` source-stream features.
    - ``theta``: ``(B, P, 2, 3)`` normalised target -> source maps (``affine_grid``, ``align_corners=False``;
      resolution-independent, see :func:`reid_aug.generator.defgan.affine.pixel_to_theta`).
    - ``masks``: ``(B, P, H, W)`` part masks at any resolution (nearest-resized to ``h x w``).
    - ``mode``: ``grid_sample`` interpolation, ``"nearest"`` (official) or ``"bilinear"``.

    Returns ``(B, C, h, w)``. The P warps are one ``grid_sample`` call on a ``(B, P*h, w)`` grid, so
    the feature map is not copied P times.
    """
    b, c, h, w = feat.shape
    p = theta.shape[1]
    grid = F.affine_grid(theta.reshape(b * p, 2, 3).to(feat.dtype), [b * p, 1, h, w], align_corners=False)
    grid = grid.view(b, p * h, w, 2)
    warped = F.grid_sample(feat, grid, mode=mode, padding_mode="zeros", align_corners=False)
    warped = warped.view(b, c, p, h, w)
    m = resize_masks(masks.to(feat.dtype), (h, w))                        # (B, P, h, w)
    return (warped * m[:, None]).amax(dim=2)
