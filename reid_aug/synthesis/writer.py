"""A bounded pool of JPEG encoders/writers, so that the generator never waits on disk.

Each image is encoded with PIL (which releases the GIL while encoding, so threads run in
parallel) and written atomically (temp file beside the target + ``os.replace``, via
:mod:`reid_aug.utils.io`): a killed run leaves whole JPEGs or nothing, plus at worst a hidden
``.NAME.*.tmp`` file that the next run removes.

``submit`` blocks once ``max_pending`` images are queued (the queue is bounded, so memory stays
flat however far the generator runs ahead); ``close`` waits for all and re-raises the first
error. Per-image records (sha256 and size of the bytes written) are kept for the manifest.
"""
from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_aug.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """uint8 (H, W, 3) -> JPEG bytes (baseline, PIL's default 4:2:0 chroma subsampling)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buf, format="JPEG", quality=int(quality))
    return buf.getvalue()


def tensor_to_uint8(images) -> np.ndarray:
    """Generator output (B, 3, H, W) in [-1, 1] (any range; clipped) -> uint8 (B, H, W, 3) on the CPU."""
    import torch

    with torch.no_grad():
        x = ((images.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round_().to(torch.uint8)
        return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


@dataclass(frozen=True)
class WrittenFile:
    name: str
    sha256: str
    bytes: int


class JpegWriterPool:
    """Encode + atomically write JPEGs in ``workers`` threads with at most ``max_pending`` queued.

    Attributes after/while running: ``records`` {name: WrittenFile}, ``busy_seconds`` (summed
    worker time spent encoding+writing), ``wait_seconds`` (time ``submit`` blocked the caller).
    """

    def __init__(self, workers: int = 2, quality: int = 95, max_pending: int | None = None):
        self.workers = max(1, int(workers))
        self.quality = int(quality)
        self.max_pending = max(1, int(max_pending if max_pending is not None else 256))
        self._slots = threading.BoundedSemaphore(self.max_pending)
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="jpeg-writer")
        self._lock = threading.Lock()
        self._futures: list[Future] = []
        self._error: BaseException | None = None
        self.records: dict[str, WrittenFile] = {}
        self.busy_seconds = 0.0
        self.wait_seconds = 0.0

    def _job(self, path: Path, image: np.ndarray) -> None:
        t0 = time.perf_counter()
        try:
            data = encode_jpeg(image, self.quality)
            atomic_write_bytes(path, data)
            rec = WrittenFile(path.name, hashlib.sha256(data).hexdigest(), len(data))
            with self._lock:
                self.records[rec.name] = rec
                self.busy_seconds += time.perf_counter() - t0
        except BaseException as e:  # noqa: BLE001 - handed to the caller in submit/close
            with self._lock:
                if self._error is None:
                    self._error = e
            raise
        finally:
            self._slots.release()

    def submit(self, path: str | Path, image: np.ndarray) -> None:
        """Queue one uint8 (H, W, 3) image for ``path``; blocks while the queue is full."""
        if self._error is not None:
            raise self._error
        t0 = time.perf_counter()
        self._slots.acquire()
        self.wait_seconds += time.perf_counter() - t0
        fut = self._pool.submit(self._job, Path(path), image)
        self._futures.append(fut)
        if len(self._futures) > 4 * self.max_pending:  # keep the list short on long runs
            self._futures = [f for f in self._futures if not f.done()]

    def close(self) -> dict[str, WrittenFile]:
        """Wait for every queued image; re-raise the first error; return the records."""
        t0 = time.perf_counter()
        self._pool.shutdown(wait=True)
        self.wait_seconds += time.perf_counter() - t0
        if self._error is not None:
            raise self._error
        return self.records

    def abort(self) -> None:
        """Drop queued images (in-flight ones finish: each is whole or absent on disk)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "JpegWriterPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
