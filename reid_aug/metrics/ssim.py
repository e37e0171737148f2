"""SSIM exactly as scikit-image's ``structural_similarity`` computes it, batched (a small C kernel on CPU, torch).

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

How it is computed. On CPU (float32, the default) a small C kernel does it (``_NATIVE_SRC``; built on first use
with the system C compiler -- ``$CC``, cc, gcc or clang, ``-O3 -march=native``, ~1.5 s -- and cached under
``$REID_AUG_CACHE`` or ``~/.cache/reid-aug``; called through ctypes, one call for all pairs, single-threaded). One
image and channel at a time, every intermediate row stays in L1, the only memory traffic is reading the uint8 images:

- ``defgan`` (any weighted window): the four planes of each input row (below) into a ring of ``t`` rows, the H pass
  on 8-float vectors for each output row (symmetric taps paired), the W pass on that row, then the SSIM map and its
  sums in registers;
- ``pg2`` (uniform windows up to 11x11): exact int32 window sums of ``x, y, x^2 + y^2, x y`` -- running column sums
  along H (add the entering row, subtract the leaving one), shifted adds along W -- and the variance/covariance
  numerators ``N sum(x^2 + y^2) - sum(x)^2 - sum(y)^2``, ``2 (N sum(xy) - sum(x) sum(y))`` still in int32 (exact:
  below 2^31 for windows up to 11x11), so the cancellation that costs float32 its accuracy happens in integers;
  only the final ratio is float32.

``REID_AUG_SSIM_NATIVE=0`` (or ``NATIVE = False``), no working compiler, CUDA tensors and ``dtype=torch.float64``
use the torch paths below (one chunk of B pairs at a time, every step batched over the chunk, no per-image Python
loop; the buffers live in a per-thread workspace reused across chunks and calls, because on this VM a fresh 1 MB
buffer costs ~0.6 ms of page faults, more than the SSIM of a pair):

1. four planes per colour channel: ``x``, ``y`` (each minus the integer nearest its channel mean, so every plane
   holds exact small integers), ``x^2 + y^2`` (only ``vx + vy`` is needed) and ``x y``;
2. eager (the fallback): the H pass as one batched product per block of 12 output rows (banded filter block times
   the rows it needs, all planes of all images as columns; the factors ``cov_norm``, ``2 cov_norm`` of planes 3, 4
   are folded into the band), the W pass as banded products against the *transposed* H output (BLAS reads it
   transposed, no copy), then the SSIM map in ~15 in-place element-wise operations whose per-image constants are
   laid out as (rows, B, C) so every loop runs over long contiguous rows, summed per channel;
3. ``compile=True``: three ``torch.compile``'d kernels (inductor C++): the planes; the H pass as shifted sums
   (symmetric Gaussian taps paired, the uniform window as plain sums of exact integers); the W pass, the SSIM map
   and its row sums (plus the error estimate below) fused into one loop. 2-3x faster than eager on CPU, 2-3x
   slower than the native kernel (benchmarks/results/ssim.md), kept as an explicit option.

Numerics. scikit-image computes in float64. On CUDA everything here runs in float64 (~1e-15). On CPU the default
work type is float32, on exact integer planes (the native ``pg2`` kernel: exact integer window sums and
variance numerators, leaving only a few float32 roundings of terms bounded by the denominators, <= ~1e-6; its
estimate below is 1). What float32 loses is the cancellation in ``E[x^2] - ux^2``
(relative to the ``B2 = cov_norm (vx + vy) + C2`` it is divided by), so the rounding error of an image's mean SSIM
is ``~ 2^-24 (1 + mean(q / B2))`` with ``q = ux^2 + uy^2`` of the centred local means (a worst-case bound has a
factor ~100 instead of the measured <= 5 and would send most masked images to float64). Every call computes this
estimate from the image's own filtered planes; images where ``EST_FACTOR`` times it exceeds ``F32_TOL``, whose data
range is below 1 (e.g. a constant generated image: C1 = C2 = 0) or whose value is not finite are recomputed in
float64. ``EST_FACTOR = 10`` is twice the largest ratio measured on the 12,000 Market-1501 test pairs, plain and
masked, both protocols, with the eager path (4.87; the native kernel: <= 1.34; benchmarks/results/ssim.md: errors
<= 1.5e-5 eager, <= 2.8e-6 native before re-computation; ~0.3 % of masked defgan images are recomputed).
``dtype=torch.float64`` forces float64 (agrees with scikit-image to ~1e-15).
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import math
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from reid_aug.metrics import MetricsError

log = logging.getLogger(__name__)

F32_UNIT = 2.0 ** -24  # float32 unit roundoff
EST_FACTOR = 10.0  # error <= EST_FACTOR * F32_UNIT * (1 + mean(q / B2)); measured ratio <= 4.9 (module docstring)
F32_TOL = 5e-5  # images whose float32 estimate exceeds this are recomputed in float64 (the bar is 1e-4)
CPU_CHUNK = 8  # pairs per step on CPU: ~10 MB of float32 buffers (measured best of 4, 8, 16, 32)
CUDA_CHUNK = 512
COMPILE_CHUNK = 8  # the compiled kernels see one fixed chunk shape (the last chunk is zero-padded)
ROW_BLOCK = 12  # output rows per banded block: 22 multiply-adds per output for 11 taps (measured best of 6-30)
# Intra-op threads while computing SSIM on CPU (None: leave torch's setting). The products here are small
# (~3 MFLOP); on this shared 2-core VM two OpenMP threads made every call 60x slower (waiting for a busy core).
CPU_THREADS: int | None = 1


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


def _plane_scales(protocol: SSIMProtocol) -> tuple[float, ...]:
    """Factors folded into the H-pass band of each plane (x, y, x^2 + y^2, x y): the filtered planes come out as
    ``ux, uy, cov_norm E[x^2 + y^2], 2 cov_norm E[x y]``, which saves two passes over the SSIM map."""
    cn = protocol.cov_norm
    return (1.0, 1.0, cn, 2.0 * cn)


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


# --------------------------------------------------------------------------- filter bands and work buffers
def _row_blocks(n_out: int, target: int = ROW_BLOCK) -> list[tuple[int, int]]:
    n_blocks = max(1, round(n_out / target))
    edges = [round(i * n_out / n_blocks) for i in range(n_blocks + 1)]
    return list(zip(edges[:-1], edges[1:]))


@lru_cache(maxsize=64)
def _bands(taps: tuple[float, ...], n_in: int, scales: tuple[float, ...], dtype: torch.dtype, device: str):
    """Blocks ``(a, b, M)`` of the *valid* correlation with ``taps`` along an axis of length ``n_in``: outputs
    ``a:b`` come from inputs ``a:b+t-1`` as ``M @ rows``; ``M`` is (len(scales), b-a, b-a+t-1), one scaled copy
    of the band per plane (computed in float64, then cast)."""
    t = len(taps)
    k = torch.tensor(taps, dtype=torch.float64)
    s = torch.tensor(scales, dtype=torch.float64).view(-1, 1, 1)
    out = []
    for a, b in _row_blocks(n_in - t + 1):
        m = torch.zeros(b - a, b - a + t - 1, dtype=torch.float64)
        for i in range(b - a):
            m[i, i:i + t] = k
        out.append((a, b, (s * m).to(device=device, dtype=dtype).contiguous()))
    return out


_LOCAL = threading.local()
_MAX_WORKSPACES = 4


def _workspace(key: tuple, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype = torch.float32,
               device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Contiguous views of the given shapes over per-thread buffers that are kept across chunks and calls (and
    grow to the largest request seen for ``key``): fresh large allocations cost a page fault per 4 KiB on every
    chunk, on this VM about as much as the SSIM itself. ``release_workspaces()`` frees them."""
    cache = getattr(_LOCAL, "cache", None)
    if cache is None:
        cache = _LOCAL.cache = OrderedDict()
    sizes = {k: math.prod(v) for k, v in shapes.items()}
    flat = cache.get(key)
    if flat is None or any(k not in flat or flat[k].numel() < n for k, n in sizes.items()):
        cache.pop(key, None)
        flat = {k: torch.empty(n, dtype=dtype, device=device) for k, n in sizes.items()}
        cache[key] = flat
        while len(cache) > _MAX_WORKSPACES:
            cache.popitem(last=False)
    else:
        cache.move_to_end(key)
    return {k: flat[k][:sizes[k]].view(shapes[k]) for k in shapes}


