"""What ``synthesize`` does: :class:`SynthesisConfig`, loaded from ``recipes/synthesize.yaml``.

    cfg = load_synthesis_config(recipe=None, overrides=["poses_per_id=4"], flags={"seed": 1})

Every option is checked by :func:`check_config` before any work starts; a bad value is one
:class:`~reid_aug.errors.SynthesisError` line that names the option the way the user gave it
(``--poses-per-id``, ``--set poses_per_id`` or the recipe key).
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from reid_aug.errors import ConfigError, SynthesisError

DEFAULT_RECIPE = "synthesize"

# How the CLI spells each option that has a flag of its own (the rest are --set only).
FLAGS = {"generator": "--run/--checkpoint", "dataset": "--dataset", "out": "--out", "poses_per_id": "--poses-per-id",
         "strategy": "--strategy", "seed": "--seed", "batch_size": "--batch-size", "shard": "--shard",
         "stage": "--stage", "jpeg_quality": "--jpeg-quality", "workers": "--workers", "device": "--device",
         "cross_dataset": "--cross-dataset"}


@dataclasses.dataclass(frozen=True)
class SynthesisConfig:
    """The options of one synthesis run (``recipes/synthesize.yaml`` documents each key).

    ``generator``: a run folder or checkpoint file of ``train-generator`` (None: the newest finished
    run under ``runs/``); ``dataset``: market | toy | PATH (None: the generator's); ``out``: the
    output folder (None: ``RUN/synthesized-K``); ``shard``: ``"i/n"`` or ``(i, n)`` (None:
    torchrun's RANK/WORLD_SIZE, if any); ``stage``: g1 | g2 | None (the last trained); ``device``:
    None = cuda if available (cuda:LOCAL_RANK under torchrun) else cpu; ``n_clusters``: for
    strategies with clusters, default K; ``max_identities``: only the first N usable identities (a
    smaller plan, part of the run's identity); ``cross_dataset``: the generator was trained on
    another dataset on purpose.
    """

    generator: str | None = None
    dataset: str | None = None
    out: str | None = None
    cross_dataset: bool = False
    poses_per_id: int = 10
    strategy: str = "random"
    n_clusters: int | None = None
    seed: int = 0
    stage: str | None = None
    max_identities: int | None = None
    jpeg_quality: int = 95
    batch_size: int = 64
    workers: int = 2
    loader_threads: int = 2
    device: str | None = None
    shard: str | None = None
    contact_sheet_ids: int = 12

    @property
    def shard_spec(self) -> tuple[int, int] | None:
        """``(i, n)`` of ``shard``, else torchrun's ``(RANK, WORLD_SIZE)``, else None."""
        return parse_shard(self.shard) or shard_from_env()


def parse_shard(spec, name: str = "--shard") -> tuple[int, int] | None:
    """``"i/n"`` or ``(i, n)`` (0-based) -> ``(i, n)``; None stays None."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        i, n = int(spec[0]), int(spec[1])
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
        if m is None:
            raise SynthesisError(f"{name} {spec!r}: expected i/n with 0 <= i < n (e.g. 0/2 for the first of two)")
        i, n = int(m[1]), int(m[2])
    if n < 1 or not 0 <= i < n:
        raise SynthesisError(f"{name} {i}/{n}: expected i/n with 0 <= i < n (e.g. 0/2 for the first of two)")
    return i, n


def shard_from_env() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` of a torchrun launch, or None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return parse_shard((int(os.environ.get("RANK", "0")), world), "RANK/WORLD_SIZE")


def _int_problems(cfg: SynthesisConfig) -> list[tuple[str, str]]:
    """(field, what is wrong) for the numeric options."""
    out = []
    for name in ("poses_per_id", "batch_size", "workers", "loader_threads"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            out.append((name, f"must be a whole number >= 1, got {v!r}"))
    for name in ("max_identities", "n_clusters"):
        v = getattr(cfg, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            out.append((name, f"must be a whole number >= 1 (or null), got {v!r}"))
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        out.append(("seed", f"must be a whole number >= 0, got {cfg.seed!r}"))
    if isinstance(cfg.jpeg_quality, bool) or not isinstance(cfg.jpeg_quality, int) or not 1 <= cfg.jpeg_quality <= 100:
        out.append(("jpeg_quality", f"must be in 1..100, got {cfg.jpeg_quality!r}"))
    if isinstance(cfg.contact_sheet_ids, bool) or not isinstance(cfg.contact_sheet_ids, int) \
            or cfg.contact_sheet_ids < 0:
        out.append(("contact_sheet_ids", f"must be a whole number >= 0, got {cfg.contact_sheet_ids!r}"))
    return out


def _choice_problems(cfg: SynthesisConfig) -> list[tuple[str, str]]:
    """(field, what is wrong) for strategy, stage, clusters, flags and paths."""
    from reid_aug.synthesis.strategies import STRATEGIES

    out = []
    strategy = STRATEGIES.get(cfg.strategy)
    if strategy is None:
        out.append(("strategy", f"{cfg.strategy!r} is not a strategy; choose one of {', '.join(STRATEGIES)}"))
    elif cfg.n_clusters is not None and not strategy.uses_clusters:
        out.append(("n_clusters", f"applies only to a strategy with clusters "
                                  f"({', '.join(s for s, e in STRATEGIES.items() if e.uses_clusters)})"))
    if isinstance(cfg.n_clusters, int) and isinstance(cfg.poses_per_id, int) and cfg.n_clusters < cfg.poses_per_id:
        out.append(("n_clusters", f"= {cfg.n_clusters} must be >= poses_per_id = {cfg.poses_per_id}"))
    if cfg.stage not in (None, "g1", "g2"):
        out.append(("stage", f"{cfg.stage!r}: expected g1 or g2"))
    if not isinstance(cfg.cross_dataset, bool):
        out.append(("cross_dataset", f"must be true or false, got {cfg.cross_dataset!r}"))
    if cfg.generator is not None and not Path(cfg.generator).exists():
        out.append(("generator", f"{cfg.generator}: no such run folder or checkpoint file"))
    return out


def check_config(cfg: SynthesisConfig, said: dict[str, str] | None = None) -> SynthesisConfig:
    """Raise one :class:`SynthesisError` line for the first bad option (named as in ``said``:
    field -> how the user gave it; default the field name). Returns ``cfg`` when all are valid."""
    said = said or {}
    problems = _int_problems(cfg) + _choice_problems(cfg)
    if problems:
        name, what = problems[0]
        raise SynthesisError(f"{said.get(name, name)} {what}")
    parse_shard(cfg.shard, said.get("shard", "shard"))
    if cfg.device not in (None, "", "auto"):
        from reid_aug.runtime import resolve_device

        try:
            resolve_device(cfg.device)
        except ConfigError as e:
            raise SynthesisError(f"{said.get('device', 'device')} {cfg.device!r}: "
                                 f"{str(e).split(';')[0]}; use cpu, cuda or cuda:N") from None
    return cfg


def load_synthesis_config(recipe: str | Path | None = None, overrides=(), flags: dict | None = None
                          ) -> SynthesisConfig:
    """Recipe (default ``recipes/synthesize.yaml``) + ``--set`` overrides + the CLI's flags -> a checked config.

    ``flags``: field -> value of the flags the user typed (None values are left out); they win over
    ``--set``. Errors name the flag, ``--set key`` or recipe key that gave the bad value.
    """
    from reid_aug.config import load_config, resolve_recipe

    flags = {k: (str(v) if isinstance(v, Path) else v) for k, v in (flags or {}).items() if v is not None}
    unknown = sorted(set(flags) - {f.name for f in dataclasses.fields(SynthesisConfig)})
    if unknown:
        raise ConfigError(f"unknown synthesis option(s) {', '.join(unknown)}")
    overrides = list(overrides or ())
    recipe = recipe or DEFAULT_RECIPE
    said = {f.name: f"{f.name} (recipe {resolve_recipe(recipe).name})" for f in dataclasses.fields(SynthesisConfig)}
    said.update({o.split("=", 1)[0].strip(): f"--set {o.split('=', 1)[0].strip()}" for o in overrides if "=" in o})
    said.update({k: FLAGS.get(k, k) for k in flags})
    # JSON is YAML: a flag's value reaches the loader unchanged (a path with ': ' stays a string).
    cfg = load_config(SynthesisConfig, recipe, overrides + [f"{k}={json.dumps(v)}" for k, v in flags.items()])
    return check_config(cfg, said)
