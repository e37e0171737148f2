"""Our vectorized evaluate_rank against torchreid's eval_market1501 (Python fallback)."""
import warnings

import numpy as np
import pytest

from reid_aug.reid.ranking import evaluate_rank, summarize


def _torchreid_eval(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid.metrics.rank import eval_market1501
    return eval_market1501(np.asarray(distmat), np.asarray(q_pids), np.asarray(g_pids), np.asarray(q_camids),
                           np.asarray(g_camids), max_rank)


def _random_case(rng, num_q, num_g, n_ids, n_cams, dtype=np.float32):
    q_pids = rng.integers(0, n_ids, num_q)
    g_pids = rng.integers(0, n_ids, num_g)
    g_pids[:n_ids] = np.arange(n_ids)               # every identity appears in the gallery
    q_cams = rng.integers(0, n_cams, num_q)
    g_cams = rng.integers(0, n_cams, num_g)
    # distinct distances: a random permutation of a grid, so no ties anywhere
    dist = rng.permutation(num_q * num_g).reshape(num_q, num_g).astype(dtype) / (num_q * num_g)
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed,num_q,num_g,n_ids,n_cams,max_rank", [
    (0, 40, 300, 25, 6, 50),
    (1, 97, 513, 60, 3, 20),
    (2, 13, 2000, 200, 2, 50),
    (3, 150, 120, 10, 6, 50),   # many same-camera removals, many hits per query
])
def test_equals_torchreid_on_random_matrices(seed, num_q, num_g, n_ids, n_cams, max_rank):
    rng = np.random.default_rng(seed)
    case = _random_case(rng, num_q, num_g, n_ids, n_cams)
    ref_cmc, ref_map = _torchreid_eval(*case, max_rank=max_rank)
    cmc, mAP = evaluate_rank(*case, max_rank=max_rank, chunk=7)   # odd chunk: exercises the chunk seams
    assert cmc.dtype == np.float32 and cmc.shape == ref_cmc.shape
    np.testing.assert_array_equal(cmc, ref_cmc)                   # bit-exact CMC
    assert mAP == pytest.approx(float(ref_map), abs=1e-12, rel=1e-12)


def test_random_with_torch_input_and_float64():
    import torch

    rng = np.random.default_rng(5)
    dist, qp, gp, qc, gc = _random_case(rng, 30, 400, 40, 6, dtype=np.float64)
    ref_cmc, ref_map = _torchreid_eval(dist, qp, gp, qc, gc)
    cmc, mAP = evaluate_rank(torch.from_numpy(dist), torch.from_numpy(qp), torch.from_numpy(gp),
                             torch.from_numpy(qc), torch.from_numpy(gc))
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert mAP == pytest.approx(float(ref_map), abs=1e-12)


def test_crafted_same_camera_removal():
    # one query: pid 1, camera 0.  Gallery ranked by distance (index = rank):
    #   g0 pid1 cam0 (same pid+cam -> removed), g1 pid2, g2 pid1 cam1 (hit), g3 pid3, g4 pid1 cam2 (hit)
    dist = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    q_pids, q_cams = np.array([1]), np.array([0])
    g_pids = np.array([1, 2, 1, 3, 1])
    g_cams = np.array([0, 0, 1, 0, 2])
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    # kept list: pid2, pid1, pid3, pid1 -> first hit at rank 2; AP = (1/2 + 2/4) / 2 = 0.5
    np.testing.assert_array_equal(cmc, np.array([0, 1, 1, 1], dtype=np.float32))
    assert mAP == pytest.approx(0.5, abs=1e-15)
    ref_cmc, ref_map = _torchreid_eval(dist, q_pids, g_pids, q_cams, g_cams, max_rank=4)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert mAP == pytest.approx(float(ref_map), abs=1e-15)