def release_workspaces() -> None:
    """Free the buffers this thread keeps between ``ssim`` calls (a few tens of MB on CPU)."""
    _LOCAL.cache = OrderedDict()


def _build_planes(img1: torch.Tensor, img2: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """z (4, H, B, C, W) <- x - cx, y - cy, (x - cx)^2 + (y - cy)^2, (x - cx)(y - cy), where cx, cy (B, C) are the
    integers nearest each channel's mean: every plane holds exact small integers. Returns (cx, cy).

    Every step writes into ``z`` (no temporaries: a fresh 1.5 MB buffer per chunk costs more in page faults than
    the arithmetic)."""
    b, c, h, w = img1.shape
    offsets = []
    for img, plane in ((img1, z[0]), (img2, z[1])):
        plane.copy_(img.permute(2, 0, 1, 3))
        # any integer near the mean will do (it only keeps the magnitudes small), so a float32 sum is fine
        off = plane.sum((0, 3)).div_(h * w).round_()
        plane.sub_(off.view(b, c, 1))
        offsets.append(off)
    torch.mul(z[:2], z[:2], out=z[2:])
    z[2].add_(z[3])
    torch.mul(z[0], z[1], out=z[3])
    return offsets[0], offsets[1]


# --------------------------------------------------------------------------- eager chunk
def _ssim_chunk(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, protocol: SSIMProtocol,
                dtype: torch.dtype, estimate: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mean SSIM of uint8 (B, C, H, W) pairs computed in ``dtype``: ``(ssim (B,) float64, est (B,) float64 | None)``
    where ``est`` is ``1 + mean(q / B2)`` (see the module docstring) when ``estimate``."""
    b, c, h, w = img1.shape
    taps = _kernel1d(protocol)
    t = len(taps)
    hp, wp = h - t + 1, w - t + 1
    n = b * c
    dev = img1.device

    ws = _workspace(("eager", c, h, w, t, dtype, str(dev)),
                    {"z": (4, h, b, c, w), "a": (4, hp, n * w), "u": (4, wp, hp * n), "t1": (wp, hp, b, c),
                     "t2": (wp, hp, b, c), "consts": (5, hp, b, c)}, dtype, dev)
    z, a, u, t1, t2, consts = (ws[k] for k in ("z", "a", "u", "t1", "t2", "consts"))
    cx, cy = _build_planes(img1, img2, z)

    # H pass: (4, P, K) band blocks times rows a:b+t-1 of all four planes of every image
    zf = z.view(4, h, n * w)
    for r0, r1, m in _bands(taps, h, _plane_scales(protocol), dtype, str(dev)):
        torch.bmm(m, zf[:, r0:r1 + t - 1], out=a[:, r0:r1])
    # W pass on the transposed H output (BLAS reads it transposed): u[:, j] (wp, hp * n) = band @ a^T
    a3 = a.view(4, hp * n, w)
    for c0, c1_, m in _bands(taps, w, (1.0, 1.0, 1.0, 1.0), dtype, str(dev)):
        torch.bmm(m, a3[:, :, c0:c1_ + t - 1].transpose(1, 2), out=u[:, c0:c1_])

    # per-image constants as (hp, B, C) rows: broadcasting them over the outer wp axis keeps loops long
    r = data_range.to(device=dev, dtype=dtype)
    c1, c2 = (0.01 * r) ** 2, (0.03 * r) ** 2
    cxv, cyv, c1h, c1v, c2v = consts.unbind(0)
    cxv.copy_(cx.expand(hp, b, c))
    cyv.copy_(cy.expand(hp, b, c))
    c1v.copy_(c1.view(b, 1).expand(hp, b, c))
    c2v.copy_(c2.view(b, 1).expand(hp, b, c))
    torch.mul(c1v, 0.5, out=c1h)
    ux, uy, b2, a2 = u.view(4, wp, hp, b, c).unbind(0)  # b2 = cn E[x^2+y^2], a2 = 2 cn E[xy]
    cn = protocol.cov_norm
    a2.addcmul_(ux, uy, value=-2.0 * cn).add_(c2v)  # 2 cov_norm (E[xy] - ux uy) + C2
    q = torch.mul(ux, ux, out=t1).addcmul_(uy, uy)
    b2.sub_(q, alpha=cn).add_(c2v)  # cov_norm (E[x^2 + y^2] - ux^2 - uy^2) + C2
    est = None
    if estimate:
        est = torch.div(q, b2, out=t1).sum((0, 1)).to(torch.float64).mean(1) / (hp * wp) + 1.0
    mx, my = ux.add_(cxv), uy.add_(cyv)  # the true local means
    a1 = torch.addcmul(c1h, mx, my, out=t2)  # (2 mx my + C1) / 2
    b1 = torch.addcmul(c1v, mx, mx, out=t1).addcmul_(my, my)
    s = a1.mul_(a2).div_(b1.mul_(b2))
    # per-channel sums of the map (cascade summation), the rest in float64
    out = s.sum((0, 1)).to(torch.float64).sum(1) * (2.0 / (c * hp * wp))
    return out, est


# --------------------------------------------------------------------------- compiled (fused) CPU path
_COMPILED: dict = {}
# Let inductor inline the filtered planes into their users instead of writing them out (it would otherwise
# materialise every value read more than 4 times): the W pass, the SSIM map and both row sums become one loop.
_INDUCTOR_OPTIONS = {"realize_reads_threshold": 1000, "realize_opusers_threshold": 1000,
                     "realize_cpu_opcount_threshold": 1000, "realize_cpu_acc_reads_threshold": 1000}


def _raw_taps(protocol: SSIMProtocol) -> tuple[tuple[float, ...], float]:
    """(taps, norm): the uniform window is applied as a plain sum (``taps`` all 1, ``norm = win_size``, exact on
    the integer planes); the Gaussian taps as they are (``norm = 1``). The filtered planes come out ``norm^2``
    times too large and the constants are scaled to match (SSIM is a ratio of products of equal degree)."""
    taps = _kernel1d(protocol)
    if protocol.gaussian_weights:
        return taps, 1.0
    return tuple(1.0 for _ in taps), float(len(taps))


def _shifted_sum(x: torch.Tensor, taps: tuple[float, ...], dim: int, n_out: int) -> torch.Tensor:
    """Valid correlation along ``dim`` as shifted sums (symmetric taps paired: ``k[h] x[i+h] + sum_j k[j] (x[i+j]
    + x[i+t-1-j])``; all-ones taps without multiplications)."""
    t = len(taps)
    if all(k == 1.0 for k in taps):
        acc = x.narrow(dim, 0, n_out)
        for j in range(1, t):
            acc = acc + x.narrow(dim, j, n_out)
        return acc
    half = t // 2
    acc = taps[half] * x.narrow(dim, half, n_out)
    for j in range(half):
        acc = acc + taps[j] * (x.narrow(dim, j, n_out) + x.narrow(dim, t - 1 - j, n_out))
    return acc


def _fused_moments(x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, z: torch.Tensor) -> None:
    """z (4, B, C, H, W) <- x - cx, y - cy, their squares summed, their product (x, y float (B, C, H, W))."""
    xc, yc = x - cx, y - cy
    z[0].copy_(xc)
    z[1].copy_(yc)
    z[2].copy_(xc * xc + yc * yc)
    z[3].copy_(xc * yc)


def _fused_h(z: torch.Tensor, a: torch.Tensor, taps: tuple[float, ...], scales: tuple[float, ...]) -> None:
    """H pass: a (4, B, C, hp, W) <- scale_m * filter_H(z[m])."""
    s = torch.tensor(scales, dtype=z.dtype).view(4, 1, 1, 1, 1)
    a.copy_(s * _shifted_sum(z, taps, 3, a.shape[3]))


def _fused_w(a: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, c1: torch.Tensor, c2: torch.Tensor,
             rows: torch.Tensor, taps: tuple[float, ...], cov_norm: float) -> None:
    """W pass, SSIM map and its row sums: rows (2, B, C, hp) <- [sum_w S, sum_w q / B2].

    cx, cy, c1, c2: (B, C, 1, 1), already scaled by the taps' normalisation (all of the same shape, so that both
    sums are generated as one loop)."""
    wp = a.shape[-1] - len(taps) + 1
    ux, uy, ss, xy = _shifted_sum(a, taps, 4, wp).unbind(0)
    q = ux * ux + uy * uy
    b2 = ss - cov_norm * q + c2
    a2 = xy - 2.0 * cov_norm * ux * uy + c2
    mx, my = ux + cx, uy + cy
    s = (2.0 * mx * my + c1) * a2 / ((mx * mx + my * my + c1) * b2)
    rows[0].copy_(s.sum(-1))
    rows[1].copy_((q / b2).sum(-1))


def _compiled_fns(protocol: SSIMProtocol):
    """The three kernels compiled for this protocol, or None where compilation is unavailable."""
    if protocol not in _COMPILED:
        taps, norm = _raw_taps(protocol)
        cn = protocol.cov_norm
        scales = (1.0, 1.0, cn * norm ** 2, 2.0 * cn * norm ** 2)
        try:
            import torch._inductor.config as inductor_config

            known = inductor_config.get_config_copy()
            options = {k: v for k, v in _INDUCTOR_OPTIONS.items() if k in known}

            def comp(fn):
                return torch.compile(fn, dynamic=False, fullgraph=True, options=options)

            _COMPILED[protocol] = (comp(_fused_moments),
                                   comp(functools.partial(_fused_h, taps=taps, scales=scales)),
                                   comp(functools.partial(_fused_w, taps=taps, cov_norm=cn)))
        except Exception as e:  # noqa: BLE001 - no compiler, unsupported platform: use the eager path
            log.warning("torch.compile unavailable for SSIM (%s); using the eager path", e)
            _COMPILED[protocol] = None
    return _COMPILED[protocol]


def _ssim_compiled(img1, img2, data_range, protocol: SSIMProtocol):
    """Float32 SSIM through the compiled kernels in fixed-size chunks (the last one zero-padded and discarded).
    Returns (ssim (N,) float64, est (N,) float64) or None when compilation fails."""
    fns = _compiled_fns(protocol)
    if fns is None:
        return None
    moments_fn, h_fn, w_fn = fns
    n, c, h, w = img1.shape
    taps, norm = _raw_taps(protocol)
    t = len(taps)
    hp, wp = h - t + 1, w - t + 1
    step = COMPILE_CHUNK

    ws = _workspace(("compiled", step, c, h, w, t), {"x": (step, c, h, w), "y": (step, c, h, w),
                                                     "z": (4, step, c, h, w), "a": (4, step, c, hp, w),
                                                     "rows": (2, step, c, hp)})
    x, y, z, a, rows = (ws[k] for k in ("x", "y", "z", "a", "rows"))
    out = torch.empty(n, dtype=torch.float64)
    est = torch.empty(n, dtype=torch.float64)
    nn = norm * norm
    try:
        for start in range(0, n, step):
            k = min(step, n - start)
            x[:k].copy_(img1[start:start + k])
            y[:k].copy_(img2[start:start + k])
            r = torch.full((step,), 255.0)  # padded entries: zero images with any valid range
            r[:k] = data_range[start:start + k]
            if k < step:
                x[k:].zero_()
                y[k:].zero_()
            # any integer near the channel mean will do, so a float32 sum is fine
            cx = x.sum((2, 3), keepdim=True).div_(h * w).round_()
            cy = y.sum((2, 3), keepdim=True).div_(h * w).round_()
            moments_fn(x, y, cx, cy, z)
            h_fn(z, a)
            rc = r.view(step, 1, 1, 1).expand(step, c, 1, 1)
            w_fn(a, cx * nn, cy * nn, ((0.01 * nn) * rc) ** 2, ((0.03 * nn) * rc) ** 2, rows)
            sums = rows[:, :k].sum(-1).to(torch.float64).mean(-1) / (hp * wp)  # (2, k)
            out[start:start + k] = sums[0]
            est[start:start + k] = sums[1] + 1.0
    except Exception as e:  # noqa: BLE001 - a compiler error surfaces at the first call
        log.warning("compiled SSIM failed (%s: %s); using the eager path", type(e).__name__, str(e).splitlines()[0])
        _COMPILED[protocol] = None
        return None
    return out, est


# --------------------------------------------------------------------------- native (C) CPU path, the default
# Set REID_AUG_SSIM_NATIVE=0 (or this flag to False) to use the torch paths only.
NATIVE = os.environ.get("REID_AUG_SSIM_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")
NATIVE_MAX_BOX = 11  # int32 window sums are exact up to an 11x11 uniform window (t^4 * 2 * 255^2 < 2^31)
_NATIVE_FLAGS = ("-O3", "-std=gnu11", "-shared", "-fPIC")  # -O3: GCC 12 vectorises the plane loops only at -O3
_NATIVE_LOCK = threading.Lock()
_NATIVE_STATE: dict = {}

_NATIVE_SRC = r"""
/* SSIM of uint8 image pairs as scikit-image computes it (see the module docstring), one image and channel at a
   time, every intermediate row kept in L1. Vectors of L floats (GCC/clang vector extensions: AVX2 with
   -march=native on x86-64, plain SSE or NEON otherwise). Row buffers are wb >= w floats long and zero beyond w;
   the last vector of each output row holds wp - j valid lanes, the rest are masked out of the sums. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define L 8
typedef float vf __attribute__((vector_size(4 * L)));
typedef int32_t vi __attribute__((vector_size(4 * L)));

static inline vf ldf(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline vi ldi(const int32_t *p) { vi v; memcpy(&v, p, sizeof v); return v; }
static inline void stf(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline vf splat(float x) { return (vf){0} + x; }
static inline double hsum(vf v) { double s = 0; for (int i = 0; i < L; i++) s += v[i]; return s; }
static inline vf keep_first(vf v, int n) { /* lanes >= n set to 0 */
    vi idx; for (int i = 0; i < L; i++) idx[i] = i;
    return (vf)((vi)v & (idx < n));
}

