"""Inception Score with the TF-2015 Inception port used by pytorch-fid and torch-fidelity.

Network: torch-fidelity's ``FeatureExtractorInceptionV3`` (the 2015-12-05 TensorFlow graph converted to PyTorch:
TF1 bilinear resize of the uint8 input to 299x299, ``(x - 128) / 128``, 1008 classes). Its ``logits_unbiased``
output is ``pool3 @ W`` without the softmax bias, exactly the logits the original OpenAI ``inception_score.py``
(used by PG², Deformable GAN and PATN) computes (``tf.matmul(pool3, w)``); torch-fidelity's ISC uses the same.

Weights cannot be downloaded here. They come from an explicit file, or from the torch hub cache where
torch-fidelity (``weights-inception-2015-12-05-6726825d.pth``) or pytorch-fid (``pt_inception-2015-12-05-6726825d.pth``)
keep them (``$TORCH_HOME/hub/checkpoints/``). Without weights the score is ``{"mean": None, "std": None,
"reason": ...}`` and nothing raises.

Formula (OpenAI / torch-fidelity): the N predictions are cut into ``splits`` consecutive parts
(``[i N // splits, (i + 1) N // splits)``); per part ``exp(mean_i KL(p_i || mean p))``; the score is the mean and the
(population) standard deviation of the ``splits`` values. Like the original code the order is kept (torch-fidelity
shuffles with seed 2020 by default; ``shuffle=True`` reproduces that).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from reid_aug.errors import WeightsMissingError
from reid_aug.metrics import MetricsError

log = logging.getLogger(__name__)

WEIGHT_FILE_NAMES = (
    "weights-inception-2015-12-05-6726825d.pth",  # torch-fidelity's download name
    "pt_inception-2015-12-05-6726825d.pth",  # pytorch-fid's download name (same network)
)
NUM_CLASSES = 1008
NO_WEIGHTS_REASON = "n/a (no Inception weights: pass --inception-weights)"


# --------------------------------------------------------------------------- the formula
def inception_score_from_probs(probs: torch.Tensor, splits: int = 10) -> dict:
    """IS of class probabilities ``probs`` (N, C) (rows sum to 1): ``{"mean", "std"}``.

    Per split: ``exp(mean_i sum_c p_ic (log p_ic - log q_c))`` with ``q`` the split's mean prediction; then the
    mean and population std over the splits. ``0 log 0 = 0`` (one-hot predictions are allowed).
    """
    p = torch.as_tensor(probs, dtype=torch.float64)
    if p.dim() != 2:
        raise MetricsError(f"probabilities must be (N, C), got shape {tuple(p.shape)}")
    n = p.shape[0]
    if splits < 1 or n < splits:
        raise MetricsError(f"the Inception Score needs at least as many images as splits ({n} images, {splits} splits)")
    if bool((p < 0).any()) or not torch.allclose(p.sum(1), torch.ones(n, dtype=torch.float64), atol=1e-6):
        raise MetricsError("probabilities must be non-negative and sum to 1 per row (use inception_score_from_logits "
                           "for logits)")
    return _score_splits(p, torch.special.xlogy(p, p), splits)


def inception_score_from_logits(logits: torch.Tensor, splits: int = 10, shuffle: bool = False,
                                seed: int = 2020) -> dict:
    """IS from logits (N, C) via a float64 softmax / log-softmax; ``shuffle=True, seed=2020`` is torch-fidelity's
    default order (``isc_features_to_metric``)."""
    x = torch.as_tensor(logits).to(torch.float64)
    if x.dim() != 2:
        raise MetricsError(f"logits must be (N, C), got shape {tuple(x.shape)}")
    if x.shape[0] < splits or splits < 1:
        raise MetricsError(f"the Inception Score needs at least as many images as splits "
                           f"({x.shape[0]} images, {splits} splits)")
    if shuffle:
        import numpy as np

        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(x.shape[0]))]
    p = x.softmax(1)
    return _score_splits(p, p * x.log_softmax(1), splits)


def _score_splits(p: torch.Tensor, p_log_p: torch.Tensor, splits: int) -> dict:
    n = p.shape[0]
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        q = p[lo:hi].mean(0, keepdim=True)
        kl = (p_log_p[lo:hi] - torch.special.xlogy(p[lo:hi], q)).sum(1).mean()
        scores.append(torch.exp(kl).item())
    s = torch.tensor(scores, dtype=torch.float64)
    return {"mean": float(s.mean()), "std": float(s.std(unbiased=False))}


# --------------------------------------------------------------------------- weights and network
def find_inception_weights(path: str | Path | None = None) -> Path | None:
    """The weights file: ``path`` if given (it must exist), else the first of ``WEIGHT_FILE_NAMES`` in
    ``torch.hub.get_dir()/checkpoints`` (``$TORCH_HOME/hub/checkpoints``), else None."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsMissingError(f"Inception weights file {p} does not exist; pass the path of "
                                      f"{WEIGHT_FILE_NAMES[1]} (pytorch-fid) or {WEIGHT_FILE_NAMES[0]} (torch-fidelity)")
        return p
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for name in WEIGHT_FILE_NAMES:
        if (cache / name).is_file():
            return cache / name
    return None


