"""Generator evaluation metrics: SSIM / mask-SSIM (scikit-image exact, batched in torch), Inception Score,
and the ``evaluate-generator`` driver.

Submodules are imported lazily by their users so that ``import reid_aug.metrics`` stays light.
"""
from reid_aug.errors import ReidAugError


class MetricsError(ReidAugError, ValueError):
    """Inputs a metric cannot be computed on (wrong dtype, shapes, an unusable run folder)."""


__all__ = ["MetricsError"]