/* ---- weighted window (Gaussian taps, or any taps), float32 on centred integer planes ----
   ring: t rows of the 4 planes (x - cx, y - cy, their squares summed, their product), row i in slot i % t;
   V: the H-filtered row. Accumulates sum S and sum q / B2 (the float32 error estimate) over the channel. */
static inline __attribute__((always_inline)) void
taps_channel(const uint8_t *X, const uint8_t *Y, int h, int w, int wb, const float *taps, const int t,
             float cn, float c1, float c2, float *ring, float *V, double *s_out, double *e_out)
{
    int64_t sx = 0, sy = 0;
    for (int k = 0; k < h * w; k++) { sx += X[k]; sy += Y[k]; }
    const float cx = (float)floor((double)sx / (h * w) + 0.5), cy = (float)floor((double)sy / (h * w) + 0.5);
    const int r = t / 2, wp = w - t + 1, nb = (wp + L - 1) / L;
    const int plane = wb, slot = 4 * wb, wv = (w + L - 1) / L * L;
    double s_tot = 0, e_tot = 0;
    for (int i = 0; i < h; i++) {
        float *o = ring + (size_t)(i % t) * slot;
        const uint8_t *xr = X + (size_t)i * w, *yr = Y + (size_t)i * w;
        for (int j = 0; j < w; j++) {
            float a = (float)xr[j] - cx, b = (float)yr[j] - cy;
            o[j] = a; o[plane + j] = b; o[2 * plane + j] = a * a + b * b; o[3 * plane + j] = a * b;
        }
        if (i < t - 1) continue;
        const int i0 = i - t + 1;
        const float *rows[32];
        for (int k = 0; k < t; k++) rows[k] = ring + (size_t)((i0 + k) % t) * slot;
        for (int p = 0; p < 4; p++) {
            const int po = p * plane;
            for (int j = 0; j < wv; j += L) {
                vf acc = taps[r] * ldf(rows[r] + po + j);
                for (int k = 0; k < r; k++) acc += taps[k] * (ldf(rows[k] + po + j) + ldf(rows[t - 1 - k] + po + j));
                stf(V + po + j, acc);
            }
        }
        vf rs = {0}, re = {0};
        for (int bidx = 0; bidx < nb; bidx++) {
            const int j = bidx * L;
            vf u[4];
            for (int p = 0; p < 4; p++) {
                const float *v = V + p * plane + j;
                vf acc = taps[r] * ldf(v + r);
                for (int k = 0; k < r; k++) acc += taps[k] * (ldf(v + k) + ldf(v + t - 1 - k));
                u[p] = acc;
            }
            vf q = u[0] * u[0] + u[1] * u[1];
            vf b2 = cn * (u[2] - q) + c2;
            vf a2 = (2.0f * cn) * (u[3] - u[0] * u[1]) + c2;
            vf mx = u[0] + cx, my = u[1] + cy;
            vf a1 = 2.0f * mx * my + c1;
            vf b1 = mx * mx + my * my + c1;
            vf rcp = 1.0f / (b1 * b2);
            vf s = a1 * a2 * rcp, e = q * b1 * rcp;
            if (j + L > wp) { s = keep_first(s, wp - j); e = keep_first(e, wp - j); }
            rs += s; re += e;
        }
        s_tot += hsum(rs); e_tot += hsum(re);
    }
    *s_out += s_tot; *e_out += e_tot;
}

