"""Identity-preserving generator losses from a frozen Re-ID network trained on the real images (issue 20).

The network is a ``reid-aug benchmark`` model file (``loss.identity.model``): it knows which features tell this
dataset's identities apart, needs no ImageNet weights, and stays frozen (eval mode, no gradient to its weights,
batch-norm statistics never move). Generated and target images (B, 3, H, W) in [-1, 1] are resized to the
network's input size (bilinear) and normalised as torchreid's test transform. Terms, each with its own weight:

- ``feature``: ``1 - cos(f(G), f(I_B))`` of the embeddings (feature matching);
- ``id``: cross-entropy of the network's classifier on ``G`` with the source's identity (Liu et al.'s guider);
- ``perceptual``: mean L1 between the intermediate feature maps of ``G`` and ``I_B`` (OSNet conv2/conv3,
  ResNet layer1/layer2), a perceptual loss on Re-ID features.

In the low-data regime the network must have been trained on the same kept images as the generator
(``data.train_per_id`` / ``subset_seed`` equal to its ``data.train_per_id`` / ``subsample_seed``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reid_aug.errors import CheckpointError

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
FEATURE_LAYERS = ("conv2", "conv3", "layer1", "layer2")    # OSNet / ResNet stages, the first two present are used


@dataclass(frozen=True)
class IdentityLossConfig:
    model: str = ""                 # a `reid-aug benchmark` model file trained on the real (kept) training images
    feature_weight: float = 0.0     # 1 - cosine of the embeddings of G and I_B
    id_weight: float = 0.0          # classifier cross-entropy of G with the source identity
    perceptual_weight: float = 0.0  # L1 between intermediate feature maps of G and I_B

    @property
    def active(self) -> bool:
        return bool(self.model) and (self.feature_weight > 0 or self.id_weight > 0 or self.perceptual_weight > 0)


class IdentityLoss(nn.Module):
    """``forward(fake, target, src_names)`` -> ``(weighted sum, {"id_feature", "id_ce", "id_perceptual"})``."""

    def __init__(self, cfg: IdentityLossConfig, subset: tuple[int, int] = (0, 0)):
        super().__init__()
        from reid_aug.reid.models import check_same_subset, load_reid_model
        from reid_aug.runtime import load_torch_file

        path = Path(cfg.model)
        if not path.is_file():
            raise CheckpointError(f"loss.identity.model={path} does not exist; train one with `reid-aug benchmark "
                                  f"--baseline-only` on the same real images (OUT/models/baseline_seed0.pt)")
        meta = load_torch_file(path, "a Re-ID model", "Pass OUT/models/<variant>_seed<S>.pt of `reid-aug benchmark`.")
        self.net, rcfg = load_reid_model(path)
        check_same_subset(path, rcfg, subset, "loss.identity.model", "the generator")
        self.net.requires_grad_(False).eval()
        self.size = (int(rcfg.data.height), int(rcfg.data.width))
        self.pid2label = {int(k): int(v) for k, v in (meta.get("pid2label") or {}).items()}
        self.cfg = cfg
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1))
        self.layers = [n for n in FEATURE_LAYERS if hasattr(self.net, n)][:2]

    def train(self, mode: bool = True):          # the network stays in eval mode whatever the caller does
        super().train(mode)
        self.net.eval()
        return self

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = (x.float() + 1) / 2
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        maps, hooks = [], [getattr(self.net, n).register_forward_hook(lambda m, i, o: maps.append(o))
                           for n in self.layers]
        try:
            self.net.eval()
            feats = self.net(self._prepare(x))
        finally:
            for h in hooks:
                h.remove()
        return feats, maps

    def labels(self, src_names) -> torch.Tensor:
        from reid_aug.dataset.market import parse_market_name

        try:
            return torch.tensor([self.pid2label[parse_market_name(str(n))[0]] for n in src_names])
        except KeyError as e:
            raise CheckpointError(f"loss.identity.model knows no identity {e.args[0]} (trained on another dataset or "
                                  f"subset)") from None

    def forward(self, fake: torch.Tensor, target: torch.Tensor, src_names) -> tuple[torch.Tensor, dict]:
        c = self.cfg
        f_fake, m_fake = self._run(fake)
        with torch.no_grad():
            f_tgt, m_tgt = self._run(target)
        terms = {"id_feature": 1 - F.cosine_similarity(f_fake, f_tgt, dim=1).mean(),
                 "id_ce": F.cross_entropy(self.net.classifier(f_fake), self.labels(src_names).to(fake.device))
                 if c.id_weight > 0 else f_fake.new_zeros(()),
                 "id_perceptual": sum((a - b).abs().mean() for a, b in zip(m_fake, m_tgt)) / max(1, len(m_fake))}
        total = c.feature_weight * terms["id_feature"] + c.id_weight * terms["id_ce"] + \
            c.perceptual_weight * terms["id_perceptual"]
        return total, {k: v.detach() for k, v in terms.items()}


class ReidEarlyFeatures(nn.Module):
    """The first stage of a frozen :class:`IdentityLoss` network as dense features for Deformable GAN's
    nearest-neighbour loss (``loss.nn_features: reid``), the offline counterpart of VGG-19 ``conv1_2``:
    ``(B, 3, H, W)`` in [-1, 1] -> ``(B, C, h, w)`` after the stem's ReLU (OSNet ``conv1``: C = 16 for x0.25,
    ResNet ``conv1/bn1/relu``: C = 64), h, w = half the network's input size."""

    def __init__(self, identity: IdentityLoss):
        super().__init__()
        self.identity = identity

    def train(self, mode: bool = True):
        super().train(mode)
        self.identity.net.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, x = self.identity.net, self.identity._prepare(x)
        if isinstance(net.conv1, nn.Conv2d):         # torchvision-style ResNet stem
            return net.relu(net.bn1(net.conv1(x)))
        return net.conv1(x)                          # OSNet: ConvLayer = conv + BN + ReLU


