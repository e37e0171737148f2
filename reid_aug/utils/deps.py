"""Optional heavy dependencies, imported where used, with an install hint when absent."""
from __future__ import annotations

from reid_aug.errors import ReidAugError


def import_faiss():
    """``faiss`` from faiss-cpu (extra ``cpu``, the README's default) or faiss-gpu (extra ``gpu``)."""
    try:
        import faiss
    except ImportError as e:
        raise ReidAugError(
            "faiss is not installed: pip install -e '.[cpu]' (faiss-cpu) or -e '.[gpu]' (faiss-gpu); "
            "install one of them, never both") from e
    return faiss
