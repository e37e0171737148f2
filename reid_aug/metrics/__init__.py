"""Generator evaluation metrics: SSIM / mask-SSIM (scikit-image exact, batched in torch), Inception Score,
and the ``evaluate-generator`` driver.

Submodules are imported lazily by their users so that ``import reid_aug.metrics`` stays light.
"""
from reid_aug.errors import MetricsError


__all__ = ["MetricsError"]
