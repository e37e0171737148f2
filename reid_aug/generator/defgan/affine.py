"""Deformable GAN part geometry: the 10 body parts, their affine transforms and their masks.

Everything follows the official Keras code (``AliaksandrSiarohin/pose-gan``, ``pose_transform.py``:
``affine_transforms``, ``pose_masks``, ``estimate_polygon``, ``compute_st_distance``) but runs in
batch with torch ops on the keypoints' device (no per-sample Python loop).

Keypoints are the project's ``(B, 18, 2)`` integer ``(y, x)`` pixel indices with ``-1`` for a
missing joint (:mod:`reid_aug.keypoints.skeleton`). Internally points are ``(x, y)`` as in the
official code. Part order (official)::

    0 torso, 1 head, 2 r_upper_leg, 3 l_upper_leg, 4 r_lower_leg, 5 l_lower_leg,
    6 r_upper_arm, 7 l_upper_arm, 8 r_lower_arm, 9 l_lower_arm

A part's transform ``T`` (3x3, pixel ``(x, y)`` coordinates) maps a point of the *target* image to
the point of the *source* image it comes from (official: ``estimate_transform('affine',
src=target_points, dst=source_points)``), i.e. it is the backward warp that ``grid_sample`` needs.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from reid_aug.keypoints.skeleton import MISSING, NUM_KEYPOINTS

PART_NAMES: tuple[str, ...] = (
    "torso", "head", "r_upper_leg", "l_upper_leg", "r_lower_leg", "l_lower_leg",
    "r_upper_arm", "l_upper_arm", "r_lower_arm", "l_lower_arm",
)
NUM_PARTS = len(PART_NAMES)

# Joint indices (project order = official LABELS order).
TORSO = (8, 11, 5, 2)                 # Rhip, Lhip, Lsho, Rsho (official body_poly order)
FACE = (0, 14, 15, 16, 17)            # nose, eyes, ears: official head_candidate_names
SHOULDERS = (5, 2)                    # added to the head's points (official)
# Limbs 2..9: (from, to, inc_to of the transform polygon, inc_to of the mask polygon, mirror part).
# The transform uses inc_to 0.1 / 0.3 (affine_transforms.estimate_join), the mask 0.1 / 0.5
# (pose_masks.mask_joint): the official code really differs here.
LIMBS = (
    (8, 9, 0.1, 0.1, 3), (11, 12, 0.1, 0.1, 2),      # upper legs
    (9, 10, 0.3, 0.5, 5), (12, 13, 0.3, 0.5, 4),     # lower legs
    (2, 3, 0.1, 0.1, 7), (5, 6, 0.1, 0.1, 6),        # upper arms
    (3, 4, 0.3, 0.5, 9), (6, 7, 0.3, 0.5, 8),        # lower arms
)
INC_FROM = 0.1        # estimate_polygon(..., inc_from=0.1, p_to=0.2, p_from=0.2)
HALF_WIDTH = 0.2      # polygon half-width, in units of the torso size st
HEAD_BOX = 0.40       # head box half-size, in units of st (pose_masks)
_MAX_POINTS = 7       # head: 5 face points + 2 shoulders


class Deformation(NamedTuple):
    """The per-pair input of the deformable skips.

    - ``theta``: ``(B, 10, 2, 3)`` float32, ``F.affine_grid`` matrices in normalised coordinates
      (``align_corners=False``), target -> source; identity for an invalid part.
    - ``masks``: ``(B, 10, H, W)`` float32 part masks at image resolution, zero for an invalid part.
    - ``valid``: ``(B, 10)`` bool, the part has a transform and is used.
    """

    theta: torch.Tensor
    masks: torch.Tensor
    valid: torch.Tensor


def keypoints_xy(kps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, 18, 2)`` ``(y, x)`` keypoints -> float64 ``(B, 18, 2)`` ``(x, y)`` and ``(B, 18)`` presence."""
    kps = torch.as_tensor(kps)
    if kps.ndim != 3 or kps.shape[1:] != (NUM_KEYPOINTS, 2):
        raise ValueError(f"keypoints must have shape (B, {NUM_KEYPOINTS}, 2), got {tuple(kps.shape)}")
    present = (kps[..., 0] != MISSING) & (kps[..., 1] != MISSING)
    return kps.flip(-1).to(torch.float64), present


