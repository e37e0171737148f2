"""reid_aug.reid.engine: forward_backward's losses against hand computations, and the epoch checkpoint."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from reid_aug.reid.data import REAL_DSETID, SYNTHESIZED_DSETID

C = 5                                            # identities


class _Fixed(torch.nn.Module):
    """A 'model' whose logits are a learnable table row per input index (input = (B, 1) long)."""

    def __init__(self, logits):
        super().__init__()
        self.table = torch.nn.Parameter(logits.clone())

    def forward(self, x):
        return self.table[x[:, 0]]


def _engine(logits, labels):
    from reid_aug.reid.engine import make_engine_class

    dm = SimpleNamespace(num_train_pids=C, train_loader=[], test_loader={}, sources=["x"], targets=["x"])
    model = _Fixed(logits)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)       # lr 0: the step must not change what we compare
    sched = torch.optim.lr_scheduler.StepLR(opt, 1)
    return make_engine_class()(dm, model, opt, sched, use_gpu=False, label_smooth=True, labels=labels)


def _batch(pids, dsetids):
    n = len(pids)
    return {"img": torch.arange(n).view(n, 1), "pid": torch.tensor(pids), "dsetid": torch.tensor(dsetids),
            "camid": torch.zeros(n, dtype=torch.long)}


@pytest.fixture
def logits():
    return torch.randn(4, C, generator=torch.Generator().manual_seed(0))


def _smoothed_ce(lg, pid, eps=0.1):
    logp = F.log_softmax(lg, dim=0)
    target = torch.full((C,), eps / C)
    target[pid] += 1 - eps
    return float(-(target * logp).sum())


def test_same_id_loss_is_label_smoothed_cross_entropy_on_every_image(logits):
    pids, dsets = [0, 3, 1, 3], [REAL_DSETID, REAL_DSETID, SYNTHESIZED_DSETID, SYNTHESIZED_DSETID]
    out = _engine(logits, "same-id").forward_backward(_batch(pids, dsets))
    expected = sum(_smoothed_ce(logits[i], p) for i, p in enumerate(pids)) / 4
    assert out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["n_synthesized"] == 2
    real_hits = [int(logits[i].argmax()) == p for i, p in enumerate(pids[:2])]
    assert out["acc"] == pytest.approx(sum(real_hits) / 2)       # accuracy over real images only


def test_lsro_gives_synthesized_images_a_uniform_target(logits):
    pids, dsets = [0, 3, 1, 3], [REAL_DSETID, REAL_DSETID, SYNTHESIZED_DSETID, SYNTHESIZED_DSETID]
    out = _engine(logits, "lsro").forward_backward(_batch(pids, dsets))
    real = [_smoothed_ce(logits[i], p) for i, p in enumerate(pids[:2])]
    uniform = [float(-F.log_softmax(logits[i], dim=0).mean()) for i in (2, 3)]
    assert out["loss"] == pytest.approx((sum(real) + sum(uniform)) / 4, rel=1e-5)
    only_synth = _engine(logits, "lsro").forward_backward(_batch([1, 2], [SYNTHESIZED_DSETID] * 2))
    assert math.isnan(only_synth["acc"])
