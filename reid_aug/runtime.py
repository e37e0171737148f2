"""What every command shares at run time: the device, DDP membership, seeds and RNG states,
worker counts, and reading a torch file safely.

One copy of each: the generator trainer, evaluation, synthesis and the Re-ID benchmark all
call these functions.
"""
from __future__ import annotations

import dataclasses
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

from reid_aug.errors import CheckpointError, ConfigError


# --------------------------------------------------------------------------- device
def resolve_device(spec: str | torch.device | None = "auto", *, local_rank: int | None = None) -> torch.device:
    """``auto``/``None`` -> CUDA where available (``cuda:LOCAL_RANK`` under torchrun), else CPU.

    An explicit ``cuda`` without a CUDA device is a :class:`ConfigError` saying how to choose the CPU.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    if local_rank is None and os.environ.get("LOCAL_RANK") is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local_rank = int(os.environ["LOCAL_RANK"])
    if spec in (None, "", "auto"):
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda" and local_rank is not None:
        spec = f"cuda:{local_rank}"
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"device {spec!r} is not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but CUDA is not available here; use the CPU "
                          f"(--device cpu, or --set runtime.device=cpu)")
    return device


def machine_cpus() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def loader_workers(requested: int) -> int:
    """DataLoader workers that fit the machine: at most one fewer than its cores (the main process
    computes), so a recipe written for a GPU server does not oversubscribe a laptop."""
    return max(0, min(int(requested), machine_cpus() - 1))


# --------------------------------------------------------------------------- distributed
@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_spec: str = "auto") -> tuple[DistInfo, bool]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1).

    Returns ``(info, created)``; ``created`` is True when this call initialised the group (the
    caller then destroys it). Backend: nccl on CUDA, gloo on CPU.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    created = False
    if not dist.is_initialized():
        use_cuda = device_spec.startswith("cuda") or (device_spec == "auto" and torch.cuda.is_available())
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank), created


# --------------------------------------------------------------------------- seeds and RNG states
def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict:
    """All global RNG states as tensors/ints/floats, so that a checkpoint holding them loads with
    ``torch.load(weights_only=True)``."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["gauss"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])


# --------------------------------------------------------------------------- torch files
def load_torch_file(path: str | Path, what: str, hint: str, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with one clear line when the file is missing or is no
    readable torch file.

    ``what`` names the expected file ("a PG² generator checkpoint"); ``hint`` says what to pass
    instead. Torch's own multi-line text (and its advice to load untrusted files unsafely) never
    reaches the user.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; expected {what}. {hint}")
    try:
        with warnings.catch_warnings():   # torch warns (and asks to file issues) about foreign pickles
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not such a file"
        kind = "truncated or damaged" if isinstance(e, (EOFError, RuntimeError)) else "not a PyTorch file"
        raise CheckpointError(f"{path} is not {what} (it cannot be read as a safe PyTorch file: {kind}). "
                              f"{hint}") from None
