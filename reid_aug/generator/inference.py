"""Load a trained PG² generator for synthesis and evaluation.

    gen = load_generator("runs/pg2_market")              # run folder or checkpoint.pt
    tgt_pose = gen.pose_maps(tgt_kp)                      # (B,18,2) keypoints -> (B,18,H,W)
    out = gen.generate(src_img, tgt_pose)                 # (B,3,H,W), last trained stage, not clipped
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from reid_aug.errors import CheckpointError
from reid_aug.generator.checkpoint import build_networks, checkpoint_path, load_checkpoint
from reid_aug.utils.io import sha256_file

log = logging.getLogger(__name__)


class PoseTransferGenerator:
    """A trained G1 (+ G2) in eval mode.

    Attributes: ``image_size`` (H, W), ``pose_mode`` ("pg2" | "gaussian"), ``stages`` (trained
    stages that can generate, e.g. ``("g1", "g2")``), ``sha256`` (of the checkpoint file),
    ``config`` (:class:`~reid_aug.generator.config.PG2Config`), ``path``, ``step`` (global step),
    ``complete`` (all configured stages finished), ``dataset`` (what it was trained on), ``device``.
    """

    def __init__(self, g1, g2, config, *, path: Path, sha256: str, stages: tuple[str, ...], step: int,
                 complete: bool, dataset: dict, device: torch.device):
        self.g1, self.g2 = g1, g2
        self.config = config
        self.image_size = tuple(config.model.image_size)
        self.pose_mode = config.model.pose_mode
        self.stages = stages
        self.sha256 = sha256
        self.path = path
        self.step = step
        self.complete = complete
        self.dataset = dataset
        self.device = device

    def __repr__(self) -> str:
        return (f"PoseTransferGenerator({self.path}, stages={self.stages}, image_size={self.image_size}, "
                f"pose_mode={self.pose_mode!r}, step={self.step}, device={self.device})")

    def to(self, device) -> "PoseTransferGenerator":
        self.device = torch.device(device)
        self.g1.to(self.device)
        if self.g2 is not None:
            self.g2.to(self.device)
        return self

    def pose_maps(self, kps) -> torch.Tensor:
        """``(B,18,2)`` (y, x) keypoints in the image frame -> the ``(B,18,H,W)`` maps this model expects."""
        from reid_aug.pose.maps import pose_heatmaps

        return pose_heatmaps(kps, size=self.image_size, mode=self.pose_mode)

    @torch.inference_mode()
    def generate(self, src_img: torch.Tensor, tgt_pose: torch.Tensor, stage: str | None = None) -> torch.Tensor:
        """``src_img (B,3,H,W)`` in [-1, 1], ``tgt_pose (B,18,H,W)`` -> ``(B,3,H,W)`` float32, not clipped.

        ``stage``: "g1" (the coarse G1 output), "g2" (G1 + G2's difference map) or None for the
        last trained stage. The result is on the device of ``src_img``.
        """
        stage = stage or self.stages[-1]
        if stage not in ("g1", "g2"):
            raise ValueError(f"stage must be 'g1' or 'g2', got {stage!r}")
        if stage not in self.stages:
            raise CheckpointError(f"{self.path} holds no trained {stage.upper()} (trained stages: "
                                  f"{', '.join(self.stages)}); use stage={self.stages[-1]!r}")
        h, w = self.image_size
        if src_img.shape[-2:] != (h, w) or tgt_pose.shape[-2:] != (h, w):
            raise ValueError(f"the generator works at {h}x{w}; got src_img {tuple(src_img.shape)} and tgt_pose "
                             f"{tuple(tgt_pose.shape)}")
        out_device = src_img.device
        src = src_img.to(self.device, torch.float32)
        pose = tgt_pose.to(self.device, torch.float32)
        g1_img = self.g1(src, pose)
        out = g1_img if stage == "g1" else g1_img + self.g2(g1_img, src)
        return out.float().to(out_device)


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> PoseTransferGenerator:
    """Load a run folder or ``checkpoint.pt`` written by ``train-generator``.

    Raises :class:`CheckpointError` for a missing file, a file that is not a reid-aug PG²
    checkpoint (a torchreid state dict, a random tensor dict, ...) or one whose weights do not fit
    its own config.
    """
    from reid_aug.config import ConfigError, from_dict
    from reid_aug.generator.config import PG2Config

    file = checkpoint_path(path)
    ckpt = load_checkpoint(file)
    try:
        cfg = from_dict(PG2Config, ckpt["config"])
    except (ConfigError, TypeError) as e:
        raise CheckpointError(f"{file}: its stored config is not valid for this reid-aug ({e})") from None
    stages = tuple(s for s in ("g1", "g2") if s in ckpt.get("trained", []))
    if "g1+d" in ckpt.get("trained", []) and "g1" not in stages:
        stages = ("g1",) + stages
    if not stages:
        raise CheckpointError(f"{file} was saved before any generator step was trained; train longer or resume it")
    which = ("g1", "g2") if "g2" in stages else ("g1",)
    nets = build_networks(cfg.model, which)
    for name, net in nets.items():
        if name not in ckpt["models"]:
            raise CheckpointError(f"{file} lacks the {name.upper()} weights its stages {stages} need")
        try:
            net.load_state_dict(ckpt["models"][name])
        except RuntimeError as e:
            raise CheckpointError(f"{file}: the {name.upper()} weights do not match its config "
                                  f"({str(e).splitlines()[0]})") from None
        net.eval().requires_grad_(False)
    device = torch.device(device)
    gen = PoseTransferGenerator(nets["g1"], nets.get("g2"), cfg, path=file, sha256=sha256_file(file), stages=stages,
                                step=int(ckpt.get("global_step", 0)), complete=bool(ckpt.get("complete", False)),
                                dataset=dict(ckpt.get("dataset", {})), device=device)
    gen.to(device)
    log.info("loaded %r", gen)
    return gen
