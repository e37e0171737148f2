"""SSIM exactly as scikit-image's ``structural_similarity`` computes it, batched in torch.

Two published protocols (``PROTOCOLS``):

``defgan`` (Deformable GAN / PATN ``ssim_score``, the one most later papers report)::

    structural_similarity(gen, real, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                          channel_axis=-1, data_range=gen.max() - gen.min())

``pg2`` (PG²'s own script): scikit-image defaults for colour images::

    structural_similarity(gen, real, channel_axis=-1)   # 7x7 uniform window, sample covariance, data range 255

What scikit-image does (``skimage/metrics/_structural_similarity.py``, 0.26), reproduced here:

- uint8 input is cast to float64 **without** rescaling (values stay 0..255);
- each channel separately; the per-channel means are averaged;
- local means/(co)variances with a Gaussian filter (sigma 1.5, ``truncate=3.5`` -> radius 5, an 11x11 window,
  weights ``exp(-x^2 / 2 sigma^2)`` normalised to sum 1) or a ``win_size`` (7) uniform filter;
- ``cov_norm = NP / (NP - 1)`` with ``NP = win_size ** 2`` when ``use_sample_covariance`` (the default), else 1;
- ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``; ``S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2))``;
- the mean is taken over ``S`` cropped by ``pad = (win_size - 1) // 2`` on every side.

Because only the cropped interior is averaged, and every interior value's window lies inside the image, the
filters never see the border mode (``reflect``): a *valid* separable correlation gives exactly the interior.

Numerics. On CPU the filtering runs in float32 (oneDNN depthwise convolution) on images centred by their
per-channel mean, so ``E[x^2] - E[x]^2`` cancels on small numbers; a worst-case bound of the float32 rounding
error relative to ``C2`` is ``~6.7e-5 * (m / R)^2`` (``m`` the largest centred magnitude of either image, ``R`` the
data range). Images whose bound exceeds 1e-4 (e.g. a near-constant generated image, ``R`` tiny, against a real
one) are recomputed in float64, so the result agrees with scikit-image to well below 1e-4 (observed ~1e-8).
On CUDA everything runs in float64 (TF32 convolutions/matmuls could otherwise change the result).
Per-image sums are accumulated in float64.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from reid_aug.metrics import MetricsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SSIMProtocol:
    """One published way of calling scikit-image's SSIM."""

    name: str
    gaussian_weights: bool
    sigma: float
    win_size: int
    use_sample_covariance: bool
    data_range: str | float  # "generated": max - min of the first (generated) image; or a number
    reference: str  # the published call, for the records

    @property
    def pad(self) -> int:
        """scikit-image crops ``(win_size - 1) // 2`` pixels on every side before averaging."""
        return (self.win_size - 1) // 2

    @property
    def cov_norm(self) -> float:
        n_pixels = self.win_size ** 2
        return n_pixels / (n_pixels - 1) if self.use_sample_covariance else 1.0


def _gaussian_win(sigma: float, truncate: float = 3.5) -> int:
    radius = int(truncate * sigma + 0.5)  # as scipy.ndimage and skimage compute it
    return 2 * radius + 1


PROTOCOLS: dict[str, SSIMProtocol] = {
    "defgan": SSIMProtocol(
        name="defgan", gaussian_weights=True, sigma=1.5, win_size=_gaussian_win(1.5), use_sample_covariance=False,
        data_range="generated",
        reference="skimage structural_similarity(gen, real, gaussian_weights=True, sigma=1.5, "
                  "use_sample_covariance=False, channel_axis=-1, data_range=gen.max()-gen.min())"),
    "pg2": SSIMProtocol(
        name="pg2", gaussian_weights=False, sigma=1.5, win_size=7, use_sample_covariance=True, data_range=255.0,
        reference="skimage structural_similarity(gen, real, channel_axis=-1)  # defaults: 7x7 uniform, "
                  "sample covariance, data_range 255"),
}