def _adapt_state_dict(state_dict: dict, expected: set[str], source: str) -> dict:
    """Accept both converters' key sets: drop ``AuxLogits.*`` and ``num_batches_tracked`` the network does not have,
    add ``num_batches_tracked`` it expects. Anything else is an error naming the keys."""
    if not isinstance(state_dict, dict):
        raise MetricsError(f"{source} is not a state dict of the TF-2015 InceptionV3 port")
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    sd = {k: v for k, v in sd.items() if not k.startswith("AuxLogits.")
          and not (k.endswith("num_batches_tracked") and k not in expected)}
    for k in expected - set(sd):
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0, dtype=torch.long)
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise MetricsError(f"{source} does not hold the TF-2015 InceptionV3 weights (missing keys: {missing[:5]}"
                           f"{'...' if len(missing) > 5 else ''}; unexpected keys: {unexpected[:5]}"
                           f"{'...' if len(unexpected) > 5 else ''}); pass {WEIGHT_FILE_NAMES[1]} or "
                           f"{WEIGHT_FILE_NAMES[0]}")
    return sd


def load_inception(weights: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (features ``logits_unbiased``) with ``weights`` loaded;
    eval mode, no grad. Input: uint8 (B, 3, H, W) of any size; output: a 1-tuple of (B, 1008) float32 logits."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights = Path(weights)

    class _InceptionV3TF2015(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # called by the constructor
            expected = set(super().state_dict().keys())
            return super().load_state_dict(_adapt_state_dict(state_dict, expected, str(weights)), strict=True)

    try:
        net = _InceptionV3TF2015("inception-v3-compat", ["logits_unbiased"],
                                 feature_extractor_weights_path=str(weights))
    except MetricsError:
        raise
    except Exception as e:  # a truncated or foreign file: pickle/zip/shape errors
        raise MetricsError(f"cannot load Inception weights from {weights}: {e}") from e
    return net.to(device)


class InceptionScorer:
    """Accumulates Inception logits over batches and scores them; a no-op with a reason when weights are absent.

    >>> scorer = InceptionScorer(weights=None)        # looks in the torch hub cache
    >>> scorer.add(images_uint8)                        # (B, 3, H, W), any number of times
    >>> scorer.score()                                  # {"mean", "std", "n", "splits", ...} or mean=None + reason
    """

    def __init__(self, weights: str | Path | None = None, device: str | torch.device = "cpu", batch_size: int = 64):
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.weights_path = find_inception_weights(weights)
        self.reason: str | None = None
        self.net = None
        self._logits: list[torch.Tensor] = []
        if self.weights_path is None:
            self.reason = NO_WEIGHTS_REASON
        else:
            self.net = load_inception(self.weights_path, self.device)

    @property
    def available(self) -> bool:
        return self.net is not None

    def fork(self) -> "InceptionScorer":
        """A new, empty scorer sharing this one's network (one load for several image sets)."""
        other = object.__new__(InceptionScorer)
        other.__dict__.update(self.__dict__)
        other._logits = []
        return other

    def logits(self) -> torch.Tensor:
        """(N, 1008) float32 logits accumulated so far (empty (0, 1008) without weights)."""
        return torch.cat(self._logits) if self._logits else torch.zeros(0, NUM_CLASSES)

    def load_logits(self, logits: torch.Tensor) -> None:
        """Restore accumulated logits (resuming an interrupted evaluation)."""
        self._logits = [logits.float()] if logits.numel() else []

    @torch.no_grad()
    def add(self, images: torch.Tensor) -> None:
        """images: uint8 (B, 3, H, W)."""
        if self.net is None:
            return
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise MetricsError(f"Inception Score expects uint8 (B, 3, H, W) images, got {images.dtype} "
                               f"{tuple(images.shape)}")
        for start in range(0, images.shape[0], self.batch_size):
            batch = images[start:start + self.batch_size].to(self.device)
            (logits,) = self.net(batch)
            self._logits.append(logits.float().cpu())

    @property
    def n(self) -> int:
        return sum(x.shape[0] for x in self._logits)

    def score(self, splits: int = 10, shuffle: bool = False) -> dict:
        if self.net is None:
            return {"mean": None, "std": None, "reason": self.reason}
        if self.n < splits:
            return {"mean": None, "std": None, "reason": f"n/a ({self.n} images < {splits} splits)"}
        from reid_aug.utils.io import sha256_file

        out = inception_score_from_logits(torch.cat(self._logits), splits=splits, shuffle=shuffle)
        out.update(n=self.n, splits=splits, weights=str(self.weights_path),
                   weights_sha256=sha256_file(self.weights_path))
        return out


def inception_score(images: torch.Tensor, weights: str | Path | None = None, splits: int = 10,
                    batch_size: int = 64, device: str | torch.device = "cpu", shuffle: bool = False) -> dict:
    """IS of uint8 (N, 3, H, W) images: ``{"mean", "std", ...}``, or ``{"mean": None, "std": None, "reason"}``
    when no weights are found (an explicit ``weights`` path that does not exist raises WeightsMissingError)."""
    scorer = InceptionScorer(weights, device=device, batch_size=batch_size)
    scorer.add(images)
    return scorer.score(splits=splits, shuffle=shuffle)
