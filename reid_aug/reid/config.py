"""Re-ID benchmark configuration (frozen dataclasses, loaded from ``recipes/reid_*.yaml``).

Example override: ``--set train.epochs=10 --set data.train_per_id=4``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from reid_aug.config import ConfigError

MIXES = ("pool", "batch")
LABEL_MODES = ("same-id", "lsro", "teacher")
OWN_BASELINE = "baseline"    # train.teacher: the benchmark's own first-seed baseline model
AUGMENTED_IMAGES = ("synthesized", "sources")
TRANSFORMS = ("random_flip", "random_crop", "random_patch", "color_jitter", "random_erase")
DIST_METRICS = ("euclidean", "cosine")
BUDGETS = ("epochs", "iterations")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "resnet50"              # any torchreid.models name (resnet50, osnet_x0_25, resnet18, ...)
    pretrained: bool = True             # ImageNet initialisation (torch hub cache or --weights FILE)


@dataclass(frozen=True)
class DataConfig:
    height: int = 256
    width: int = 128
    transforms: tuple[str, ...] = ("random_flip", "random_crop")
    train_per_id: int = 0               # > 0: keep at most this many real train images per identity
    subsample_seed: int = 0             # which images the subsample keeps (fixed across training seeds)
    test_ids: int = 0                   # > 0: only the first N test identities (a smoke setting, not the protocol)
    # Validation split (issue 14: choose levers and epochs without the test split): > 0 holds out this many
    # training identities (drawn with val_seed); their images leave the training list (real and synthesized)
    # and form a query (one image per camera) / gallery (the rest) set. eval.split picks what is reported.
    val_ids: int = 0
    val_seed: int = 0
    workers: int = 2                    # DataLoader workers
    batch_size_test: int = 128
    check_images: bool = True           # decode every image once before training (corrupt file -> DatasetError)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 3e-4
    weight_decay: float = 5e-4
    lr_scheduler: str = "single_step"   # torchreid.optim.build_lr_scheduler: single_step | multi_step | cosine
    stepsize: tuple[int, ...] = (20,)   # single_step: decay every stepsize[0] epochs; multi_step: at these epochs
    gamma: float = 0.1
    # Decay points as fractions of the training length (e.g. [0.5, 0.75]); when set they replace stepsize /
    # lr_scheduler, so that `--set train.epochs=N` keeps the schedule's shape (a multi_step schedule at
    # round(f * epochs)). A fixed stepsize does not follow the epochs: epochs 20 with stepsize [2] decays
    # the LR ten times.
    lr_decay_at: tuple[float, ...] = ()
    label_smooth: bool = True           # torchreid CrossEntropyLoss label smoothing (eps = 0.1)
    labels: str = "same-id"             # synthesized images: "same-id" (their source pid) | "lsro" (uniform)
    # How synthesized images enter training. "pool": they join the real images in one shuffled training list
    # (the real images are seen less often per step). "batch" (CamStyle's protocol): every batch is the
    # baseline's batch of real images (same sampler, epochs and schedule) plus round(synthetic_ratio * batch_size)
    # synthesized ones drawn from their own stream; the loss is mean(real) + synthetic_weight * mean(synthesized).
    mix: str = "pool"
    synthetic_ratio: float = 0.36       # batch: synthesized per real image in a batch (CamStyle: 46 / 128)
    synthetic_weight: float = 1.0       # loss weight of the synthesized images (pool: in a weighted mean)
    synthetic_label_smooth: float = -1.0  # same-id smoothing eps of synthesized images; < 0: as the real ones
                                        # (0.1 with label_smooth, else 0); CamStyle: 0.1
    # labels: teacher (DG-Net): synthesized images learn a frozen Re-ID model's soft labels (reid_aug.reid.teacher)
    # a `benchmark` model file trained on the same real images, or "baseline": this benchmark's own baseline of
    # its first seed (trained before any augmented run, or taken over with --baseline-from)
    teacher: str = ""
    teacher_temperature: float = 1.0
    teacher_weight: float = 1.0
    teacher_ramp: float = 0.0           # the weight ramps up linearly over this fraction of training (0: none)
    # "sources": the no-generation control. Every synthesized image is replaced by the real source image it was
    # generated from (the manifest's `source`); counts, identities, stream and labels stay, not one generated
    # pixel is seen. A gain that survives it is not the generator's (e.g. teacher labels: distillation).
    augmented_images: str = "synthesized"
    max_iters_per_epoch: int = 0        # > 0: cut every epoch after this many iterations (CPU sizing)
    # "epochs": both variants train `epochs` epochs (the papers' recipes; the augmented model, with more
    # images, takes more optimizer steps). "iterations": the baseline takes exactly as many steps as the
    # augmented run (more epochs, the last one cut) with the LR schedule stepped on the augmented run's
    # iteration count, so a delta is not a training-length effect. No effect without an augmented folder.
    budget: str = "epochs"


@dataclass(frozen=True)
class EvalConfig:
    split: str = "test"                 # test (the dataset's query/gallery) | val (data.val_ids held-out identities)
    # > 0: also evaluate on eval.split every this many epochs (and after the last): the training curve that shows
    # whether an epoch budget has converged (issue 14: chosen on split val, never on test); drawn in curves.png
    curve_every: int = 0
    ranks: tuple[int, ...] = (1, 5, 10, 20)
    max_rank: int = 50
    dist_metric: str = "euclidean"      # torchreid's: squared Euclidean | cosine
    normalize_feature: bool = False
    rerank: bool = False                # also k-reciprocal re-ranking
    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"                # auto | cpu | cuda
    threads: int = 0                    # torch.set_num_threads on CPU; 0 keeps torch's default


@dataclass(frozen=True)
class BenchmarkConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self):
        validate(self)


def validate(cfg: BenchmarkConfig) -> None:
    """Raise :class:`ConfigError` for values torchreid would reject late (or silently ignore)."""
    t, d, e = cfg.train, cfg.data, cfg.eval
    if t.budget not in BUDGETS:
        raise ConfigError(f"train.budget={t.budget!r}; expected one of {BUDGETS}")
    if t.max_iters_per_epoch < 0:
        raise ConfigError(f"train.max_iters_per_epoch={t.max_iters_per_epoch}; expected >= 0 (0 = whole epochs)")
    if t.labels not in LABEL_MODES:
        raise ConfigError(f"train.labels={t.labels!r}; expected one of {LABEL_MODES}")
    if t.labels == "teacher" and not t.teacher:
        raise ConfigError("train.labels=teacher needs train.teacher=PATH (a `reid-aug benchmark` model trained on the "
                          "same real images, e.g. OUT/models/baseline_seed0.pt) or train.teacher=baseline (this "
                          "benchmark's own baseline of its first seed)")
    if t.teacher_temperature <= 0 or t.teacher_weight < 0 or not 0 <= t.teacher_ramp <= 1:
        raise ConfigError("train.teacher_temperature must be > 0, teacher_weight >= 0, teacher_ramp in [0, 1]")
    if t.augmented_images not in AUGMENTED_IMAGES:
        raise ConfigError(f"train.augmented_images={t.augmented_images!r}; expected one of {AUGMENTED_IMAGES}")
    if t.mix not in MIXES:
        raise ConfigError(f"train.mix={t.mix!r}; expected one of {MIXES}")
    if not 0 < t.synthetic_ratio <= 8 or t.synthetic_weight < 0 or t.synthetic_label_smooth >= 1:
        raise ConfigError("train.synthetic_ratio must be in (0, 8], train.synthetic_weight >= 0 and "
                          "train.synthetic_label_smooth < 1 (< 0: as the real images)")
    bad = [x for x in d.transforms if x not in TRANSFORMS]
    if bad:
        raise ConfigError(f"data.transforms has unknown {bad}; known: {TRANSFORMS}")
    if e.curve_every < 0:
        raise ConfigError(f"eval.curve_every={e.curve_every}; expected >= 0 (0 = no curve)")
    if e.dist_metric not in DIST_METRICS:
        raise ConfigError(f"eval.dist_metric={e.dist_metric!r}; expected one of {DIST_METRICS}")
    if t.epochs < 1 or t.batch_size < 1:
        raise ConfigError(f"train.epochs ({t.epochs}) and train.batch_size ({t.batch_size}) must be >= 1")
    if t.optimizer not in ("adam", "amsgrad", "sgd", "rmsprop", "radam"):
        raise ConfigError(f"train.optimizer={t.optimizer!r}; expected adam | amsgrad | sgd | rmsprop | radam")
    if t.lr_scheduler not in ("single_step", "multi_step", "cosine"):
        raise ConfigError(f"train.lr_scheduler={t.lr_scheduler!r}; expected single_step | multi_step | cosine")
    if not t.stepsize or any(s < 1 for s in t.stepsize):
        raise ConfigError(f"train.stepsize={t.stepsize!r}; expected positive epoch number(s)")
    if any(not 0 < f <= 1 for f in t.lr_decay_at):
        raise ConfigError(f"train.lr_decay_at={list(t.lr_decay_at)!r}: expected fractions of the training length "
                          f"in (0, 1], e.g. [0.5, 0.75]")
    if e.split not in ("test", "val") or (e.split == "val" and d.val_ids < 1) or d.val_ids < 0:
        raise ConfigError(f"eval.split={e.split!r} with data.val_ids={d.val_ids}: expected test, or val with "
                          f"data.val_ids >= 1 held-out training identities")
    if d.test_ids < 0:
        raise ConfigError(f"data.test_ids={d.test_ids}: expected >= 0 (0 = the whole test split)")
    if d.height < 16 or d.width < 16:
        raise ConfigError(f"data.height/width {d.height}x{d.width} too small (>= 16)")
    if not e.ranks or min(e.ranks) < 1:
        raise ConfigError(f"eval.ranks={e.ranks!r}; expected positive ranks")


def with_cli(cfg: BenchmarkConfig, model: str | None = None, labels: str | None = None,
             pretrained: bool | None = None, rerank: bool | None = None) -> BenchmarkConfig:
    """Apply the CLI's own options on top of the recipe (None = keep the recipe's value)."""
    if model is not None:
        cfg = replace(cfg, model=replace(cfg.model, name=model))
    if pretrained is not None:
        cfg = replace(cfg, model=replace(cfg.model, pretrained=bool(pretrained)))
    if labels is not None:
        cfg = replace(cfg, train=replace(cfg.train, labels=labels))
    if rerank:
        cfg = replace(cfg, eval=replace(cfg.eval, rerank=True))
    return cfg

