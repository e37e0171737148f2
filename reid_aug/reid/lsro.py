"""Label Smoothing Regularization for Outliers (Zheng, Zheng and Yang, ICCV 2017).

A generated image gets no one-hot label but a uniform distribution over the K training
identities; a real image keeps its (label-smoothed) identity. Per sample::

    real:       l = - sum_k q_k log p_k,   q = (1 - eps) onehot(y) + eps / K   (torchreid's CrossEntropyLoss)
    synthesized:  l = - (1 / K) sum_k log p_k

and the batch loss is the mean of ``l`` over all samples of the batch (paper, Eq. 3-4).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class LSROLoss(nn.Module):
    """Mixed real / synthesized loss; the real part is torchreid's ``CrossEntropyLoss``."""

    def __init__(self, num_classes: int, eps: float = 0.1, label_smooth: bool = True, use_gpu: bool = False):
        super().__init__()
        from reid_aug.reid.data import import_torchreid

        reid = import_torchreid()
        self.num_classes = num_classes
        self.real_criterion = reid.losses.CrossEntropyLoss(num_classes=num_classes, eps=eps, use_gpu=use_gpu,
                                                           label_smooth=label_smooth)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, synthesized: torch.Tensor) -> torch.Tensor:
        """
        Args:
            logits: ``(B, K)`` identity logits.
            targets: ``(B,)`` labels (ignored for synthesized samples).
            synthesized: ``(B,)`` bool, True for generated images.

        Returns:
            scalar: mean per-sample loss over the whole batch.
        """
        synthesized = synthesized.to(torch.bool).to(logits.device)
        n = logits.shape[0]
        n_syn = int(synthesized.sum())
        total = logits.new_zeros(())
        if n_syn < n:
            real = ~synthesized
            # torchreid's loss is a mean over the real samples; weight it back to a sum
            total = total + self.real_criterion(logits[real], targets[real]) * (n - n_syn)
        if n_syn:
            log_probs = F.log_softmax(logits[synthesized], dim=1)
            total = total - log_probs.mean(dim=1).sum()
        return total / n
