"""Deformable skip connections: warp per part, mask, max (official AffineTransformLayer(10, 'max'))."""
import pytest
import torch

from reid_aug.generator.defgan.affine import NUM_PARTS, pixel_to_theta
from reid_aug.generator.defgan.warp import deform_skip

EYE = torch.tensor([[1.0, 0, 0], [0, 1, 0]])


def _identity(b=2):
    return EYE.expand(b, NUM_PARTS, 2, 3).clone()


def _translation(dx, dy, size=(128, 64)):
    """theta of a full-resolution shift by (dx, dy) pixels: target pixel p samples source p - (dx, dy)."""
    t = torch.tensor([[1.0, 0, -dx], [0, 1, -dy], [0, 0, 1]], dtype=torch.float64)
    return pixel_to_theta(t, size).float()


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("hw", [(128, 64), (32, 16), (16, 8)])
def test_identity_transforms_return_the_features(mode, hw):
    """All-ones masks: exact identity, signed features included; official masks (torso = the whole
    image, limbs partial) with non-negative features: identity too."""
    feat = torch.randn(2, 5, *hw)
    ones = torch.ones(2, NUM_PARTS, 128, 64)
    torch.testing.assert_close(deform_skip(feat, _identity(), ones, mode), feat, atol=1e-4, rtol=0)
    masks = torch.zeros(2, NUM_PARTS, 128, 64)
    masks[:, 0] = 1
    masks[:, 3, 40:90, 10:30] = 1
    pos = feat.abs()
    torch.testing.assert_close(deform_skip(pos, _identity(), masks, mode), pos, atol=1e-4, rtol=0)
    # official behaviour with signed features: where a part's mask is 0 its zeros enter the max
    torch.testing.assert_close(deform_skip(feat, _identity(), masks, mode), feat.clamp_min(0), atol=1e-4, rtol=0)


def test_missing_part_contributes_nothing():
    """A part with a zero mask (what :func:`deformation` gives an invalid part) changes nothing,
    however far its transform would move a large feature; with its mask it would."""
    feat = torch.zeros(1, 1, 128, 64)
    feat[0, 0, 20, 10] = 100.0
    theta = _identity(1)
    theta[0, 5] = _translation(30, 50)
    masks = torch.zeros(1, NUM_PARTS, 128, 64)
    masks[:, 0] = 1
    masks[0, 5] = 1
    with_part = deform_skip(feat, theta, masks)
    assert with_part[0, 0, 70, 40] == 100.0
    masks[0, 5] = 0
    without = deform_skip(feat, theta, masks)
    torch.testing.assert_close(without, feat)
    theta[0, 5] = EYE                                     # invalid parts get the identity in deformation()
    torch.testing.assert_close(deform_skip(feat, theta, masks), without)


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_known_translation_moves_features_by_the_right_pixels(mode, stride):
    """A full-resolution shift by (dx, dy) = (8, 24) px moves a feature of a 1/stride map by
    (8 / stride, 24 / stride) of its pixels, along the right axes (H != W)."""
    h, w = 128 // stride, 64 // stride
    feat = torch.zeros(1, 3, h, w)
    feat[0, :, 2, 1] = torch.tensor([1.0, 2.0, 3.0])
    theta = _identity(1)
    theta[0, 0] = _translation(8, 24)
    masks = torch.zeros(1, NUM_PARTS, 128, 64)
    masks[:, 0] = 1
    out = deform_skip(feat, theta, masks, mode)
    expect = torch.zeros_like(feat)
    expect[0, :, 2 + 24 // stride, 1 + 8 // stride] = torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(out, expect, atol=1e-5, rtol=0)


def test_masks_are_resized_by_nearest_and_gradients_reach_the_features():
    feat = torch.randn(1, 4, 16, 8, requires_grad=True)
    masks = torch.zeros(1, NUM_PARTS, 128, 64)
    masks[:, 0, :64] = 1                                 # top half only: torso mask made partial
    out = deform_skip(feat, _identity(1), masks)
    assert (out[0, :, 8:] == 0).all()
    torch.testing.assert_close(out[0, :, :8], feat[0, :, :8].clamp_min(0))
    out.sum().backward()
    assert feat.grad[0, :, :8].abs().sum() > 0 and (feat.grad[0, :, 8:] == 0).all()