/* ---- uniform window: exact int32 window sums (running along H, shifted adds along W) ----
   cs: the column sums over the current t input rows of x, y, x^2 + y^2, x y. With N = t^2 the window sums give
   S = (2 Sx Sy + N^2 C1) (cn 2 (N Sxy - Sx Sy) + N^2 C2)
       / ((Sx^2 + Sy^2 + N^2 C1) (cn (N Sss - Sx^2 - Sy^2) + N^2 C2)),
   every integer term exact in int32 for t <= 11 (2 t^4 255^2 < 2^31). */
static inline __attribute__((always_inline)) void
box_channel(const uint8_t *X, const uint8_t *Y, int h, int w, int wb, const int t, float cn, float c1, float c2,
            int32_t *cs, double *s_out)
{
    const int wp = w - t + 1, nb = (wp + L - 1) / L, plane = wb;
    const int32_t nn = t * t;
    const float n2c1 = (float)nn * (float)nn * c1, n2c2 = (float)nn * (float)nn * c2;
    memset(cs, 0, sizeof(int32_t) * 4 * wb);
    double s_tot = 0;
    for (int i = 0; i < h; i++) {
        const uint8_t *xr = X + (size_t)i * w, *yr = Y + (size_t)i * w;
        if (i < t) {
            for (int j = 0; j < w; j++) {
                int32_t a = xr[j], b = yr[j];
                cs[j] += a; cs[plane + j] += b; cs[2 * plane + j] += a * a + b * b; cs[3 * plane + j] += a * b;
            }
        } else {
            const uint8_t *xo = X + (size_t)(i - t) * w, *yo = Y + (size_t)(i - t) * w;
            for (int j = 0; j < w; j++) {
                int32_t a = xr[j], b = yr[j], ao = xo[j], bo = yo[j];
                cs[j] += a - ao; cs[plane + j] += b - bo;
                cs[2 * plane + j] += a * a + b * b - ao * ao - bo * bo; cs[3 * plane + j] += a * b - ao * bo;
            }
        }
        if (i < t - 1) continue;
        vf rs = {0};
        for (int bidx = 0; bidx < nb; bidx++) {
            const int j = bidx * L;
            vi u[4];
            for (int p = 0; p < 4; p++) {
                const int32_t *v = cs + p * plane + j;
                vi acc = ldi(v);
                for (int k = 1; k < t; k++) acc += ldi(v + k);
                u[p] = acc;
            }
            vi pxy = u[0] * u[1], qq = u[0] * u[0] + u[1] * u[1];
            vf a1 = __builtin_convertvector(2 * pxy, vf) + n2c1;
            vf b1 = __builtin_convertvector(qq, vf) + n2c1;
            vf a2 = cn * __builtin_convertvector(2 * (nn * u[3] - pxy), vf) + n2c2;
            vf b2 = cn * __builtin_convertvector(nn * u[2] - qq, vf) + n2c2;
            vf s = a1 * a2 / (b1 * b2);
            if (j + L > wp) s = keep_first(s, wp - j);
            rs += s;
        }
        s_tot += hsum(rs);
    }
    *s_out += s_tot;
}

