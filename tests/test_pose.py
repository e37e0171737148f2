"""Pose heatmaps, pose masks and flips: known answers, reference implementations, invariants."""
import numpy as np
import pytest
import torch

from reid_aug.keypoints import MASK_LIMBS, MISSING
from reid_aug.keypoints.skeleton import KP
from reid_aug.pose.maps import (
    binary_closing,
    flip_images,
    flip_keypoints,
    flip_pose_maps,
    pose_heatmaps,
    pose_masks,
)

H, W = 128, 64


def _kps(**joints):
    """(18, 2) int keypoints with the named joints set, the rest missing."""
    kp = np.full((18, 2), MISSING, dtype=np.int64)
    for name, yx in joints.items():
        kp[KP[name]] = yx
    return kp


# A standing person seen from the front, every joint present.
STANDING = _kps(nose=(14, 32), neck=(26, 32), r_shoulder=(27, 22), r_elbow=(45, 19), r_wrist=(62, 18),
                l_shoulder=(27, 42), l_elbow=(45, 45), l_wrist=(62, 46), r_hip=(64, 26), r_knee=(90, 26),
                r_ankle=(116, 26), l_hip=(64, 38), l_knee=(90, 38), l_ankle=(116, 38), r_eye=(11, 29),
                l_eye=(11, 35), r_ear=(12, 25), l_ear=(12, 39))


def random_keypoints(n, seed=0, p_missing=0.2):
    rng = np.random.default_rng(seed)
    kp = np.stack([rng.integers(0, H, (n, 18)), rng.integers(0, W, (n, 18))], -1)
    kp[rng.random((n, 18)) < p_missing] = MISSING
    return kp


# ----------------------------------------------------------------------------- references
def heatmap_reference_pg2(kp, radius=4):
    """PG²'s _getSparseKeypoint + _sparse2dense, with loops, mapped to [-1, 1]."""
    out = -np.ones((18, H, W), np.float32)
    for k, (y, x) in enumerate(kp):
        if y == MISSING or x == MISSING:
            continue
        for i in range(-radius, radius + 1):
            for j in range(-radius, radius + 1):
                if np.linalg.norm([i, j]) <= radius and 0 <= y + i < H and 0 <= x + j < W:
                    out[k, y + i, x + j] = 1
    return out


def mask_reference_dense(kp, radius=4, closing=5):
    """The documented rule evaluated per pixel with numpy (+ scipy closing, border = reflect)."""
    from scipy import ndimage

    yy, xx = np.mgrid[0:H, 0:W]
    m = np.zeros((H, W), bool)
    for f, t in MASK_LIMBS:
        if (kp[f] == MISSING).any() or (kp[t] == MISSING).any():
            continue
        (ay, ax), (by, bx) = kp[f], kp[t]
        dy, dx = by - ay, bx - ax
        len2 = dy * dy + dx * dx
        if len2 == 0:
            continue
        along = (yy - ay) * dy + (xx - ax) * dx
        across = (yy - ay) * dx - (xx - ax) * dy
        m |= (along >= 0) & (along <= len2) & (across * across <= radius * radius * len2)
    for y, x in kp:
        if y != MISSING and x != MISSING:
            m |= (yy - y) ** 2 + (xx - x) ** 2 < radius * radius
    if closing:
        fp = np.ones((closing, closing), bool)
        pad = closing // 2
        big = np.pad(m, pad, mode="reflect")  # reflect: the border neither adds nor removes pixels
        m = ndimage.binary_erosion(ndimage.binary_dilation(big, fp), fp)[pad:-pad, pad:-pad]
    return m


