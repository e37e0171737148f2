"""Deformable GAN discriminator: the official ``make_discriminator(disc_type='call')`` PatchGAN.

Input: the channel concatenation ``(x_a, H_a, y, H_b)`` (+ ``bg`` with the TPAMI variant)::

    conv 4x4/2 'valid' 64 (bias) | LeakyReLU-conv4x4/2(pad 1)-norm 128 | ... 256 | ... 512 |
    LeakyReLU-conv4x4/2(pad 1) 1 (no norm)

For 128x64 the output grid is 3x1 (63x31 -> 31x15 -> 15x7 -> 7x3 -> 3x1). The official model ends
with a sigmoid and the cross-entropy ``-log(p + 1e-7)``; this module returns the logits (apply
``torch.sigmoid`` for the official output; ``BCEWithLogits`` is the stable form of that loss).
"""
from __future__ import annotations

import torch
from torch import nn

from reid_aug.generator.defgan.layers import down_block, keras_init


class PatchDiscriminator(nn.Module):
    """``(x_a, H_a, y, H_b[, bg])`` each ``(B, C_i, H, W)`` -> logits ``(B, N)`` (N = 3 at 128x64)."""

    def __init__(self, pose_channels: int = 18, use_bg: bool = False, width: int = 64):
        super().__init__()
        self.use_bg = bool(use_bg)
        cin = 3 + pose_channels + 3 + pose_channels + (3 if use_bg else 0)
        w = [width, 2 * width, 4 * width, 8 * width]
        self.net = nn.Sequential(
            nn.Conv2d(cin, w[0], 4, 2, 0),                 # Keras padding 'valid', bias on
            down_block(w[0], w[1]), down_block(w[1], w[2]), down_block(w[2], w[3]),
            down_block(w[3], 1, norm=False),
        )
        keras_init(self)

    def forward(self, x_a: torch.Tensor, h_a: torch.Tensor, y: torch.Tensor, h_b: torch.Tensor,
                bg: torch.Tensor | None = None) -> torch.Tensor:
        extra = [bg] if self.use_bg else []
        if self.use_bg and bg is None:
            raise ValueError("this discriminator was built with use_bg=True: pass bg")
        return self.net(torch.cat([x_a, h_a, y, h_b] + extra, 1)).flatten(1)
