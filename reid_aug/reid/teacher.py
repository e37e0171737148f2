"""Teacher soft labels for synthesized images (``train.labels: teacher``; DG-Net, Zheng et al. CVPR 2019).

A Re-ID model trained on the same real images as the student (a ``reid-aug benchmark`` model file, e.g. the
baseline of the same regime) predicts, for each synthesized image, a distribution over the training identities.
The student learns that distribution instead of the source's hard label, so a blurry or ambiguous image
teaches what it actually shows. Per batch::

    loss = mean_real CE_eps(student, y) + w(t) * mean_synth KL(softmax(teacher / T) || softmax(student))

with ``w(t) = teacher_weight * min(1, t / (teacher_ramp * total))`` (a linear ramp-up over the first
``teacher_ramp`` of training; 0: no ramp). The temperature shapes the teacher's distribution only, as DG-Net's
``predict_label`` / ``compute_kl`` (teacher softmax, student log-softmax at 1): T < 1 sharpens it, and as T -> 0
a teacher that is always right gives exactly the hard labels (KL to a one-hot = its cross-entropy), T > 1
softens it. (Hinton's distillation would temper the student too and scale by T^2; then T -> 0 would not reach
the hard labels. At T = 1 the two are the same, so records made at T = 1 hold under either.) The teacher is
frozen and in eval mode (its batch-norm statistics never move); its logits are ``classifier(features)`` of the
eval-mode model.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from reid_aug.errors import CheckpointError


def teacher_loss(student: torch.Tensor, targets: torch.Tensor, synthesized: torch.Tensor,
                 teacher: torch.Tensor | None, eps: float, temperature: float, weight: float) -> torch.Tensor:
    """``student`` (B, K) logits, ``targets`` (B,), ``synthesized`` (B,) bool, ``teacher`` (S, K) logits of the
    synthesized samples (in their order) -> scalar (module docstring)."""
    synthesized = synthesized.to(student.device)
    logp = F.log_softmax(student.float(), 1)
    loss = student.new_zeros((), dtype=torch.float32)
    real = ~synthesized
    if real.any():
        nll = -logp[real].gather(1, targets[real].view(-1, 1)).squeeze(1)
        loss = loss + ((1 - eps) * nll + eps * -logp[real].mean(1)).mean()
    if synthesized.any() and weight > 0:
        p_t = F.softmax(teacher.float() / float(temperature), 1)
        kl = (torch.xlogy(p_t, p_t) - p_t * logp[synthesized]).sum(1)      # xlogy: 0 log 0 = 0 (a sharp teacher)
        loss = loss + weight * kl.mean()
    return loss


def ramp_weight(weight: float, ramp: float, iteration: int, total: int) -> float:
    """The teacher weight at ``iteration`` of ``total``."""
    if ramp <= 0 or total <= 0:
        return float(weight)
    return float(weight) * min(1.0, iteration / (ramp * total))


class Teacher:
    """A frozen benchmark Re-ID model giving identity logits: ``logits(images (B, 3, H, W)) -> (B, K)``."""

    def __init__(self, path: str | Path, pid2label: dict, height: int, width: int, device,
                 subset: tuple[int, int] = (0, 0)):
        from reid_aug.reid.models import check_same_subset, load_reid_model
        from reid_aug.runtime import load_torch_file
        from reid_aug.utils.io import sha256_file

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"train.teacher={path} does not exist; pass a model written by `reid-aug benchmark` "
                                  f"(OUT/models/baseline_seed<S>.pt) trained on the same real images")
        meta = load_torch_file(path, "a Re-ID model", "Pass OUT/models/<variant>_seed<S>.pt of `reid-aug benchmark`.")
        theirs = {int(k): int(v) for k, v in (meta.get("pid2label") or {}).items()} if isinstance(meta, dict) else {}
        if theirs != {int(k): int(v) for k, v in pid2label.items()}:
            raise CheckpointError(f"train.teacher={path} was trained on other identities ({len(theirs)} vs this run's "
                                  f"{len(pid2label)}); the teacher must be trained on the same real training images")
        self.model, cfg = load_reid_model(path, device)
        # same identities is not enough: at data.train_per_id=N a full-data teacher has all of them, and its soft
        # labels would carry the images this regime drops
        check_same_subset(path, cfg, subset, "train.teacher", "this run")
        if (cfg.data.height, cfg.data.width) != (height, width):
            raise CheckpointError(f"train.teacher={path} works at {cfg.data.height}x{cfg.data.width}, this run at "
                                  f"{height}x{width}")
        self.model.requires_grad_(False).eval()
        self.sha256 = sha256_file(path)
        self.path = path

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        self.model.eval()          # the student's engine switches modes; the teacher stays in eval
        return self.model.classifier(self.model(images))
