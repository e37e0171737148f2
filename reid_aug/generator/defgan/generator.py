"""Deformable GAN generator (Siarohin et al., CVPR 2018): a U-Net with two encoder streams and
deformable skip connections; official ``make_generator`` / ``encoder`` / ``decoder`` /
``concatenate_skips`` of ``conditional_gan.py``.

For a 128x64 image (widths as official)::

    source stream (x_a, H_a): conv3x3 64 | 128 | 256 | 512 | 512 | 512   (levels 128x64 ... 4x2)
    target stream (H_b [, bg]): the same, separate weights
    skip level l: concat(deform(source_l) if l < 4 else source_l, target_l)
    decoder: 512(drop) 512(drop) 512(drop) 256 128 up-blocks, then ReLU + conv3x3 -> 3, tanh

Encoder down-blocks are LeakyReLU(0.2) -> conv 4x4/2 -> norm (no norm on the last); decoder
up-blocks ReLU -> transposed conv 4x4/2 -> norm [-> dropout 0.5]; "norm" is the official
keras-contrib instance normalisation (:class:`SampleNorm`). ``warp_skip="none"`` is the paper's
baseline: one encoder on ``(x_a, H_a, H_b)`` and plain skips.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from reid_aug.generator.defgan.layers import down_block, keras_init, up_block
from reid_aug.generator.defgan.warp import deform_skip

WARP_SKIPS = ("mask", "none")


def level_widths(image_size: Sequence[int], width: int = 64) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Encoder and decoder widths for an image size.

    Official: 6 levels for a largest side of 128 (encoder 64-128-256-512-512-512, decoder
    512-512-512-256-128-3) and 7 for 256; in general ``log2(max side) - 1`` levels. ``width`` scales
    every width except the 3 output channels (64 = the paper).
    """
    side = max(int(s) for s in image_size)
    levels = side.bit_length() - 2
    if side != 1 << (levels + 1) or levels < 4:
        raise ValueError(f"image size {tuple(image_size)}: the largest side must be a power of two >= 32")
    if any(int(s) % (1 << (levels - 1)) for s in image_size):
        raise ValueError(f"image size {tuple(image_size)}: every side must be divisible by {1 << (levels - 1)}")
    k = width / 64
    enc = tuple(int(k * c) for c in (64, 128, 256) + (512,) * (levels - 3))
    dec = tuple(int(k * c) for c in (512,) * (levels - 3) + (256, 128)) + (3,)
    return enc, dec