def test_crafted_junk_and_distractors():
    # query pid 7 cam 1.  g0 junk (-1), g1 distractor (0), g2 pid 7 cam 2 (hit), g3 junk, g4 pid 7 cam 3 (hit)
    dist = np.array([[0.05, 0.1, 0.2, 0.3, 0.4]], dtype=np.float32)
    q_pids, q_cams = np.array([7]), np.array([1])
    g_pids = np.array([-1, 0, 7, -1, 7])
    g_cams = np.array([1, 2, 2, 3, 3])
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    # junk removed, distractor kept: list = [0, 7, 7] -> AP = (1/2 + 2/3) / 2
    np.testing.assert_array_equal(cmc, np.array([0, 1, 1], dtype=np.float32))
    assert mAP == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)
    # equals torchreid on the gallery without junk columns (what torchreid's Market loader feeds it) ...
    keep = g_pids != -1
    ref_cmc, ref_map = _torchreid_eval(dist[:, keep], q_pids, g_pids[keep], q_cams, g_cams[keep], max_rank=3)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert mAP == pytest.approx(float(ref_map), abs=1e-15)
    # ... and to torchreid on the raw matrix when junk handling is off (junk = ordinary non-match)
    cmc_raw, map_raw = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3, junk_pid=None)
    raw_cmc, raw_map = _torchreid_eval(dist, q_pids, g_pids, q_cams, g_cams, max_rank=3)
    np.testing.assert_array_equal(cmc_raw, raw_cmc)
    assert map_raw == pytest.approx(float(raw_map), abs=1e-15)
    assert map_raw < mAP


def test_random_with_junk_equals_torchreid_without_junk():
    rng = np.random.default_rng(11)
    dist, qp, gp, qc, gc = _random_case(rng, 50, 600, 50, 6)
    gp[rng.random(600) < 0.2] = -1
    gp[rng.random(600) < 0.1] = 0
    gp[:50] = np.arange(50)
    keep = gp != -1
    ref_cmc, ref_map = _torchreid_eval(dist[:, keep], qp, gp[keep], qc, gc[keep])
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert mAP == pytest.approx(float(ref_map), abs=1e-12)


def test_queries_without_match_are_skipped():
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], dtype=np.float32)
    # query 0 (pid 5) has only a same-camera match -> skipped; query 1 (pid 6) hits at rank 1
    cmc, mAP = evaluate_rank(dist, np.array([5, 6]), np.array([5, 9, 6]), np.array([0, 0]), np.array([0, 1, 1]))
    np.testing.assert_array_equal(cmc, np.ones(3, dtype=np.float32))
    assert mAP == 1.0
    with pytest.raises(ValueError, match="no query identity"):
        evaluate_rank(dist[:1], np.array([5]), np.array([5, 9, 6]), np.array([0]), np.array([0, 1, 1]))


def test_ties_are_broken_by_gallery_order():
    # all distances equal: stable order = gallery index.  hit at index 2 -> rank 3
    dist = np.zeros((1, 4), dtype=np.float32)
    cmc, mAP = evaluate_rank(dist, np.array([1]), np.array([2, 3, 1, 4]), np.array([0]), np.array([1, 1, 1, 1]))
    np.testing.assert_array_equal(cmc, np.array([0, 0, 1, 1], dtype=np.float32))
    assert mAP == pytest.approx(1 / 3)
    # ties that do not mix hits and non-hits give torchreid's numbers whatever its argsort does
    dist = np.array([[0.5, 0.5, 0.1, 0.9, 0.9]], dtype=np.float32)
    args = (np.array([1]), np.array([2, 3, 1, 1, 1]), np.array([0]), np.array([1, 1, 1, 2, 3]))
    ref_cmc, ref_map = _torchreid_eval(dist, *args)
    cmc, mAP = evaluate_rank(dist, *args)
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert mAP == pytest.approx(float(ref_map), abs=1e-15)