def identity_network(cfg, device) -> IdentityLoss:
    """The frozen identity network of a generator config (``loss.identity.model``, checked against the
    config's ``data`` subset), loaded once per (file, device, subset)."""
    ic = cfg.loss.identity
    key = (str(ic.model), str(device), cfg.data.train_per_id, cfg.data.subset_seed)
    if key not in _CACHE:
        _CACHE[key] = IdentityLoss(ic, (cfg.data.train_per_id, cfg.data.subset_seed)).to(device)
    return _CACHE[key]


ID_TERMS = ("id_feature", "id_ce", "id_perceptual")
_CACHE: dict = {}


def identity_terms(cfg, fake: torch.Tensor, target: torch.Tensor, src_names) -> tuple[torch.Tensor, dict]:
    """The weighted identity loss of a generator config (``cfg.loss.identity``, its ``cfg.data`` subset) and its
    terms; ``(0, {})`` when no identity loss is configured. The network is loaded once per (file, device)."""
    ic = cfg.loss.identity
    if not ic.active:
        return fake.new_zeros((), dtype=torch.float32), {}
    mod = identity_network(cfg, fake.device)
    mod.cfg = ic
    return mod(fake, target, src_names)


def identity_record(cfg) -> dict | None:
    """What a generator run records of its identity network (``run.json`` ``identity_model``): the file, its
    sha256, the terms' weights, and which real images it was trained on (number of identities, images per
    identity and subset seed, held-out validation identities); None without identity losses or Deformable GAN's
    ``nn_features: reid``."""
    ic = getattr(getattr(cfg, "loss", None), "identity", None)
    if ic is None or not ic.model or not (ic.active or getattr(cfg.loss, "nn_features", "") == "reid"):
        return None
    from reid_aug.runtime import load_torch_file
    from reid_aug.utils.io import sha256_file

    meta = load_torch_file(Path(ic.model), "a Re-ID model",
                           "Set loss.identity.model to OUT/models/<variant>_seed<S>.pt of `reid-aug benchmark`.")
    data = (meta.get("config") or {}).get("data", {}) if isinstance(meta, dict) else {}
    per_id = int(data.get("train_per_id") or 0)
    return {"model": str(ic.model), "sha256": sha256_file(Path(ic.model)), "feature_weight": ic.feature_weight,
            "id_weight": ic.id_weight, "perceptual_weight": ic.perceptual_weight,
            "trained_on": {"identities": int(meta.get("num_classes", 0)), "train_per_id": per_id,
                           "subsample_seed": int(data.get("subsample_seed") or 0) if per_id else None,
                           "val_ids": data.get("val_ids"), "variant": meta.get("variant"), "seed": meta.get("seed")}}


def check_config(ic: IdentityLossConfig) -> str | None:
    """What is wrong with an identity-loss config, or None."""
    weights = (ic.feature_weight, ic.id_weight, ic.perceptual_weight)
    if min(weights) < 0:
        return "loss.identity.*_weight must be >= 0"
    if max(weights) > 0 and not ic.model:
        return "loss.identity needs model=PATH (a `reid-aug benchmark` model trained on the same real images)"
    return None
