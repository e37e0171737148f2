"""Deformable GAN training configuration (frozen dataclasses, loaded from ``recipes/defgan_*.yaml``).

Example override: ``--set train.steps=200 --set model.warp_skip=none``. The runtime section is the
architecture-independent :class:`~reid_aug.generator.config.RuntimeConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from reid_aug.config import ConfigError
from reid_aug.generator.config import DataConfig, RuntimeConfig
from reid_aug.generator.defgan.generator import WARP_SKIPS
from reid_aug.generator.identity import IdentityLossConfig

STAGE = "defgan"                  # one adversarial stage: G and D from the start
NN_FEATURES = ("patch", "vgg19", "reid")
INTERPOLATIONS = ("nearest", "bilinear")


@dataclass(frozen=True)
class DefGANModelConfig:
    image_size: tuple[int, int] = (128, 64)
    pose_mode: str = "gaussian"     # 18 Gaussian heatmaps, sigma 6 (official cords_to_map); the only mode it takes
    warp_skip: str = "mask"         # deformable skips ("mask": 10 parts, masks, max) | "none" (the baseline U-Net)
    warped_levels: int = 4          # the deformable skips' levels (official concatenate_skips: the 4 finest of 6)
    interpolation: str = "nearest"  # the warp's sampling (tf.contrib.image.transform default) | "bilinear"
    use_bg: bool = False            # TPAMI background conditioning (off in the paper's quantitative runs)
    bg_grow: int = 6                # use_bg: the person is cut out of a background image by its pose mask grown by
                                    # this many pixels (defgan.background: crops have no separate background)
    width: int = 64                 # encoder 64-128-256-512-512-512, decoder 512-512-512-256-128-3
    d_width: int = 64               # PatchGAN 64-128-256-512-1


@dataclass(frozen=True)
class DefGANLossConfig:
    gan: str = "bce"                # -log D(G) for G; -log D(real) - log(1 - D(fake)) for D
    nn_weight: float = 0.01         # lambda of the nearest-neighbour loss (official l1_penalty_weight)
    nn_k: int = 3                   # nn_loss_area_size (Market; 5 for DeepFashion)
    nn_features: str = "patch"      # "vgg19": the paper's conv1_2 (torch cache or loss.vgg_weights);
                                    # "patch": raw 5x5 patches, the offline default (a recorded deviation);
                                    # "reid": the stem of loss.identity.model (a Re-ID net on the real images)
    nn_reduction: str = "mean"      # official: channels summed, positions and batch averaged
    vgg_weights: str = ""           # a torchvision vgg19 state dict for nn_features=vgg19 ("" = the torch cache)
    l1_weight: float = 0.0          # plain pixel L1 (the ablations' "L1" rows)
    identity: IdentityLossConfig = field(default_factory=IdentityLossConfig)   # Re-ID losses (reid_aug.generator.identity)


@dataclass(frozen=True)
class DefGANTrainConfig:
    stages: tuple[str, ...] = (STAGE,)
    steps: int = 90000              # 90 epochs x 1,000 iterations
    batch_size: int = 4
    lr: float = 2e-4
    d_lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    flip: bool = False              # the official training reads the pairs as they are
    seed: int = 0
    num_workers: int = 2
    log_every: int = 50
    sample_every: int = 1000
    checkpoint_every: int = 1000
    n_samples: int = 8
    tensorboard: bool = True
    max_minutes: float = 0.0
    init_from: str = ""             # (two-stage families only; Deformable GAN has one stage)

    def iters(self, stage: str) -> int:
        return self.steps


@dataclass(frozen=True)
class DefGANConfig:
    family: str = "defgan"
    model: DefGANModelConfig = field(default_factory=DefGANModelConfig)
    loss: DefGANLossConfig = field(default_factory=DefGANLossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: DefGANTrainConfig = field(default_factory=DefGANTrainConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self):
        validate(self)


def validate(cfg: DefGANConfig) -> None:
    """Raise :class:`ConfigError` for values the code cannot run with."""
    m, lo, t = cfg.model, cfg.loss, cfg.train
    checks = [
        (cfg.family == "defgan", f"family={cfg.family!r}: a Deformable GAN config has family 'defgan'"),
        (m.pose_mode == "gaussian", f"model.pose_mode={m.pose_mode!r}: Deformable GAN takes 'gaussian' heatmaps"),
        (len(m.image_size) == 2 and m.image_size[0] % 64 == 0 and m.image_size[1] % 32 == 0,
         f"model.image_size={tuple(m.image_size)}: needs [H, W] with H a multiple of 64 and W of 32 (6 levels)"),
        (m.warp_skip in WARP_SKIPS, f"model.warp_skip={m.warp_skip!r}: expected one of {WARP_SKIPS}"),
        (0 <= m.warped_levels <= 6, f"model.warped_levels={m.warped_levels}: expected 0..6"),
        (m.interpolation in INTERPOLATIONS, f"model.interpolation={m.interpolation!r}: expected {INTERPOLATIONS}"),
        (m.bg_grow >= 0, f"model.bg_grow={m.bg_grow}: must be >= 0 (pixels)"),
        (m.width >= 1 and m.d_width >= 1, "model.width and model.d_width must be >= 1"),
        (lo.gan == "bce", f"loss.gan={lo.gan!r}: only 'bce' (the official cross-entropy)"),
        (lo.nn_features in NN_FEATURES, f"loss.nn_features={lo.nn_features!r}: expected one of {NN_FEATURES}"),
        (lo.nn_features != "reid" or bool(lo.identity.model),
         "loss.nn_features=reid takes its features from loss.identity.model: set it to a `reid-aug benchmark` "
         "model file trained on the same real images"),
        (lo.nn_k >= 1 and lo.nn_k % 2 == 1, f"loss.nn_k={lo.nn_k}: must be odd and >= 1"),
        (lo.nn_reduction in ("mean", "sum"), f"loss.nn_reduction={lo.nn_reduction!r}: expected mean or sum"),
        (lo.nn_weight >= 0 and lo.l1_weight >= 0, "loss.nn_weight and loss.l1_weight must be >= 0"),
        (tuple(t.stages) == (STAGE,), f"train.stages={list(t.stages)}: Deformable GAN has one stage, [{STAGE}]"),
        (t.steps >= 0 and t.batch_size >= 1, "train.steps must be >= 0 and train.batch_size >= 1"),
        (min(t.log_every, t.sample_every, t.checkpoint_every) >= 1, "train.*_every must be >= 1"),
        (len(t.betas) == 2, f"train.betas={t.betas!r}: expected [beta1, beta2]"),
        (not t.init_from, "train.init_from takes over a first stage; Deformable GAN has only one"),
        (cfg.data.train_per_id >= 0 and cfg.data.subset_seed >= 0, "data.train_per_id and data.subset_seed must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    from reid_aug.generator.identity import check_config as identity_problem

    problem = identity_problem(lo.identity)
    if problem:
        raise ConfigError(problem)


# Fields that decide what is being trained: a --resume must not change them.
IDENTITY_FIELDS = ("family", "model", "loss", "data", "train.stages", "train.batch_size", "train.lr", "train.d_lr",
                   "train.betas", "train.flip", "train.seed")
