"""Issue 12: the SSIM of the published Deformable GAN / PATN tables (scikit-image 0.13/0.14 compare_ssim)."""
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from reid_aug.errors import MetricsError
from reid_aug.metrics.ssim import PROTOCOLS, ssim, ssim_skimage


def old_compare_ssim(gen: np.ndarray, real: np.ndarray) -> float:
    """An independent port of skimage 0.13's ``compare_ssim(X, Y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, multichannel=True, data_range=X.max() - X.min())`` on (H, W, C) uint8:
    ``gaussian_filter(sigma=1.5)`` at scipy's default truncate 4.0 and mode "reflect", crop (11 - 1) // 2."""
    data_range = float(gen.max()) - float(gen.min())
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    out = []
    for ch in range(gen.shape[-1]):
        x, y = gen[..., ch].astype(np.float64), real[..., ch].astype(np.float64)
        f = lambda z: gaussian_filter(z, sigma=1.5)  # noqa: E731
        ux, uy = f(x), f(y)
        vx, vy, vxy = f(x * x) - ux * ux, f(y * y) - uy * uy, f(x * y) - ux * uy
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
        out.append(s[5:-5, 5:-5].mean())
    return float(np.mean(out))


def _pairs(n=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    a = torch.randint(0, 256, (n, 3, 128, 64), generator=g, dtype=torch.uint8)
    b = (a.int() + torch.randint(-60, 61, a.shape, generator=g)).clamp(0, 255).to(torch.uint8)
    b[:, :, :40] = torch.randint(0, 256, (n, 3, 40, 64), generator=g, dtype=torch.uint8)
    return a, b


@pytest.mark.parametrize("dtype", [None, torch.float64])
def test_legacy_protocol_equals_an_independent_port_of_the_old_call(dtype):
    a, b = _pairs()
    mask = torch.zeros(6, 1, 128, 64)
    mask[:, :, 8:120, 4:60] = 1
    for m in (None, mask):
        ours = ssim(a, b, "defgan-2018", mask=m, dtype=dtype).numpy()
        am = a if m is None else a * m.to(torch.uint8)
        bm = b if m is None else b * m.to(torch.uint8)
        ref = [old_compare_ssim(x.permute(1, 2, 0).numpy(), y.permute(1, 2, 0).numpy()) for x, y in zip(am, bm)]
        assert np.abs(ours - np.array(ref)).max() < 1e-6


def test_legacy_and_current_calls_differ_slightly_and_are_both_recorded():
    a, b = _pairs(n=8, seed=5)
    old, new = ssim(a, b, "defgan-2018").numpy(), ssim(a, b, "defgan").numpy()
    assert 0 < np.abs(old - new).mean() < 5e-3
    assert "13-tap" in PROTOCOLS["defgan-2018"].reference
    with pytest.raises(MetricsError, match="independent port"):
        ssim_skimage(a, b, "defgan-2018")
