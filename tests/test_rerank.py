"""k-reciprocal re-ranking in bounded memory == torchreid's re_ranking on small cases."""
import warnings

import numpy as np
import pytest
import torch

from reid_aug.reid.rerank import re_ranking, re_ranking_features


def _torchreid():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation")
        from torchreid.reid.metrics import compute_distance_matrix
        from torchreid.reid.utils.rerank import re_ranking as ref
    return ref, compute_distance_matrix


def _clustered(seed, nq, ng, d, n_ids=12):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_ids, d, generator=g)
    qf = centers[torch.randint(0, n_ids, (nq,), generator=g)] + 0.6 * torch.randn(nq, d, generator=g)
    gf = centers[torch.randint(0, n_ids, (ng,), generator=g)] + 0.6 * torch.randn(ng, d, generator=g)
    return qf, gf


@pytest.mark.parametrize("seed,nq,ng,d,k1,k2,lam", [
    (0, 25, 110, 16, 20, 6, 0.3),     # the paper's parameters
    (1, 40, 160, 32, 20, 6, 0.3),
    (2, 30, 90, 8, 7, 1, 0.5),        # k2 = 1: no query expansion
    (3, 12, 60, 16, 4, 3, 0.0),       # pure Jaccard distance
])
def test_equals_torchreid(seed, nq, ng, d, k1, k2, lam):
    ref, dist = _torchreid()
    qf, gf = _clustered(seed, nq, ng, d)
    qg, qq, gg = dist(qf, gf).numpy(), dist(qf, qf).numpy(), dist(gf, gf).numpy()
    expected = ref(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam)
    from_matrices = re_ranking(qg, qq, gg, k1=k1, k2=k2, lambda_value=lam, chunk=17)   # chunk seams
    from_features = re_ranking_features(qf, gf, k1=k1, k2=k2, lambda_value=lam, chunk=7)
    for got in (from_matrices, from_features):
        assert got.shape == (nq, ng) and got.dtype == np.float32
        np.testing.assert_allclose(got, expected, atol=2e-6, rtol=1e-5)
        # and the rankings the evaluation sees are the same (lambda = 0 leaves exact Jaccard ties, e.g. many 1.0,
        # whose order depends on float rounding)
        if lam > 0:
            np.testing.assert_array_equal(np.argsort(got, 1, kind="stable"),
                                          np.argsort(expected, 1, kind="stable"))
    # re-ranking changed something (the test would be vacuous otherwise)
    assert np.abs(expected - qg ** 2 / (qg ** 2).max()).max() > 1e-3 or lam == 0.0


def test_rerank_improves_retrieval_on_clusters():
    """Sanity of the method itself: on well-clustered data, re-ranked mAP >= plain mAP."""
    from reid_aug.reid.ranking import evaluate_rank

    g = torch.Generator().manual_seed(7)
    n_ids, d = 15, 16
    centers = 2.0 * torch.randn(n_ids, d, generator=g)
    q_ids = torch.arange(n_ids).repeat(2)
    g_ids = torch.arange(n_ids).repeat(6)
    qf = centers[q_ids] + torch.randn(len(q_ids), d, generator=g)
    gf = centers[g_ids] + torch.randn(len(g_ids), d, generator=g)
    q_cam, g_cam = np.zeros(len(q_ids)), np.ones(len(g_ids))
    _, dist = _torchreid()
    _, map_plain = evaluate_rank(dist(qf, gf), q_ids.numpy(), g_ids.numpy(), q_cam, g_cam)
    _, map_rr = evaluate_rank(re_ranking_features(qf, gf), q_ids.numpy(), g_ids.numpy(), q_cam, g_cam)
    assert map_rr >= map_plain - 1e-9
