"""Deformable GAN part transforms and masks against a line-by-line port of the official code
(``pose_transform.affine_transforms`` / ``pose_masks``, numpy + scikit-image)."""
import numpy as np
import pytest
import torch

from reid_aug.generator.defgan.affine import (NUM_PARTS, deformation, estimate_affine, part_masks,
                                              part_transforms, pixel_to_theta)
from reid_aug.keypoints.annotations import read_annotations
from reid_aug.pairs.pairs import read_pairs_csv

import skimage.measure as skm    # the test extra: a missing one must fail, not skip  # noqa: E402
import skimage.transform as skt  # noqa: E402

# ---- port of the official pose_transform.py (official names: LABELS order, (x, y) points) ----
LABELS = ['nose', 'neck', 'Rsho', 'Relb', 'Rwri', 'Lsho', 'Lelb', 'Lwri',
          'Rhip', 'Rkne', 'Rank', 'Lhip', 'Lkne', 'Lank', 'Leye', 'Reye', 'Lear', 'Rear']
TORSO = ['Rhip', 'Lhip', 'Lsho', 'Rsho']
FACE = ['Leye', 'Reye', 'Lear', 'Rear', 'nose']
LIMBS = [('Rhip', 'Rkne', 0.1, 0.1), ('Lhip', 'Lkne', 0.1, 0.1), ('Rkne', 'Rank', 0.3, 0.5),
         ('Lkne', 'Lank', 0.3, 0.5), ('Rsho', 'Relb', 0.1, 0.1), ('Lsho', 'Lelb', 0.1, 0.1),
         ('Relb', 'Rwri', 0.3, 0.5), ('Lelb', 'Lwri', 0.3, 0.5)]   # (from, to, inc_to transform, inc_to mask)


def _named(arr):
    return {n: arr[i][::-1].astype(float) for i, n in enumerate(LABELS) if arr[i][0] != -1 and arr[i][1] != -1}


def _st(kp):
    return np.sqrt((np.sum((kp['Rhip'] - kp['Rsho']) ** 2) + np.sum((kp['Lhip'] - kp['Lsho']) ** 2)) / 2.0)


def _polygon(fr, to, st, inc_to):
    fr = fr + (fr - to) * 0.1
    to = to + (to - fr) * inc_to
    nv = fr - to
    nv = np.array([-nv[1], nv[0]])
    if np.linalg.norm(nv) == 0:
        return None                 # official: a degenerate 2-pixel polygon; ours: the part is empty
    nv = nv / np.linalg.norm(nv)
    return np.array([fr + st * 0.2 * nv, fr - st * 0.2 * nv, to - st * 0.2 * nv, to + st * 0.2 * nv])


def _fit(src, dst):
    tr = skt.estimate_transform('affine', src=src, dst=dst)
    m = tr.params if tr else None
    ok = m is not None and np.all(np.isfinite(m)) and abs(np.linalg.det(m)) > 1e-12   # official np.linalg.inv check
    return m if ok else None


def _limb(kp1, kp2, st1, st2, fr, to, inc):
    if fr not in kp2 or to not in kp2:
        return None
    p2 = _polygon(kp2[fr], kp2[to], st2, inc)
    if not (fr in kp1 and to in kp1 and _polygon(kp1[fr], kp1[to], st1, inc) is not None):
        swap = ('R', 'L') if fr[0] == 'R' else ('L', 'R')            # borrow the mirrored limb
        fr, to = fr.replace(*swap), to.replace(*swap)
        if not (fr in kp1 and to in kp1):
            return None
    p1 = _polygon(kp1[fr], kp1[to], st1, inc)
    return None if p1 is None or p2 is None else _fit(p2, p1)


def official_transforms(arr1, arr2):
    """10 matrices (or None = no_point_tr) mapping target (arr2) points to source (arr1) points."""
    kp1, kp2 = _named(arr1), _named(arr2)
    # The official code raises KeyError without the four torso joints (it trains on check_valid
    # images only); here such a pair keeps the parts that do not need them.
    torso = all(n in kp1 and n in kp2 for n in TORSO)
    out = [_fit(np.array([kp2[n] for n in TORSO]), np.array([kp1[n] for n in TORSO])) if torso else None]
    head = [n for n in FACE if n in kp1 and n in kp2]
    head = head + ['Lsho', 'Rsho'] if head and all(n in kp1 and n in kp2 for n in ['Lsho', 'Rsho']) else []
    out.append(_fit(np.array([kp2[n] for n in head]), np.array([kp1[n] for n in head])) if head else None)
    return out + [_limb(kp1, kp2, _st(kp1), _st(kp2), fr, to, inc) if torso else None for fr, to, inc, _ in LIMBS]


