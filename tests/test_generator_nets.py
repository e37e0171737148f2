"""PG² networks, losses and config: shapes, the G2 = G1 + diff identity, known loss values."""
import math

import pytest
import torch
from torch import nn

from reid_aug.config import ConfigError, from_dict, load_config
from reid_aug.generator.config import PG2Config
from reid_aug.generator.discriminator import Discriminator
from reid_aug.generator.g1 import G1, num_levels
from reid_aug.generator.g2 import G2
from reid_aug.generator.pg2 import compose
from reid_aug.generator.losses import discriminator_loss, l1_terms, pose_mask_l1, recon_loss


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("size,levels,code_hw", [((128, 64), 5, (8, 4)), ((256, 256), 6, (8, 8))])
def test_paper_width_shapes_on_meta(size, levels, code_hw):
    """Paper widths (n = 128) at both resolutions: the forward pass on the meta device gives the
    shapes without the FLOPs (hundreds of GFLOP at 256x256)."""
    with torch.device("meta"):
        g1, g2, d = G1(size, width=128), G2(size, width=128), Discriminator(size, width=64)
        src, pose = torch.empty(2, 3, *size), torch.empty(2, 18, *size)
        out1 = g1(src, pose)
        diff = g2(out1, src)
        logits = d(out1)
    assert num_levels(size[0]) == levels == g1.levels
    assert out1.shape == diff.shape == (2, 3, *size)
    assert logits.shape == (2,)
    # Encoder widths n*k (128, 256, 384, 512, 640[, 768]), one residual block per level.
    assert [b.conv1.in_channels for b in g1.enc_blocks] == [128 * k for k in range(1, levels + 1)]
    h, w = code_hw
    assert g1.min_hw == code_hw
    assert (g1.fc_in.in_features, g1.fc_in.out_features) == (h * w * 128 * levels, 64)
    assert (g1.fc_out.in_features, g1.fc_out.out_features) == (64, h * w * 128)
    # G2: N - 2 levels of two conv3x3 at 128, 256, 384 (..) channels.
    assert g2.levels == levels - 2
    assert [blk[0].out_channels for blk in g2.enc] == [128 * k for k in range(1, levels - 1)]
    # D: conv5x5 stride 2 at 64, 128, 256, 512, BatchNorm from the second.
    convs = _convs(d)
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (64, (5, 5), (2, 2)), (128, (5, 5), (2, 2)), (256, (5, 5), (2, 2)), (512, (5, 5), (2, 2))]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 3
    assert d.fc.in_features == 512 * (size[0] // 16) * (size[1] // 16)


@pytest.mark.parametrize("size,width", [((128, 64), 16), ((256, 256), 4)])
def test_real_forward_shapes_and_no_normalisation(size, width):
    torch.manual_seed(0)
    g1, g2 = G1(size, width=width), G2(size, width=width)
    src, pose = torch.rand(2, 3, *size) * 2 - 1, torch.rand(2, 18, *size) * 2 - 1
    out = g1(src, pose)
    assert out.shape == (2, 3, *size) and torch.isfinite(out).all()
    assert g2(out, src).shape == (2, 3, *size)
    norms = (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm, nn.LayerNorm, nn.Dropout)
    assert not any(isinstance(m, norms) for m in list(g1.modules()) + list(g2.modules()))
    # The output layer is linear (no tanh): a zero kernel with bias 3 gives exactly 3.
    with torch.no_grad():
        g1.out.weight.zero_()
        g1.out.bias.fill_(3.0)
    assert torch.equal(g1(src, pose), torch.full((2, 3, *size), 3.0))


def test_g1_output_depends_on_pose_and_source():
    torch.manual_seed(0)
    g1 = G1((128, 64), width=8)
    src, pose = torch.rand(1, 3, 128, 64), torch.rand(1, 18, 128, 64)
    base = g1(src, pose)
    assert not torch.allclose(base, g1(src, pose.flip(-1)))
    assert not torch.allclose(base, g1(src.flip(-1), pose))


def test_g2_output_is_g1_plus_difference_map():
    torch.manual_seed(1)
    g1, g2 = G1((128, 64), width=8), G2((128, 64), width=8)
    src, pose = torch.rand(3, 3, 128, 64) * 2 - 1, torch.rand(3, 18, 128, 64) * 2 - 1
    g1_img, g2_img = compose(g1, g2, src, pose)
    diff = g2(g1_img, src)
    torch.testing.assert_close(g1_img, g1(src, pose), rtol=0, atol=0)
    torch.testing.assert_close(g2_img, g1_img + diff, rtol=0, atol=0)
    assert diff.abs().max() > 0
    assert compose(g1, None, src, pose)[1] is None


def test_g2_skips_follow_the_official_code():
    """Levels >= 2 keep skips; the first decoder step sees concat(bottom, bottom)."""
    g2 = G2((128, 64), width=128)
    assert [blk[0].in_channels for blk in g2.dec] == [2 * 384, 128 + 256, 128]
    assert all(blk[0].out_channels == 128 for blk in g2.dec)


def test_discriminator_init_and_output():
    torch.manual_seed(0)
    d = Discriminator((128, 64), width=64)
    w = torch.cat([m.weight.flatten() for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear))])
    assert abs(w.std().item() - 0.02) < 0.002 and abs(w.mean().item()) < 0.001
    logits = d(torch.rand(4, 3, 128, 64) * 2 - 1)
    assert logits.shape == (4,)
    with pytest.raises(ValueError, match="multiples of 16"):
        Discriminator((100, 64))


