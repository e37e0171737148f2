"""Re-ID models: building torchreid networks, ImageNet weights from disk, saving/loading the
benchmark's trained models, and feature extraction. Used by the benchmark and by
``evaluate-generator``'s identity-retrieval score.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

import torch

from reid_aug.config import from_dict, to_dict
from reid_aug.errors import CheckpointError, WeightsMissingError
from reid_aug.reid.config import BenchmarkConfig
from reid_aug.runtime import load_torch_file
from reid_aug.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

MODEL_FORMAT = "reid_aug.reid/1"


# --------------------------------------------------------------------------- models and weights
def build_model(name: str, num_classes: int):
    """A torchreid model, never with torchreid's own pretrained loading (it downloads)."""
    from reid_aug.reid.data import import_torchreid, quiet_stdout

    reid = import_torchreid()
    try:
        with quiet_stdout():
            return reid.models.build_model(name=name, num_classes=num_classes, loss="softmax", pretrained=False,
                                           use_gpu=False)
    except KeyError:
        from reid_aug.config import ConfigError

        raise ConfigError(f"unknown torchreid model {name!r}; e.g. resnet50, resnet18, osnet_x0_25, osnet_x1_0, "
                          f"mobilenetv2_x1_0") from None


def _torch_home() -> Path:
    return Path(os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"),
                                                                           "torch"))))


def imagenet_weight_candidates(name: str) -> list[Path]:
    """Where ImageNet weights for a torchreid model may already be on disk (nothing is downloaded):
    the torch hub cache (torchvision's ``resnet50-*.pth`` names) and torchreid's own cache
    (``checkpoints/<name>_imagenet.pth``)."""
    dirs = []
    try:
        dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    except Exception:  # noqa: BLE001 - no hub dir configured
        pass
    dirs.append(_torch_home() / "checkpoints")
    out = []
    for d in dict.fromkeys(dirs):
        if not d.is_dir():
            continue
        out += sorted(d.glob(f"{name}_imagenet.pth")) + sorted(d.glob(f"{name}-*.pth"))
    return out


def find_imagenet_weights(name: str) -> Path:
    found = imagenet_weight_candidates(name)
    if not found:
        looked = [str(Path(torch.hub.get_dir()) / "checkpoints"), str(_torch_home() / "checkpoints")]
        raise WeightsMissingError(
            f"ImageNet weights for {name} are not on disk (looked for {name}-*.pth and {name}_imagenet.pth in "
            f"{', '.join(dict.fromkeys(looked))}) and nothing is downloaded here. Either pass the file with "
            f"`--weights FILE` (e.g. torchvision's resnet50-19c8e357.pth or torchreid's {name}_imagenet.pth), "
            f"or train from scratch with `--no-pretrained`.")
    return found[0]


def load_backbone_weights(model: torch.nn.Module, path: str | Path) -> dict:
    """Copy every tensor of ``path`` whose name and shape match ``model`` (the classifier of an
    ImageNet file never does); ``module.`` prefixes are dropped. Returns ``{"matched", "discarded"}``.

    Loaded with ``weights_only=True``: an ImageNet state dict is plain tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(f"weights file {path} does not exist; pass an existing `--weights FILE` "
                                  f"or use `--no-pretrained`")
    state = load_torch_file(path, "an ImageNet state dict", "Pass an ImageNet state_dict .pth with --weights FILE "
                            "(e.g. torchvision's resnet50-*.pth), or use --no-pretrained.")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict")
    own = model.state_dict()
    matched, discarded = {}, []
    for k, v in state.items():
        k = k[7:] if k.startswith("module.") else k
        if k in own and isinstance(v, torch.Tensor) and own[k].shape == v.shape:
            matched[k] = v
        else:
            discarded.append(k)
    if not matched:
        raise CheckpointError(f"no tensor of {path} matches the model ({type(model).__name__}): "
                              f"weights for another architecture? first keys: {list(state)[:3]}")
    own.update(matched)
    model.load_state_dict(own)
    log.info("loaded %d tensors from %s (%d discarded: %s)", len(matched), path, len(discarded),
             ", ".join(discarded[:6]) + ("..." if len(discarded) > 6 else ""))
    return {"matched": len(matched), "discarded": discarded, "path": str(path)}


def save_reid_model(model, cfg: BenchmarkConfig, path: Path, extra: dict) -> None:
    atomic_torch_save({"format": MODEL_FORMAT, "state_dict": model.state_dict(), "config": to_dict(cfg),
                       "num_classes": int(extra["num_classes"]), **{k: v for k, v in extra.items()
                                                                      if k != "num_classes"}}, path)


def training_subset(per_id, seed) -> tuple[int, int]:
    """``(images kept per identity, subset seed)`` of a low-data regime, ``(0, 0)`` for every image (the seed
    means nothing then), so that two runs' regimes compare equal exactly when they kept the same images."""
    per_id = int(per_id or 0)
    return per_id, int(seed or 0) if per_id else 0


def check_same_subset(path, model_cfg: BenchmarkConfig, subset: tuple[int, int], what: str, user: str) -> None:
    """Refuse a frozen model (``what``, the user's option) trained on other real images than ``user``'s regime
    ``subset`` (``training_subset``): in a low-data regime a model that saw the dropped images leaks them."""
    theirs = training_subset(model_cfg.data.train_per_id, model_cfg.data.subsample_seed)
    ours = training_subset(*subset)
    if theirs != ours:
        raise CheckpointError(f"{what}={path} was trained on {theirs[0] or 'every'} image(s) per identity (seed "
                              f"{theirs[1]}), {user} on {ours[0] or 'every'} (seed {ours[1]}): it must see only "
                              f"the same real images")


def load_reid_model(path: str | Path, device: str | torch.device = "cpu"):
    """A model saved by the benchmark -> ``(model in eval mode, BenchmarkConfig)``."""
    hint = "Pass a Re-ID model written by `reid-aug benchmark` (OUT/models/<variant>_seed<S>.pt)."
    ck = load_torch_file(path, "a Re-ID model", hint)
    if not isinstance(ck, dict) or ck.get("format") != MODEL_FORMAT:
        found = (f"kind {ck.get('kind')!r}" if isinstance(ck, dict) and "kind" in ck else
                 f"format {ck.get('format')!r}" if isinstance(ck, dict) else f"a {type(ck).__name__}")
        raise CheckpointError(f"{path} is not a Re-ID model (found {found}). {hint}")
    cfg = from_dict(BenchmarkConfig, ck["config"])
    model = build_model(cfg.model.name, ck["num_classes"])
    model.load_state_dict(ck["state_dict"])
    return model.to(device).eval(), cfg


@torch.no_grad()
def extract_features(model, image_paths: Sequence[str | Path], height: int, width: int, batch_size: int = 128,
                     workers: int = 0, desc: str = "features", device: str | torch.device | None = None):
    """``(N, D)`` float32 CPU features of ``image_paths`` (torchreid test transform, model in eval mode)."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from reid_aug.reid.data import ImageListDataset

    if device is None:
        device = next(model.parameters()).device
    model.eval()
    loader = DataLoader(ImageListDataset(image_paths, height, width), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    feats = []
    for imgs in tqdm(loader, desc=desc, unit="batch", leave=False, disable=None):
        feats.append(model(imgs.to(device)).float().cpu())
    if not feats:
        return torch.zeros(0, 0)
    return torch.cat(feats)
