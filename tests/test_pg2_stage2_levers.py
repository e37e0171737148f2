"""Issue 12: stage-II stabilisers that are not PG²'s (D every k steps, spectral-norm D, a lambda schedule)."""
import pytest
import torch

from reid_aug.config import ConfigError, load_config
from reid_aug.generator.config import PG2Config
from reid_aug.generator.discriminator import Discriminator
from reid_aug.generator.pg2 import lambda_at

from test_pg2_discriminators import _run


def test_defaults_are_pg2s_stage_two():
    cfg = load_config(PG2Config, "pg2_market")
    assert (cfg.model.d_norm, cfg.train.d_every, cfg.loss.lambda_start) == ("batch", 1, 0.0)
    assert lambda_at(cfg.loss, 0, 100) == lambda_at(cfg.loss, 99, 100) == cfg.loss.lambda_l1 == 10.0


def test_lambda_schedule_ramps_linearly_then_holds():
    lo = load_config(PG2Config, "pg2_market", ["loss.lambda_start=100", "loss.lambda_ramp=0.5"]).loss
    assert lambda_at(lo, 0, 1000) == 100.0
    assert lambda_at(lo, 250, 1000) == pytest.approx(55.0)
    assert lambda_at(lo, 500, 1000) == lambda_at(lo, 999, 1000) == 10.0


def test_spectral_norm_bounds_every_layer_and_drops_batchnorm():
    torch.manual_seed(0)
    d = Discriminator((32, 16), width=8, img_channels=6, norm="spectral")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    d.train()
    x = torch.randn(4, 6, 32, 16)
    for _ in range(30):      # power iterations converge
        d(x)
    d.eval()
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 5
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.02)
    plain = Discriminator((32, 16), width=8, img_channels=6)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules()) == 3


def test_d_every_skips_d_updates_and_spectral_d_trains_and_resumes(tiny_toy, tmp_path):
    # g2 runs 3 steps: with d_every=2, D is updated at steps 0 and 2; with d_every=1000 only at step 0.
    every = {}
    for k in (1, 2, 1000):
        run = _run(tiny_toy, tmp_path, f"k{k}", "loss.d_variant=pair", f"train.d_every={k}")
        every[k] = torch.load(run / "checkpoint.pt", weights_only=True)["models"]["d"]
    first = "features.0.weight"
    assert not torch.equal(every[1][first], every[1000][first])
    assert not torch.equal(every[2][first], every[1000][first])
    assert not torch.equal(every[1][first], every[2][first])
    # spectral norm and a lambda schedule through the whole loop (train, checkpoint):
    run = _run(tiny_toy, tmp_path, "sn", "loss.d_variant=pair", "model.d_norm=spectral", "loss.lambda_start=50")
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert any("parametrizations" in k for k in ckpt["models"]["d"])


def test_d_every_counts_d_updates_exactly(tiny_toy, tmp_path, monkeypatch):
    from reid_aug.generator import pg2

    steps = []
    real = pg2._update

    def spy(opt, loss):
        steps.append(len(opt.param_groups[0]["params"]))
        return real(opt, loss)

    monkeypatch.setattr(pg2, "_update", spy)
    _run(tiny_toy, tmp_path, "count", "loss.d_variant=pair", "train.d_every=2", "train.g1_iters=0")
    g2_steps = 3
    # every step updates G2; D on steps 0 and 2 only
    assert len(steps) == g2_steps + 2


@pytest.mark.parametrize("override, match", [
    ("model.d_norm=layer", "model.d_norm"), ("train.d_every=0", "train.d_every"),
    ("loss.lambda_ramp=0", "lambda_ramp"), ("loss.lambda_start=-1", "lambda_start")])
def test_bad_lever_values_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(PG2Config, "pg2_market", [override])