def official_masks(arr2, size=(128, 64)):
    kp2 = _named(arr2)
    st2 = _st(kp2)
    masks = [np.ones(size), np.zeros(size)]
    face = [kp2[n] for n in FACE if n in kp2]
    if face:
        c = np.mean(np.array(face), axis=0).astype(int)
        lo, hi = np.maximum(c - int(0.40 * st2), 0), np.minimum(c + int(0.40 * st2), np.array(size)[::-1])
        masks[1][lo[1]:hi[1], lo[0]:hi[0]] = 1
    for fr, to, _, inc in LIMBS:
        poly = _polygon(kp2[fr], kp2[to], st2, inc) if fr in kp2 and to in kp2 else None
        masks.append(np.zeros(size) if poly is None else skm.grid_points_in_poly(size, poly[:, ::-1]))
    return np.array(masks, dtype=float), kp2, st2
# ---- end of the port ----


@pytest.fixture(scope="module")
def market_pairs(market_root):
    """(source, target) keypoint arrays: 300 official test pairs + 300 random pairs (missing joints)."""
    ann = market_root / "annotations"
    kps = read_annotations(ann / "market-annotation-test.csv")
    kps.update(read_annotations(ann / "market-annotation-train.csv"))
    pairs = read_pairs_csv(ann / "market-pairs-test.csv").iloc[:300]
    src = [kps[n] for n in pairs["from"]]
    tgt = [kps[n] for n in pairs["to"]]
    allk = np.stack(list(kps.values()))
    rng = np.random.default_rng(0)
    src += list(allk[rng.choice(len(allk), 300)])
    tgt += list(allk[rng.choice(len(allk), 300)])
    return np.stack(src).astype(np.int64), np.stack(tgt).astype(np.int64)


def test_transforms_equal_official_skimage_on_real_market(market_pairs):
    src, tgt = market_pairs
    t, valid = part_transforms(torch.from_numpy(src), torch.from_numpy(tgt))
    n_valid = np.zeros(NUM_PARTS, int)
    for b in range(len(src)):
        for p, ref in enumerate(official_transforms(src[b], tgt[b])):
            assert valid[b, p].item() == (ref is not None), (b, p)
            if ref is not None:
                np.testing.assert_allclose(t[b, p].numpy(), ref, atol=1e-5, rtol=0)
                n_valid[p] += 1
    assert (n_valid > 100).all(), n_valid          # every part is exercised, including the mirrored limbs
    assert not valid.all()                         # ... and so are missing parts


def test_mirrored_limb_is_borrowed():
    """A source without its right knee uses its left upper leg for the target's right upper leg."""
    kp = torch.tensor([[10, 32], [20, 32], [22, 24], [35, 22], [48, 21], [22, 40], [35, 42], [48, 43],
                       [60, 26], [80, 27], [100, 27], [60, 38], [80, 37], [100, 37],
                       [8, 30], [8, 34], [9, 27], [9, 37]])
    src = kp.clone()
    src[9] = -1                                    # source right knee missing
    t, valid = part_transforms(src[None], kp[None])
    assert valid[0, 2] and not valid.logical_not().any()
    # the target's right thigh maps onto the source's left thigh: Rhip(target) -> about Lhip(source)
    rhip = torch.tensor([26.0, 60.0, 1.0], dtype=torch.float64)
    mapped = t[0, 2] @ rhip
    assert abs(mapped[0] - 38) < 1.5 and abs(mapped[1] - 60) < 6
    src[12] = -1                                   # and without the left knee too: nothing to borrow
    _, valid = part_transforms(src[None], kp[None])
    assert not valid[0, 2] and not valid[0, 3] and valid[0, 0]