def torso_size(xy: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``compute_st_distance``: ``sqrt((|Rhip-Rsho|^2 + |Lhip-Lsho|^2) / 2)``.

    ``(B, 18, 2)``, ``(B, 18)`` -> ``st (B,)`` float64 and ``ok (B,)``: all four torso joints present
    (the official ``check_valid`` rule that selects the training images).
    """
    d1 = ((xy[:, 8] - xy[:, 2]) ** 2).sum(-1)
    d2 = ((xy[:, 11] - xy[:, 5]) ** 2).sum(-1)
    ok = present[:, list(TORSO)].all(-1)
    return torch.sqrt((d1 + d2) / 2.0), ok


def limb_polygons(xy: torch.Tensor, present: torch.Tensor, st: torch.Tensor, st_ok: torch.Tensor,
                  inc_to: Sequence[float], joints: Sequence[tuple[int, int]] | None = None):
    """Official ``estimate_polygon`` for the 8 limbs, batched.

    ``xy (B, 18, 2)``, ``present (B, 18)``, ``st``/``st_ok (B,)``, one ``inc_to`` per limb ->
    ``poly (B, 8, 4, 2)`` ``(x, y)`` vertices ``[fr + a n, fr - a n, to - a n, to + a n]`` with
    ``a = 0.2 st``, and ``ok (B, 8)``: both joints present, ``st`` known, non-zero bone (the official
    code falls back to a degenerate 2-pixel "polygon" for a zero-length bone; we treat it as missing).
    """
    joints = [(fr, to) for fr, to, *_ in LIMBS] if joints is None else list(joints)
    fr_i = [a for a, _ in joints]
    to_i = [b for _, b in joints]
    inc = torch.tensor(list(inc_to), dtype=xy.dtype, device=xy.device).view(1, -1, 1)
    fr, to = xy[:, fr_i], xy[:, to_i]                                   # (B, 8, 2)
    fr = fr + (fr - to) * INC_FROM
    to = to + (to - fr) * inc                                           # uses the moved fr, as official
    d = fr - to
    normal = torch.stack([-d[..., 1], d[..., 0]], -1)
    norm = normal.norm(dim=-1, keepdim=True)
    normal = normal / norm.clamp_min(1e-12)
    off = (HALF_WIDTH * st).view(-1, 1, 1) * normal
    poly = torch.stack([fr + off, fr - off, to - off, to + off], dim=2)
    ok = present[:, fr_i] & present[:, to_i] & st_ok[:, None] & (norm[..., 0] > 0)
    return poly, ok


def estimate_affine(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor):
    """Least-squares affine maps ``src -> dst``, batched: scikit-image's ``estimate_transform('affine')``.

    ``src``/``dst`` ``(..., N, 2)`` ``(x, y)`` points, ``weight (..., N)`` 0/1 (a 0 drops the point) ->
    ``T (..., 3, 3)`` float64 and ``ok (...)`` bool.

    Same algorithm as scikit-image (Hartley normalisation of both point sets: centroid and
    ``sqrt(mean(centered^2))`` scale; then the right singular vector of the smallest singular value
    of the 7-column design matrix, i.e. the lowest eigenvector of ``A^T A``; de-normalised), so the
    results agree to rounding also when the points do not fit an affine map exactly (the torso's 4
    points, the head's up to 7). ``ok`` is False with fewer than 3 points, identical points, a
    vanishing last component (scikit-image's failure cases) or a singular result (the official code's
    ``np.linalg.inv`` check).
    """
    src, dst, w = src.to(torch.float64), dst.to(torch.float64), weight.to(torch.float64)
    n = w.sum(-1)
    ns, src_ok = _normaliser(src, w, n)
    nd, dst_ok = _normaliser(dst, w, n)
    s = _apply(ns, src)
    d = _apply(nd, dst)
    zeros, ones = torch.zeros_like(w), torch.ones_like(w)
    row_x = torch.stack([s[..., 0], s[..., 1], ones, zeros, zeros, zeros, d[..., 0]], -1)
    row_y = torch.stack([zeros, zeros, zeros, s[..., 0], s[..., 1], ones, d[..., 1]], -1)
    a = torch.cat([row_x, row_y], -2) * torch.cat([w, w], -1)[..., None]     # (..., 2N, 7)
    ok = (n >= 3) & src_ok & dst_ok
    eye = torch.eye(7, dtype=a.dtype, device=a.device)
    m = torch.where(ok[..., None, None], a.transpose(-1, -2) @ a, eye)       # keep eigh finite
    v = torch.linalg.eigh(m).eigenvectors[..., :, 0]                         # (..., 7)
    last = v[..., 6]
    ok = ok & (last.abs() > 1e-8)                                            # np.isclose(V[-1, -1], 0)
    h = -v[..., :6] / torch.where(ok, last, torch.ones_like(last))[..., None]
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=h.dtype, device=h.device).expand(*h.shape[:-1], 3)
    hn = torch.cat([h, bottom], -1).view(*h.shape[:-1], 3, 3)
    t = torch.linalg.inv(nd) @ hn @ ns
    t = t / t[..., 2:3, 2:3]
    det = t[..., 0, 0] * t[..., 1, 1] - t[..., 0, 1] * t[..., 1, 0]
    ok = ok & torch.isfinite(t).flatten(-2).all(-1) & (det.abs() > 1e-12)
    return t, ok


def _normaliser(p: torch.Tensor, w: torch.Tensor, n: torch.Tensor):
    """scikit-image ``_calc_center_normalize`` (rms): ``(..., N, 2)`` -> ``(..., 3, 3)`` and ok."""
    n1 = n.clamp_min(1)[..., None]
    centroid = (p * w[..., None]).sum(-2) / n1                               # (..., 2)
    sq = (((p - centroid[..., None, :]) ** 2) * w[..., None]).sum((-1, -2))
    divisor = torch.sqrt(sq / (2 * n.clamp_min(1)))
    ok = divisor > 0
    divisor = torch.where(ok, divisor, torch.ones_like(divisor))
    mat = torch.zeros(*p.shape[:-2], 3, 3, dtype=p.dtype, device=p.device)
    mat[..., 0, 0] = 1 / divisor
    mat[..., 1, 1] = 1 / divisor
    mat[..., :2, 2] = -centroid / divisor[..., None]
    mat[..., 2, 2] = 1
    return mat, ok


def _apply(mat: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply ``(..., 3, 3)`` affine matrices to ``(..., N, 2)`` points."""
    return p @ mat[..., :2, :2].transpose(-1, -2) + mat[..., None, :2, 2]


def _part_points(src_kp: torch.Tensor, tgt_kp: torch.Tensor):
    """Point sets of the 10 parts: target ``(B, 10, 7, 2)``, source ``(B, 10, 7, 2)``, weights ``(B, 10, 7)``
    and the part's own validity ``(B, 10)`` (joints present as the official code needs them)."""
    sxy, sp = keypoints_xy(src_kp)
    txy, tp = keypoints_xy(tgt_kp)
    s_st, s_ok = torso_size(sxy, sp)
    t_st, t_ok = torso_size(txy, tp)
    both = sp & tp
    b = sxy.shape[0]
    pts_t = sxy.new_zeros(b, NUM_PARTS, _MAX_POINTS, 2)
    pts_s = sxy.new_zeros(b, NUM_PARTS, _MAX_POINTS, 2)
    w = sxy.new_zeros(b, NUM_PARTS, _MAX_POINTS)
    # torso: both hips and shoulders, in both images
    pts_t[:, 0, :4], pts_s[:, 0, :4] = txy[:, list(TORSO)], sxy[:, list(TORSO)]
    torso_ok = s_ok & t_ok
    w[:, 0, :4] = torso_ok[:, None].to(w.dtype)
    # head: the face points visible in both images, plus both shoulders
    head = list(FACE) + list(SHOULDERS)
    pts_t[:, 1], pts_s[:, 1] = txy[:, head], sxy[:, head]
    shoulders_ok = both[:, list(SHOULDERS)].all(-1)
    head_ok = both[:, list(FACE)].any(-1) & shoulders_ok
    w[:, 1, :5] = both[:, list(FACE)].to(w.dtype)
    w[:, 1, 5:] = shoulders_ok[:, None].to(w.dtype)
    # limbs: target polygon; source polygon of the same limb, else of the mirrored limb
    inc = [limb[2] for limb in LIMBS]
    poly_t, ok_t = limb_polygons(txy, tp, t_st, t_ok, inc)
    poly_s, ok_s = limb_polygons(sxy, sp, s_st, s_ok, inc)
    mirror = [limb[4] - 2 for limb in LIMBS]
    mirror_s, mirror_ok = limb_polygons(sxy, sp, s_st, s_ok, inc, [LIMBS[m][:2] for m in mirror])
    use_own = ok_s[..., None, None]
    pts_t[:, 2:, :4] = poly_t
    pts_s[:, 2:, :4] = torch.where(use_own, poly_s, mirror_s)
    limb_ok = ok_t & (ok_s | mirror_ok)
    w[:, 2:, :4] = limb_ok[..., None].to(w.dtype)
    part_ok = torch.cat([torso_ok[:, None], head_ok[:, None], limb_ok], 1)
    return pts_t, pts_s, w * part_ok[..., None], part_ok


def part_transforms(src_kp: torch.Tensor, tgt_kp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 10 official part transforms of each pair, batched.

    ``src_kp``, ``tgt_kp``: ``(B, 18, 2)`` ``(y, x)`` keypoints -> ``T (B, 10, 3, 3)`` float64 pixel
    ``(x, y)`` maps target -> source, and ``valid (B, 10)``. An invalid part (joints missing, no
    mirrored limb to borrow, degenerate fit) gets the identity and ``valid = False``; the official
    code gives it a translation by 1000 px, which samples only zeros: the same as an empty part.
    """
    pts_t, pts_s, w, part_ok = _part_points(src_kp, tgt_kp)
    t, fit_ok = estimate_affine(pts_t, pts_s, w)
    valid = part_ok & fit_ok
    eye = torch.eye(3, dtype=t.dtype, device=t.device)
    return torch.where(valid[..., None, None], t, eye), valid


def pixel_to_theta(t: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Pixel ``(x, y)`` affine maps ``(..., 3, 3)`` in an ``H x W`` image -> ``F.affine_grid`` matrices ``(..., 2, 3)``.

    With ``align_corners=False`` pixel ``x`` has the normalised coordinate ``u = (2x + 1) / W - 1``
    (``W`` for x, ``H`` for y: both axes are converted separately, which matters for H != W). The
    normalised map ``N T N^-1`` is the same at every resolution, so one ``theta`` serves every skip
    level (the official code instead divides the translation by the downsampling factor, i.e. it
    aligns pixel corners rather than centres: a sub-pixel difference at the coarse levels).
    """
    h, w = float(size[0]), float(size[1])
    n = torch.tensor([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]], dtype=t.dtype, device=t.device)
    return (n @ t @ torch.linalg.inv(n))[..., :2, :]


def part_masks(tgt_kp: torch.Tensor, size: Sequence[int] = (128, 64)) -> torch.Tensor:
    """Official ``pose_masks`` of the target pose, batched: ``(B, 18, 2)`` -> ``(B, 10, H, W)`` float32.

    - torso: the whole image (the official code's polygon is commented out: ``np.ones``);
    - head: the box ``[c - b, c + b)`` (rows and columns, clipped) around ``c = int(mean)`` of the
      visible face points, ``b = int(0.4 st)``; empty without a face point;
    - limbs: the pixels inside (or on) the rectangle of ``estimate_polygon`` (inc_to 0.1 for the upper,
      0.5 for the lower limbs), as ``skimage.measure.grid_points_in_poly``; empty when a joint is missing.
    Head and limbs are empty when the target's torso size is unknown (a torso joint missing).
    """
    xy, present = keypoints_xy(tgt_kp)
    st, st_ok = torso_size(xy, present)
    h, w = int(size[0]), int(size[1])
    rows = torch.arange(h, dtype=torch.float64, device=xy.device).view(1, 1, h, 1)
    cols = torch.arange(w, dtype=torch.float64, device=xy.device).view(1, 1, 1, w)
    torso = torch.ones(xy.shape[0], 1, h, w, dtype=torch.bool, device=xy.device)
    # head box
    face = present[:, list(FACE)]
    nf = face.sum(-1)
    centre = torch.floor((xy[:, list(FACE)] * face[..., None]).sum(1) / nf.clamp_min(1)[:, None])
    b = torch.floor(HEAD_BOX * st)
    cx, cy = centre[:, 0].view(-1, 1, 1, 1), centre[:, 1].view(-1, 1, 1, 1)
    bb = b.view(-1, 1, 1, 1)
    head = (rows >= cy - bb) & (rows < cy + bb) & (cols >= cx - bb) & (cols < cx + bb)
    head = head & ((nf > 0) & st_ok).view(-1, 1, 1, 1)
    # limb rectangles
    poly, ok = limb_polygons(xy, present, st, st_ok, [limb[3] for limb in LIMBS])
    limbs = _inside_rectangles(poly, rows, cols) & ok[..., None, None]
    return torch.cat([torso, head, limbs], 1).to(torch.float32)


def _inside_rectangles(poly: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """Grid points inside or on the rectangles ``poly (B, L, 4, 2)`` -> ``(B, L, H, W)`` bool."""
    tol = 1e-9
    fr = (poly[:, :, 0] + poly[:, :, 1]) / 2                            # moved bone end points
    to = (poly[:, :, 2] + poly[:, :, 3]) / 2
    half = (poly[:, :, 0] - fr).norm(dim=-1)                            # a = 0.2 st
    axis = to - fr
    length = axis.norm(dim=-1).clamp_min(1e-12)
    e = axis / length[..., None]
    px = cols - fr[..., 0, None, None]                                  # (B, L, 1, W)
    py = rows - fr[..., 1, None, None]                                  # (B, L, H, 1)
    along = px * e[..., 0, None, None] + py * e[..., 1, None, None]
    across = px * e[..., 1, None, None] - py * e[..., 0, None, None]
    ln, hf = length[..., None, None], half[..., None, None]
    return (along >= -tol) & (along <= ln + tol) & (across.abs() <= hf + tol)


def deformation(src_kp: torch.Tensor, tgt_kp: torch.Tensor, size: Sequence[int] = (128, 64)) -> Deformation:
    """Everything the deformable skips need for a batch of pairs (computed on the keypoints' device).

    ``src_kp``, ``tgt_kp``: ``(B, 18, 2)`` ``(y, x)`` keypoints in the ``size`` image ->
    :class:`Deformation` (``theta (B, 10, 2, 3)``, ``masks (B, 10, H, W)``, ``valid (B, 10)``).
    An invalid part's mask is zeroed, so it contributes zeros, as in the official code.
    """
    t, valid = part_transforms(src_kp, tgt_kp)
    masks = part_masks(tgt_kp, size) * valid[..., None, None].to(torch.float32)
    return Deformation(pixel_to_theta(t, size).to(torch.float32), masks, valid)


def resize_masks(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, P, H, W)`` -> ``(B, P, h, w)`` by nearest neighbour (source index ``floor(i * H / h)``,
    as TF 1's ``resize_images(NEAREST_NEIGHBOR)`` that the official layer uses)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks, size=tuple(int(s) for s in size), mode="nearest")