def test_pose_mask_loss_matches_hand_computation():
    pred = torch.tensor([[[[0.5, -1.0], [0.0, 1.0]]] * 3])           # (1, 3, 2, 2)
    pred[0, 1] += 0.25
    target = torch.zeros(1, 3, 2, 2)
    target[0, 2] = 1.0
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])                 # (1, 1, 2, 2)
    # |pred - target| per channel:
    # c0: [.5, 1, 0, 1]   c1: [.75, .75, .25, 1.25]   c2: [.5, 2, 1, 0]
    err = [0.5, 1, 0, 1, 0.75, 0.75, 0.25, 1.25, 0.5, 2, 1, 0]
    masked = [0.5, 0, 0, 1, 0.75, 0, 0, 1.25, 0.5, 0, 0, 0]
    l1, mask_l1 = l1_terms(pred, target, mask)
    assert l1.item() == pytest.approx(sum(err) / 12)
    assert mask_l1.item() == pytest.approx(sum(masked) / 12)
    assert pose_mask_l1(pred, target, mask).item() == pytest.approx((sum(err) + sum(masked)) / 12)
    loss, terms = recon_loss("l1", pred, target, mask)
    assert loss.item() == pytest.approx(sum(err) / 12)
    assert terms["posemask_l1"].item() == pytest.approx((sum(err) + sum(masked)) / 12)
    # An all-zero mask reduces the pose-mask L1 to the plain L1; an all-one mask doubles it.
    assert pose_mask_l1(pred, target, torch.zeros_like(mask)).item() == pytest.approx(sum(err) / 12)
    assert pose_mask_l1(pred, target, torch.ones_like(mask)).item() == pytest.approx(2 * sum(err) / 12)
    with pytest.raises(ValueError, match="unknown reconstruction loss"):
        recon_loss("l2", pred, target, mask)


def test_discriminator_loss_variants():
    def bce(x, y):
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    real, fake, cond = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0]), torch.tensor([1.0, 0.0])
    r = (bce(2.0, 1) + bce(-1.0, 1)) / 2
    f = (bce(0.5, 0) + bce(-3.0, 0)) / 2
    c = (bce(1.0, 0) + bce(0.0, 0)) / 2
    for variant in ("pair", "unconditional"):        # the same BCE; they differ in what D is shown
        loss, terms = discriminator_loss(real, fake, variant=variant)
        assert loss.item() == pytest.approx(r + f, rel=1e-5)
    loss, terms = discriminator_loss(real, fake, cond, variant="official")
    assert loss.item() == pytest.approx(0.5 * r + 0.25 * c + 0.25 * f, rel=1e-5)
    assert terms["d_cond"].item() == pytest.approx(c, rel=1e-5)
    with pytest.raises(ValueError, match="condition image"):
        discriminator_loss(real, fake, variant="official")


def test_recipes_resolve_to_the_paper_settings():
    paper = load_config(PG2Config, "pg2_market")
    assert paper.model.g1_width == 128 and paper.model.bottleneck == 64 and paper.model.image_size == (128, 64)
    assert (paper.train.g1_iters, paper.train.g2_iters, paper.train.batch_size) == (22000, 14000, 16)
    assert paper.train.lr == 2e-5 and paper.train.betas == (0.5, 0.999) and paper.loss.lambda_l1 == 10.0
    assert paper.train.stages == ("g1", "g2") and paper.train.flip
    rows = {name: load_config(PG2Config, name) for name in
            ("pg2_ablation_g1_l1", "pg2_ablation_g1_posemask", "pg2_ablation_g1_d", "pg2_ablation_g1_g2_d")}
    assert rows["pg2_ablation_g1_l1"].train.stages == ("g1",) and rows["pg2_ablation_g1_l1"].loss.g1 == "l1"
    assert rows["pg2_ablation_g1_posemask"].train.stages == ("g1",)
    assert rows["pg2_ablation_g1_posemask"].loss.g1 == "posemask"
    assert rows["pg2_ablation_g1_d"].train.stages == ("g1+d",)
    assert rows["pg2_ablation_g1_g2_d"] == paper
    for name in ("pg2_market_cpu", "pg2_toy"):
        small = load_config(PG2Config, name)
        assert small.model.g1_width < paper.model.g1_width and small.train.stages == ("g1", "g2")


@pytest.mark.parametrize("override,match", [
    (["train.stages=[g2]"], "needs a G1 stage"),
    (["train.stages=[g1, g3]"], "unknown stage"),
    (["model.image_size=[136, 64]"], "not divisible"),
    (["loss.d_variant=wgan"], "d_variant"),
    (["model.pose_mode=sparse"], "pose_mode"),
    (["train.log_every=0"], "log_every"),
])
def test_bad_configs_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(PG2Config, "pg2_market", override)
    with pytest.raises(ConfigError, match="unknown key"):
        from_dict(PG2Config, {"train": {"iterations": 5}})