static int row_len(int w, int t) { /* plane row length: >= w, and room for the last W-pass block's reads */
    int wp = w - t + 1, nb = (wp + L - 1) / L, need = nb * L + t - 1;
    if (need < w) need = w;
    return (need + L - 1) / L * L;
}

/* img1, img2: uint8 (n, c, h, w) contiguous; data_range (n,); out, est (n,) float64.
   uniform != 0: integer box path (taps ignored); returns 0 on success. */
int ssim_u8(const uint8_t *img1, const uint8_t *img2, int64_t n, int c, int h, int w, const float *taps, int t,
            int uniform, double cov_norm, const double *data_range, double *out, double *est)
{
    if (t < 1 || t > 31 || h < t || w < t) return 1;
    const int wb = row_len(w, t);
    void *buf = calloc((size_t)(t + 1) * 4 * wb + 4 * L, sizeof(float));
    if (!buf) return 2;
    const float cn = (float)cov_norm;
    const double norm = 1.0 / ((double)c * (h - t + 1) * (w - t + 1));
    for (int64_t i = 0; i < n; i++) {
        const double rr = data_range[i];
        const float c1 = (float)((0.01 * rr) * (0.01 * rr)), c2 = (float)((0.03 * rr) * (0.03 * rr));
        double s = 0, e = 0;
        for (int ch = 0; ch < c; ch++) {
            const size_t off = ((size_t)i * c + ch) * (size_t)h * w;
            const uint8_t *X = img1 + off, *Y = img2 + off;
            if (uniform) {
                if (t == 7) box_channel(X, Y, h, w, wb, 7, cn, c1, c2, (int32_t *)buf, &s);
                else box_channel(X, Y, h, w, wb, t, cn, c1, c2, (int32_t *)buf, &s);
            } else {
                float *ring = (float *)buf, *V = ring + (size_t)t * 4 * wb;
                if (t == 11) taps_channel(X, Y, h, w, wb, taps, 11, cn, c1, c2, ring, V, &s, &e);
                else if (t == 7) taps_channel(X, Y, h, w, wb, taps, 7, cn, c1, c2, ring, V, &s, &e);
                else taps_channel(X, Y, h, w, wb, taps, t, cn, c1, c2, ring, V, &s, &e);
            }
        }
        out[i] = s * norm;
        est[i] = 1.0 + e * norm;
    }
    free(buf);
    return 0;
}
"""


def _native_cache_dir() -> Path:
    """Where the compiled kernel is kept (``$REID_AUG_CACHE`` or ``~/.cache/reid-aug``, as the datasets)."""
    return Path(os.environ.get("REID_AUG_CACHE") or Path.home() / ".cache" / "reid-aug") / "ssim-native"


def _cpu_signature() -> str:
    """The machine and its CPU flags: a kernel built with ``-march=native`` is only reused on the same CPU type."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()} {platform.system()} {flags.strip()}"


