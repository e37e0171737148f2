"""Nearest-neighbour loss of Deformable GAN (official ``nn_loss`` in ``conditional_gan.py``).

For every position ``p`` of the generated image's feature map, the smallest L1 distance (summed
over channels) between the feature vector at ``p`` and the target's feature vectors at ``p + (i, j)``,
``|i|, |j| <= k // 2``; neighbours outside the image never win (the official code pads the target
with -10000). Official normalisation: the per-position minima are *averaged* over batch and
positions (the loss tensor ``(B, H, W)`` goes through Keras' mean), the channels are *summed*;
``reduction="sum"`` sums the positions too.

Features: the paper uses VGG-19 ``conv1_2`` (``block1_conv2``, after its ReLU; see
:mod:`reid_aug.generator.defgan.vgg`). Offline default (a recorded deviation): raw 5x5 RGB patches,
the receptive field of ``conv1_2``, as the 75-dimensional feature vector (:class:`PatchFeatures`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTIONS = ("mean", "sum", "none")


def nearest_neighbour_loss(generated: torch.Tensor, target: torch.Tensor, k: int = 3,
                           reduction: str = "mean") -> torch.Tensor:
    """``generated``, ``target``: ``(B, C, H, W)`` features -> scalar (``"mean"``: official; ``"sum"``)
    or the ``(B, H, W)`` per-position minima (``"none"``).

    Vectorised over pixels: one ``(B, H, W)`` channel-summed distance per shift (k^2 shifted views of
    the zero-padded target), an ``inf`` added where the shifted position leaves the image, min over
    the shifts. ``k = 1`` gives the plain channel-summed L1.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"the neighbourhood size k must be odd and >= 1, got {k}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if generated.shape != target.shape:
        raise ValueError(f"feature shapes differ: {tuple(generated.shape)} vs {tuple(target.shape)}")
    r = k // 2
    _, _, h, w = generated.shape
    padded = F.pad(target, (r, r, r, r))
    inside = F.pad(torch.ones(1, 1, h, w, dtype=target.dtype, device=target.device), (r, r, r, r))
    dists = []
    for i in range(k):
        for j in range(k):
            d = (padded[:, :, i:i + h, j:j + w] - generated).abs().sum(1)           # (B, H, W)
            outside = inside[0, 0, i:i + h, j:j + w] == 0
            dists.append(d.masked_fill(outside, float("inf")))
    best = torch.stack(dists, 1).amin(1)                                              # (B, H, W)
    if reduction == "mean":
        return best.mean()
    return best.sum() if reduction == "sum" else best


class PatchFeatures(nn.Module):
    """Raw ``size x size`` patches as feature vectors (zero padding, as a 'same' convolution):
    ``(B, C, H, W)`` -> ``(B, C * size^2, H, W)``. ``size = 5`` is the receptive field of VGG-19 conv1_2."""

    def __init__(self, size: int = 5):
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"patch size must be odd and >= 1, got {size}")
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return F.unfold(x, self.size, padding=self.size // 2).view(b, c * self.size ** 2, h, w)


class NearestNeighbourLoss(nn.Module):
    """``features`` (a frozen module, e.g. :class:`PatchFeatures` or VGG-19 conv1_2) + the NN loss.

    ``forward(generated (B, 3, H, W), target (B, 3, H, W))`` -> scalar; the official weight is 0.01
    (``--l1_penalty_weight 0.01`` with ``--nn_loss_area_size 3 --content_loss_layer block1_conv2``).
    """

    def __init__(self, features: nn.Module | None = None, k: int = 3, reduction: str = "mean"):
        super().__init__()
        self.features = PatchFeatures(5) if features is None else features
        self.k, self.reduction = int(k), reduction

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            ref = self.features(target)
        return nearest_neighbour_loss(self.features(generated), ref, self.k, self.reduction)
