"""Read and write the keypoint annotation CSV of pose-transfer work.

Format (Deformable GAN / PATN ``market-annotation-*.csv``)::

    name:keypoints_y:keypoints_x
    0002_c1s1_000451_03.jpg: [14, 24, ...]: [38, 33, ...]

18 integers per list in :data:`KEYPOINT_NAMES` order, ``-1`` for a missing joint,
coordinates inside the ``height x width`` image (128x64 for Market-1501).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import numpy as np

from reid_aug.keypoints.skeleton import MISSING, NUM_KEYPOINTS
from reid_aug.errors import AnnotationError, DatasetError  # noqa: F401 - AnnotationError re-exported
from reid_aug.utils.io import atomic_write_text

HEADER = "name:keypoints_y:keypoints_x"
_ROW = re.compile(r"^(?P<name>[^:]+):\s*\[(?P<y>[^\]]*)\]:\s*\[(?P<x>[^\]]*)\]\s*$")


def _parse_list(text: str, path, lineno: int, what: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",")] if text.strip() else []
    except ValueError:
        raise AnnotationError(f"{path}:{lineno}: {what} list [{text}] holds a non-integer value") from None
    if len(vals) != NUM_KEYPOINTS:
        raise AnnotationError(f"{path}:{lineno}: {what} list has {len(vals)} values, expected {NUM_KEYPOINTS}")
    return vals


def parse_annotation_text(text: str, path: str | Path = "<text>", height: int | None = 128,
                          width: int | None = 64) -> dict[str, np.ndarray]:
    """Parse annotation CSV text into ``{name: int16 array (18, 2) of (y, x)}`` in file order.

    ``height``/``width`` None: the images have their own sizes (``reid-aug annotate`` writes each
    image's own pixel coordinates); only negative coordinates are refused here, and the image
    loader checks each row against its image.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != HEADER:
        first = lines[0] if lines else "<empty file>"
        raise AnnotationError(f"{path}:1: expected header {HEADER!r}, found {first!r}")
    out: dict[str, np.ndarray] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        m = _ROW.match(line)
        if m is None:
            raise AnnotationError(f"{path}:{lineno}: malformed row {line[:80]!r}; "
                                  f"expected 'NAME: [y0, ..., y17]: [x0, ..., x17]'")
        name = m.group("name").strip()
        ys = _parse_list(m.group("y"), path, lineno, "keypoints_y")
        xs = _parse_list(m.group("x"), path, lineno, "keypoints_x")
        kp = np.stack([np.asarray(ys), np.asarray(xs)], axis=1).astype(np.int16)
        missing_y, missing_x = kp[:, 0] == MISSING, kp[:, 1] == MISSING
        if np.any(missing_y != missing_x):
            j = int(np.flatnonzero(missing_y != missing_x)[0])
            raise AnnotationError(f"{path}:{lineno}: joint {j} of {name} is missing in one coordinate only")
        present = ~missing_y
        bad = present & ((kp[:, 0] < 0) | (kp[:, 1] < 0))
        if height is not None and width is not None:
            bad |= present & ((kp[:, 0] >= height) | (kp[:, 1] >= width))
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            where = f"the {height}x{width} image" if height is not None else "the image (negative)"
            raise AnnotationError(f"{path}:{lineno}: joint {j} of {name} at (y={kp[j, 0]}, x={kp[j, 1]}) "
                                  f"lies outside {where}")
        if name in out:
            raise AnnotationError(f"{path}:{lineno}: duplicate row for {name}")
        out[name] = kp
    return out


def read_annotations(path: str | Path, height: int | None = 128, width: int | None = 64) -> dict[str, np.ndarray]:
    """Read an annotation CSV; see :func:`parse_annotation_text`."""
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} not found")
    return parse_annotation_text(path.read_text(), path, height, width)


def format_annotations(keypoints: Mapping[str, np.ndarray]) -> str:
    rows = [HEADER]
    for name, kp in keypoints.items():
        kp = np.asarray(kp).astype(int)
        ys = ", ".join(str(v) for v in kp[:, 0])
        xs = ", ".join(str(v) for v in kp[:, 1])
        rows.append(f"{name}: [{ys}]: [{xs}]")
    return "\n".join(rows) + "\n"


def write_annotations(path: str | Path, keypoints: Mapping[str, np.ndarray]) -> None:
    """Write ``{name: (18, 2) (y, x)}`` in the CSV format above, atomically."""
    atomic_write_text(path, format_annotations(keypoints))


def stack_keypoints(keypoints: Mapping[str, np.ndarray], names) -> np.ndarray:
    """``(len(names), 18, 2)`` int16 array; a name with no row gets all ``MISSING``."""
    out = np.full((len(names), NUM_KEYPOINTS, 2), MISSING, dtype=np.int16)
    for i, n in enumerate(names):
        kp = keypoints.get(n)
        if kp is not None:
            out[i] = kp
    return out
