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

How it is computed. On CPU (float32, the default) a small C kernel does it (:mod:`reid_aug.metrics.ssim_native`; built on first use
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

``REID_AUG_SSIM_NATIVE=0`` (or ``reid_aug.metrics.ssim_native.NATIVE = False``), no working compiler, CUDA tensors and ``dtype=torch.float64``
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
import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

import torch

from reid_aug.metrics import MetricsError

log = logging.getLogger(__name__)

F32_UNIT = 2.0 ** -24  # float32 unit roundoff
EST_FACTOR = 10.0  # error <= EST_FACTOR * F32_UNIT * (1 + mean(q / B2)); measured ratio <= 4.9 (module docstring)
F32_TOL = 5e-5  # images whose float32 estimate exceeds this are recomputed in float64 (the bar is 1e-4)
CPU_CHUNK = 8  # pairs per step on CPU: ~10 MB of float32 buffers (measured best of 4, 8, 16, 32)
CUDA_CHUNK = 512
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
    # Pixels of symmetric padding (scipy.ndimage's "reflect") added on every side before the valid filtering:
    # for a filter wider than the crop (the 2018 call), the cropped border pixels see reflected neighbours.
    border: int = 0

    @property
    def pad(self) -> int:
        """Half the filter width: scikit-image crops ``(win_size - 1) // 2`` pixels on every side before averaging
        (for ``defgan-2018``: the 13-tap filter's radius 6 on the image padded by ``border`` = 1, i.e. 5 of the
        original, as the old call's ``win_size`` 11 crop)."""
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
    # Deformable GAN / PATN as they ran in 2018: scikit-image 0.13/0.14 ``compare_ssim(gaussian_weights=True,
    # sigma=1.5, ...)`` filtered with scipy's gaussian_filter at its default truncate 4.0 (13 taps, radius 6,
    # border "reflect") while cropping (win_size 11 - 1) // 2 = 5 pixels; today's call uses 11 taps.
    "defgan-2018": SSIMProtocol(
        name="defgan-2018", gaussian_weights=True, sigma=1.5, win_size=13, use_sample_covariance=False,
        data_range="generated", border=1,
        reference="skimage 0.13/0.14 compare_ssim(gen, real, gaussian_weights=True, sigma=1.5, "
                  "use_sample_covariance=False, multichannel=True, data_range=gen.max()-gen.min()): 13-tap Gaussian "
                  "(truncate 4.0, reflect border), crop 5"),
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
         mask: torch.Tensor | None = None, *, chunk: int | None = None, dtype: torch.dtype | None = None
         ) -> torch.Tensor:
    """Per-image SSIM, equal to scikit-image's for the named protocol.

    img1: uint8 (B, C, H, W), the GENERATED image (``defgan`` takes ``data_range`` from it, per image);
    img2: uint8 (B, C, H, W), the real target. mask: optional (B, 1, H, W) {0, 1} target pose mask: both images
    are multiplied by it first (mask-SSIM). Returns float64 (B,) on img1's device.
    chunk: pairs per step of the eager torch path (default 8 on CPU, 512 on CUDA). dtype: force float32/float64
    (default: float32 on CPU with the float64 re-computation described in the module docstring, float64 on CUDA).
    On CPU in float32 (the default) the native C kernel runs (module docstring; built once per machine, ~1.5 s;
    the eager torch path where no C compiler works or ``REID_AUG_SSIM_NATIVE=0``).
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
        img1 = _pad_symmetric(apply_mask(img1, mask), proto.border).contiguous()
        img2 = _pad_symmetric(apply_mask(img2, mask), proto.border).contiguous()
        out = torch.empty(img1.shape[0], dtype=torch.float64, device=img1.device)
        if img1.shape[0] == 0:
            return out
        return _ssim_all(img1, img2, data_range_of(img1, proto), proto, work_dtype, step, out)


def _ssim_all(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, proto: SSIMProtocol,
              work_dtype: torch.dtype, step: int, out: torch.Tensor) -> torch.Tensor:
    """The native kernel (CPU, float32) or the eager chunks, then the float64 re-computation of the suspect
    float32 values."""
    from reid_aug.metrics import ssim_native
    n = img1.shape[0]
    f32 = work_dtype == torch.float32
    done = None
    if img1.device.type == "cpu" and f32:
        done = ssim_native.ssim_native(img1, img2, data_range, proto)
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


def _pad_symmetric(img: torch.Tensor, border: int) -> torch.Tensor:
    """(B, C, H, W) padded by ``border`` pixels mirrored with the edge included (scipy.ndimage's ``reflect``)."""
    if border <= 0:
        return img
    rows = torch.cat([img[..., :border, :].flip(-2), img, img[..., -border:, :].flip(-2)], dim=-2)
    return torch.cat([rows[..., :border].flip(-1), rows, rows[..., -border:].flip(-1)], dim=-1)


def ssim_skimage(img1: torch.Tensor, img2: torch.Tensor, protocol: str | SSIMProtocol = "defgan",
                 mask: torch.Tensor | None = None):
    """Reference: the published per-image scikit-image loop. Returns numpy float64 (B,).

    img1 generated, img2 real, both uint8 (B, C, H, W); the mask multiplies both as in PATN's
    ``create_masked_image`` (``image * mask[..., np.newaxis]``).
    """
    import numpy as np
    from skimage.metrics import structural_similarity

    proto = get_protocol(protocol)
    if proto.border:
        raise MetricsError(f"no call of today's scikit-image reproduces the {proto.name!r} protocol ({proto.reference});"
                           f" tests/test_ssim_legacy.py checks it against an independent port of the old call")
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
