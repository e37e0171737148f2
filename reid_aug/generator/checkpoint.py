"""The generator checkpoint: one self-describing file, loadable with ``torch.load(weights_only=True)``.

Layout of ``run_dir/checkpoint.pt`` (plain dicts/lists/str/int/float/bool/None and tensors only)::

    kind            "reid-aug/generator"   (reid-aug 0.1 wrote "reid-aug/pg2": read as family "pg2")
    format_version  2                      (0.1: 1, without "family")
    family          the generator family ("pg2"; see reid_aug.generator.family)
    config          the resolved config of that family as a dict
    image_size      [H, W];  pose_mode  "pg2" | "gaussian"
    stage_index     index into config.train.stages of the stage that runs next (== len(stages): done)
    stage           that stage's name ("done" when finished);  step  steps done in it
    global_step     steps done over all stages
    trained         stages whose networks have been trained (e.g. ["g1"], ["g1", "g2"])
    complete        all stages finished
    models          {"g1": state_dict, "g2": ..., "d": ...}
    optimizers      {"stage": name, "g": state_dict, "d": state_dict} of the stage in progress ({} between stages)
    rng             {"python": {...}, "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor]}
    sampler         {"stage", "position" (pairs consumed in this stage), "seed"}
    dataset         {"spec", "root", "n_pairs", "pairs_sha256"}
    log_rows        rows of log.csv written up to this checkpoint (for a consistent resume)
    log_acc         the loss sums of the logging interval in progress

It is written atomically (temp file + rename), so a run killed at any moment leaves the
previous complete checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from reid_aug.errors import CheckpointError
from reid_aug.rundir import checkpoint_file
from reid_aug.runtime import load_torch_file
from reid_aug.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

KIND = "reid-aug/generator"
FORMAT_VERSION = 2
OLD_KINDS = {"reid-aug/pg2": "pg2"}   # 0.1 checkpoints (format 1): kind -> family
_HINT = "pass the checkpoint.pt (or run folder) written by `reid-aug train-generator`"


def checkpoint_path(path: str | Path) -> Path:
    """A run folder -> its ``checkpoint.pt``; a file path is kept."""
    return checkpoint_file(path)


def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` (see the module docstring; ``family`` defaults to "pg2") atomically."""
    state = dict(state, kind=KIND, format_version=FORMAT_VERSION)
    state.setdefault("family", "pg2")
    atomic_torch_save(state, path)


def _describe(obj) -> str:
    if isinstance(obj, dict):
        keys = list(obj)[:5]
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        hint = ""
        if tensors and tensors == len(obj):
            hint = " (a bare state dict of tensors, e.g. a torchreid or torchvision model)"
        elif "state_dict" in obj:
            hint = " (a checkpoint with a 'state_dict' entry, e.g. from torchreid)"
        return f"a dict with keys {keys}{'...' if len(obj) > 5 else ''}{hint}"
    return f"a {type(obj).__name__}"


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and check a generator checkpoint (``path`` = run folder or file); 0.1 files are upgraded.

    The returned dict always has ``family``. Raises :class:`CheckpointError` when the file is
    missing, is not a torch file, is not a reid-aug generator checkpoint, or has a newer format.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"no generator checkpoint at {path}; train one with `reid-aug train-generator` "
                              f"and pass its run folder or checkpoint.pt")
    obj = load_torch_file(path, "a reid-aug generator checkpoint", _HINT, map_location=map_location)
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if kind != KIND and kind not in OLD_KINDS:
        what = f"kind {kind!r}" if kind is not None else _describe(obj)
        raise CheckpointError(f"{path} is not a reid-aug generator checkpoint (found {what}, expected kind "
                              f"{KIND!r}); {_HINT}")
    version = obj.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has generator checkpoint format version {version!r}; this reid-aug reads "
                              f"versions <= {FORMAT_VERSION}: upgrade reid-aug")
    for key in ("config", "models", "stage_index", "step"):
        if key not in obj:
            raise CheckpointError(f"{path} is a damaged generator checkpoint: entry {key!r} is missing")
    if kind in OLD_KINDS:
        obj = dict(obj, family=OLD_KINDS[kind])
    obj.setdefault("family", "pg2")
    return obj


def family_and_config(ckpt: dict, path: str | Path):
    """``(family, config)`` of a loaded checkpoint, through the family registry."""
    from reid_aug.errors import ConfigError
    from reid_aug.generator.family import get_family

    try:
        family = get_family(str(ckpt["family"]))
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return family, family.config_from_dict(ckpt["config"], str(path))


def load_weights(nets: dict, models: dict, names, where, fit: str = "its config") -> None:
    """Load ``models[name]`` into ``nets[name]`` for each of ``names``; a gap or mismatch is one clear line."""
    for name in names:
        if name not in models:
            raise CheckpointError(f"{where} lacks the {name.upper()} weights")
        try:
            nets[name].load_state_dict(models[name])
        except RuntimeError as e:
            raise CheckpointError(f"{where}: its {name.upper()} does not fit {fit} ({str(e).splitlines()[0]})") from None
