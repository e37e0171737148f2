"""The native (C) SSIM kernel: the default CPU path of :func:`reid_aug.metrics.ssim.ssim`.

Built on first use with the system C compiler (``$CC``, cc, gcc or clang; ``-O3 -march=native``), cached per
machine and CPU type under ``$REID_AUG_CACHE`` (or ``~/.cache/reid-aug``), called through ctypes. The algorithm
and its numerics are described in :mod:`reid_aug.metrics.ssim`; where the kernel is unavailable
(``REID_AUG_SSIM_NATIVE=0``, no working compiler) :func:`ssim_native` returns None and the eager torch path runs.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from reid_aug.metrics.ssim import SSIMProtocol, _kernel1d

log = logging.getLogger(__name__)

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


def ssim_native(img1: torch.Tensor, img2: torch.Tensor, data_range: torch.Tensor, protocol: SSIMProtocol):
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
