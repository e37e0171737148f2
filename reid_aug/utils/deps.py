"""Optional heavy dependencies, imported where used, with an install hint when absent."""
from __future__ import annotations

import contextlib
import logging

from reid_aug.errors import ReidAugError


@contextlib.contextmanager
def _quiet_logger(name: str, level: int = logging.WARNING):
    """Raise logger ``name``'s threshold to ``level`` for the duration (then restore it)."""
    logger = logging.getLogger(name)
    before = logger.level
    logger.setLevel(max(level, before))
    try:
        yield
    finally:
        logger.setLevel(before)


def import_faiss():
    """``faiss`` from faiss-cpu (extra ``cpu``, the README's default) or faiss-gpu (extra ``gpu``).

    faiss's loader logs at INFO each CPU-specific build it tries and does not find (``Could not
    load library with AVX512 support ... ModuleNotFoundError``) before it loads the generic one:
    normal, so only its warnings and errors are let through.
    """
    try:
        with _quiet_logger("faiss.loader"):
            import faiss
    except ImportError as e:
        raise ReidAugError(
            "faiss is not installed: pip install -e '.[cpu]' (faiss-cpu) or -e '.[gpu]' (faiss-gpu); "
            "install one of them, never both") from e
    return faiss
