"""G1, the pose-integration generator of PG² (Ma et al., NIPS 2017).

Follows the official 128x64 code (``GeneratorCNN_Pose_UAEAfterResidual`` in
charliememory/Pose-Guided-Person-Image-Generation, ``models.py``), with ReLU as in its
trainer and xavier-uniform weights / zero biases as in TF-slim's defaults.

Shapes at the paper size (n = 128, H x W = 128 x 64, N = log2(H) - 2 = 5 levels)::

    input  concat(src_img 3, tgt_pose 18)                     (B,  21, 128, 64)
    stem   conv3x3 -> n, ReLU                                  (B, 128, 128, 64)
    level k = 1..N: residual block at width n*k (two conv3x3+ReLU, identity add) -> skip_k;
           then (k < N) stride-2 conv3x3+ReLU to width n*(k+1)
                                                               (B, 640,   8,  4) at level 5
    bottleneck  flatten 8*4*640 -> linear 64 -> linear 8*4*n  (B, 128,   8,  4)
    decoder level k = N..1: concat skip_k, residual block at the concatenated width,
           then (k > 1) nearest x2 upsample + conv1x1+ReLU to width n*(k-1)
    output conv3x3 -> 3, linear (no tanh)                      (B,   3, 128, 64)

No normalization and no dropout anywhere.
"""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F


def num_levels(height: int) -> int:
    """PG²'s depth rule ``N = log2(H) - 2``: 5 levels at H = 128, 6 at H = 256."""
    return int(math.log2(height)) - 2


def init_xavier(module: nn.Module, kinds: tuple[type, ...] = (nn.Conv2d, nn.Linear)) -> None:
    """TF-slim (and Keras) defaults: xavier/Glorot-uniform weights, zero biases, for every layer of ``kinds``."""
    for m in module.modules():
        if isinstance(m, kinds):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class ResidualBlock(nn.Module):
    """``x + relu(conv3x3(relu(conv3x3(x))))`` at constant width (PG²'s residual block)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.conv2(F.relu(self.conv1(x))))


class G1(nn.Module):
    """Pose-integration U-Net with a fully connected bottleneck.

    ``forward(src_img (B,3,H,W), tgt_pose (B,P,H,W)) -> (B,3,H,W)`` (unbounded; images live in [-1, 1]).
    """

    def __init__(self, image_size: tuple[int, int] = (128, 64), width: int = 128, levels: int | None = None,
                 bottleneck: int = 64, pose_channels: int = 18, img_channels: int = 3,
                 pose_code: nn.Module | None = None, pose_dim: int = 0):
        super().__init__()
        height, img_width = image_size
        self.levels = levels or num_levels(height)
        n, N = width, self.levels
        scale = 2 ** (N - 1)
        if height % scale or img_width % scale:
            raise ValueError(f"image size {height}x{img_width} is not divisible by 2^(levels-1) = {scale}")
        self.image_size = (height, img_width)
        self.width = width
        self.min_hw = (height // scale, img_width // scale)
        # PG²'s model takes the pose as input channels; its Fig. 4 alternatives (g1_embed.py) give a
        # ``pose_code`` module instead, whose (B, pose_dim) code joins the image code at the bottleneck.
        self.pose_code = pose_code
        self.stem = nn.Conv2d(img_channels + (0 if pose_code is not None else pose_channels), n, 3, padding=1)
        self.enc_blocks = nn.ModuleList([ResidualBlock(n * k) for k in range(1, N + 1)])
        self.enc_down = nn.ModuleList([nn.Conv2d(n * k, n * (k + 1), 3, stride=2, padding=1) for k in range(1, N)])
        h, w = self.min_hw
        self.fc_in = nn.Linear(h * w * n * N, bottleneck)
        self.fc_out = nn.Linear(bottleneck + (pose_dim if pose_code is not None else 0), h * w * n)
        # Decoder level k (N..1) sees concat(x, skip_k): n + n*N at the bottom, 2*n*k above it.
        dec_widths = [n + n * N] + [2 * n * k for k in range(N - 1, 0, -1)]
        self.dec_blocks = nn.ModuleList([ResidualBlock(c) for c in dec_widths])
        self.dec_up = nn.ModuleList([nn.Conv2d(c, n * k, 1) for c, k in zip(dec_widths[:-1], range(N - 1, 0, -1))])
        self.out = nn.Conv2d(dec_widths[-1], img_channels, 3, padding=1)
        init_xavier(self)

    def forward(self, src_img: torch.Tensor, tgt_pose: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(src_img if self.pose_code is not None else torch.cat([src_img, tgt_pose], dim=1)))
        skips = []
        for k, block in enumerate(self.enc_blocks):
            x = block(x)
            skips.append(x)
            if k < self.levels - 1:
                x = F.relu(self.enc_down[k](x))
        h, w = self.min_hw
        z = self.fc_in(x.flatten(1))
        if self.pose_code is not None:
            z = torch.cat([z, self.pose_code(tgt_pose)], dim=1)
        x = self.fc_out(z).view(-1, self.width, h, w)
        for i, block in enumerate(self.dec_blocks):
            x = block(torch.cat([x, skips[-1 - i]], dim=1))
            if i < self.levels - 1:
                x = F.relu(self.dec_up[i](F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.out(x)
