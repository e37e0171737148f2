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


class _Noisy(_Fixed):
    """Logits with noise from the global torch RNG: a resumed run matches only if the RNG state came back."""

    def forward(self, x):
        return self.table[x[:, 0]] + 0.3 * torch.randn(len(x), C)


def _noisy_engine(logits, batches):
    from reid_aug.reid.engine import make_engine_class

    dm = SimpleNamespace(num_train_pids=C, train_loader=batches, test_loader={}, sources=["x"], targets=["x"])
    model = _Noisy(logits)
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)          # momentum: optimizer state matters
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)     # scheduler state matters
    return make_engine_class()(dm, model, opt, sched, use_gpu=False, label_smooth=True, labels="lsro")


def test_epoch_checkpoint_resume_equals_an_uninterrupted_run(tmp_path, logits):
    from reid_aug.reid.engine import train_epochs

    batches = [_batch([0, 3, 1, 2], [REAL_DSETID, REAL_DSETID, SYNTHESIZED_DSETID, REAL_DSETID]),
               _batch([2, 1, 0, 3], [SYNTHESIZED_DSETID, REAL_DSETID, REAL_DSETID, REAL_DSETID])]
    torch.manual_seed(7)
    straight = _noisy_engine(logits, batches)
    full = train_epochs(straight, 3, tmp_path / "a.pt")

    class Killed(Exception):
        pass

    def kill(epoch, rec):
        raise Killed

    torch.manual_seed(7)
    with pytest.raises(Killed):
        train_epochs(_noisy_engine(logits, batches), 3, tmp_path / "b.pt", on_epoch_end=kill)
    # the checkpoint is tensors and numbers only: it loads with weights_only=True
    ck = torch.load(tmp_path / "b.pt", weights_only=True)
    assert ck["epoch"] == 1 and set(ck["rng"]) >= {"python", "numpy", "torch"}
    torch.manual_seed(12345)                     # a new process: another RNG state until the checkpoint's is set
    resumed_engine = _noisy_engine(logits, batches)
    resumed = train_epochs(resumed_engine, 3, tmp_path / "b.pt")
    assert [h["epoch"] for h in resumed["history"]] == [1, 2, 3]
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in full["history"]]
    assert [h["lr"] for h in resumed["history"]] == pytest.approx([0.5, 0.25, 0.125])
    assert torch.equal(resumed_engine.model.table, straight.model.table)
