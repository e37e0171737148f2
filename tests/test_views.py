"""Lift, view estimation, rotation and the visibility rule (reid_aug.views)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from reid_aug.keypoints.skeleton import KP, MISSING
from reid_aug.views import (
    VISIBILITY,
    estimate_views,
    fit_visibility_intervals,
    lift_poses,
    project,
    rotate_points,
    rotate_poses,
    view_count_shares,
    view_labels,
    view_table,
    views_per_identity,
    visible_at,
    wrap_degrees,
)
from reid_aug.views.lift import TEMPLATE, present_mask

SCALE, HIP_Y, HIP_X = 38.0, 62.0, 32.0
LIMB_BONES = ((2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12), (12, 13))


def _limb(direction_deg: float, length: float) -> np.ndarray:
    """A bone in the sagittal plane: ``direction_deg`` forward of straight down (body frame)."""
    t = np.radians(direction_deg)
    return np.array([0.0, -np.cos(t), np.sin(t)]) * length


def body_pose(rng: np.random.Generator) -> np.ndarray:
    """(18, 3) body-frame skeleton (template lengths) obeying the bend rules: thigh forward, shin
    backward (knee in front of the hip-ankle line), upper arm backward, forearm forward."""
    b = TEMPLATE.copy()
    for side in (1, -1):
        sh, el, wr, hip, kn, an = ((2, 3, 4, 8, 9, 10) if side == 1 else (5, 6, 7, 11, 12, 13))
        length = lambda i, j: np.linalg.norm(TEMPLATE[j] - TEMPLATE[i])  # noqa: E731
        b[el] = b[sh] + _limb(-rng.uniform(8, 35), length(sh, el))
        b[wr] = b[el] + _limb(rng.uniform(10, 60), length(el, wr))
        b[kn] = b[hip] + _limb(rng.uniform(8, 30), length(hip, kn))
        b[an] = b[kn] + _limb(-rng.uniform(8, 30), length(kn, an))
    return b


def camera(body: np.ndarray, yaw_deg: float) -> np.ndarray:
    """(18, 3) ``(y, x, z)`` pixels of a body-frame skeleton seen at ``yaw_deg`` (lift's convention)."""
    p = np.radians(yaw_deg)
    a, u, c = body[:, 0], body[:, 1], body[:, 2]
    return np.stack([HIP_Y - SCALE * u, HIP_X + SCALE * (-a * np.cos(p) + c * np.sin(p)),
                     SCALE * (-a * np.sin(p) - c * np.cos(p))], axis=1)


def observe(points: np.ndarray, yaw_deg: float) -> np.ndarray:
    """Keypoints OpenPose would give: rounded, hidden joints -1 (the visibility rule)."""
    return project(points[None], np.array([yaw_deg]))[0]


# ---------------------------------------------------------------- lifter

@pytest.mark.parametrize("yaw", [-150, -120, -60, -30, 0, 20, 45, 75, 110, 135, 170, 180])
def test_lift_recovers_synthetic_skeleton(yaw):
    rng = np.random.default_rng(yaw + 1000)
    truth = camera(body_pose(rng), yaw)
    kps = observe(truth, yaw)
    lifted = lift_poses(kps[None])
    assert abs(lifted.scale[0] - SCALE) < 1.5
    assert abs(wrap_degrees(lifted.yaw[0] - yaw)) <= 12.0
    pts = lifted.points[0]
    checked = 0
    for parent, child in LIMB_BONES:
        if kps[child, 0] == MISSING or kps[parent, 0] == MISSING:
            assert np.isnan(pts[child]).all() if kps[child, 0] == MISSING else True
            continue
        true_dz = truth[child, 2] - truth[parent, 2]
        if abs(true_dz) < 4.0:          # rounding to pixels decides such signs
            continue
        got_dz = pts[child, 2] - pts[parent, 2]
        assert np.sign(got_dz) == np.sign(true_dz), (parent, child, true_dz, got_dz)
        assert abs(got_dz - true_dz) < 0.25 * SCALE
        checked += 1
    for j in (2, 5, 8, 11):             # torso depth order (which side is nearer)
        if abs(truth[j, 2]) > 4.0:
            assert np.sign(pts[j, 2]) == np.sign(truth[j, 2])
    if abs(np.cos(np.radians(yaw))) > 0.5:
        assert checked >= 3


def test_lift_missing_joints_stay_missing_and_bad_input():
    truth = camera(TEMPLATE, 0.0)
    kps = observe(truth, 0.0)
    kps[KP["l_wrist"]] = MISSING
    kps[KP["nose"]] = MISSING
    both = np.stack([kps, kps])
    both[1, KP["r_hip"]] = MISSING                     # no torso: cannot be lifted
    lifted = lift_poses(both)
    assert lifted.points.shape == (2, 18, 3)
    assert np.isnan(lifted.points[0, [KP["l_wrist"], KP["nose"]]]).all()
    assert not np.isnan(lifted.points[0, KP["l_elbow"]]).any()
    assert np.isnan(lifted.points[1]).all() and np.isnan(lifted.scale[1]) and np.isnan(lifted.yaw[1])
    assert list(lifted.ok) == [True, False]
    with pytest.raises(ValueError, match="18, 2"):
        lift_poses(np.zeros((3, 17, 2)))


def test_face_rule_and_near_side_vote():
    # Nearly edge-on torso whose labels say "back" (right shoulder on the image's right) ...
    truth = camera(TEMPLATE, 100.0)
    kps = observe(truth, 100.0)
    assert kps[KP["nose"], 0] == MISSING                 # hidden at 100 degrees
    assert 90 <= lift_poses(kps[None]).yaw[0] <= 135
    # ... but with a visible face (nose in front, to the image's right): facing the camera.
    face = kps.copy()
    face[KP["nose"]] = (int(truth[KP["nose"], 0]), int(truth[KP["neck"], 1]) + 8)
    assert 45 <= lift_poses(face[None]).yaw[0] <= 90
    # The mirror image (nose to the image's left, left arm present instead): the left side is nearer.
    mirror = observe(camera(TEMPLATE, -80.0), -80.0)
    assert -90 <= lift_poses(mirror[None]).yaw[0] <= -60


# ---------------------------------------------------------------- rotation

def _market_like(n=6, seed=0):
    rng = np.random.default_rng(seed)
    yaws = rng.uniform(-180, 180, n)
    kps = np.stack([observe(camera(body_pose(rng), y), y) for y in yaws])
    return kps, yaws


def test_rotate_zero_is_identity_up_to_visibility():
    kps, _ = _market_like(12)
    lifted = lift_poses(kps)
    rot = rotate_poses(kps, [0.0], lifted=lifted)
    assert np.allclose(rot.yaw[:, 0], lifted.yaw)
    keep = visible_at(lifted.yaw) & present_mask(kps)
    expected = np.where(keep[..., None], kps, MISSING)
    np.testing.assert_array_equal(rot.keypoints[:, 0], expected)
    # Synthetic sources were observed with the same rule, so nearly nothing changes.
    assert (rot.keypoints[:, 0] == kps).mean() > 0.9


def test_rotate_180_twice_returns_the_pose():
    kps, _ = _market_like(8, seed=3)
    lifted = lift_poses(kps)
    twice = rotate_points(rotate_points(lifted.points, 180.0), 180.0)
    np.testing.assert_allclose(twice, lifted.points, atol=1e-9, equal_nan=True)
    np.testing.assert_array_equal(project(twice, lifted.yaw), rotate_poses(kps, [0.0]).keypoints[:, 0])
    # A single 180 turn mirrors x about the hip centre and negates the depth.
    once = rotate_points(lifted.points, 180.0)
    xc = lifted.points[:, [KP["r_hip"], KP["l_hip"]], 1].mean(axis=1)[:, None]
    np.testing.assert_allclose(once[..., 1], 2 * xc - lifted.points[..., 1], atol=1e-9)
    np.testing.assert_allclose(once[..., 2], -lifted.points[..., 2], atol=1e-9)


def test_rotate_90_shoulder_width_becomes_torso_depth():
    kps = observe(camera(TEMPLATE, 0.0), 0.0)
    lifted = lift_poses(kps[None])
    width0 = abs(kps[KP["r_shoulder"], 1] - kps[KP["l_shoulder"], 1])
    depth0 = abs(lifted.points[0, KP["r_shoulder"], 2] - lifted.points[0, KP["l_shoulder"], 2])
    rot = rotate_poses(kps[None], [90.0, -90.0], lifted=lifted).keypoints[0]
    assert width0 > 25
    for k in rot:
        width90 = abs(int(k[KP["r_shoulder"], 1]) - int(k[KP["l_shoulder"], 1]))
        assert width90 <= depth0 + 1.0 and width90 <= 0.15 * width0
    # And a side view turned by 90 degrees shows its full shoulder width again.
    side = observe(camera(TEMPLATE, 90.0), 90.0)
    back = rotate_poses(side[None], [90.0]).keypoints[0, 0]
    assert abs(int(back[KP["r_shoulder"], 1]) - int(back[KP["l_shoulder"], 1])) >= 0.8 * width0


def test_left_right_labels_stay_with_the_body():
    kps = observe(camera(TEMPLATE, 0.0), 0.0)
    assert kps[KP["r_shoulder"], 1] < kps[KP["l_shoulder"], 1]       # front: the right on the image's left
    rot = rotate_poses(kps[None], [180.0, 90.0, -90.0])
    back, right, left = rot.keypoints[0]
    assert back[KP["r_shoulder"], 1] > back[KP["l_shoulder"], 1]     # back view: the right on the image's right
    assert back[KP["r_hip"], 1] > back[KP["l_hip"], 1]
    # Facing the image's right: the right side is nearer and keeps its arm; the left arm is hidden.
    assert right[KP["nose"], 1] > right[KP["neck"], 1]
    assert right[KP["r_elbow"], 0] != MISSING and right[KP["l_elbow"], 0] == MISSING
    assert left[KP["l_elbow"], 0] != MISSING and left[KP["r_elbow"], 0] == MISSING
    np.testing.assert_allclose(rot.yaw[0], [180.0, 90.0, -90.0], atol=8)


def test_rotation_keeps_foot_line_and_centre():
    kps, _ = _market_like(6, seed=5)
    rot = rotate_poses(kps, np.arange(45, 360, 45)).keypoints
    for i in range(len(kps)):
        xc = kps[i, [KP["r_hip"], KP["l_hip"]], 1].mean()
        feet = [j for j in (9, 10, 12, 13) if kps[i, j, 0] != MISSING]
        for k in rot[i]:
            assert abs(k[[KP["r_hip"], KP["l_hip"]], 1].mean() - xc) <= 1.0
            kept = [j for j in feet if k[j, 0] != MISSING]
            np.testing.assert_array_equal(k[kept, 0], kps[i, kept, 0])    # y never moves
            assert k[KP["l_ankle"], 0] == kps[i, KP["l_ankle"], 0]        # ankles are never hidden


def test_joints_outside_the_frame_become_missing():
    pts = np.full((1, 18, 3), np.nan)
    pts[0, :, 0], pts[0, :, 1], pts[0, :, 2] = 60.0, 32.0, 0.0
    pts[0, KP["r_wrist"], 1] = 70.0
    pts[0, KP["l_wrist"], 1] = -3.0
    out = project(pts, np.array([0.0]), size=(128, 64))[0]
    assert (out[KP["r_wrist"]] == MISSING).all() and (out[KP["l_wrist"]] == MISSING).all()
    assert (out[KP["neck"]] == (60, 32)).all()


# ---------------------------------------------------------------- visibility rule

def test_visibility_rule_hand_made_cases():
    v = visible_at([0.0, 180.0, 90.0, -90.0, 30.0])
    names = {n: KP[n] for n in KP}
    front, back, right, left, slight = v
    assert front.all()
    assert not back[[names["nose"], names["r_eye"], names["l_eye"]]].any()
    assert back[[names["r_ear"], names["l_ear"], names["r_elbow"], names["l_elbow"]]].all()
    assert not back[[names["r_wrist"], names["l_wrist"]]].any()
    assert right[[names["nose"], names["r_eye"], names["r_ear"], names["r_elbow"], names["r_wrist"]]].all()
    assert not right[[names["l_eye"], names["l_ear"], names["l_elbow"], names["l_wrist"]]].any()
    assert (left == right[list(_mirror())]).all()
    assert slight[names["r_ear"]] and not slight[names["l_ear"]] and slight[[names["r_eye"], names["l_eye"]]].all()
    for j in (1, 2, 5, 8, 11, 9, 10, 12, 13):                            # never hidden
        assert v[:, j].all()


def _mirror():
    from reid_aug.keypoints.skeleton import FLIP_PERMUTATION
    return FLIP_PERMUTATION


def test_fit_visibility_recovers_a_known_rule():
    rng = np.random.default_rng(0)
    yaw = rng.uniform(-180, 180, 4000)
    truth = dict(VISIBILITY, eye=(-30.0, 60.0), elbow=(-60.0, 200.0))
    present = visible_at(yaw, truth)
    noise = rng.random(present.shape) < 0.1                               # 10 % label noise
    fit = fit_visibility_intervals(yaw, present ^ noise)
    assert fit["eye"][0] == pytest.approx((-30.0, 60.0), abs=5.0)
    assert fit["elbow"][0] == pytest.approx((-60.0, 200.0), abs=5.0)
    assert fit["knee"][0] is None
    assert 0.85 < fit["eye"][1] < 0.95


def test_visibility_rule_matches_market_annotations(market_root):
    from reid_aug.keypoints.annotations import read_annotations

    kps = []
    for f in sorted((market_root / "annotations").glob("*annotation-*.csv")):
        kps.extend(read_annotations(f).values())
    kps = np.stack(kps).astype(np.int64)
    lifted = lift_poses(kps)
    fit = fit_visibility_intervals(lifted.yaw[lifted.ok], present_mask(kps)[lifted.ok])
    for kind, (interval, agreement) in fit.items():
        assert agreement > 0.75, kind
        if interval is None:
            assert VISIBILITY[kind] is None
        else:
            assert VISIBILITY[kind] == pytest.approx(interval, abs=10.0), kind


# ---------------------------------------------------------------- views

def test_view_estimation_on_synthetic_rotations():
    rng = np.random.default_rng(7)
    body = body_pose(rng)
    yaws = np.arange(-180, 180, 15.0)
    kps = np.stack([observe(camera(body, y), y) for y in yaws])
    est, labels = estimate_views(kps)
    err = np.abs(wrap_degrees(est - yaws))
    assert err.max() <= 15.0 and err.mean() <= 6.0
    assert list(view_labels([0.0, 50.0, -70.0, 90.0, 130.0, -180.0, np.nan])) == \
        ["front", "front", "side", "side", "back", "back", "unknown"]
    # The labels of well-inside yaws survive the estimation error.
    inside = (np.abs(np.abs(yaws) - 60) > 15) & (np.abs(np.abs(yaws) - 120) > 15)
    assert (labels[inside] == view_labels(yaws[inside])).all()


def test_view_table_and_identity_views():
    kps = np.stack([observe(camera(TEMPLATE, y), y) for y in (0.0, 180.0, 90.0, 10.0, 0.0)])
    kps = np.concatenate([kps, np.full((1, 18, 2), MISSING)])
    names = [f"img{i}.jpg" for i in range(6)]
    table = pd.DataFrame({"name": names, "pid": [1, 1, 1, 2, 2, 3], "split": ["train"] * 5 + ["query"]})
    index = SimpleNamespace(table=table, keypoints_for=lambda ns: kps[[names.index(n) for n in ns]])
    vt = view_table(index, split=None)
    assert list(vt["view"]) == ["front", "back", "side", "front", "front", "unknown"]
    assert np.isnan(vt["yaw"].iloc[-1])
    assert len(view_table(index)) == 5
    per_id = views_per_identity(vt)
    assert per_id.loc[1, "n_views"] == 3 and per_id.loc[2, "n_views"] == 1 and per_id.loc[3, "n_views"] == 0
    assert view_count_shares(vt) == pytest.approx({0: 1 / 3, 1: 1 / 3, 2: 0.0, 3: 1 / 3})