def _build_native() -> ctypes.CDLL:
    """Compile ``_NATIVE_SRC`` with the system C compiler (``$CC``, cc, gcc or clang; ~1.5 s, once per machine:
    the library is cached under ``_native_cache_dir()``, keyed by source, compiler, flags and CPU) and load it."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    try:
        out_dir = _native_cache_dir()
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        out_dir = Path(tempfile.mkdtemp(prefix="reid-aug-ssim-"))
    errors = []
    for flags in ((*_NATIVE_FLAGS, "-march=native"), _NATIVE_FLAGS):
        key = hashlib.sha256("\0".join((_NATIVE_SRC, cc, *flags, _cpu_signature())).encode()).hexdigest()[:16]
        lib_path = out_dir / f"ssim_{key}.so"
        if not lib_path.exists():
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
            os.close(fd)
            c_file = tmp[:-3] + ".c"
            try:
                Path(c_file).write_text(_NATIVE_SRC)
                proc = subprocess.run([cc, *flags, "-o", tmp, c_file, "-lm"], capture_output=True, text=True,
                                      timeout=300)
                if proc.returncode != 0:
                    errors.append(f"{cc} {' '.join(flags)}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
                    continue
                os.replace(tmp, lib_path)  # atomic: concurrent builders each install a complete library
            finally:
                for f in (tmp, c_file):
                    with contextlib.suppress(OSError):
                        os.unlink(f)
        lib = ctypes.CDLL(str(lib_path))
        vp = ctypes.c_void_p
        lib.ssim_u8.restype = ctypes.c_int
        lib.ssim_u8.argtypes = [vp, vp, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_int, vp, ctypes.c_int,
                                ctypes.c_int, ctypes.c_double, vp, vp, vp]
        return lib
    raise RuntimeError("; ".join(errors))


def _native_lib() -> ctypes.CDLL | None:
    """The compiled kernel (built on first use), or None where no C compiler works (then: the torch paths)."""
    with _NATIVE_LOCK:
        if "lib" not in _NATIVE_STATE:
            try:
                _NATIVE_STATE["lib"] = _build_native()
            except Exception as e:  # noqa: BLE001 - no compiler, read-only disk, odd platform: torch paths
                log.warning("native SSIM kernel unavailable (%s); using the torch path", e)
                _NATIVE_STATE["lib"] = None
        return _NATIVE_STATE["lib"]


def _ssim_native(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, protocol: SSIMProtocol):
    """Float32 SSIM of contiguous uint8 CPU pairs through the C kernel: ``(ssim (N,) float64, est (N,) float64)``,
    ``est`` as in the module docstring (1 for the exact integer box sums); None where the kernel is unavailable."""
    if not NATIVE or img1.device.type != "cpu":
        return None
    taps = _kernel1d(protocol)
    if len(taps) > 31:
        return None
    lib = _native_lib()
    if lib is None:
        return None
    n, c, h, w = img1.shape
    uniform = not protocol.gaussian_weights and len(taps) <= NATIVE_MAX_BOX
    taps_t = torch.tensor(taps, dtype=torch.float32)
    r = data_range.to(torch.float64).contiguous()
    out = torch.empty(n, dtype=torch.float64)
    est = torch.empty(n, dtype=torch.float64)
    rc = lib.ssim_u8(img1.data_ptr(), img2.data_ptr(), n, c, h, w, taps_t.data_ptr(), len(taps), int(uniform),
                     protocol.cov_norm, r.data_ptr(), out.data_ptr(), est.data_ptr())
    if rc != 0:
        log.warning("native SSIM kernel failed (code %d); using the torch path", rc)
        return None
    return out, est


# --------------------------------------------------------------------------- public API
def _float32_suspect(est: torch.Tensor, data_range: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """(B,) bool: images whose float32 error estimate exceeds ``F32_TOL``, whose data range is below 1 (C1, C2 ~ 0)
    or whose value is not finite."""
    est = est.to(device=values.device, dtype=torch.float64)
    return ((EST_FACTOR * F32_UNIT * est > F32_TOL) | ~torch.isfinite(est) | ~torch.isfinite(values)
            | (data_range.to(values.device) < 1))


@contextlib.contextmanager
def _cpu_threads(device: torch.device):
    """Limit torch's intra-op threads to ``CPU_THREADS`` for the duration (restored afterwards)."""
    before = torch.get_num_threads()
    if device.type != "cpu" or CPU_THREADS is None or before <= CPU_THREADS:
        yield
        return
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def ssim(img1: torch.Tensor, img2: torch.Tensor, protocol: str | SSIMProtocol = "defgan",
         mask: torch.Tensor | None = None, *, chunk: int | None = None, dtype: torch.dtype | None = None,
         compile: bool = False) -> torch.Tensor:
    """Per-image SSIM, equal to scikit-image's for the named protocol.

    img1: uint8 (B, C, H, W), the GENERATED image (``defgan`` takes ``data_range`` from it, per image);
    img2: uint8 (B, C, H, W), the real target. mask: optional (B, 1, H, W) {0, 1} target pose mask: both images
    are multiplied by it first (mask-SSIM). Returns float64 (B,) on img1's device.
    chunk: pairs per step of the eager torch path (default 8 on CPU, 512 on CUDA). dtype: force float32/float64
    (default: float32 on CPU with the float64 re-computation described in the module docstring, float64 on CUDA).
    On CPU in float32 (the default) the native C kernel runs (module docstring; built once per machine, ~1.5 s;
    the eager torch path where no C compiler works or ``REID_AUG_SSIM_NATIVE=0``).
    compile: CPU float32 only: instead of the native kernel, the filtering and the SSIM map as
    ``torch.compile``'d kernels in steps of ``COMPILE_CHUNK`` pairs (2-3x faster than eager, slower than the native
    kernel; the first call per protocol and image size compiles for ~5-20 s, later processes reuse inductor's
    cache; falls back to eager where no compiler works).
    On CPU the torch paths run with ``CPU_THREADS`` (1) intra-op threads; torch's setting is restored afterwards.
    """
    proto = get_protocol(protocol)
    _check_pair(img1, img2, proto.win_size)
    cuda = img1.device.type == "cuda"
    work_dtype = dtype or (torch.float64 if cuda else torch.float32)
    if work_dtype not in (torch.float32, torch.float64):
        raise MetricsError(f"ssim dtype must be torch.float32 or torch.float64, got {work_dtype}")
    step = max(1, chunk or (CUDA_CHUNK if cuda else CPU_CHUNK))
    with _cpu_threads(img1.device):
        if img2.device != img1.device:
            img2 = img2.to(img1.device)
        img1 = apply_mask(img1, mask).contiguous()
        img2 = apply_mask(img2, mask).contiguous()
        out = torch.empty(img1.shape[0], dtype=torch.float64, device=img1.device)
        if img1.shape[0] == 0:
            return out
        return _ssim_all(img1, img2, data_range_of(img1, proto), proto, work_dtype, step, compile, out)


