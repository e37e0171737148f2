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

Numerics. On CPU the filtering runs in float32 (banded matrix products) on images centred by their
per-channel mean, so ``E[x^2] - E[x]^2`` cancels on small numbers; a worst-case bound of the float32 rounding
error relative to ``C2`` is ``~6.7e-5 * (m / R)^2`` (``m`` the largest centred magnitude of either image, ``R`` the
data range). Images whose bound exceeds 1e-4 (e.g. a near-constant generated image, ``R`` tiny, against a real
one) are recomputed in float64, so the result agrees with scikit-image to well below 1e-4 (observed on the
12,000 Market-1501 test pairs: max 1.4e-6, masked 7.3e-6). ``dtype=torch.float64`` agrees to ~1e-15.
On CUDA everything runs in float64 (TF32 matmuls could otherwise change the result).
Per-image sums are accumulated in float64. ``compile=True`` runs the same float32 computation as one
``torch.compile``'d function (fused loops, about 2x faster than eager on CPU) with the same float64 re-computation.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import lru_cache

import torch

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


def _band(taps: tuple[float, ...], n_in: int) -> torch.Tensor:
    """(n_in - t + 1, n_in) float64 matrix of the *valid* correlation with ``taps``."""
    t = len(taps)
    m = torch.zeros(n_in - t + 1, n_in, dtype=torch.float64)
    k = torch.tensor(taps, dtype=torch.float64)
    for i in range(n_in - t + 1):
        m[i, i:i + t] = k
    return m


@lru_cache(maxsize=64)
def _filter_mats(taps: tuple[float, ...], h: int, w: int, dtype: torch.dtype, device: str):
    """H pass: row blocks ``(a, b, M)`` (outputs ``a:b`` from inputs ``a:b+t-1``); W pass: ``Kw^T`` (W, W').

    Blocking the banded H matrix into ~20-row pieces keeps the matmul's wasted multiply-adds by zero low
    (about 30 per output instead of H) while each block is still one large matrix product.
    """
    t = len(taps)
    n_out = h - t + 1
    n_blocks = max(1, round(n_out / 20))
    edges = [round(i * n_out / n_blocks) for i in range(n_blocks + 1)]
    full = _band(taps, h)
    blocks = [(a, b, full[a:b, a:b + t - 1].to(device=device, dtype=dtype)) for a, b in zip(edges[:-1], edges[1:])]
    kw_t = _band(taps, w).T.contiguous().to(device=device, dtype=dtype)
    return blocks, kw_t


def _workspace(ws: dict | None, b: int, c: int, h: int, w: int, t: int, dtype, device) -> dict:
    """Buffers reused across chunks of one call: fresh large allocations cost page faults on every chunk."""
    key = (b, c, h, w, t, dtype, str(device))
    if ws is None or ws.get("key") != key:
        hp, wp = h - t + 1, w - t + 1
        ws = {"key": key,
              "z": torch.empty((4, h, b, c, w), dtype=dtype, device=device),
              "rows": torch.empty((4, hp, b * c * w), dtype=dtype, device=device),
              "u": torch.empty((4 * hp * b * c, wp), dtype=dtype, device=device),
              "tmp": torch.empty((hp, b, c, wp), dtype=dtype, device=device)}
    return ws


