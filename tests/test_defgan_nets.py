"""Deformable GAN generator and discriminator: shapes, official layer semantics, skips."""
import pytest
import torch

from reid_aug.generator.defgan import (DeformableGenerator, PatchDiscriminator, deformation,
                                       level_widths)
from reid_aug.generator.defgan.layers import SampleNorm
from reid_aug.pose.maps import pose_heatmaps

KP = torch.tensor([[10, 32], [20, 32], [22, 24], [35, 22], [48, 21], [22, 40], [35, 42], [48, 43],
                   [60, 26], [80, 27], [100, 27], [60, 38], [80, 37], [100, 37],
                   [8, 30], [8, 34], [9, 27], [9, 37]])


def _inputs(b=2, size=(128, 64)):
    torch.manual_seed(0)
    src = KP.expand(b, 18, 2).clone()
    tgt = src.clone()
    tgt[:, :, 1] = (tgt[:, :, 1] + 4).clamp(max=size[1] - 1)          # target shifted right by 4 px
    h_a = pose_heatmaps(src, size, mode="gaussian", sigma=6)
    h_b = pose_heatmaps(tgt, size, mode="gaussian", sigma=6)
    return torch.rand(b, 3, *size) * 2 - 1, h_a, h_b, deformation(src, tgt, size)


def test_widths_follow_the_official_rule():
    assert level_widths((128, 64)) == ((64, 128, 256, 512, 512, 512), (512, 512, 512, 256, 128, 3))
    assert level_widths((256, 256)) == ((64, 128, 256, 512, 512, 512, 512), (512, 512, 512, 512, 256, 128, 3))
    assert level_widths((64, 32), width=16) == ((16, 32, 64, 128, 128), (128, 128, 64, 32, 3))
    with pytest.raises(ValueError):
        level_widths((100, 50))


def test_sample_norm_is_keras_contrib_instance_norm_axis_none():
    x = torch.randn(3, 4, 5, 6) * 3 + 1
    y = SampleNorm()(x)
    flat = x.flatten(1)
    ref = (flat - flat.mean(1, keepdim=True)) / (flat.std(1, unbiased=False, keepdim=True) + 1e-3)
    torch.testing.assert_close(y.flatten(1), ref)
    assert sum(p.numel() for p in SampleNorm().parameters()) == 2


def test_generator_shapes_range_dropout_and_discriminator_patches():
    x_a, h_a, h_b, d = _inputs()
    g = DeformableGenerator()
    y = g(x_a, h_a, h_b, d.theta, d.masks)
    assert y.shape == (2, 3, 128, 64) and y.abs().max() <= 1
    g.eval()
    with torch.no_grad():                          # dropout off in eval (official use_dropout_test = 0)
        torch.testing.assert_close(g(x_a, h_a, h_b, d.theta, d.masks), g(x_a, h_a, h_b, d.theta, d.masks))
    g.train()
    with torch.no_grad():                          # the noise z: dropout 0.5 in the first 3 up-blocks
        assert not torch.equal(g(x_a, h_a, h_b, d.theta, d.masks), g(x_a, h_a, h_b, d.theta, d.masks))
    assert [isinstance(u[-1], torch.nn.Dropout) for u in g.decoder.ups] == [True, True, True, False, False]
    disc = PatchDiscriminator()
    assert disc(x_a, h_a, y, h_b).shape == (2, 3)   # 63x31 -> 31x15 -> 15x7 -> 7x3 -> 3x1
    with pytest.raises(ValueError, match="theta"):
        g(x_a, h_a, h_b)


def test_skips_depend_on_the_deformation_only_on_the_first_four_levels():
    """Changing the part transforms changes the output (deformable skips in use); the warped levels
    are the 4 finest (official ``i < 4``): a generator with warped_levels=0 ignores the transforms."""
    x_a, h_a, h_b, d = _inputs()
    g = DeformableGenerator().eval()
    shifted = d.theta.clone()
    shifted[..., 0, 2] += 0.25
    with torch.no_grad():
        assert not torch.allclose(g(x_a, h_a, h_b, d.theta, d.masks), g(x_a, h_a, h_b, shifted, d.masks))
        g.warped_levels = 0
        torch.testing.assert_close(g(x_a, h_a, h_b, d.theta, d.masks), g(x_a, h_a, h_b, shifted, d.masks))


def test_baseline_and_background_variants_run_and_backpropagate():
    x_a, h_a, h_b, d = _inputs()
    base = DeformableGenerator(warp_skip="none", width=16)
    assert base(x_a, h_a, h_b).shape == (2, 3, 128, 64)
    g = DeformableGenerator(use_bg=True, width=16)
    disc = PatchDiscriminator(use_bg=True, width=16)
    bg = torch.rand(2, 3, 128, 64)
    y = g(x_a, h_a, h_b, d.theta, d.masks, bg=bg)
    disc(x_a, h_a, y, h_b, bg=bg).mean().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert g.target_encoder.stem.in_channels == 18 + 3       # background joins the target stream
    with pytest.raises(ValueError, match="bg"):
        g(x_a, h_a, h_b, d.theta, d.masks)
