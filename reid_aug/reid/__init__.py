"""Re-ID benchmark: torchreid training with and without synthesized images, our Market evaluator,
k-reciprocal re-ranking in bounded memory, and the report.

Heavy imports (torchreid, faiss, matplotlib) happen inside the functions.
"""
from reid_aug.reid.ranking import evaluate_rank  # noqa: F401
from reid_aug.reid.rerank import re_ranking, re_ranking_features  # noqa: F401
