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

from reid_aug.generator.g1 import G1, ResidualBlock, num_levels


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


class CoordinateCode(nn.Module):
    """CE: ``(B, P, H, W)`` pose maps -> coordinates + presence ``(B, 3P)`` -> FC -> ReLU -> FC ``(B, pose_dim)``."""

    def __init__(self, pose_dim: int = 32, pose_channels: int = 18, pose_mode: str = "pg2"):
        super().__init__()
        self.pose_mode = pose_mode
        self.embed = nn.Sequential(nn.Linear(3 * pose_channels, pose_dim), nn.ReLU(), nn.Linear(pose_dim, pose_dim))

    def forward(self, tgt_pose: torch.Tensor) -> torch.Tensor:
        coords, present = pose_map_coordinates(tgt_pose, self.pose_mode)
        return self.embed(torch.cat([coords.flatten(1), present], dim=1))


class HeatmapCode(nn.Module):
    """HME: the pose maps through an encoder shaped like G1's (residual blocks, stride-2 convs, no skips)
    -> FC ``(B, pose_dim)``."""

    def __init__(self, image_size=(128, 64), width: int = 128, levels: int | None = None, pose_dim: int = 32,
                 pose_channels: int = 18):
        super().__init__()
        self.levels = levels or num_levels(image_size[0])
        n, N = width, self.levels
        h, w = image_size[0] // 2 ** (N - 1), image_size[1] // 2 ** (N - 1)
        self.stem = nn.Conv2d(pose_channels, n, 3, padding=1)
        self.blocks = nn.ModuleList([ResidualBlock(n * k) for k in range(1, N + 1)])
        self.down = nn.ModuleList([nn.Conv2d(n * k, n * (k + 1), 3, stride=2, padding=1) for k in range(1, N)])
        self.fc = nn.Linear(h * w * n * N, pose_dim)

    def forward(self, tgt_pose: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(tgt_pose))
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k < self.levels - 1:
                x = F.relu(self.down[k](x))
        return self.fc(x.flatten(1))


def G1CoordinateEmbedding(image_size=(128, 64), width: int = 128, levels: int | None = None, bottleneck: int = 64,
                          pose_dim: int = 32, pose_channels: int = 18, pose_mode: str = "pg2") -> G1:
    """G1-CE: :class:`~reid_aug.generator.g1.G1` on the image alone, a :class:`CoordinateCode` at the bottleneck."""
    return G1(image_size, width=width, levels=levels, bottleneck=bottleneck, pose_channels=pose_channels,
              pose_code=CoordinateCode(pose_dim, pose_channels, pose_mode), pose_dim=pose_dim)


def G1HeatmapEmbedding(image_size=(128, 64), width: int = 128, levels: int | None = None, bottleneck: int = 64,
                       pose_dim: int = 32, pose_channels: int = 18, pose_mode: str = "pg2") -> G1:
    """G1-HME: :class:`~reid_aug.generator.g1.G1` on the image alone, a :class:`HeatmapCode` at the bottleneck."""
    return G1(image_size, width=width, levels=levels, bottleneck=bottleneck, pose_channels=pose_channels,
              pose_code=HeatmapCode(image_size, width, levels, pose_dim, pose_channels), pose_dim=pose_dim)
