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
         "strategy": "--strategy", "angles": "--angles", "seed": "--seed", "batch_size": "--batch-size", "shard": "--shard",
         "stage": "--stage", "jpeg_quality": "--jpeg-quality", "workers": "--workers", "device": "--device",
         "cross_dataset": "--cross-dataset", "per_image": "--per-image", "train_per_id": "--train-per-id",
         "subset_seed": "--subset-seed", "allow_leak": "--allow-leak", "pose_bank": "--pose-bank",
         "filter.model": "--filter", "filter.rule": "--filter-rule", "filter.k": "--filter-k",
         "filter.threshold": "--filter-threshold"}
FILTER_RULES = ("top-k", "threshold")


@dataclasses.dataclass(frozen=True)
class FilterConfig:
    """Which generated images to keep (``synthesize --filter MODEL``, ``reid-aug filter SET``).

    ``model``: a Re-ID model of ``reid-aug benchmark`` (``OUT/models/<variant>_seed<S>.pt``) trained on
    the real (kept) images, None = no filtering; ``rule``: ``top-k`` keeps an image whose own
    identity's centroid is among the ``k`` nearest identity centroids, ``threshold`` one whose cosine
    to its own centroid is >= ``threshold``; ``batch_size``: of the feature extraction.
    """

    model: str | None = None
    rule: str = "top-k"
    k: int = 1
    threshold: float = 0.5
    batch_size: int = 64


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
    another dataset on purpose; ``per_image``: K images for every source image instead of
    ``poses_per_id`` per identity; ``train_per_id`` / ``subset_seed``: the low-data regime, only
    the N kept real images per identity are sources (:mod:`reid_aug.dataset.regime`), and the
    generator must have seen only kept images; ``allow_leak``: use such a generator anyway (recorded
    as ``leak: true``); ``pose_bank``: market | toy | PATH whose training poses are the targets
    (None: the dataset's own); ``filter``: :class:`FilterConfig`.
    """

    generator: str | None = None
    dataset: str | None = None
    out: str | None = None
    cross_dataset: bool = False
    poses_per_id: int = 10
    strategy: str = "random"
    angles: tuple[float, ...] = (45.0, 90.0, 180.0, 270.0)   # strategy rotate: the rotations, in turn (degrees)
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
    per_image: int | None = None
    train_per_id: int | None = None
    subset_seed: int = 0
    allow_leak: bool = False
    pose_bank: str | None = None
    filter: FilterConfig = dataclasses.field(default_factory=FilterConfig)

    @property
    def images_per_unit(self) -> int:
        """K of a unit: per source image (``per_image``) or per identity (``poses_per_id``)."""
        return self.per_image or self.poses_per_id

    @property
    def subset(self) -> tuple[int, int] | None:
        """``(train_per_id, subset_seed)`` of the low-data regime; None: every real image."""
        return (int(self.train_per_id), int(self.subset_seed)) if self.train_per_id else None

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


def _whole(v, low: int, none_ok: bool = False) -> bool:
    return (v is None and none_ok) or (not isinstance(v, bool) and isinstance(v, int) and v >= low)


def _int_problems(cfg: SynthesisConfig) -> list[tuple[str, str]]:
    """(field, what is wrong) for the numeric options."""
    out = []
    for name in ("poses_per_id", "batch_size", "workers", "loader_threads"):
        if not _whole(getattr(cfg, name), 1):
            out.append((name, f"must be a whole number >= 1, got {getattr(cfg, name)!r}"))
    for name in ("max_identities", "n_clusters", "per_image"):
        if not _whole(getattr(cfg, name), 1, none_ok=True):
            out.append((name, f"must be a whole number >= 1 (or null), got {getattr(cfg, name)!r}"))
    if not _whole(cfg.train_per_id, 0, none_ok=True):
        out.append(("train_per_id", f"must be a whole number >= 1 (0 or null: every image), got {cfg.train_per_id!r}"))
    for name in ("seed", "subset_seed"):
        if not _whole(getattr(cfg, name), 0):
            out.append((name, f"must be a whole number >= 0, got {getattr(cfg, name)!r}"))
    if isinstance(cfg.jpeg_quality, bool) or not isinstance(cfg.jpeg_quality, int) or not 1 <= cfg.jpeg_quality <= 100:
        out.append(("jpeg_quality", f"must be in 1..100, got {cfg.jpeg_quality!r}"))
    if not _whole(cfg.contact_sheet_ids, 0):
        out.append(("contact_sheet_ids", f"must be a whole number >= 0, got {cfg.contact_sheet_ids!r}"))
    return out


def _filter_problems(f: FilterConfig) -> list[tuple[str, str]]:
    """(field, what is wrong) for the ``filter`` section."""
    out = []
    if f.rule not in FILTER_RULES:
        out.append(("filter.rule", f"{f.rule!r}: expected one of {', '.join(FILTER_RULES)}"))
    for name in ("k", "batch_size"):
        if not _whole(getattr(f, name), 1):
            out.append((f"filter.{name}", f"must be a whole number >= 1, got {getattr(f, name)!r}"))
    if isinstance(f.threshold, bool) or not isinstance(f.threshold, (int, float)) or not -1.0 <= f.threshold <= 1.0:
        out.append(("filter.threshold", f"must be a cosine in [-1, 1], got {f.threshold!r}"))
    if f.model is not None and not Path(f.model).is_file():
        out.append(("filter.model", f"{f.model}: no such Re-ID model file (benchmark OUT/models/<variant>_seed<S>.pt)"))
    return out


def _output_stages() -> list[str]:
    """The stages any registered generator family can generate from (PG²: g1, g2; Deformable GAN: defgan)."""
    from reid_aug.generator.family import family_names, get_family

    out = []
    for name in family_names():
        fam = get_family(name)
        out += [s for s in fam.output_stages(fam.stage_names) if s not in out]
    return out


def _choice_problems(cfg: SynthesisConfig) -> list[tuple[str, str]]:
    """(field, what is wrong) for strategy, stage, clusters, flags and paths."""
    from reid_aug.synthesis.strategies import STRATEGIES
    from reid_aug.synthesis.view_strategies import VIEW_STRATEGIES

    out = []
    strategy = STRATEGIES.get(cfg.strategy)
    if strategy is None and cfg.strategy not in VIEW_STRATEGIES:
        out.append(("strategy", f"{cfg.strategy!r} is not a strategy; choose one of "
                                f"{', '.join(list(STRATEGIES) + list(VIEW_STRATEGIES))}"))
    elif strategy is None and cfg.n_clusters is not None:
        out.append(("n_clusters", f"applies only to a strategy with clusters, not {cfg.strategy!r}"))
    elif cfg.n_clusters is not None and not strategy.uses_clusters:
        out.append(("n_clusters", f"applies only to a strategy with clusters "
                                  f"({', '.join(s for s, e in STRATEGIES.items() if e.uses_clusters)})"))
    k_name = "per_image" if cfg.per_image else "poses_per_id"
    if isinstance(cfg.n_clusters, int) and isinstance(cfg.images_per_unit, int) and cfg.n_clusters < cfg.images_per_unit:
        out.append(("n_clusters", f"= {cfg.n_clusters} must be >= {k_name} = {cfg.images_per_unit}"))
    stages = _output_stages()
    if cfg.stage is not None and cfg.stage not in stages:
        out.append(("stage", f"{cfg.stage!r}: expected {' or '.join(stages)}"))
    if not cfg.angles or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in cfg.angles):
        out.append(("angles", f"{cfg.angles!r}: expected a list of rotations in degrees, e.g. [45, 90, 180, 270]"))
    for name in ("cross_dataset", "allow_leak"):
        if not isinstance(getattr(cfg, name), bool):
            out.append((name, f"must be true or false, got {getattr(cfg, name)!r}"))
    if cfg.generator is not None and not Path(cfg.generator).exists():
        out.append(("generator", f"{cfg.generator}: no such run folder or checkpoint file"))
    return out


def check_config(cfg: SynthesisConfig, said: dict[str, str] | None = None) -> SynthesisConfig:
    """Raise one :class:`SynthesisError` line for the first bad option (named as in ``said``:
    field -> how the user gave it; default the field name). Returns ``cfg`` when all are valid."""
    said = said or {}
    problems = _int_problems(cfg) + _choice_problems(cfg) + _filter_problems(cfg.filter)
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
    filter_keys = {f"filter.{f.name}" for f in dataclasses.fields(FilterConfig)}
    unknown = sorted(set(flags) - {f.name for f in dataclasses.fields(SynthesisConfig)} - filter_keys)
    if unknown:
        raise ConfigError(f"unknown synthesis option(s) {', '.join(unknown)}")
    overrides = list(overrides or ())
    recipe = recipe or DEFAULT_RECIPE
    said = {f.name: f"{f.name} (recipe {resolve_recipe(recipe).name})" for f in dataclasses.fields(SynthesisConfig)}
    said.update({k: f"{k} (recipe {resolve_recipe(recipe).name})" for k in filter_keys})
    said.update({o.split("=", 1)[0].strip(): f"--set {o.split('=', 1)[0].strip()}" for o in overrides if "=" in o})
    said.update({k: FLAGS.get(k, k) for k in flags})
    typed = {o.split("=", 1)[0].strip() for o in overrides if "=" in o} | set(flags)
    if {"per_image", "poses_per_id"} <= typed:
        raise SynthesisError(f"{said['per_image']} K writes K images per source image; {said['poses_per_id']} "
                             f"(K per identity) does not apply with it: give one of them")
    # JSON is YAML: a flag's value reaches the loader unchanged (a path with ': ' stays a string).
    cfg = load_config(SynthesisConfig, recipe, overrides + [f"{k}={json.dumps(v)}" for k, v in flags.items()])
    return check_config(cfg, said)
