"""PG² training configuration (frozen dataclasses, loaded from ``recipes/pg2_*.yaml``).

Example override: ``--set train.g1_iters=200 --set model.g1_width=32``. :class:`RuntimeConfig` is
architecture-independent: every generator family's config uses it as its ``runtime`` section.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass, field

from reid_aug.config import ConfigError, config_differences  # noqa: F401 - config_differences: moved to reid_aug.config
from reid_aug.pose.maps import MASK_STYLES
from reid_aug.generator.identity import IdentityLossConfig
from reid_aug.generator.losses import D_VARIANT_ALIASES, D_VARIANTS, RECON_LOSSES

# "g1": stage I (G1 alone, reconstruction loss); "g2": stage II (G1 frozen, G2 + D);
# "g1+d": one-stage adversarial G1 (Table 1 row "G1+D").
STAGES = ("g1", "g2", "g1+d")
POSE_MODES = ("pg2", "gaussian")
POSE_EMBEDDINGS = ("concat", "ce", "hme")
D_NORMS = ("batch", "spectral")


@dataclass(frozen=True)
class ModelConfig:
    image_size: tuple[int, int] = (128, 64)
    pose_mode: str = "pg2"          # pose maps fed to G1: PG² discs in [-1, 1] or Gaussians in [0, 1]
    g1_width: int = 128             # n: the stem width; encoder level k has n*k channels
    g1_levels: int = 0              # 0 -> log2(H) - 2 (5 at 128x64)
    bottleneck: int = 64            # size of G1's fully connected code
    pose_embedding: str = "concat"  # how G1 gets the target pose (PG² Fig. 4): "concat" (input channels, the
                                    # paper's model) | "ce" (keypoint coordinates -> 2 FC) | "hme" (heatmap encoder)
    pose_code: int = 32             # width of the ce/hme pose code joined at the bottleneck
    g2_width: int = 128
    g2_levels: int = 0              # 0 -> G1 levels - 2
    g2_zero_init: bool = False      # zero G2's output conv so that stage II starts at G2 == G1 (short
                                    # budgets); the official code initialises it like every other conv
    d_width: int = 64               # DCGAN discriminator widths d, 2d, 4d, 8d
    d_norm: str = "batch"           # "batch" (PG²'s DCGAN D: BatchNorm) | "spectral" (spectral norm on every
                                    # conv/linear, no BatchNorm: SN-GAN's stabiliser, not PG²'s)

    def resolved_g1_levels(self) -> int:
        return self.g1_levels or int(math.log2(self.image_size[0])) - 2

    def resolved_g2_levels(self) -> int:
        return self.g2_levels or self.resolved_g1_levels() - 2


@dataclass(frozen=True)
class LossConfig:
    g1: str = "posemask"            # stage-I reconstruction loss: "posemask" | "l1"
    g2: str = "posemask"            # stage-II (and g1+d) reconstruction loss
    lambda_l1: float = 10.0         # weight of the reconstruction term beside the adversarial one
    d_variant: str = "pair"         # "pair" (the paper's: D judges (I_A, I_B) vs (I_A, G2)) | "official" (also shows
                                    # I_A to D as fake, 0.5/0.25/0.25) | "unconditional" (before 0.2: "paper")
    lambda_start: float = 0.0       # > 0: a lambda schedule (not PG²'s): lambda goes linearly from lambda_start
    lambda_ramp: float = 0.5        # to lambda_l1 over this fraction of each adversarial stage, then stays
    identity: IdentityLossConfig = field(default_factory=IdentityLossConfig)   # Re-ID losses (reid_aug.generator.identity)

    def __post_init__(self):
        old = D_VARIANT_ALIASES.get(self.d_variant)
        if old is not None:
            logging.getLogger(__name__).info(
                "loss.d_variant %r is the unconditional D (renamed %r in reid-aug 0.2; the paper's D is 'pair')",
                self.d_variant, old)
            object.__setattr__(self, "d_variant", old)


@dataclass(frozen=True)
class PoseConfig:
    # The pose mask of the reconstruction loss: "pg2" (PG²'s own, official _getPoseMask) | "defgan" (Deformable
    # GAN's produce_ma_mask; what every run before 0.2 used, so old configs without this key read as defgan).
    mask_style: str = "defgan"


@dataclass(frozen=True)
class DataConfig:
    # The low-data regime (reid_aug.dataset.regime): > 0 trains only on pairs among the N images per identity
    # that kept_train(N, subset_seed) keeps -- the same images `synthesize --train-per-id N` and `benchmark
    # --set data.train_per_id=N` keep, so a generator for that regime never sees the images it drops.
    train_per_id: int = 0
    subset_seed: int = 0
    # A folder of *annotation-{train,test}.csv (e.g. `reid-aug annotate DATASET --out DIR`) read instead of the
    # dataset's own keypoints; null: the dataset's annotations/ folder (or the one `annotate` recorded for it).
    annotations: str | None = None


@dataclass(frozen=True)
class TrainConfig:
    stages: tuple[str, ...] = ("g1", "g2")
    g1_iters: int = 22000
    g2_iters: int = 14000
    g1d_iters: int = 22000          # iterations of the one-stage "g1+d" ablation
    batch_size: int = 16            # global batch; each of W DDP processes takes batch_size / W
    lr: float = 2e-5                # generator(s)
    g2_lr: float = 0.0              # G2's learning rate; 0 -> lr
    d_lr: float = 2e-5
    d_every: int = 1                # update D on every k-th step only (1: every step, as PG²; k > 1 slows D down)
    betas: tuple[float, float] = (0.5, 0.999)
    flip: bool = True               # left-right flip of a whole pair (images, pose maps, mask) with p = 0.5
    seed: int = 0
    num_workers: int = 2            # DataLoader workers per process (data order does not depend on it)
    log_every: int = 50             # log.csv / TensorBoard scalars (means over the interval)
    sample_every: int = 1000        # sample grid PNG + TensorBoard image
    checkpoint_every: int = 1000    # a killed run loses at most this many steps
    n_samples: int = 8              # rows of the sample grid
    tensorboard: bool = True
    max_minutes: float = 0.0        # > 0: save and stop after this long (continue with --resume)
    init_from: str = ""             # a PG² checkpoint (or run folder) whose finished first stage (G1) is taken
                                    # over: this run starts at its second stage, as the official code trains
                                    # stage II from a stage-I checkpoint (e.g. stage-II ablations on one G1)

    def gen_lr(self, stage: str) -> float:
        return self.g2_lr if stage == "g2" and self.g2_lr > 0 else self.lr

    def iters(self, stage: str) -> int:
        return {"g1": self.g1_iters, "g2": self.g2_iters, "g1+d": self.g1d_iters}[stage]


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"            # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    amp: bool = True                # bf16 autocast (CUDA only)
    channels_last: bool = True      # NHWC memory format (CUDA only)
    compile: bool = False           # torch.compile the networks
    threads: int = 0                # torch.set_num_threads on CPU; 0 keeps torch's default
    expects_gpu: bool = False       # a recipe sized for a GPU: on a CPU, say so at once and estimate the duration
    cpu_recipe: str = ""            # the recipe to name instead on a CPU (with expects_gpu)


@dataclass(frozen=True)
class PG2Config:
    family: str = "pg2"             # the generator family (reid_aug.generator.family); recipes may omit it
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self):
        validate(self)


def validate(cfg: PG2Config) -> None:
    """Raise :class:`ConfigError` for values the code cannot run with."""
    m, lo, t = cfg.model, cfg.loss, cfg.train
    if cfg.family != "pg2":
        raise ConfigError(f"family={cfg.family!r}: a PG² config has family 'pg2'")
    if m.pose_mode not in POSE_MODES:
        raise ConfigError(f"model.pose_mode={m.pose_mode!r}: expected one of {POSE_MODES}")
    if len(m.image_size) != 2:
        raise ConfigError(f"model.image_size={m.image_size!r}: expected [height, width]")
    h, w = m.image_size
    n1, n2 = m.resolved_g1_levels(), m.resolved_g2_levels()
    if n1 < 1 or n2 < 1:
        raise ConfigError(f"model: G1 levels {n1} and G2 levels {n2} must be >= 1")
    for what, levels in (("G1", n1), ("G2", n2)):
        s = 2 ** (levels - 1)
        if h % s or w % s:
            raise ConfigError(f"model.image_size {h}x{w} is not divisible by 2^({what} levels - 1) = {s}")
    if h % 16 or w % 16:
        raise ConfigError(f"model.image_size {h}x{w}: the discriminator needs multiples of 16")
    for name in ("g1_width", "g2_width", "d_width", "bottleneck"):
        if getattr(m, name) < 1:
            raise ConfigError(f"model.{name} must be >= 1")
    for name in ("g1", "g2"):
        if getattr(lo, name) not in RECON_LOSSES:
            raise ConfigError(f"loss.{name}={getattr(lo, name)!r}: expected one of {RECON_LOSSES}")
    if m.pose_embedding not in POSE_EMBEDDINGS:
        raise ConfigError(f"model.pose_embedding={m.pose_embedding!r}: expected one of {POSE_EMBEDDINGS}")
    if cfg.pose.mask_style not in MASK_STYLES:
        raise ConfigError(f"pose.mask_style={cfg.pose.mask_style!r}: expected one of {MASK_STYLES}")
    from reid_aug.generator.identity import check_config as identity_problem

    problem = identity_problem(lo.identity)
    if problem:
        raise ConfigError(problem)
    if m.d_norm not in D_NORMS:
        raise ConfigError(f"model.d_norm={m.d_norm!r}: expected one of {D_NORMS}")
    if lo.lambda_start < 0 or not 0 < lo.lambda_ramp <= 1:
        raise ConfigError("loss.lambda_start must be >= 0 and loss.lambda_ramp in (0, 1]")
    if t.d_every < 1:
        raise ConfigError(f"train.d_every={t.d_every}: must be >= 1")
    if lo.d_variant not in D_VARIANTS:
        raise ConfigError(f"loss.d_variant={lo.d_variant!r}: expected one of {D_VARIANTS}")
    if cfg.data.train_per_id < 0 or cfg.data.subset_seed < 0:
        raise ConfigError("data.train_per_id and data.subset_seed must be >= 0 (train_per_id 0: every image)")
    if not t.stages:
        raise ConfigError("train.stages is empty; use e.g. [g1, g2]")
    for i, s in enumerate(t.stages):
        if s not in STAGES:
            raise ConfigError(f"train.stages: unknown stage {s!r}; expected some of {STAGES}")
        if s in t.stages[:i]:
            raise ConfigError(f"train.stages lists {s!r} twice")
        if s == "g2" and not any(p in ("g1", "g1+d") for p in t.stages[:i]):
            raise ConfigError("train.stages: stage 'g2' needs a G1 stage ('g1' or 'g1+d') before it")
    if t.batch_size < 1 or any(t.iters(s) < 0 for s in t.stages):
        raise ConfigError("train.batch_size must be >= 1 and the iteration counts >= 0")
    for name in ("log_every", "sample_every", "checkpoint_every"):
        if getattr(t, name) < 1:
            raise ConfigError(f"train.{name} must be >= 1")
    if len(t.betas) != 2:
        raise ConfigError(f"train.betas={t.betas!r}: expected [beta1, beta2]")


# Fields that decide what is being trained: a --resume must not change them.
IDENTITY_FIELDS = ("family", "model", "loss", "pose", "data", "train.stages", "train.batch_size", "train.lr", "train.g2_lr", "train.d_lr",
                   "train.d_every", "train.betas", "train.flip", "train.seed")


def replace(cfg: PG2Config, **sections) -> PG2Config:
    """``replace(cfg, train={"g1_iters": 5})`` -> a copy with those fields changed."""
    kw = {name: dataclasses.replace(getattr(cfg, name), **vals) for name, vals in sections.items()}
    return dataclasses.replace(cfg, **kw)
