"""Load a trained generator (any registered family) for synthesis and evaluation.

    gen = load_generator("runs/pg2_market-market")       # run folder or checkpoint.pt
    tgt_pose = gen.pose_maps(tgt_kp)                      # (B,18,2) keypoints -> (B,18,H,W)
    out = gen.generate(src_img, tgt_pose)                 # (B,3,H,W), last trained stage, not clipped
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from reid_aug.errors import CheckpointError
from reid_aug.generator.checkpoint import checkpoint_path, family_and_config, load_checkpoint, load_weights
from reid_aug.generator.family import GeneratorFamily
from reid_aug.utils.io import sha256_file

log = logging.getLogger(__name__)


class PoseTransferGenerator:
    """A trained generator in eval mode.

    Attributes: ``family`` (:class:`~reid_aug.generator.family.GeneratorFamily`), ``nets`` (its
    networks by name; each is also an attribute, e.g. ``gen.g1``, None when not loaded),
    ``image_size`` (H, W), ``pose_mode`` ("pg2" | "gaussian"), ``stages`` (trained stages that can
    generate, e.g. ``("g1", "g2")``), ``sha256`` (of the checkpoint file), ``config`` (the family's
    config), ``path``, ``step`` (global step), ``complete`` (all configured stages finished),
    ``dataset`` (what it was trained on), ``device``.
    """

    def __init__(self, family: GeneratorFamily, nets: dict, config, *, path: Path, sha256: str,
                 stages: tuple[str, ...], step: int, complete: bool, dataset: dict, device: torch.device):
        self.family, self.nets, self.config = family, nets, config
        self.image_size = tuple(config.model.image_size)
        self.pose_mode = config.model.pose_mode
        self.stages = stages
        self.sha256 = sha256
        self.path = path
        self.step = step
        self.complete = complete
        self.dataset = dataset
        self.device = device

    def __getattr__(self, name: str):
        # only called for missing attributes: the family's network names (gen.g1, gen.g2 -> None if absent)
        family = self.__dict__.get("family")
        if family is not None and name in family.network_names:
            return self.__dict__["nets"].get(name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return (f"PoseTransferGenerator({self.path}, family={self.family.name}, stages={self.stages}, "
                f"image_size={self.image_size}, pose_mode={self.pose_mode!r}, step={self.step}, device={self.device})")

    def to(self, device) -> "PoseTransferGenerator":
        self.device = torch.device(device)
        for net in self.nets.values():
            net.to(self.device)
        return self

    @property
    def background_grow(self) -> int | None:
        """A generator conditioned on a background image (Deformable GAN ``use_bg``): the pixels its person cut-out
        is grown by (:mod:`reid_aug.generator.defgan.background`); None for one that takes no background."""
        g = self.nets.get("g")
        return int(g.bg_grow) if getattr(g, "use_bg", False) else None

    def pose_maps(self, kps) -> torch.Tensor:
        """``(B,18,2)`` (y, x) keypoints in the image frame -> the ``(B,18,H,W)`` maps this model expects."""
        from reid_aug.pose.maps import pose_heatmaps

        return pose_heatmaps(kps, size=self.image_size, mode=self.pose_mode)

    @torch.inference_mode()
    def generate(self, src_img: torch.Tensor, tgt_pose: torch.Tensor, stage: str | None = None,
                 **conditions: torch.Tensor) -> torch.Tensor:
        """``src_img (B,3,H,W)`` in [-1, 1], ``tgt_pose (B,18,H,W)`` -> ``(B,3,H,W)`` float32, not clipped.

        ``stage``: one of ``stages`` (PG²: "g1" the coarse G1 output, "g2" G1 + G2's difference
        map) or None for the last trained one. ``conditions``: further batch entries a family needs
        (e.g. ``src_pose``, ``src_kp``, ``tgt_kp``). The result is on the device of ``src_img``.
        """
        stage = stage or self.stages[-1]
        known = self.family.output_stages(self.family.stage_names)
        if stage not in known:
            raise ValueError(f"stage must be one of {', '.join(map(repr, known))}, got {stage!r}")
        if stage not in self.stages:
            raise CheckpointError(f"{self.path} holds no trained {stage.upper()} (trained stages: "
                                  f"{', '.join(self.stages)}); use stage={self.stages[-1]!r}")
        h, w = self.image_size
        if src_img.shape[-2:] != (h, w) or tgt_pose.shape[-2:] != (h, w):
            raise ValueError(f"the generator works at {h}x{w}; got src_img {tuple(src_img.shape)} and tgt_pose "
                             f"{tuple(tgt_pose.shape)}")
        out_device = src_img.device
        batch = {k: v.to(self.device, torch.float32) if v.is_floating_point() else v.to(self.device)
                 for k, v in dict(conditions, src_img=src_img, tgt_pose=tgt_pose).items()}
        return self.family.generate(self.nets, batch, stage).float().to(out_device)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> PoseTransferGenerator:
    """Load a run folder or ``checkpoint.pt`` written by ``train-generator`` (any registered family).

    Raises :class:`CheckpointError` for a missing file, a file that is not a reid-aug generator
    checkpoint (a torchreid state dict, a random tensor dict, ...) or one whose weights do not fit
    its own config.
    """
    file = checkpoint_path(path)
    ckpt = load_checkpoint(file)
    family, cfg = family_and_config(ckpt, file)
    stages = family.output_stages(ckpt.get("trained", []))
    if not stages:
        raise CheckpointError(f"{file} was saved before any generator step was trained; train longer or resume it")
    names = family.inference_networks(stages)
    nets = family.build_networks(cfg, names)
    load_weights(nets, ckpt["models"], names, file)
    for net in nets.values():
        net.eval().requires_grad_(False)
    device = torch.device(device)
    gen = PoseTransferGenerator(family, nets, cfg, path=file, sha256=sha256_file(file), stages=stages,
                                step=int(ckpt.get("global_step", 0)), complete=bool(ckpt.get("complete", False)),
                                dataset=dict(ckpt.get("dataset", {})), device=device)
    gen.to(device)
    log.info("loaded %r", gen)
    return gen
