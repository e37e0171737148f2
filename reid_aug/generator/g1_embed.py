"""PG²'s Fig. 4 alternatives to feeding the target pose as input channels (Table 1 rows G1-CE-L1, G1-HME-L1).

Both keep G1's U-Net on the condition image alone and bring the target pose in at the fully connected
bottleneck instead:

- ``G1CoordinateEmbedding`` (CE): the 18 keypoint coordinates (normalised to [-1, 1]; a missing joint is
  (-1, -1) plus a 0 in an 18-wide presence vector) -> two FC layers -> concatenated with the image code.
  The coordinates are read back from the target pose maps (the centre of mass of each channel's disc or
  Gaussian), so every caller keeps G1's ``forward(src_img, tgt_pose)``; a disc clipped by the image border
  moves its centre by at most the disc radius.
- ``G1HeatmapEmbedding`` (HME): the 18 pose maps through their own convolutional encoder (the image encoder's
  shape, no skips) whose FC code is concatenated with the image code.

Shapes as :class:`~reid_aug.generator.g1.G1`: ``forward(src_img (B,3,H,W), tgt_pose (B,18,H,W)) -> (B,3,H,W)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from reid_aug.generator.g1 import ResidualBlock, init_xavier, num_levels


def pose_map_coordinates(tgt_pose: torch.Tensor, pose_mode: str = "pg2") -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P, H, W) pose maps -> (coordinates (B, P, 2) as (y, x) in [-1, 1], present (B, P) float in {0, 1}).

    PG² maps are discs in {-1, 1} (1 inside); Gaussian maps are in [0, 1]. A channel without any positive
    pixel is a missing joint: coordinates (-1, -1), present 0.
    """
    w = (tgt_pose > 0).float() if pose_mode == "pg2" else tgt_pose.clamp_min(0).float()
    _, _, h, wd = w.shape
    ys = torch.linspace(-1, 1, h, device=w.device).view(1, 1, h, 1)
    xs = torch.linspace(-1, 1, wd, device=w.device).view(1, 1, 1, wd)
    mass = w.sum((2, 3))
    present = (mass > 0).float()
    safe = mass.clamp_min(1e-6)
    coords = torch.stack([(w * ys).sum((2, 3)) / safe, (w * xs).sum((2, 3)) / safe], dim=-1)
    coords = torch.where(present[..., None] > 0, coords, torch.full_like(coords, -1.0))
    return coords, present


class _ImageCodeG1(nn.Module):
    """G1's U-Net on the condition image alone; subclasses give ``pose_code(tgt_pose) -> (B, pose_dim)``."""

    def __init__(self, image_size=(128, 64), width: int = 128, levels: int | None = None, bottleneck: int = 64,
                 pose_dim: int = 32, img_channels: int = 3):
        super().__init__()
        height, img_width = image_size
        self.levels = levels or num_levels(height)
        n, N = width, self.levels
        scale = 2 ** (N - 1)
        if height % scale or img_width % scale:
            raise ValueError(f"image size {height}x{img_width} is not divisible by 2^(levels-1) = {scale}")
        self.image_size, self.width = (height, img_width), width
        self.min_hw = (height // scale, img_width // scale)
        h, w = self.min_hw
        self.stem = nn.Conv2d(img_channels, n, 3, padding=1)
        self.enc_blocks = nn.ModuleList([ResidualBlock(n * k) for k in range(1, N + 1)])
        self.enc_down = nn.ModuleList([nn.Conv2d(n * k, n * (k + 1), 3, stride=2, padding=1) for k in range(1, N)])
        self.fc_in = nn.Linear(h * w * n * N, bottleneck)
        self.fc_out = nn.Linear(bottleneck + pose_dim, h * w * n)
        dec_widths = [n + n * N] + [2 * n * k for k in range(N - 1, 0, -1)]
        self.dec_blocks = nn.ModuleList([ResidualBlock(c) for c in dec_widths])
        self.dec_up = nn.ModuleList([nn.Conv2d(c, n * k, 1) for c, k in zip(dec_widths[:-1], range(N - 1, 0, -1))])
        self.out = nn.Conv2d(dec_widths[-1], img_channels, 3, padding=1)

    def pose_code(self, tgt_pose: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, src_img: torch.Tensor, tgt_pose: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(src_img))
        skips = []
        for k, block in enumerate(self.enc_blocks):
            x = block(x)
            skips.append(x)
            if k < self.levels - 1:
                x = F.relu(self.enc_down[k](x))
        h, w = self.min_hw
        z = torch.cat([self.fc_in(x.flatten(1)), self.pose_code(tgt_pose)], dim=1)
        x = self.fc_out(z).view(-1, self.width, h, w)
        for i, block in enumerate(self.dec_blocks):
            x = block(torch.cat([x, skips[-1 - i]], dim=1))
            if i < self.levels - 1:
                x = F.relu(self.dec_up[i](F.interpolate(x, scale_factor=2, mode="nearest")))
        return self.out(x)


class G1CoordinateEmbedding(_ImageCodeG1):
    """G1-CE: keypoint coordinates -> FC -> ReLU -> FC (``pose_dim``), joined at the bottleneck."""

    def __init__(self, image_size=(128, 64), width: int = 128, levels: int | None = None, bottleneck: int = 64,
                 pose_dim: int = 32, pose_channels: int = 18, pose_mode: str = "pg2"):
        super().__init__(image_size, width, levels, bottleneck, pose_dim)
        self.pose_mode = pose_mode
        self.embed = nn.Sequential(nn.Linear(3 * pose_channels, pose_dim), nn.ReLU(), nn.Linear(pose_dim, pose_dim))
        init_xavier(self)

    def pose_code(self, tgt_pose: torch.Tensor) -> torch.Tensor:
        coords, present = pose_map_coordinates(tgt_pose, self.pose_mode)
        return self.embed(torch.cat([coords.flatten(1), present], dim=1))


class G1HeatmapEmbedding(_ImageCodeG1):
    """G1-HME: the pose maps through their own encoder (the image encoder's shape, no skips) -> FC code."""

    def __init__(self, image_size=(128, 64), width: int = 128, levels: int | None = None, bottleneck: int = 64,
                 pose_dim: int = 32, pose_channels: int = 18, pose_mode: str = "pg2"):
        super().__init__(image_size, width, levels, bottleneck, pose_dim)
        n, N = width, self.levels
        h, w = self.min_hw
        self.pose_stem = nn.Conv2d(pose_channels, n, 3, padding=1)
        self.pose_blocks = nn.ModuleList([ResidualBlock(n * k) for k in range(1, N + 1)])
        self.pose_down = nn.ModuleList([nn.Conv2d(n * k, n * (k + 1), 3, stride=2, padding=1) for k in range(1, N)])
        self.pose_fc = nn.Linear(h * w * n * N, pose_dim)
        init_xavier(self)

    def pose_code(self, tgt_pose: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.pose_stem(tgt_pose))
        for k, block in enumerate(self.pose_blocks):
            x = block(x)
            if k < self.levels - 1:
                x = F.relu(self.pose_down[k](x))
        return self.pose_fc(x.flatten(1))
