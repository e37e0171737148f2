"""Nearest-neighbour loss (official ``nn_loss``) and its feature extractors."""
import pytest
import torch

from reid_aug.errors import CheckpointError, WeightsMissingError
from reid_aug.generator.defgan.nn_loss import NearestNeighbourLoss, PatchFeatures, nearest_neighbour_loss
from reid_aug.generator.defgan.vgg import VGGConv12, load_vgg19_conv12


def _naive(gen, tgt, k):
    """Per-pixel loop: min over in-image neighbours of the channel-summed L1, averaged over (B, H, W)."""
    b, _, h, w = gen.shape
    r = k // 2
    total = 0.0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                best = min((gen[n, :, y, x] - tgt[n, :, y + i, x + j]).abs().sum().item()
                           for i in range(-r, r + 1) for j in range(-r, r + 1)
                           if 0 <= y + i < h and 0 <= x + j < w)
                total += best
    return total / (b * h * w)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_equals_a_naive_per_pixel_loop(k):
    torch.manual_seed(k)
    gen, tgt = torch.randn(2, 4, 7, 5, dtype=torch.float64), torch.randn(2, 4, 7, 5, dtype=torch.float64)
    assert nearest_neighbour_loss(gen, tgt, k).item() == pytest.approx(_naive(gen, tgt, k), rel=1e-12)
    s = nearest_neighbour_loss(gen, tgt, k, reduction="sum").item()
    assert s == pytest.approx(_naive(gen, tgt, k) * 2 * 7 * 5, rel=1e-12)


def test_k1_is_the_summed_l1_and_a_shifted_copy_costs_nothing_at_k3():
    torch.manual_seed(0)
    gen, tgt = torch.randn(2, 3, 9, 6), torch.randn(2, 3, 9, 6)
    torch.testing.assert_close(nearest_neighbour_loss(gen, tgt, 1, "sum"), (gen - tgt).abs().sum())
    torch.testing.assert_close(nearest_neighbour_loss(gen, tgt, 1), (gen - tgt).abs().sum(1).mean())
    shifted = torch.roll(tgt, shifts=(1, -1), dims=(2, 3))          # a 1-pixel misalignment
    per_pos = nearest_neighbour_loss(shifted, tgt, 3, "none")
    assert (per_pos[:, 1:, :-1] == 0).all()                         # interior: found at the neighbour
    assert nearest_neighbour_loss(shifted, tgt, 1) > 0


def test_gradcheck_float64():
    torch.manual_seed(1)
    gen = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    tgt = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: nearest_neighbour_loss(a, b, 3), (gen, tgt))
    assert torch.autograd.gradcheck(lambda a, b: nearest_neighbour_loss(a, b, 3, "none"), (gen, tgt))


def test_patch_features_are_the_5x5_neighbourhood():
    x = torch.randn(2, 3, 8, 6)
    f = PatchFeatures(5)(x)
    assert f.shape == (2, 75, 8, 6)
    # channel c * 25 + 5 * i + j at (y, x) holds x[c, y + i - 2, x + j - 2] (zero outside)
    torch.testing.assert_close(f[1, 2 * 25 + 5 * 1 + 3, 4, 2], x[1, 2, 3, 3])
    assert f[0, 0, 0, 0] == 0
    loss = NearestNeighbourLoss()(x.clone().requires_grad_(), x)
    assert loss.item() == 0.0


def test_vgg_conv12_loads_a_torchvision_state_dict(tmp_path):
    """A random-init torchvision vgg19 state dict, written by the test, loads and drives the loss."""
    import torchvision as tv   # an install requirement: a missing one must fail, not skip
    state = tv.models.vgg19(weights=None).state_dict()
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    net = load_vgg19_conv12(path)
    torch.testing.assert_close(net.conv1_2.weight, state["features.2.weight"])
    x = torch.rand(2, 3, 16, 8) * 2 - 1
    ref = tv.models.vgg19(weights=None)
    ref.load_state_dict(state)
    norm = ((x + 1) / 2 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(net(x), ref.features[:4](norm))
    assert not any(p.requires_grad for p in net.parameters())
    gen = x.clone().requires_grad_()
    NearestNeighbourLoss(net, k=3)(gen, torch.rand_like(x)).backward()
    assert gen.grad.abs().sum() > 0


def test_vgg_missing_or_wrong_file_is_one_clear_line(tmp_path):
    with pytest.raises(WeightsMissingError, match="--vgg-weights") as e:
        load_vgg19_conv12(tmp_path / "absent.pth")
    assert "\n" not in str(e.value)
    bad = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a torchvision vgg19") as e:
        load_vgg19_conv12(bad)
    assert "\n" not in str(e.value)
    assert isinstance(VGGConv12()(torch.zeros(1, 3, 4, 4)), torch.Tensor)