def mask_reference_skimage(kp, radius=4):
    """Deformable GAN's produce_ma_mask (skimage polygon/disk + dilation/erosion with square(5))."""
    from skimage.draw import disk, polygon
    from skimage.morphology import dilation, erosion

    m = np.zeros((H, W), bool)
    for f, t in MASK_LIMBS:
        if (kp[f] == MISSING).any() or (kp[t] == MISSING).any():
            continue
        norm = (kp[f] - kp[t]).astype(float)
        norm = np.array([-norm[1], norm[0]])
        if np.linalg.norm(norm) == 0:
            continue  # produce_ma_mask divides by zero here; the discs cover the point
        norm = radius * norm / np.linalg.norm(norm)
        v = np.array([kp[f] + norm, kp[f] - norm, kp[t] - norm, kp[t] + norm])
        yy, xx = polygon(v[:, 0], v[:, 1], shape=(H, W))
        m[yy, xx] = True
    for y, x in kp:
        if y != MISSING and x != MISSING:
            yy, xx = disk((y, x), radius, shape=(H, W))
            m[yy, xx] = True
    fp = np.ones((5, 5), bool)
    return erosion(dilation(m, fp), fp)


# ----------------------------------------------------------------------------- heatmaps
def test_pg2_disc_radius_and_values():
    maps = pose_heatmaps(_kps(nose=(50, 30)))
    assert maps.shape == (18, H, W) and maps.dtype == torch.float32
    assert set(maps.unique().tolist()) == {-1.0, 1.0}
    on = maps[KP["nose"]] > 0
    assert int(on.sum()) == 49  # lattice points with i^2 + j^2 <= 16
    ys, xs = torch.nonzero(on, as_tuple=True)
    assert ys.min() == 46 and ys.max() == 54 and xs.min() == 26 and xs.max() == 34
    assert on[50, 34] and on[46, 30] and not on[47, 33 + 1] and not on[53, 34]
    for k in range(18):  # every other channel: a missing joint is all -1
        if k != KP["nose"]:
            assert (maps[k] == -1).all()


def test_pg2_matches_loop_reference_including_borders():
    kp = random_keypoints(6, seed=1)
    kp[0, 0] = (0, 0)
    kp[0, 1] = (127, 63)
    kp[0, 2] = (3, 62)
    maps = pose_heatmaps(kp).numpy()
    for i in range(len(kp)):
        np.testing.assert_array_equal(maps[i], heatmap_reference_pg2(kp[i]))
    assert int((maps[0, 0] > 0).sum()) == 17  # a quarter disc at the corner