def test_estimate_affine_equals_skimage_on_noisy_points():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (64, 7, 2))
    dst = src @ rng.normal(0, 1, (64, 2, 2)) + rng.normal(0, 20, (64, 1, 2)) + rng.normal(0, 3, (64, 7, 2))
    n = rng.integers(3, 8, 64)
    w = (np.arange(7)[None] < n[:, None]).astype(float)
    t, ok = estimate_affine(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(w))
    assert ok.all()
    for b in range(64):
        ref = skt.estimate_transform('affine', src[b, :n[b]], dst[b, :n[b]]).params
        np.testing.assert_allclose(t[b].numpy(), ref, atol=1e-8, rtol=1e-8)
    w[:, 2:] = 0                                   # two points: under-determined -> invalid
    assert not estimate_affine(torch.from_numpy(src), torch.from_numpy(dst), torch.from_numpy(w))[1].any()


def test_masks_equal_official_on_real_market(market_pairs):
    """Equal to ``pose_masks`` except for grid points lying exactly on a limb rectangle's edge (integer
    keypoints put many edges through pixel centres): we count them inside, as scikit-image's own
    EDGE label does; its ray-crossing test classifies them by rounding noise."""
    _, tgt = market_pairs
    tgt = tgt[[np.isin([2, 5, 8, 11], np.flatnonzero(k[:, 0] != -1)).all() for k in tgt]]
    ours = part_masks(torch.from_numpy(tgt)).numpy()
    on_edge, limb_pixels = 0, 0
    for b in range(len(tgt)):
        ref, kp2, st2 = official_masks(tgt[b])
        np.testing.assert_array_equal(ours[b, :2], ref[:2])          # torso and head box: exact
        for p, (fr, to, _, inc) in enumerate(LIMBS, start=2):
            diff = np.argwhere(ours[b, p] != ref[p])
            limb_pixels += ref[p].sum()
            if len(diff):
                poly = _polygon(kp2[fr], kp2[to], st2, inc)
                assert _edge_distance(poly, diff[:, ::-1]).max() < 1e-6, (b, p)
                on_edge += len(diff)
    assert on_edge < 0.01 * limb_pixels


def _edge_distance(poly, pts):
    """Distance of ``(x, y)`` points to the nearest edge of a polygon."""
    best = np.full(len(pts), np.inf)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        t = np.clip(((pts - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
        best = np.minimum(best, np.linalg.norm(pts - (a + t[:, None] * (b - a)), axis=1))
    return best


def test_theta_is_the_pixel_map_in_normalised_coordinates():
    """``pixel_to_theta`` of a pixel map T of an H x W image, applied to the normalised centre of pixel
    (x, y), gives the normalised position of T(x, y), for H != W and at any resolution."""
    t = torch.tensor([[1.1, 0.2, -3.0], [-0.1, 0.9, 5.0], [0, 0, 1]], dtype=torch.float64)
    theta = pixel_to_theta(t, (128, 64))
    for (h, w), s in (((128, 64), 1), ((32, 16), 4)):
        x, y = 5.0, 9.0                                        # a pixel of the h x w map
        u = torch.tensor([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1, 1.0], dtype=torch.float64)
        full = torch.tensor([s * x + (s - 1) / 2, s * y + (s - 1) / 2, 1.0], dtype=torch.float64)
        tx, ty, _ = t @ full                                   # in full-resolution pixels
        expect = torch.tensor([(2 * tx + 1) / 64 - 1, (2 * ty + 1) / 128 - 1], dtype=torch.float64)
        torch.testing.assert_close(theta @ u, expect)


def test_deformation_zeroes_invalid_parts_and_runs_batched():
    kp = torch.tensor([[10, 32], [20, 32], [22, 24], [35, 22], [48, 21], [22, 40], [35, 42], [48, 43],
                       [60, 26], [80, 27], [100, 27], [60, 38], [80, 37], [100, 37],
                       [8, 30], [8, 34], [9, 27], [9, 37]])
    tgt = torch.stack([kp, kp])
    tgt[1, 4] = -1                                  # second target: right wrist missing
    d = deformation(torch.stack([kp, kp]), tgt)
    assert d.theta.shape == (2, NUM_PARTS, 2, 3) and d.masks.shape == (2, NUM_PARTS, 128, 64)
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]])
    torch.testing.assert_close(d.theta, eye.expand(2, NUM_PARTS, 2, 3), atol=1e-6, rtol=0)  # same pose
    assert d.valid[0].all() and not d.valid[1, 8] and d.masks[1, 8].sum() == 0
    assert (d.masks[:, 0] == 1).all() and (d.masks[0, 2:].sum((-1, -2)) > 0).all()
