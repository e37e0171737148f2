"""Image grids and PNG files: the one writer behind every sample grid and contact sheet."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

from reid_aug.utils.io import atomic_write_bytes


def to_uint8_images(images) -> np.ndarray:
    """``(B, 3, H, W)`` uint8, or float in [0, 1] (torch or numpy) -> uint8 ``(B, 3, H, W)`` numpy."""
    arr = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def image_grid(columns: Sequence, pad: int = 0, fill: int = 255) -> np.ndarray:
    """Side-by-side columns of images, one row per batch element.

    ``columns``: a list of ``(B, 3, H, W)`` batches (uint8, or float in [0, 1]) of equal shape.
    Returns a uint8 ``(B*H + (B+1)*pad, C*W + (C+1)*pad, 3)`` array (C = number of columns).
    """
    cols = [to_uint8_images(c) for c in columns]
    b, _, h, w = cols[0].shape
    out = np.full((b * h + (b + 1) * pad, len(cols) * w + (len(cols) + 1) * pad, 3), fill, np.uint8)
    for c, col in enumerate(cols):
        if col.shape != cols[0].shape:
            raise ValueError(f"grid column {c} has shape {col.shape}, column 0 {cols[0].shape}")
        x = pad + c * (w + pad)
        for r in range(b):
            y = pad + r * (h + pad)
            out[y:y + h, x:x + w] = col[r].transpose(1, 2, 0)
    return out


def png_bytes(arr: np.ndarray) -> bytes:
    """A uint8 ``(H, W, 3)`` array (or a PIL image) as PNG bytes."""
    from PIL import Image

    im = arr if hasattr(arr, "save") else Image.fromarray(np.ascontiguousarray(arr))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def save_png(arr, path: str | Path) -> Path:
    """Write a uint8 ``(H, W, 3)`` array (or a PIL image) as a PNG, atomically; returns ``path``."""
    atomic_write_bytes(path, png_bytes(arr))
    return Path(path)
