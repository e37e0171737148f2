"""The DCGAN discriminator PG² uses (``DCGANDiscriminator`` of the official ``wgan_gp_128x64.py``).

Shapes at 128 x 64 with width d = 64::

    (B, 3, 128, 64) -conv5x5/2-> (B, 64, 64, 32) LReLU
                    -conv5x5/2-> (B, 128, 32, 16) BN LReLU
                    -conv5x5/2-> (B, 256, 16, 8)  BN LReLU
                    -conv5x5/2-> (B, 512, 8, 4)   BN LReLU
                    -flatten, linear-> (B,) logit

LeakyReLU slope 0.2; all conv and linear weights drawn from N(0, 0.02), biases zero;
BatchNorm starts at scale 1, shift 0. ``norm="spectral"`` (not PG²'s) drops the BatchNorms and puts
spectral normalisation (Miyato et al. 2018) on every conv and the linear layer, which bounds D's
Lipschitz constant so that it cannot become arbitrarily confident.
"""
from __future__ import annotations

import torch
from torch import nn


class Discriminator(nn.Module):
    """``forward(img (B,3,H,W)) -> logits (B,)``; H and W must be multiples of 16."""

    def __init__(self, image_size: tuple[int, int] = (128, 64), width: int = 64, img_channels: int = 3,
                 norm: str = "batch"):
        super().__init__()
        if norm not in ("batch", "spectral"):
            raise ValueError(f"norm={norm!r}: expected 'batch' or 'spectral'")
        height, img_width = image_size
        if height % 16 or img_width % 16:
            raise ValueError(f"image size {height}x{img_width}: the discriminator needs multiples of 16")
        d = width
        layers: list[nn.Module] = []
        c_in = img_channels
        for i, c_out in enumerate((d, 2 * d, 4 * d, 8 * d)):
            layers.append(nn.Conv2d(c_in, c_out, 5, stride=2, padding=2))
            if i > 0 and norm == "batch":
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(8 * d * (height // 16) * (img_width // 16), 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        if norm == "spectral":
            from torch.nn.utils.parametrizations import spectral_norm

            for m in list(self.modules()):
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    spectral_norm(m)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(img).flatten(1)).squeeze(1)
