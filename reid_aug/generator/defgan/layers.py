"""Building blocks shared by the Deformable GAN generator and discriminator (official Keras semantics)."""
from __future__ import annotations

import torch
from torch import nn


class SampleNorm(nn.Module):
    """The official "instance normalization": keras-contrib ``InstanceNormalization()`` with its default
    ``axis=None``, which normalises *all* values of each sample (channels included, not per channel)
    and has one scalar ``gamma`` and one scalar ``beta`` (2 parameters per layer);
    ``y = gamma * (x - mean) / (std + eps) + beta`` with the biased std and ``eps = 1e-3`` added to it.

    ``(B, C, H, W)`` -> ``(B, C, H, W)``.
    """

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims = tuple(range(1, x.ndim))
        mean = x.mean(dims, keepdim=True)
        std = x.var(dims, unbiased=False, keepdim=True).sqrt()
        return (x - mean) / (std + self.eps) * self.gamma + self.beta


def down_block(cin: int, cout: int, norm: bool = True) -> nn.Sequential:
    """Official ``block(down=True)``: LeakyReLU(0.2) -> ZeroPad(1) + Conv 4x4 stride 2 (no bias) -> norm.

    ``(B, cin, H, W)`` -> ``(B, cout, H/2, W/2)`` (``floor((H - 2) / 2) + 1`` for odd sizes).
    """
    layers: list[nn.Module] = [nn.LeakyReLU(0.2), nn.Conv2d(cin, cout, 4, 2, 1, bias=False)]
    if norm:
        layers.append(SampleNorm())
    return nn.Sequential(*layers)


def up_block(cin: int, cout: int, dropout: bool) -> nn.Sequential:
    """Official ``block(down=False, leaky=False)``: ReLU -> ConvTranspose 4x4 stride 2 (no bias) ->
    Cropping(1) -> norm -> Dropout(0.5) if asked. ``(B, cin, h, w)`` -> ``(B, cout, 2h, 2w)``."""
    layers: list[nn.Module] = [nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), SampleNorm()]
    if dropout:
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers)


def keras_init(module: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform kernels, zero biases (for every conv of ``module``)."""
    from reid_aug.generator.g1 import init_xavier

    init_xavier(module, (nn.Conv2d, nn.ConvTranspose2d))
