"""The PG² checkpoint: one self-describing file, loadable with ``torch.load(weights_only=True)``.

Layout of ``run_dir/checkpoint.pt`` (plain dicts/lists/str/int/float/bool/None and tensors only)::

    kind            "reid-aug/pg2"
    format_version  1
    config          the resolved PG2Config as a dict
    image_size      [H, W];  pose_mode  "pg2" | "gaussian"
    stage_index     index into config.train.stages of the stage that runs next (== len(stages): done)
    stage           that stage's name ("done" when finished);  step  steps done in it
    global_step     steps done over all stages
    trained         stages whose networks have been trained (e.g. ["g1"], ["g1", "g2"])
    complete        all stages finished
    models          {"g1": state_dict, "g2": ..., "d": ...}
    optimizers      {"g1": state_dict, "g2": ..., "d": ...} for the stages that have started
    rng             {"python": {...}, "numpy": {...}, "torch": ByteTensor, "cuda": [ByteTensor]}
    sampler         {"stage", "position" (pairs consumed in this stage), "seed"}
    dataset         {"spec", "root", "n_pairs", "pairs_sha256"}
    log_rows        rows of log.csv written up to this checkpoint (for a consistent resume)

It is written atomically (temp file + rename), so a run killed at any moment leaves the
previous complete checkpoint.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from reid_aug.errors import CheckpointError
from reid_aug.runtime import get_rng_state, set_rng_state  # noqa: F401 - re-exported
from reid_aug.utils.io import atomic_torch_save

log = logging.getLogger(__name__)

KIND = "reid-aug/pg2"
FORMAT_VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def build_networks(model_cfg, which=("g1", "g2", "d")) -> dict[str, torch.nn.Module]:
    """Fresh networks for a :class:`~reid_aug.generator.config.ModelConfig`."""
    from reid_aug.generator.discriminator import Discriminator
    from reid_aug.generator.g1 import G1
    from reid_aug.generator.g2 import G2

    size = tuple(model_cfg.image_size)
    nets: dict[str, torch.nn.Module] = {}
    if "g1" in which:
        nets["g1"] = G1(size, width=model_cfg.g1_width, levels=model_cfg.resolved_g1_levels(),
                        bottleneck=model_cfg.bottleneck)
    if "g2" in which:
        nets["g2"] = G2(size, width=model_cfg.g2_width, levels=model_cfg.resolved_g2_levels(),
                        zero_init=model_cfg.g2_zero_init)
    if "d" in which:
        nets["d"] = Discriminator(size, width=model_cfg.d_width)
    return nets


def checkpoint_path(path: str | Path) -> Path:
    """A run folder -> its ``checkpoint.pt``; a file path is kept."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


# --------------------------------------------------------------------------- save / load
def save_checkpoint(state: dict, path: str | Path) -> None:
    """Write ``state`` (see the module docstring) atomically."""
    state = dict(state, kind=KIND, format_version=FORMAT_VERSION)
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
    """Load and check a PG² checkpoint (``path`` = run folder or file).

    Raises :class:`CheckpointError` when the file is missing, is not a torch file, is not a
    reid-aug PG² checkpoint, or has a newer format version.
    """
    path = checkpoint_path(path)
    if not path.is_file():
        raise CheckpointError(f"no PG² checkpoint at {path}; train one with `reid-aug train-generator` "
                              f"and pass its run folder or checkpoint.pt")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not a usable checkpoint"
        raise CheckpointError(f"{path} is not a readable torch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}); "
                              f"pass the checkpoint.pt written by `reid-aug train-generator`") from None
    if not isinstance(obj, dict) or obj.get("kind") != KIND:
        found = obj.get("kind") if isinstance(obj, dict) and "kind" in obj else None
        what = f"kind {found!r}" if found is not None else _describe(obj)
        raise CheckpointError(f"{path} is not a reid-aug PG² generator checkpoint (found {what}, expected kind "
                              f"{KIND!r}); pass the checkpoint.pt (or run folder) written by "
                              f"`reid-aug train-generator`")
    version = obj.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has PG² checkpoint format version {version!r}; this reid-aug reads versions "
                              f"<= {FORMAT_VERSION}: upgrade reid-aug")
    for key in ("config", "models", "stage_index", "step"):
        if key not in obj:
            raise CheckpointError(f"{path} is a damaged PG² checkpoint: entry {key!r} is missing")
    return obj
