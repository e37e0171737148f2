"""Evaluating a trained Re-ID model on the Market protocol: query/gallery features, CMC/mAP with our
vectorized evaluator (equal to torchreid's ``eval_market1501``), and k-reciprocal re-ranking if asked."""
from __future__ import annotations

import time

import numpy as np

from reid_aug.reid.config import BenchmarkConfig
from reid_aug.reid.models import extract_features


def evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, cfg: BenchmarkConfig) -> dict:
    """Market metrics of ``(Q, D)`` query and ``(G, D)`` gallery features: ``{"rank1", "rank5", ...,
    "mAP", "cmc"}``, plus ``"rerank"`` (the same keys + ``seconds``) if ``cfg.eval.rerank``."""
    import torch.nn.functional as F

    from reid_aug.reid.data import import_torchreid
    from reid_aug.reid.ranking import evaluate_rank, summarize

    reid = import_torchreid()
    e = cfg.eval
    if e.normalize_feature:
        qf, gf = F.normalize(qf, dim=1), F.normalize(gf, dim=1)
    distmat = reid.metrics.compute_distance_matrix(qf, gf, e.dist_metric)
    cmc, mAP = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=e.max_rank)
    out = {**summarize(cmc, mAP, e.ranks), "cmc": [float(x) for x in cmc]}
    if e.rerank:
        from reid_aug.reid.rerank import re_ranking_features

        t0 = time.time()
        # cosine distances give the same re-ranking as squared Euclidean on L2-normalised features
        # (re_ranking divides every row by its maximum, so the factor 2 cancels)
        rq, rg = (F.normalize(qf, dim=1), F.normalize(gf, dim=1)) if e.dist_metric == "cosine" else (qf, gf)
        rr = re_ranking_features(rq, rg, k1=e.k1, k2=e.k2, lambda_value=e.lambda_value)
        cmc_r, map_r = evaluate_rank(rr, q_pids, g_pids, q_cams, g_cams, max_rank=e.max_rank)
        out["rerank"] = {**summarize(cmc_r, map_r, e.ranks), "seconds": time.time() - t0}
    return out


def evaluate_model(model, splits, cfg: BenchmarkConfig, device, tag: str = "") -> dict:
    """:func:`evaluate_features` of ``model`` on the splits' query and gallery, plus ``feature_dim``."""
    d = cfg.data

    def features(items, what):
        return extract_features(model, [p for p, *_ in items], d.height, d.width, d.batch_size_test,
                                workers=d.workers, desc=f"{tag} {what} features", device=device)

    qf, gf = features(splits.query, "query"), features(splits.gallery, "gallery")
    q_pids, q_cams = (np.array([x[i] for x in splits.query]) for i in (1, 2))
    g_pids, g_cams = (np.array([x[i] for x in splits.gallery]) for i in (1, 2))
    return {**evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, cfg), "feature_dim": int(qf.shape[1])}
