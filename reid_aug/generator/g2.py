"""G2, the refinement network of PG²: a fully convolutional U-Net that predicts a difference map.

Follows the official code (``UAE_noFC_After2Noise`` with ``noise_dim=0`` and ``repeat_num - 2``
levels). Shapes at the paper size (n = 128, 128 x 64, R = N - 2 = 3 levels)::

    input  concat(g1_img 3, src_img 3)                           (B,   6, 128, 64)
    stem   conv3x3 -> n, ReLU
    level k = 1..R: two conv3x3+ReLU at width n*k (128, 256, 384); levels k >= 2 keep a skip;
           then (k < R) stride-2 conv3x3+ReLU at the same width     (B, 384,  32, 16) at level R
    decoder step i = 0..R-1: (i < R-1) concat skip_{R-i}; two conv3x3+ReLU at width n;
           (i < R-1) nearest x2 upsample
    output conv3x3 -> 3 = difference map                          (B,   3, 128, 64)

As in the official code the bottom level's output is also its own skip, so the first decoder
step sees ``concat(x, x)``, and the top level (k = 1) keeps no skip ("skips at the lower levels").
The refined image is ``g1_img + diff``; that sum is done by the caller
(:func:`reid_aug.generator.pg2.compose`, the one place where G1 and G2 are put together).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from reid_aug.generator.g1 import init_xavier, num_levels


class G2(nn.Module):
    """``forward(g1_img (B,3,H,W), src_img (B,3,H,W)) -> diff (B,3,H,W)``."""

    def __init__(self, image_size: tuple[int, int] = (128, 64), width: int = 128, levels: int | None = None,
                 img_channels: int = 3, zero_init: bool = False):
        super().__init__()
        height, img_width = image_size
        self.levels = levels or num_levels(height) - 2
        n, R = width, self.levels
        if R < 1:
            raise ValueError(f"G2 needs at least one level, got {R}")
        scale = 2 ** (R - 1)
        if height % scale or img_width % scale:
            raise ValueError(f"image size {height}x{img_width} is not divisible by 2^(levels-1) = {scale}")
        self.stem = nn.Conv2d(2 * img_channels, n, 3, padding=1)
        enc, down = [], []
        c_in = n
        for k in range(1, R + 1):
            enc.append(nn.Sequential(nn.Conv2d(c_in, n * k, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(n * k, n * k, 3, padding=1), nn.ReLU()))
            if k < R:
                down.append(nn.Sequential(nn.Conv2d(n * k, n * k, 3, stride=2, padding=1), nn.ReLU()))
            c_in = n * k
        self.enc = nn.ModuleList(enc)
        self.down = nn.ModuleList(down)
        dec = []
        c = n * R
        for i in range(R):
            k = R - i  # the level this decoder step works at
            c_cat = c + (n * k if i < R - 1 else 0)
            dec.append(nn.Sequential(nn.Conv2d(c_cat, n, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(n, n, 3, padding=1), nn.ReLU()))
            c = n
        self.dec = nn.ModuleList(dec)
        self.out = nn.Conv2d(n, img_channels, 3, padding=1)
        init_xavier(self)
        if zero_init:  # difference map 0 at the start: the refined image starts as G1's
            nn.init.zeros_(self.out.weight)

    def forward(self, g1_img: torch.Tensor, src_img: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(torch.cat([g1_img, src_img], dim=1)))
        skips = []
        for k, block in enumerate(self.enc):
            x = block(x)
            if k > 0:
                skips.append(x)
            if k < self.levels - 1:
                x = self.down[k](x)
        for i, block in enumerate(self.dec):
            if i < self.levels - 1:
                x = torch.cat([x, skips[-1 - i]], dim=1)
            x = block(x)
            if i < self.levels - 1:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.out(x)