def _ssim_chunk(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, protocol: SSIMProtocol,
                dtype: torch.dtype, ws: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Mean SSIM of uint8 (B, C, H, W) pairs computed in ``dtype``:
    ``(ssim (B,) float64, needs_float64 (B,) bool, workspace)``.

    Layout (4 planes, H, B, C, W): the H pass is a few large matrix products per plane over all images at once,
    the W pass one product over contiguous rows (plane-major output, so every elementwise operand is
    contiguous); no padding (valid filtering, see the module docstring); all in place in reused buffers.
    """
    b, c, h, w = img1.shape
    taps = _kernel1d(protocol)
    t = len(taps)
    hp, wp = h - t + 1, w - t + 1
    ws = _workspace(ws, b, c, h, w, t, dtype, img1.device)
    # Four planes per channel: x, y (centred by their channel mean), x^2 + y^2 (only vx + vy is needed), x*y.
    z = ws["z"]
    x, y = z[0], z[1]
    x.copy_(img1.permute(2, 0, 1, 3))
    y.copy_(img2.permute(2, 0, 1, 3))
    cx = x.mean((0, 3), keepdim=True)  # (1, B, C, 1)
    cy = y.mean((0, 3), keepdim=True)
    x.sub_(cx)
    y.sub_(cy)
    torch.mul(x, x, out=z[2])
    z[2].addcmul_(y, y)
    torch.mul(x, y, out=z[3])
    z2 = z.view(4, h, -1)
    blocks, kw_t = _filter_mats(taps, h, w, dtype, str(img1.device))
    rows = ws["rows"]
    for p in range(4):
        for a, b_, m in blocks:
            torch.mm(m, z2[p, a:b_ + t - 1], out=rows[p, a:b_])
    u = torch.mm(rows.view(-1, w), kw_t, out=ws["u"]).view(4, hp, b, c, wp)
    ux, uy, uss, uxy = u.unbind(0)  # centred local means, E[x^2 + y^2], E[xy]

    r = data_range.to(device=img1.device, dtype=dtype).view(1, b, 1, 1)
    c1 = (0.01 * r) ** 2
    c2 = (0.03 * r) ** 2
    cov_norm = protocol.cov_norm
    # A2 = 2 cov_norm (E[xy] - ux uy) + C2 and B2 = cov_norm (E[x^2 + y^2] - ux^2 - uy^2) + C2, in place
    a2 = uxy.addcmul_(ux, uy, value=-1).mul_(2 * cov_norm).add_(c2)
    b2 = uss.addcmul_(ux, ux, value=-1).addcmul_(uy, uy, value=-1).mul_(cov_norm).add_(c2)
    mx = ux.add_(cx)  # true local means
    my = uy.add_(cy)
    a1 = torch.mul(mx, my, out=ws["tmp"]).mul_(2).add_(c1)
    b1 = mx.mul_(mx).addcmul_(my, my).add_(c1)
    s = a1.mul_(a2).div_(b1.mul_(b2))
    # Row sums in the work dtype (cascade summation, ~1e-7 relative), the rest in float64.
    out = s.sum((0, 3)).to(torch.float64).sum(1) / (c * hp * wp)
    return out, _needs_float64(img1, img2, cx.view(b, c), cy.view(b, c), data_range), ws


def _needs_float64(img1, img2, cx, cy, data_range) -> torch.Tensor:
    """(B,) bool: images whose float32 worst-case rounding bound ``6.7e-5 (m / R)^2`` exceeds 1e-4 (``m`` the largest
    deviation of a pixel from its channel mean, ``R`` the data range) or whose data range is below 1."""
    def dev(img, mean):
        hi = img.amax((2, 3)).to(torch.float64)
        lo = img.amin((2, 3)).to(torch.float64)
        mean = mean.to(torch.float64)
        return torch.maximum(hi - mean, mean - lo).amax(1)

    m = torch.maximum(dev(img1, cx), dev(img2, cy))
    r = data_range.to(device=m.device, dtype=torch.float64)
    return (r < 1) | (6.7e-5 * (m / r.clamp_min(1e-12)) ** 2 > 1e-4)


# --------------------------------------------------------------------------- compiled (fused) CPU path
_COMPILED: dict = {}
COMPILE_CHUNK = 8


def _fused_reference(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, taps: tuple[float, ...],
                     cov_norm: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same float32 computation written as shifted sums, for ``torch.compile`` to fuse into a few loops
    (maps, H pass, W pass, SSIM and the per-image sums). Returns (ssim (B,) float64, cx (B, C), cy (B, C))."""
    t = len(taps)
    half = t // 2
    x = img1.float()
    y = img2.float()
    cx = x.mean((2, 3), keepdim=True)
    cy = y.mean((2, 3), keepdim=True)
    xc, yc = x - cx, y - cy
    z = torch.stack([xc, yc, xc * xc + yc * yc, xc * yc], 1)  # (B, 4, C, H, W)
    h, w = z.shape[-2:]
    hp, wp = h - t + 1, w - t + 1
    # symmetric taps: out = k[half] z[i + half] + sum_j k[j] (z[i + j] + z[i + t - 1 - j])
    acc = taps[half] * z[..., half:half + hp, :]
    for j in range(half):
        acc = acc + taps[j] * (z[..., j:j + hp, :] + z[..., t - 1 - j:t - 1 - j + hp, :])
    u = taps[half] * acc[..., half:half + wp]
    for j in range(half):
        u = u + taps[j] * (acc[..., j:j + wp] + acc[..., t - 1 - j:t - 1 - j + wp])
    ux, uy, uss, uxy = u.unbind(1)
    mx, my = ux + cx, uy + cy
    r = data_range.float().view(-1, 1, 1, 1)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    s = ((2 * mx * my + c1) * (2 * cov_norm * (uxy - ux * uy) + c2)
         / ((mx * mx + my * my + c1) * (cov_norm * (uss - ux * ux - uy * uy) + c2)))
    return s.sum((2, 3)).double().sum(1) / (s.shape[1] * hp * wp), cx.flatten(1), cy.flatten(1)


def _compiled_chunk_fn(protocol: SSIMProtocol):
    """A torch.compile'd :func:`_fused_reference` for this protocol, or None where compilation fails."""
    key = protocol
    if key not in _COMPILED:
        import functools

        fn = functools.partial(_fused_reference, taps=_kernel1d(protocol), cov_norm=protocol.cov_norm)
        try:
            _COMPILED[key] = torch.compile(fn, dynamic=False)
        except Exception as e:  # noqa: BLE001 - no compiler, unsupported platform: use the eager path
            log.warning("torch.compile unavailable for SSIM (%s); using the eager path", e)
            _COMPILED[key] = None
    return _COMPILED[key]


def _ssim_compiled(img1, img2, data_range, protocol: SSIMProtocol):
    """Fixed-size chunks (the last one zero-padded, its padding discarded) through the compiled kernel."""
    fn = _compiled_chunk_fn(protocol)
    if fn is None:
        return None
    n = img1.shape[0]
    out = torch.empty(n, dtype=torch.float64)
    flags = torch.empty(n, dtype=torch.bool)
    step = COMPILE_CHUNK
    try:
        for start in range(0, n, step):
            a, b, r = img1[start:start + step], img2[start:start + step], data_range[start:start + step]
            k = a.shape[0]
            if k < step:  # one compiled shape: pad
                pad = (step - k,) + tuple(a.shape[1:])
                a = torch.cat([a, a.new_zeros(pad)])
                b = torch.cat([b, b.new_zeros(pad)])
                r = torch.cat([r, r.new_ones(step - k)])
            vals, cx, cy = fn(a, b, r)
            out[start:start + k] = vals[:k]
            flags[start:start + k] = _needs_float64(a[:k], b[:k], cx[:k], cy[:k], r[:k])
    except Exception as e:  # noqa: BLE001 - a compiler error surfaces at the first call
        log.warning("compiled SSIM failed (%s: %s); using the eager path", type(e).__name__, str(e).splitlines()[0])
        _COMPILED[protocol] = None
        return None
    return out, flags


@torch.no_grad()
def ssim(img1: torch.Tensor, img2: torch.Tensor, protocol: str | SSIMProtocol = "defgan",
         mask: torch.Tensor | None = None, *, chunk: int | None = None, dtype: torch.dtype | None = None,
         compile: bool = False) -> torch.Tensor:
    """Per-image SSIM, equal to scikit-image's for the named protocol.

    img1: uint8 (B, C, H, W), the GENERATED image (``defgan`` takes ``data_range`` from it, per image);
    img2: uint8 (B, C, H, W), the real target. mask: optional (B, 1, H, W) {0, 1} target pose mask: both images
    are multiplied by it first (mask-SSIM). Returns float64 (B,) on img1's device.
    chunk: pairs per step (default 8 on CPU, 1024 on CUDA). dtype: force float32/float64 (default: float32 on CPU
    with the float64 re-computation described in the module docstring, float64 on CUDA).
    compile: CPU float32 only: fuse the computation with ``torch.compile`` (about 2x faster on large batches; the
    first call per protocol compiles for ~10-30 s, later processes reuse inductor's cache; falls back to eager).
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
    flags = torch.zeros(n, dtype=torch.bool, device=img1.device)

    done = None
    if compile and not cuda and work_dtype == torch.float32:
        done = _ssim_compiled(img1, img2, data_range, proto)
    if done is not None:
        out, flags = done
    else:
        ws = None
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            out[sl], flags[sl], ws = _ssim_chunk(img1[sl], img2[sl], data_range[sl], proto, work_dtype, ws)
    if work_dtype == torch.float32:
        redo = flags.nonzero().flatten()
        if redo.numel():
            log.debug("ssim: %d of %d images recomputed in float64 (small data range)", redo.numel(), n)
            for start in range(0, redo.numel(), step):
                idx = redo[start:start + step]
                out[idx] = _ssim_chunk(img1[idx], img2[idx], data_range[idx], proto, torch.float64)[0]
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