def test_small_gallery_clips_ranks():
    rng = np.random.default_rng(3)
    dist, qp, gp, qc, gc = _random_case(rng, 5, 8, 4, 6)
    qc[:] = 99                                   # no same-camera removal -> every kept list has 8 entries
    cmc, mAP = evaluate_rank(dist, qp, gp, qc, gc, max_rank=50)
    assert cmc.shape == (8,)
    ref_cmc, ref_map = _torchreid_eval(dist, qp, gp, qc, gc)
    np.testing.assert_array_equal(cmc, ref_cmc)
    s = summarize(cmc, mAP, ranks=(1, 5, 10, 20))
    assert set(s) == {"rank1", "rank5", "mAP"}


def test_shape_errors():
    with pytest.raises(ValueError, match="gallery"):
        evaluate_rank(np.zeros((2, 3)), np.array([1, 2]), np.array([1, 2]), np.array([0, 0]), np.array([0, 0]))


def test_equals_torchreid_at_market_scale_with_its_real_labels(market_root):
    """Market-1501's own query/gallery pids and cameras (junk, distractors, same-camera matches), 400 queries x the
    whole 19,732-image gallery, random distances: our evaluator equals torchreid's (which never sees junk: its
    Market1501 reader drops pid -1)."""
    from reid_aug.dataset.market import load_dataset

    table = load_dataset(market_root).table
    query, gallery = table[table["split"] == "query"], table[table["split"] == "gallery"]
    rng = np.random.default_rng(7)
    q = query.iloc[np.sort(rng.choice(len(query), 400, replace=False))]
    q_pids, q_cams = q["pid"].to_numpy(), q["camid"].to_numpy()
    g_pids, g_cams = gallery["pid"].to_numpy(), gallery["camid"].to_numpy()
    dist = rng.random((len(q), len(gallery)), dtype=np.float32)
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    keep = g_pids != -1
    ref_cmc, ref_map = _torchreid_eval(dist[:, keep], q_pids, g_pids[keep], q_cams, g_cams[keep])
    assert len(gallery) == 19732 and (~keep).sum() == int((gallery["kind"] == "junk").sum()) > 3000
    np.testing.assert_array_equal(cmc, ref_cmc)
    # per-query APs are float64 sums over ~16,000 ranks in another order than torchreid's loop: ~1e-11 apart here
    assert mAP == pytest.approx(float(ref_map), abs=1e-9)


def test_equals_torchreid_at_realistic_size_without_the_dataset():
    """300 queries x 3,000 gallery with Market's structure, built here: 150 identities seen by 6 cameras, each
    query's identity in the gallery under its own camera too (same pid + camera: removed) and under others,
    distractors (pid 0) and junk (pid -1, which torchreid never sees: its Market reader drops it)."""
    rng = np.random.default_rng(11)
    n_ids, n_cams = 150, 6
    g_pids = np.concatenate([np.repeat(np.arange(1, n_ids + 1), 14), np.zeros(600, int), -np.ones(300, int)])
    g_cams = rng.integers(0, n_cams, len(g_pids))
    q_pids = rng.choice(np.arange(1, n_ids + 1), 300)
    # every query's camera also holds gallery images of its identity (the same-camera removal is exercised)
    q_cams = np.array([rng.choice(g_cams[g_pids == p]) for p in q_pids])
    order = rng.permutation(len(g_pids))
    g_pids, g_cams = g_pids[order], g_cams[order]
    dist = rng.random((len(q_pids), len(g_pids)))         # float64: no ties
    dist -= 0.5 * (g_pids[None] == q_pids[:, None]) * rng.random(dist.shape)   # true matches tend to rank higher
    same_cam = (g_pids[None] == q_pids[:, None]) & (g_cams[None] == q_cams[:, None])
    assert same_cam.any(1).all() and (g_pids == -1).sum() == 300 and (g_pids == 0).sum() == 600
    cmc, mAP = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, chunk=64)
    keep = g_pids != -1
    ref_cmc, ref_map = _torchreid_eval(dist[:, keep], q_pids, g_pids[keep], q_cams, g_cams[keep])
    np.testing.assert_array_equal(cmc, ref_cmc)
    assert mAP == pytest.approx(float(ref_map), abs=1e-9)
    assert 0 < cmc[0] < cmc[-1] <= 1                       # a real curve, not a degenerate one