def _ssim_all(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, proto: SSIMProtocol,
              work_dtype: torch.dtype, step: int, compile: bool, out: torch.Tensor) -> torch.Tensor:
    """The chunks (eager or compiled), then the float64 re-computation of the suspect float32 values."""
    n = img1.shape[0]
    f32 = work_dtype == torch.float32
    done = None
    if img1.device.type == "cpu" and f32:
        if compile:
            done = _ssim_compiled(img1, img2, data_range, proto)
        else:
            done = _ssim_native(img1, img2, data_range, proto)
    if done is not None:
        out, est = done
    else:
        est = torch.empty(n, dtype=torch.float64, device=img1.device) if f32 else None
        for start in range(0, n, step):
            sl = slice(start, min(n, start + step))
            out[sl], e = _ssim_chunk(img1[sl], img2[sl], data_range[sl], proto, work_dtype, f32)
            if f32:
                est[sl] = e
    if f32:
        redo = _float32_suspect(est, data_range, out).nonzero().flatten()
        if redo.numel():
            log.debug("ssim: %d of %d images recomputed in float64", redo.numel(), n)
            for start in range(0, redo.numel(), step):
                idx = redo[start:start + step]
                out[idx] = _ssim_chunk(img1[idx], img2[idx], data_range[idx], proto, torch.float64, False)[0]
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
