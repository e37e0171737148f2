"""CMC and mAP under the Market-1501 protocol, vectorized in torch.

``evaluate_rank`` returns the numbers of torchreid's ``eval_market1501`` (its Python
fallback; PyPI torchreid has no Cython evaluator) on the same distance matrix -- the CMC
bit-identical, mAP equal up to float64 summation order (< 1e-12) -- in seconds at Market
scale (3,368 x 15,913) where the Python loop takes about two minutes
(``benchmarks/bench_ranking.py``).

Protocol (torchreid's, which is the Market-1501 one):
- for each query, gallery entries with the query's pid AND camera are removed from its list;
- junk gallery images (pid ``-1``) are removed (torchreid drops them when it loads Market, so
  its evaluator never sees them; we drop them here so a gallery that still holds them gives
  the same numbers) -- pass ``junk_pid=None`` to keep them as ordinary non-matches;
- distractors (pid ``0``) stay in the gallery as non-matches;
- queries whose identity is absent from what is left are skipped.

mAP is torchreid's: per query, AP = mean over the relevant positions k of precision@k
(sum of ``cumhits_k / k`` at each hit, divided by the number of hits), then the mean over
valid queries. This is not the MATLAB Market code's trapezoid interpolation, which gives
slightly different values.

Ties: we sort each row with a stable sort, so equal distances keep gallery order. torchreid
uses ``np.argsort`` (quicksort/introsort, not stable), whose order within a run of equal
distances is unspecified; the two agree exactly whenever no tie mixes a match with a
non-match (always true for distinct distances).
"""
from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

MAP_DEFINITION = ("torchreid mAP: AP = sum over hits of (hits so far / rank) / number of hits, "
                  "averaged over queries with at least one valid match (no trapezoid interpolation)")


def _as_tensor(x, device=None):
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(device) if device is not None else x
    arr = np.asarray(x)
    if not arr.flags.writeable:     # e.g. a pandas column: torch wants memory it may write (it never does here)
        arr = arr.copy()
    return torch.as_tensor(arr, device=device)


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50, junk_pid: int | None = -1,
                  chunk: int = 256):
    """CMC curve and mAP, equal to ``torchreid.metrics.evaluate_rank`` (Market metric).

    Args:
        distmat: ``(Q, G)`` distances (numpy array or torch tensor; a CUDA tensor is evaluated on its device).
        q_pids, g_pids: ``(Q,)``, ``(G,)`` person ids.
        q_camids, g_camids: ``(Q,)``, ``(G,)`` camera ids.
        max_rank: length of the CMC curve; like torchreid, clipped to the gallery size.
        junk_pid: gallery pid removed from every ranking (Market's ``-1``); ``None`` keeps all.
        chunk: queries sorted at once (memory ``chunk * G`` int64).

    Returns:
        ``(cmc, mAP)``: ``cmc`` float32 numpy array ``(max_rank,)`` (fraction of valid queries
        with a correct match within the top k), ``mAP`` a float.

    Raises:
        ValueError: on mismatched shapes, or when no query identity appears in the gallery.
    """
    import torch

    dist = _as_tensor(distmat)
    device = dist.device
    q_pids_t = _as_tensor(q_pids, device).long().reshape(-1)
    g_pids_t = _as_tensor(g_pids, device).long().reshape(-1)
    q_cams_t = _as_tensor(q_camids, device).long().reshape(-1)
    g_cams_t = _as_tensor(g_camids, device).long().reshape(-1)
    if dist.dim() != 2:
        raise ValueError(f"distmat must be 2-D (num_query, num_gallery), got shape {tuple(dist.shape)}")
    num_q, num_g = dist.shape
    if q_pids_t.numel() != num_q or q_cams_t.numel() != num_q:
        raise ValueError(f"{num_q} query rows but {q_pids_t.numel()} query pids / {q_cams_t.numel()} camids")
    if g_pids_t.numel() != num_g or g_cams_t.numel() != num_g:
        raise ValueError(f"{num_g} gallery columns but {g_pids_t.numel()} gallery pids / {g_cams_t.numel()} camids")
    if num_g < max_rank:
        log.info("gallery has only %d images: CMC computed up to rank %d", num_g, num_g)
        max_rank = num_g

    # first_hit[q] = 1-based rank of the first correct match after removals (0 = none)
    first_hit = torch.zeros(num_q, dtype=torch.long, device=device)
    ap = torch.zeros(num_q, dtype=torch.float64, device=device)
    for start in range(0, num_q, chunk):
        stop = min(start + chunk, num_q)
        order = torch.sort(dist[start:stop], dim=1, stable=True).indices          # (c, G)
        gp = g_pids_t[order]
        gc = g_cams_t[order]
        qp = q_pids_t[start:stop, None]
        match = gp == qp
        keep = ~(match & (gc == q_cams_t[start:stop, None]))
        if junk_pid is not None:
            keep &= gp != junk_pid
        hit = match & keep
        kept_rank = torch.cumsum(keep, dim=1)                                      # 1-based rank among kept
        hits_so_far = torch.cumsum(hit, dim=1)
        n_hits = hits_so_far[:, -1]
        # precision at each hit, summed in float64 as torchreid does
        prec = hits_so_far.double() / kept_rank.clamp(min=1).double()
        ap_sum = torch.where(hit, prec, torch.zeros((), dtype=torch.float64, device=device)).sum(1)
        valid = n_hits > 0
        ap[start:stop] = torch.where(valid, ap_sum / n_hits.clamp(min=1).double(), ap_sum.new_zeros(()))
        big = torch.full_like(kept_rank, num_g + 1)
        fh = torch.where(hit, kept_rank, big).min(dim=1).values
        first_hit[start:stop] = torch.where(valid, fh, torch.zeros_like(fh))

    valid = first_hit > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query identity appears in the gallery (after removing same-camera and junk entries)")
    ranks = torch.arange(1, max_rank + 1, device=device)
    counts = (first_hit[valid, None] <= ranks[None, :]).sum(0).cpu().numpy()
    # torchreid: float32 sum of 0/1 rows (exact) divided by the float count, in float32
    cmc = counts.astype(np.float32) / np.float32(num_valid)
    mAP = float(ap[valid].mean().item())
    return cmc, mAP


def summarize(cmc, mAP, ranks=(1, 5, 10, 20)) -> dict:
    """``{"rank1": .., "rank5": .., "mAP": ..}`` for the ranks that fit in ``cmc``
    (torchreid's default ranks index past a CMC shorter than 20 on tiny galleries)."""
    out = {f"rank{r}": float(cmc[r - 1]) for r in ranks if 1 <= r <= len(cmc)}
    out["mAP"] = float(mAP)
    return out
