"""VGG-19 ``conv1_2`` features for the nearest-neighbour loss, read from a local torchvision state dict.

Nothing is downloaded: the weights come from an explicit file (``--vgg-weights FILE``) or from
torchvision's own cache (``$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth``, where
``torchvision.models.vgg19(weights="IMAGENET1K_V1")`` stores them). Only the first two conv layers
(``features.0`` and ``features.2``) are used; torchvision itself is not imported.

Deviation from the official code: those are torchvision's (PyTorch-trained, RGB, ImageNet mean/std)
weights, not Keras' caffe-converted VGG-19 (BGR, mean subtraction; the official preprocessing even
subtracts the BGR means before flipping RGB to BGR).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reid_aug.errors import WeightsMissingError
from reid_aug.runtime import load_torch_file

VGG19_FILE = "vgg19-dcbb9e9d.pth"
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def default_vgg19_path() -> Path:
    """Where torchvision caches the ImageNet VGG-19 weights (``torch.hub.get_dir()/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


class VGGConv12(nn.Module):
    """Frozen VGG-19 conv1_1 -> ReLU -> conv1_2 -> ReLU (the official ``block1_conv2`` output).

    ``(B, 3, H, W)`` images in [-1, 1] -> ``(B, 64, H, W)``.
    """

    def __init__(self):
        super().__init__()
        self.conv1_1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv1_2 = nn.Conv2d(64, 64, 3, padding=1)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) / 2 - self.mean) / self.std
        return torch.relu(self.conv1_2(torch.relu(self.conv1_1(x))))


def load_vgg19_conv12(path: str | Path | None = None) -> VGGConv12:
    """Build :class:`VGGConv12` from a torchvision ``vgg19`` state dict (``path`` or the torch cache).

    Raises :class:`WeightsMissingError` (one line) when there is no file, and
    :class:`reid_aug.errors.CheckpointError` when the file is not such a state dict.
    """
    from reid_aug.errors import CheckpointError

    file = Path(path) if path is not None else default_vgg19_path()
    hint = "Pass --vgg-weights FILE (a torchvision vgg19 state dict) or use loss.nn_features=patch."
    if not file.is_file():
        raise WeightsMissingError(f"VGG-19 weights not found at {file}; they cannot be downloaded here. {hint}")
    state = load_torch_file(file, "a torchvision vgg19 state dict", hint)
    keys = {"conv1_1": "features.0", "conv1_2": "features.2"}
    net = VGGConv12()
    try:
        sub = {f"{ours}.{p}": state[f"{theirs}.{p}"] for ours, theirs in keys.items() for p in ("weight", "bias")}
        net.load_state_dict(sub, strict=False)
    except (KeyError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{file} is not a torchvision vgg19 state dict ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'missing keys'}). {hint}") from None
    return net