def test_gaussian_peak_and_range():
    maps = pose_heatmaps(_kps(neck=(40, 20)), mode="gaussian")
    ch = maps[KP["neck"]]
    assert float(ch.max()) == pytest.approx(1.0) and tuple(np.unravel_index(int(ch.argmax()), ch.shape)) == (40, 20)
    assert float(ch[40, 26]) == pytest.approx(np.exp(-0.5), rel=1e-5)  # one sigma (6 px) away
    assert float(ch[46, 26]) == pytest.approx(np.exp(-1.0), rel=1e-5)
    assert float(ch.min()) >= 0.0
    assert float(maps[KP["nose"]].abs().max()) == 0.0  # missing joint -> all 0
    yy, xx = np.mgrid[0:H, 0:W]
    np.testing.assert_allclose(ch.numpy(), np.exp(-((yy - 40) ** 2 + (xx - 20) ** 2) / 72.0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mode", ["pg2", "gaussian"])
def test_heatmaps_batched_equals_per_item(mode):
    kp = random_keypoints(8, seed=2)
    batch = pose_heatmaps(torch.from_numpy(kp), mode=mode)
    assert batch.shape == (8, 18, H, W)
    for i in range(8):
        assert torch.equal(batch[i], pose_heatmaps(kp[i], mode=mode))
    nested = pose_heatmaps(kp.reshape(2, 4, 18, 2), mode=mode)
    assert torch.equal(nested.reshape(8, 18, H, W), batch)


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        pose_heatmaps(np.zeros((17, 2)))
    with pytest.raises(ValueError, match="mode"):
        pose_heatmaps(STANDING, mode="blobs")


# ----------------------------------------------------------------------------- masks
def test_mask_of_a_known_skeleton_is_one_body_region():
    from scipy import ndimage

    mask = pose_masks(STANDING)
    assert mask.shape == (1, H, W) and set(mask.unique().tolist()) == {0.0, 1.0}
    m = mask[0].numpy().astype(bool)
    labels, n = ndimage.label(m)
    assert n == 1  # one connected body
    assert all(m[y, x] for y, x in STANDING)
    # torso filled (between shoulders and hips), background empty, extent = joints +- radius (+ closing)
    assert m[27:65, 22:43].all()
    assert not m[:5].any() and not m[123:].any() and not m[:, :11].any() and not m[:, 54:].any()
    # the legs (x = 26 and 38, half-width 4) leave a 3-pixel gap that the 5x5 closing fills
    assert not pose_masks(STANDING, closing=0)[0, 100:116, 31:34].any() and m[100:116, 31:34].all()
    np.testing.assert_array_equal(m, mask_reference_dense(STANDING))
    np.testing.assert_array_equal(m, mask_reference_skimage(STANDING))


def test_single_horizontal_limb_exact_pixels():
    kp = _kps(r_hip=(20, 10), l_hip=(20, 30))  # limb (8, 11) only
    raw = pose_masks(kp, closing=0)[0].numpy().astype(bool)
    # closed rectangle rows 16..24 x cols 10..30, open discs of radius 4 at both ends
    assert raw.sum() == 9 * 21 + 2 * (2 * 2 + 5 * 3)
    assert raw[16, 10:31].all() and not raw[16, 9] and not raw[15].any()
    assert raw[20, 7:34].all() and not raw[20, 6] and not raw[20, 34]
    np.testing.assert_array_equal(pose_masks(kp)[0].numpy().astype(bool), mask_reference_skimage(kp))


def test_closing_fills_a_one_pixel_gap():
    # two arms on one line, no limb between them: the discs leave exactly column 29 empty
    kp = _kps(r_shoulder=(20, 5), r_elbow=(20, 25), l_elbow=(20, 33), l_shoulder=(20, 58))
    raw = pose_masks(kp, closing=0)[0]
    closed = pose_masks(kp)[0]
    assert raw[20, 28] == 1 and raw[20, 30] == 1 and raw[:, 29].sum() == 0
    assert closed[20, 29] == 1 and closed[17:24, 29].all()
    assert (closed >= raw).all()  # closing only adds pixels


def test_closing_keeps_limbs_that_touch_the_border():
    kp = _kps(r_knee=(90, 0), r_ankle=(127, 0))
    m = pose_masks(kp)[0].bool()
    assert m[90:128, 0].all() and m[127, :4].all()  # not eaten by an implicit zero border
    np.testing.assert_array_equal(m.numpy(), mask_reference_dense(kp))
    np.testing.assert_array_equal(m.numpy(), mask_reference_skimage(kp))
    x = torch.zeros(1, 1, 9, 9, dtype=torch.bool)
    x[..., :, 0] = True
    assert torch.equal(binary_closing(x), x) and torch.equal(binary_closing(x.float()), x.float())


def test_missing_joints_drop_their_limbs():
    empty = pose_masks(np.full((18, 2), MISSING))
    assert empty.sum() == 0
    lone = pose_masks(_kps(nose=(50, 30)), closing=0)[0]
    assert int(lone.sum()) == 45  # open disc: i^2 + j^2 < 16
    coincident = _kps(r_hip=(60, 30), l_hip=(60, 30))  # a zero-length limb is just the disc
    assert torch.equal(pose_masks(coincident), pose_masks(_kps(r_hip=(60, 30))))


def test_masks_match_dense_definition_on_random_skeletons():
    kp = random_keypoints(40, seed=3, p_missing=0.3)
    fast = pose_masks(kp).numpy().astype(bool)[:, 0]
    for i in range(len(kp)):
        np.testing.assert_array_equal(fast[i], mask_reference_dense(kp[i]), err_msg=f"skeleton {i}")


def test_masks_batched_equals_per_item():
    kp = random_keypoints(6, seed=4)
    batch = pose_masks(torch.from_numpy(kp))
    assert batch.shape == (6, 1, H, W)
    for i in range(6):
        assert torch.equal(batch[i], pose_masks(kp[i]))


@pytest.mark.market
def test_masks_agree_with_deformable_gan_reference_on_real_annotations(market_root):
    from reid_aug.keypoints.annotations import read_annotations

    kps = read_annotations(market_root / "annotations" / "market-annotation-train.csv")
    names = sorted(kps)[::130]  # ~100 real skeletons
    kp = np.stack([kps[n] for n in names]).astype(np.int64)
    ours = pose_masks(kp).numpy().astype(bool)[:, 0]
    ref = np.stack([mask_reference_skimage(k) for k in kp])
    diff = ours != ref
    pixel_agreement = 1 - diff.mean()
    identical = (diff.sum((1, 2)) == 0).mean()
    print(f"\nmask vs produce_ma_mask on {len(kp)} real skeletons: pixel agreement {pixel_agreement:.6f}, "
          f"identical masks {identical:.3f}, worst {int(diff.sum((1, 2)).max())} px of "
          f"{int(ref.sum((1, 2)).mean())} mean area")
    # the only differences are pixels exactly on a rectangle edge, where skimage's float test rounds
    assert pixel_agreement > 0.9999 and identical > 0.85 and diff.sum((1, 2)).max() <= 20


# ----------------------------------------------------------------------------- flips
def test_flip_keypoints_swaps_left_and_right():
    kp = _kps(r_shoulder=(27, 22), l_shoulder=(27, 42), nose=(14, 30), r_ear=(12, 25))
    f = flip_keypoints(kp, W)
    assert f[KP["l_shoulder"]].tolist() == [27, 63 - 22] and f[KP["r_shoulder"]].tolist() == [27, 63 - 42]
    assert f[KP["nose"]].tolist() == [14, 33]
    assert f[KP["l_ear"]].tolist() == [12, 38] and f[KP["r_ear"]].tolist() == [MISSING, MISSING]
    assert (f[KP["l_wrist"]] == MISSING).all()  # missing stays missing, not 64


def test_double_flip_is_identity_numpy_and_torch():
    kp = random_keypoints(10, seed=5)
    assert np.array_equal(flip_keypoints(flip_keypoints(kp, W), W), kp)
    t = torch.from_numpy(kp)
    ft = flip_keypoints(t, W)
    assert isinstance(ft, torch.Tensor) and torch.equal(ft, torch.from_numpy(flip_keypoints(kp, W)))
    assert torch.equal(flip_keypoints(ft, W), t)
    img = torch.randn(2, 3, H, W)
    assert torch.equal(flip_images(flip_images(img)), img)
    assert torch.equal(flip_images(img)[..., 0], img[..., W - 1])


@pytest.mark.parametrize("mode", ["pg2", "gaussian"])
def test_flipped_maps_equal_maps_of_flipped_keypoints(mode):
    kp = random_keypoints(5, seed=6)
    maps = pose_heatmaps(kp, mode=mode)
    flipped = pose_heatmaps(flip_keypoints(kp, W), mode=mode)
    assert torch.equal(flip_pose_maps(maps), flipped)
    # the right-shoulder channel of the flipped pose is the mirrored left-shoulder channel
    assert torch.equal(flipped[:, KP["r_shoulder"]], flip_images(maps[:, KP["l_shoulder"]]))
    assert torch.equal(flip_images(pose_masks(kp)), pose_masks(flip_keypoints(kp, W)))


def test_pose_picture_colours_each_present_joint_only():
    from reid_aug.pose.maps import pose_maps_to_rgb

    kps = torch.full((1, 18, 2), -1, dtype=torch.long)
    kps[0, 0] = torch.tensor([20, 10])
    kps[0, 9] = torch.tensor([100, 40])
    pic = pose_maps_to_rgb(pose_heatmaps(kps, mode="pg2"), "pg2")
    assert pic.shape == (1, 3, 128, 64)
    assert float(pic.min()) == 0.0 and float(pic.max()) == 1.0
    on = pic[0].amax(0) > 0
    assert on[20, 10] and on[100, 40] and not on[60, 32]
    # Different joints get different colours.
    assert not torch.equal(pic[0, :, 20, 10], pic[0, :, 100, 40])
