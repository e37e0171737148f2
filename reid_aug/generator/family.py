"""Generator families: what a pose-transfer model (PG², Deformable GAN, ...) gives the shared machinery.

The architecture-independent parts of :mod:`reid_aug.generator` (the training loop and its hooks,
checkpoints, samples, :func:`~reid_aug.generator.inference.load_generator`) talk to a model only
through one :class:`GeneratorFamily`, looked up by name::

    family = get_family("pg2")                       # or family_of(cfg), or a checkpoint's "family" field
    cfg = load_config(family.config_class, recipe)   # recipes name it: ``family: pg2`` (default pg2)
    nets = family.build_networks(cfg, ("g1", "g2"))
    values = family.train_step("g2", batch, cfg, modules)
    image = family.generate(nets, batch, stage="g2")

A family's config is a frozen dataclass with a ``family`` field and the sections the trainer reads:
``model.image_size`` / ``model.pose_mode``; ``train.stages``, ``train.iters(stage)``, ``train.batch_size``,
``train.seed``, ``train.flip``, ``train.num_workers``, ``train.log_every``, ``train.sample_every``,
``train.checkpoint_every``, ``train.n_samples``, ``train.tensorboard``, ``train.max_minutes``,
``train.init_from``; and ``runtime`` (:class:`reid_aug.generator.config.RuntimeConfig`). Resume refuses a
change of ``family.identity_fields``.

Batches are dicts (from :class:`reid_aug.pairs.PosePairDataset`), images in [-1, 1]:
``src_img``/``tgt_img`` (B,3,H,W), ``src_pose``/``tgt_pose`` (B,18,H,W) pose maps, ``src_kp``/``tgt_kp``
(B,18,2) (y, x) keypoints (-1 = missing), ``tgt_mask`` (B,1,H,W) in {0, 1}. A family takes what it needs.

Register a new family with ``register_family(MyFamily())`` in its module and add the module to
``BUILTIN_FAMILIES`` so that ``get_family`` imports it on first use.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
from typing import Callable, ContextManager

import torch
from torch import nn

from reid_aug.errors import CheckpointError, ConfigError

# name -> module that registers it when imported (lazy, so that importing the registry stays cheap)
BUILTIN_FAMILIES = {"pg2": "reid_aug.generator.pg2", "defgan": "reid_aug.generator.defgan.family"}
_REGISTRY: dict[str, "GeneratorFamily"] = {}


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: which networks it optimises and which it only runs.

    ``g``: networks the generator optimizer updates; ``d``: networks the discriminator optimizer
    updates (empty: no adversarial step); ``frozen``: networks run in eval mode without gradients
    (PG² stage II runs G1 frozen). Trained networks are DDP-wrapped under torchrun.
    """

    name: str
    g: tuple[str, ...]
    d: tuple[str, ...] = ()
    frozen: tuple[str, ...] = ()

    @property
    def networks(self) -> tuple[str, ...]:
        return self.g + self.d + self.frozen


@dataclasses.dataclass
class StepModules:
    """What one training step of a stage gets.

    ``nets``: the raw networks of the stage (a discriminator's raw module serves the G step with
    frozen weights: no DDP hooks); ``run``: the callables to train through (DDP / compiled wrappers
    of the trained networks, the frozen ones as they are); ``opt_g`` / ``opt_d``: the optimizers
    (``opt_d`` None without a ``d`` group); ``autocast()``: the mixed-precision context;
    ``check(terms)``: turns the loss terms into floats (averaged over DDP ranks) and raises
    :class:`~reid_aug.errors.TrainingDivergedError` on NaN/inf. Call it before any optimizer step.
    ``position()``: ``(steps done in the stage, stage length)`` for schedules inside a step.
    """

    nets: dict[str, nn.Module]
    run: dict[str, Callable]
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer | None = None
    autocast: Callable[[], ContextManager] = contextlib.nullcontext
    check: Callable[[dict], dict] = None  # type: ignore[assignment]
    position: Callable[[], tuple[int, int]] = lambda: (0, 1)

    def __post_init__(self):
        if self.check is None:
            self.check = lambda terms: {k: float(v.detach()) for k, v in terms.items()}