def get_protocol(protocol: str | SSIMProtocol) -> SSIMProtocol:
    if isinstance(protocol, SSIMProtocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except KeyError:
        raise MetricsError(f"unknown SSIM protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}") from None


@lru_cache(maxsize=None)
def _kernel1d(protocol: SSIMProtocol) -> tuple[float, ...]:
    """The 1-D filter taps, computed in float64 exactly as scipy.ndimage does (gaussian_filter1d / uniform)."""
    if protocol.gaussian_weights:
        radius = protocol.pad
        taps = [math.exp(-0.5 / protocol.sigma ** 2 * x * x) for x in range(-radius, radius + 1)]
        total = math.fsum(taps)
        return tuple(t / total for t in taps)
    return tuple(1.0 / protocol.win_size for _ in range(protocol.win_size))


def _check_pair(img1: torch.Tensor, img2: torch.Tensor, win_size: int) -> None:
    if not (isinstance(img1, torch.Tensor) and isinstance(img2, torch.Tensor)):
        raise MetricsError("ssim expects torch tensors (B, C, H, W) of dtype uint8")
    if img1.dtype != torch.uint8 or img2.dtype != torch.uint8:
        raise MetricsError(f"ssim expects uint8 images (got {img1.dtype} and {img2.dtype}); convert generator output "
                           "with reid_aug.metrics.ssim.to_uint8 first")
    if img1.shape != img2.shape or img1.dim() != 4:
        raise MetricsError(f"ssim expects two (B, C, H, W) tensors of the same shape, got {tuple(img1.shape)} and "
                           f"{tuple(img2.shape)}")
    if min(img1.shape[-2:]) < win_size:
        raise MetricsError(f"images of {tuple(img1.shape[-2:])} are smaller than the {win_size}x{win_size} window")


def apply_mask(img: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``img * mask`` as the published mask-SSIM code does (``image * mask[..., np.newaxis]``, staying uint8).

    img: uint8 (B, C, H, W); mask: (B, 1, H, W) or (B, H, W), values in {0, 1} (bool, int or float).
    """
    if mask is None:
        return img
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    if mask.shape[0] != img.shape[0] or mask.shape[-2:] != img.shape[-2:] or mask.shape[1] not in (1, img.shape[1]):
        raise MetricsError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(img.shape)}")
    m = mask.to(img.device)
    if m.dtype != torch.bool and bool(((m != 0) & (m != 1)).any()):
        raise MetricsError("mask values must be 0 or 1 (a pose mask from reid_aug.pose.pose_masks)")
    return img * m.to(torch.uint8)


def data_range_of(img1: torch.Tensor, protocol: SSIMProtocol) -> torch.Tensor:
    """(B,) float64: the ``data_range`` argument the protocol passes per image."""
    if protocol.data_range == "generated":
        flat = img1.reshape(img1.shape[0], -1)
        return (flat.amax(1).to(torch.float64) - flat.amin(1).to(torch.float64))
    return torch.full((img1.shape[0],), float(protocol.data_range), dtype=torch.float64, device=img1.device)


def _filter_valid(z: torch.Tensor, taps: tuple[float, ...], backend: str) -> torch.Tensor:
    """Separable *valid* correlation of every plane of z (N, P, H, W) with ``taps`` along H and W.

    Returns (N, P, H - t + 1, W - t + 1), contiguous.
    """
    t = len(taps)
    n, p, h, w = z.shape
    k = torch.tensor(taps, dtype=z.dtype, device=z.device)
    if backend == "conv":
        # oneDNN depthwise convolution, channels-last: vectorised over the P planes.
        z = z.contiguous(memory_format=torch.channels_last)
        out = F.conv2d(z, k.view(1, 1, t, 1).expand(p, 1, t, 1), groups=p)
        out = F.conv2d(out, k.view(1, 1, 1, t).expand(p, 1, 1, t), groups=p)
        return out.contiguous()
    # Banded matrices: out = Kh @ z @ Kw^T (any dtype/device; used for float64 and CUDA).
    kh = _band_matrix(taps, h, z.dtype, z.device)
    kw = _band_matrix(taps, w, z.dtype, z.device)
    return torch.matmul(torch.matmul(kh, z), kw.T).contiguous()


def _band_matrix(taps: tuple[float, ...], n_in: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    t = len(taps)
    n_out = n_in - t + 1
    k = torch.tensor(taps, dtype=dtype, device=device)
    m = torch.zeros(n_out, n_in, dtype=dtype, device=device)
    idx = torch.arange(n_out, device=device)
    for j in range(t):
        m[idx, idx + j] = k[j]
    return m


def _ssim_chunk(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, protocol: SSIMProtocol,
                dtype: torch.dtype, backend: str) -> torch.Tensor:
    """(B,) float64 mean SSIM of uint8 (B, C, H, W) pairs, computed in ``dtype``."""
    b, c, h, w = img1.shape
    taps = _kernel1d(protocol)
    t = len(taps)
    # Four planes per channel, filtered together: x, y, x^2 + y^2, x*y (x, y centred by their channel mean;
    # only vx + vy is needed, so x^2 and y^2 share one plane).
    z = torch.empty((b, 4, c, h, w), dtype=dtype, device=img1.device)
    x, y = z[:, 0], z[:, 1]
    x.copy_(img1)
    y.copy_(img2)
    cx = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
    cy = y.mean((2, 3), keepdim=True)
    x.sub_(cx)
    y.sub_(cy)
    torch.mul(x, x, out=z[:, 2])
    z[:, 2].addcmul_(y, y)
    torch.mul(x, y, out=z[:, 3])
    u = _filter_valid(z.view(b, 4 * c, h, w), taps, backend).view(b, 4, c, h - t + 1, w - t + 1)
    ux, uy, uss, uxy = u.unbind(1)  # centred local means, E[x^2 + y^2], E[xy]

    r = data_range.to(device=img1.device, dtype=dtype).view(b, 1, 1, 1)
    c1 = (0.01 * r) ** 2
    c2 = (0.03 * r) ** 2
    cov_norm = protocol.cov_norm
    mx = ux + cx  # true local means
    my = uy + cy
    a1 = torch.mul(mx, my).mul_(2).add_(c1)
    b1 = torch.mul(mx, mx).addcmul_(my, my).add_(c1)
    a2 = torch.addcmul(uxy, ux, uy, value=-1).mul_(2 * cov_norm).add_(c2)
    b2 = torch.addcmul(uss, ux, ux, value=-1).addcmul_(uy, uy, value=-1).mul_(cov_norm).add_(c2)
    s = a1.mul_(a2).div_(b1.mul_(b2))
    # Row sums in the work dtype (cascade summation, ~1e-7 relative), the rest in float64.
    return s.sum(-1).to(torch.float64).sum((1, 2)) / (c * (h - t + 1) * (w - t + 1))


def _needs_float64(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor) -> torch.Tensor:
    """(B,) bool: images whose float32 worst-case rounding bound ``6.7e-5 (m / R)^2`` exceeds 1e-4."""
    def max_dev(img):
        f = img.reshape(img.shape[0], img.shape[1], -1)
        mean = f.sum(-1, dtype=torch.float64) / f.shape[-1]
        dev = torch.maximum(f.amax(-1).to(torch.float64) - mean, mean - f.amin(-1).to(torch.float64))
        return dev.amax(1)
    m = torch.maximum(max_dev(img1), max_dev(img2))
    r = data_range.to(m.device)
    return (r < 1) | (6.7e-5 * (m / r.clamp_min(1e-12)) ** 2 > 1e-4)


@torch.no_grad()
def ssim(img1: torch.Tensor, img2: torch.Tensor, protocol: str | SSIMProtocol = "defgan",
         mask: torch.Tensor | None = None, *, chunk: int | None = None,
         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-image SSIM, equal to scikit-image's for the named protocol.

    img1: uint8 (B, C, H, W), the GENERATED image (``defgan`` takes ``data_range`` from it, per image);
    img2: uint8 (B, C, H, W), the real target. mask: optional (B, 1, H, W) {0, 1} target pose mask: both images
    are multiplied by it first (mask-SSIM). Returns float64 (B,) on img1's device.
    chunk: pairs per step (default 8 on CPU, 1024 on CUDA). dtype: force float32/float64 (default: see module doc).
    """
    proto = get_protocol(protocol)
    _check_pair(img1, img2, proto.win_size)
    if img2.device != img1.device:
        img2 = img2.to(img1.device)
    img1 = apply_mask(img1, mask)
    img2 = apply_mask(img2, mask)
    n = img1.shape[0]
    out = torch.empty(n, dtype=torch.float64, device=img1.device)
    if n == 0:
        return out
    cuda = img1.device.type == "cuda"
    work_dtype = dtype or (torch.float64 if cuda else torch.float32)
    step = chunk or (1024 if cuda else 8)
    data_range = data_range_of(img1, proto)

    def run(idx_slice_or_index, dt):
        a, b_, r = img1[idx_slice_or_index], img2[idx_slice_or_index], data_range[idx_slice_or_index]
        backend = "conv" if (dt == torch.float32 and a.device.type == "cpu") else "matmul"
        return _ssim_chunk(a, b_, r, proto, dt, backend)

    for start in range(0, n, step):
        sl = slice(start, min(n, start + step))
        out[sl] = run(sl, work_dtype)
    if work_dtype == torch.float32:
        redo = _needs_float64(img1, img2, data_range).nonzero().flatten()
        if redo.numel():
            log.debug("ssim: %d of %d images recomputed in float64 (small data range)", redo.numel(), n)
            for start in range(0, redo.numel(), step):
                idx = redo[start:start + step]
                out[idx] = run(idx, torch.float64)
    return out


def ssim_skimage(img1: torch.Tensor, img2: torch.Tensor, protocol: str | SSIMProtocol = "defgan",
                 mask: torch.Tensor | None = None):
    """Reference: the published per-image scikit-image loop. Returns numpy float64 (B,).

    img1 generated, img2 real, both uint8 (B, C, H, W); the mask multiplies both as in PATN's
    ``create_masked_image`` (``image * mask[..., np.newaxis]``).
    """
    import numpy as np
    from skimage.metrics import structural_similarity

    proto = get_protocol(protocol)
    _check_pair(img1, img2, proto.win_size)
    gen = apply_mask(img1, mask).permute(0, 2, 3, 1).cpu().numpy()
    real = apply_mask(img2.to(img1.device), mask).permute(0, 2, 3, 1).cpu().numpy()
    scores = np.empty(len(gen), dtype=np.float64)
    for i, (g, r) in enumerate(zip(gen, real)):
        if proto.name == "defgan":
            scores[i] = structural_similarity(g, r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                              channel_axis=-1, data_range=g.max() - g.min())
        elif proto.name == "pg2":
            scores[i] = structural_similarity(g, r, channel_axis=-1)
        else:  # a custom protocol: spell out every argument
            dr = (g.max() - g.min()) if proto.data_range == "generated" else proto.data_range
            scores[i] = structural_similarity(g, r, gaussian_weights=proto.gaussian_weights, sigma=proto.sigma,
                                              win_size=None if proto.gaussian_weights else proto.win_size,
                                              use_sample_covariance=proto.use_sample_covariance, channel_axis=-1,
                                              data_range=dr)
    return scores


# --------------------------------------------------------------------------- conversions and simple metrics
def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] (B, 3, H, W) float -> uint8, as the published evaluation code does.

    ``(x + 1) / 2 * 255`` then clip to [0, 255] then truncate (``astype(np.uint8)``), as Deformable GAN's
    ``deprocess_image`` and PATN's ``tensor2im`` do; the clip is PG²'s (``denorm_img`` clips), needed because the
    PG² generator has a linear output (no tanh). Use ``real_to_uint8`` for images loaded from disk.
    """
    return ((img.float() + 1) / 2 * 255).clamp_(0, 255).to(torch.uint8)


def real_to_uint8(img: torch.Tensor) -> torch.Tensor:
    """A real image that ``load_image`` mapped to [-1, 1] back to its exact JPEG-decoded uint8 values (round, since
    ``v / 127.5 - 1`` does not always invert exactly in float32 and truncation would lose 1)."""
    return ((img.double() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def l1_pm1(img1: torch.Tensor, img2: torch.Tensor) -> torch.Tensor:
    """(B,) mean |a - b| on the [-1, 1] scale from uint8 images, as PATN's ``l1_score``
    (``|2 (a / 255 - 0.5) - 2 (b / 255 - 0.5)|`` = ``2 |a - b| / 255``). float64."""
    d = (img1.to(torch.int16) - img2.to(img1.device, torch.int16)).abs_()
    return d.reshape(d.shape[0], -1).sum(1, dtype=torch.float64) * (2.0 / 255.0) / d[0].numel()


def psnr(img1: torch.Tensor, img2: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """(B,) PSNR in dB of uint8 images, as skimage's ``peak_signal_noise_ratio(real, gen, data_range=255)``."""
    d = img1.to(torch.float64) - img2.to(img1.device, torch.float64)
    mse = (d * d).reshape(d.shape[0], -1).mean(1)
    return 10 * torch.log10(data_range ** 2 / mse)