class Encoder(nn.Module):
    """Official ``encoder``: ``(B, in_channels, H, W)`` -> list of ``len(widths)`` features, finest first,
    level ``l`` of shape ``(B, widths[l], H / 2^l, W / 2^l)``."""

    def __init__(self, in_channels: int, widths: Sequence[int]):
        super().__init__()
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)   # 3x3 'same', with bias
        last = len(widths) - 1
        self.blocks = nn.ModuleList(down_block(widths[i - 1], widths[i], norm=i < last) for i in range(1, len(widths)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for block in self.blocks:
            feats.append(block(feats[-1]))
        return feats


class Decoder(nn.Module):
    """Official ``decoder``: skips (finest first, ``skip_channels``) -> ``(B, 3, H, W)`` in [-1, 1].

    Block 0 takes the coarsest skip alone; block i concatenates ``[previous output, skip]``; the
    first three up-blocks have dropout 0.5 (the paper's noise z); the last step is ReLU -> conv3x3.
    """

    def __init__(self, skip_channels: Sequence[int], widths: Sequence[int]):
        super().__init__()
        skips = list(skip_channels)[::-1]
        ups, cin = [], skips[0]
        for i, cout in enumerate(widths[:-1]):
            ups.append(up_block(cin, cout, dropout=i < 3))
            cin = cout + skips[i + 1]
        self.ups = nn.ModuleList(ups)
        self.out = nn.Sequential(nn.ReLU(), nn.Conv2d(cin, widths[-1], 3, padding=1), nn.Tanh())

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        skips = list(skips)[::-1]
        x = self.ups[0](skips[0])
        for up, skip in zip(self.ups[1:], skips[1:]):
            x = up(torch.cat([x, skip], 1))
        return self.out(torch.cat([x, skips[len(self.ups)]], 1))


class DeformableGenerator(nn.Module):
    """Deformable GAN generator.

    Args:
        image_size: ``(H, W)``; 128x64 is Market-1501.
        pose_channels: heatmap channels (18 Gaussian maps, sigma 6).
        warp_skip: ``"mask"`` (deformable skips, the paper) or ``"none"`` (the baseline U-Net).
        use_bg: TPAMI background conditioning: a background image joins the target stream.
        bg_grow: how that background is made from an image (:mod:`reid_aug.generator.defgan.background`): its
            person's pose mask grown by this many pixels is cut out. Kept here so that every caller makes it alike.
        width: 64 = paper widths; smaller for CPU runs.
        warped_levels: the deformable skips' levels (official: the first 4, finest first).
        interpolation: ``"nearest"`` (official ``tf.contrib.image.transform`` default) or ``"bilinear"``.
    """

    def __init__(self, image_size: Sequence[int] = (128, 64), pose_channels: int = 18, warp_skip: str = "mask",
                 use_bg: bool = False, width: int = 64, warped_levels: int = 4, interpolation: str = "nearest",
                 bg_grow: int = 6):
        super().__init__()
        if warp_skip not in WARP_SKIPS:
            raise ValueError(f"warp_skip must be one of {WARP_SKIPS}, got {warp_skip!r}")
        enc, dec = level_widths(image_size, width)
        self.image_size = tuple(int(s) for s in image_size)
        self.warp_skip, self.use_bg, self.bg_grow = warp_skip, bool(use_bg), int(bg_grow)
        self.warped_levels, self.interpolation = int(warped_levels), interpolation
        bg = 3 if use_bg else 0
        if warp_skip == "none":
            self.encoder = Encoder(3 + 2 * pose_channels + bg, enc)
            skip_channels = list(enc)
        else:
            self.source_encoder = Encoder(3 + pose_channels, enc)
            self.target_encoder = Encoder(pose_channels + bg, enc)
            skip_channels = [2 * c for c in enc]
        self.decoder = Decoder(skip_channels, dec)
        keras_init(self)

    def forward(self, x_a: torch.Tensor, h_a: torch.Tensor, h_b: torch.Tensor, theta: torch.Tensor | None = None,
                masks: torch.Tensor | None = None, bg: torch.Tensor | None = None) -> torch.Tensor:
        """``x_a (B, 3, H, W)`` in [-1, 1], ``h_a``/``h_b (B, 18, H, W)`` heatmaps, ``theta (B, 10, 2, 3)``
        and ``masks (B, 10, H, W)`` from :func:`reid_aug.generator.defgan.affine.deformation` (unused by
        the baseline), ``bg (B, 3, H, W)`` with ``use_bg`` -> ``(B, 3, H, W)`` in [-1, 1]."""
        extra = [bg] if self.use_bg else []
        if self.use_bg and bg is None:
            raise ValueError("this generator was built with use_bg=True: pass bg")
        if self.warp_skip == "none":
            return self.decoder(self.encoder(torch.cat([x_a, h_a, h_b] + extra, 1)))
        if theta is None or masks is None:
            raise ValueError("deformable skips need theta and masks (see defgan.affine.deformation)")
        app = self.source_encoder(torch.cat([x_a, h_a], 1))
        pose = self.target_encoder(torch.cat([h_b] + extra, 1))
        skips = []
        for level, (a, p) in enumerate(zip(app, pose)):
            if level < self.warped_levels:
                a = deform_skip(a, theta, masks, self.interpolation)
            skips.append(torch.cat([a, p], 1))
        return self.decoder(skips)