class GeneratorFamily:
    """The interface a model family implements (subclass it; override every method that raises).

    Class attributes: ``name`` ("pg2"); ``config_class`` (frozen dataclass, see the module
    docstring); ``stage_names`` (every stage :meth:`stage` knows); ``network_names`` (all networks,
    in build order); ``base_networks`` (built from
    ``train.seed`` when a run starts; the others when the first stage needing them starts, seeded
    by (seed, stage index)); ``log_terms`` (the loss-term columns of log.csv, in order);
    ``progress_terms`` (shown on the progress bar); ``identity_fields`` (dotted config keys a
    resume must not change); ``conditions`` (what ``generate`` needs besides ``src_img`` and
    ``tgt_pose``, e.g. ``src_pose``, ``src_kp``, ``tgt_kp``: synthesis and evaluation provide them).
    """

    name: str = ""
    config_class: type = type(None)
    stage_names: tuple[str, ...] = ()
    network_names: tuple[str, ...] = ()
    base_networks: tuple[str, ...] = ()
    log_terms: tuple[str, ...] = ("loss",)
    progress_terms: tuple[str, ...] = ("loss",)
    identity_fields: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()   # batch entries ``generate`` needs besides src_img and tgt_pose

    # ------------------------------------------------------------ networks and stages
    def build_networks(self, cfg, which) -> dict[str, nn.Module]:
        """Fresh networks named in ``which`` (always built in ``network_names`` order)."""
        raise NotImplementedError

    def stage(self, name: str) -> Stage:
        """The :class:`Stage` called ``name`` (one of ``cfg.train.stages``)."""
        raise NotImplementedError

    def make_optimizer(self, cfg, stage: str, group: str, params) -> torch.optim.Optimizer:
        """The optimizer of ``group`` ("g" | "d") in ``stage`` over ``params``."""
        raise NotImplementedError

    def train_step(self, stage: str, batch: dict, cfg, mods: StepModules) -> dict[str, float]:
        """One optimisation step of ``stage`` on a device batch; returns ``mods.check(terms)``."""
        raise NotImplementedError

    # ------------------------------------------------------------ inference
    def output_stages(self, trained) -> tuple[str, ...]:
        """Trained stage names (checkpoint ``trained``) -> the stages ``generate`` accepts, last = best."""
        raise NotImplementedError

    def inference_networks(self, stages) -> tuple[str, ...]:
        """The networks ``generate`` needs for the output ``stages``."""
        raise NotImplementedError

    def generate(self, nets: dict[str, Callable], batch: dict, stage: str) -> torch.Tensor:
        """``batch`` (at least ``src_img`` (B,3,H,W), ``tgt_pose`` (B,18,H,W)) -> (B,3,H,W), not clipped."""
        raise NotImplementedError

    def sample_images(self, nets: dict[str, Callable], batch: dict, trained) -> list[torch.Tensor | None]:
        """The generated columns of a sample grid (None: not trained yet, drawn grey)."""
        raise NotImplementedError

    def describe(self, cfg) -> str:
        """One line on the family-specific choices (for the dry run)."""
        return ""

    # ------------------------------------------------------------ config
    def config_from_dict(self, data: dict, where: str = "the config"):
        from reid_aug.config import from_dict

        try:
            return from_dict(self.config_class, data)
        except (ConfigError, TypeError) as e:
            raise CheckpointError(f"{where}: its stored config is not valid for this reid-aug ({e})") from None


def register_family(family: GeneratorFamily) -> GeneratorFamily:
    """Make ``family`` available under ``family.name``; returns it."""
    if not family.name:
        raise ValueError("a generator family needs a name")
    _REGISTRY[family.name] = family
    return family


def family_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(BUILTIN_FAMILIES))


def get_family(name: str) -> GeneratorFamily:
    """The registered family ``name``; :class:`ConfigError` naming the known ones otherwise."""
    if name not in _REGISTRY and name in BUILTIN_FAMILIES:
        importlib.import_module(BUILTIN_FAMILIES[name])
    if name not in _REGISTRY:
        raise ConfigError(f"unknown generator family {name!r}; known: {', '.join(family_names())}")
    return _REGISTRY[name]


def family_of(cfg) -> GeneratorFamily:
    """The family whose config ``cfg`` is."""
    family = get_family(getattr(cfg, "family", "pg2"))
    if not isinstance(cfg, family.config_class):
        raise ConfigError(f"a {type(cfg).__name__} is not a {family.name} config")
    return family
