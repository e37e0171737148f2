"""Issue 15: `reid-aug annotate` (MediaPipe Pose -> the 18-joint annotation files)."""
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from reid_aug.dataset.market import load_dataset
from reid_aug.keypoints import annotate as ann
from reid_aug.keypoints.annotations import read_annotations
from reid_aug.keypoints.blazepose import (BLAZEPOSE_TO_18, PoseExtraMissing, frame_crop, landmarks_to_crop,
                                          to_openpose18)
from reid_aug.keypoints.skeleton import KP, MISSING

try:
    import mediapipe  # noqa: F401
    HAVE_MEDIAPIPE = True
except ImportError:
    HAVE_MEDIAPIPE = False
needs_mediapipe = pytest.mark.skipif(not HAVE_MEDIAPIPE, reason="the pose extra is not installed "
                                     "(pip install -e '.[pose]', as the README's test command does)")


# --------------------------------------------------------------------------- the mapping
def _points(vis=1.0):
    """(33, 3) landmarks: landmark i at (y, x) = (i + 10, i % 20 + 5)."""
    return np.array([(i + 10, i % 20 + 5, vis) for i in range(33)], float)


def test_33_to_18_mapping_follows_the_person_centric_convention():
    kp = to_openpose18(_points(), (128, 64), 0.5)
    expect = {"nose": 0, "r_shoulder": 12, "r_elbow": 14, "r_wrist": 16, "l_shoulder": 11, "l_elbow": 13,
              "l_wrist": 15, "r_hip": 24, "r_knee": 26, "r_ankle": 28, "l_hip": 23, "l_knee": 25, "l_ankle": 27,
              "r_eye": 5, "l_eye": 2, "r_ear": 8, "l_ear": 7}
    for joint, lm in expect.items():
        assert kp[KP[joint]].tolist() == [lm + 10, lm % 20 + 5], joint
    # the neck: midpoint of the shoulders 11 and 12 -> (21.5, 16.5) -> pixel (21, 16)
    assert kp[KP["neck"]].tolist() == [21, 16]
    assert sorted(i for i in BLAZEPOSE_TO_18 if i >= 0) == sorted(expect.values())


def test_visibility_threshold_crop_bounds_and_no_person():
    pts = _points()
    pts[14, 2] = 0.49          # right elbow below the threshold
    pts[11, 2] = 0.2           # left shoulder: also takes the neck with it
    pts[27, 0] = 128.0         # left ankle just below the crop
    pts[28, 1] = -0.5          # right ankle left of it
    kp = to_openpose18(pts, (128, 64), 0.5)
    for joint in ("r_elbow", "l_shoulder", "neck", "l_ankle", "r_ankle"):
        assert kp[KP[joint]].tolist() == [MISSING, MISSING], joint
    assert kp[KP["r_shoulder"]].tolist() == [22, 17]
    assert (to_openpose18(pts, (128, 64), 0.0)[KP["r_elbow"]] >= 0).all()
    assert (to_openpose18(None, (128, 64), 0.5) == MISSING).all()


@pytest.mark.parametrize("shape, pad, side", [((128, 64), 0.5, 256), ((300, 100), 0.25, 192), ((40, 90), 0.0, 128)])
def test_framing_maps_crop_pixels_there_and_back(shape, pad, side):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
    frame, fr = frame_crop(rgb, pad, side)
    assert frame.shape == (side, side, 3) and frame.dtype == np.uint8
    crop_yx = np.array([[0.5, 0.5], [shape[0] - 0.5, shape[1] - 0.5], [shape[0] / 2, 3.25]])
    # the frame position of a crop point, as BlazePose reports it: normalised (x, y)
    fy, fx = (crop_yx[:, 0] + fr.offset_y) * fr.scale, (crop_yx[:, 1] + fr.offset_x) * fr.scale
    lms = np.stack([fx / side, fy / side, np.zeros(3), np.ones(3)], axis=1)
    back = landmarks_to_crop(lms, fr)
    np.testing.assert_allclose(back[:, :2], crop_yx, atol=1e-9)
    # the crop's centre pixel lands in the frame's centre, and the padding holds the crop's mean colour
    assert abs(fr.offset_y * 2 + shape[0] - fr.side / fr.scale) < 2 and abs(fr.offset_x * 2 + shape[1] - fr.side / fr.scale) < 2
    if pad > 0:
        np.testing.assert_allclose(frame[0, 0], rgb.reshape(-1, 3).mean(0), atol=1)


def test_missing_pose_extra_is_one_clear_error(monkeypatch, tiny_toy, tmp_path):
    from click.testing import CliRunner

    import cli

    monkeypatch.setitem(sys.modules, "mediapipe", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python", None)
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    from reid_aug.keypoints.blazepose import BlazePose

    with pytest.raises(PoseExtraMissing, match=r"pip install -e '\.\[pose\]'"):
        BlazePose()
    res = CliRunner().invoke(cli.main, ["annotate", str(tiny_toy), "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "pip install -e '.[pose]'" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "a").exists()


# --------------------------------------------------------------------------- the job, with a stand-in estimator
class FakePose:
    """Deterministic landmarks derived from the image (its mean colour), counting calls; stops on request."""

    calls = 0
    stop_after = None

    def __init__(self, pad=0.5, side=256):
        pass

    def points(self, rgb):
        FakePose.calls += 1
        if FakePose.stop_after is not None and FakePose.calls > FakePose.stop_after:
            raise KeyboardInterrupt
        h, w = rgb.shape[:2]
        m = rgb.mean() / 255
        return np.array([((i * 3 + m * 10) % h, (i * 2 + m * 5) % w, 1.0) for i in range(33)], float)


@pytest.fixture
def fake_pose(monkeypatch):
    from reid_aug.keypoints import blazepose

    monkeypatch.setattr(blazepose, "BlazePose", FakePose)
    monkeypatch.setattr(blazepose, "require_mediapipe", lambda: None)
    FakePose.calls, FakePose.stop_after = 0, None
    return FakePose


@pytest.fixture
def toy_copy(tiny_toy, tmp_path, monkeypatch):
    monkeypatch.setenv("REID_AUG_CACHE", str(tmp_path / "cache"))
    dst = tmp_path / "data"
    shutil.copytree(tiny_toy, dst)
    shutil.rmtree(dst / "annotations")
    return dst


ONE = ann.AnnotateConfig(workers=1, chunk=4)


def test_interrupted_run_keeps_its_rows_and_continues_to_the_same_files(fake_pose, toy_copy, tmp_path):
    n_images = len(load_dataset(toy_copy).table)
    fake_pose.stop_after = 10
    with pytest.raises(KeyboardInterrupt):
        ann.annotate_dataset(toy_copy, ONE)
    kept = ann._read_partial_rows(toy_copy / "annotations" / ann.PARTIAL)
    assert len(kept) == 8          # two chunks of 4 were written before the stop in the third
    assert not list((toy_copy / "annotations").glob("*annotation-*.csv"))
    fake_pose.stop_after, fake_pose.calls = None, 0
    report = ann.annotate_dataset(toy_copy, ONE)
    assert fake_pose.calls == n_images - 8 and report["annotated"] == n_images
    assert not (toy_copy / "annotations" / ann.PARTIAL).exists()
    whole = tmp_path / "whole"
    ann.annotate_dataset(toy_copy, ONE, out=whole)
    for k in ("train", "test"):
        a = (toy_copy / "annotations" / f"data-annotation-{k}.csv").read_text()
        assert a == (whole / f"data-annotation-{k}.csv").read_text()
    index = load_dataset(toy_copy)
    assert index.table["has_pose"].all()
    assert set(index.table[index.table["split"] == "query"]["name"]) <= set(
        read_annotations(toy_copy / "annotations" / "data-annotation-test.csv", None, None))


def test_a_corrupt_image_is_reported_and_skipped(fake_pose, toy_copy):
    bad = sorted((toy_copy / "bounding_box_train").glob("*.jpg"))[3]
    bad.write_bytes(bad.read_bytes()[:100])
    report = ann.annotate_dataset(toy_copy, ONE)
    assert list(report["failed"]) == [bad.name]
    assert report["annotated"] == report["images"] - 1
    assert bad.name not in read_annotations(toy_copy / "annotations" / "data-annotation-train.csv", None, None)
    assert "1 unreadable image(s) skipped" in ann.format_report(report)


def test_existing_files_are_never_touched_without_overwrite(fake_pose, toy_copy):
    ann.annotate_dataset(toy_copy, ONE)
    f = toy_copy / "annotations" / "data-annotation-train.csv"
    f.write_text(f.read_text() + "\n")
    before = f.read_text()
    with pytest.raises(ann.ConfigError, match="--overwrite"):
        ann.annotate_dataset(toy_copy, ONE)
    assert f.read_text() == before
    ann.annotate_dataset(toy_copy, ONE, overwrite=True)
    assert f.read_text() != before and f.read_text() == before[:-1]


def test_a_read_only_dataset_gets_its_annotations_elsewhere_and_the_reader_finds_them(fake_pose, toy_copy):
    mode = toy_copy.stat().st_mode
    before = sorted(p.name for p in toy_copy.iterdir())
    os.chmod(toy_copy, mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        report = ann.annotate_dataset(toy_copy, ONE)
        assert sorted(p.name for p in toy_copy.iterdir()) == before and "annotations" not in before
    finally:
        os.chmod(toy_copy, mode)
    dest = Path(report["annotations"])
    assert dest.is_relative_to(Path(os.environ["REID_AUG_CACHE"]))
    index = load_dataset(toy_copy)
    assert index.annotations_dir == dest and index.table["has_pose"].all()


def test_bad_settings_and_changed_settings_are_clear_errors(fake_pose, toy_copy):
    with pytest.raises(ann.ConfigError, match="visibility"):
        ann.load_annotate_config(None, ["visibility=1.5"])
    fake_pose.stop_after = 2
    with pytest.raises(KeyboardInterrupt):
        ann.annotate_dataset(toy_copy, ONE)
    with pytest.raises(ann.ConfigError, match="other settings"):
        ann.annotate_dataset(toy_copy, ann.AnnotateConfig(workers=1, chunk=4, pad=0.25))


def test_rows_outside_their_own_image_are_refused_when_loaded(toy_copy):
    from reid_aug.errors import AnnotationError
    from reid_aug.pairs.torch_dataset import _IndexedImages

    (toy_copy / "annotations").mkdir()
    name = sorted((toy_copy / "bounding_box_train").glob("*.jpg"))[0].name
    ys, xs = [130] + [-1] * 17, [5] + [-1] * 17
    (toy_copy / "annotations" / "x-annotation-train.csv").write_text(f"name:keypoints_y:keypoints_x\n{name}: {ys}: {xs}\n")
    images = _IndexedImages(load_dataset(toy_copy), (128, 64), "pg2")
    with pytest.raises(AnnotationError, match="outside its 128x64 image"):
        images.load(name)


# --------------------------------------------------------------------------- real images, real estimator
@pytest.fixture(scope="session")
def cuhk_root(market_root) -> Path:
    root = market_root.parent / "cuhk03-detected-mini"
    if not (root / "bounding_box_train").is_dir():
        pytest.skip(f"cuhk03-detected-mini not found beside Market-1501 ({root})")
    return root


@needs_mediapipe
@pytest.mark.market
def test_round_trip_on_real_images_agrees_with_the_openpose_annotations(market_root, cuhk_root, tmp_path, monkeypatch):
    monkeypatch.setenv("REID_AUG_CACHE", str(tmp_path / "cache"))
    report = ann.annotate_dataset(market_root, ann.AnnotateConfig(workers=1), out=tmp_path / "m", limit=12)
    ours = read_annotations(tmp_path / "m" / "market1501-annotation-train.csv", None, None)
    theirs = load_dataset(market_root).keypoints
    assert len(ours) == 12 and report["person_found"] > 0.5
    both = [(ours[n][j], theirs[n][j]) for n in ours for j in range(18) if ours[n][j, 0] >= 0 and theirs[n][j, 0] >= 0]
    pck = np.mean([np.hypot(*(a - b)) <= 12.8 for a, b in both])
    assert len(both) >= 60 and pck >= 0.75      # a left/right swap gives about 0.45
    # CUHK03: variable sizes, coordinates in each image's own pixels; the reader takes the files through the pointer
    # --out: never write into the shared dataset, whatever its permissions; the pointer leads the reader there
    ann.annotate_dataset(cuhk_root, ann.AnnotateConfig(workers=2, chunk=3), out=tmp_path / "cuhk", limit=6)
    index = load_dataset(cuhk_root)
    from reid_aug.pairs.torch_dataset import _IndexedImages

    images = _IndexedImages(index, (128, 64), "pg2")
    done = index.table[index.table["has_pose"]]
    assert len(done) == 12
    for name in done["name"]:
        img, kp = images.load(name)     # checked against the image's own size, then rescaled
        assert img.shape == (3, 128, 64) and (kp[:, 0] < 128).all() and (kp[:, 1] < 64).all()
    assert json.loads((tmp_path / "cache" / "annotations" / "pointers.json").read_text())


def test_learned_lift_yaw_follows_the_views_convention():
    from reid_aug.keypoints.blazepose import world_to_openpose18, world_yaw

    world = np.zeros((33, 4))
    world[:, 3] = 1.0
    # frontal: the person's left shoulder/hip (11, 23) on the image's right (+x), same depth
    world[11, :3], world[12, :3], world[23, :3], world[24, :3] = (.2, -.5, 0), (-.2, -.5, 0), (.1, 0, 0), (-.1, 0, 0)
    j = world_to_openpose18(world, 0.5)
    assert world_yaw(j) == pytest.approx(0.0) and j[KP["neck"]].tolist() == pytest.approx([0, -.5, 0])

    def turned(deg):           # rotate the body about the vertical axis: x' = x cos - z sin, z' = x sin + z cos
        w = world.copy()
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        w[:, 0], w[:, 2] = world[:, 0] * c - world[:, 2] * s, world[:, 0] * s + world[:, 2] * c
        return world_yaw(world_to_openpose18(w, 0.5))

    # +90 in reid_aug.views: facing the image's right, i.e. the left-pointing line now points away (+z)
    assert turned(90) == pytest.approx(90.0) and abs(turned(180)) == pytest.approx(180.0)
    world[11, 3] = 0.1
    assert np.isnan(world_to_openpose18(world, 0.5)[KP["neck"]]).all()


def test_back_views_lose_the_face_as_openpose_reports_them():
    from reid_aug.keypoints.blazepose import openpose_visibility
    from reid_aug.keypoints.skeleton import FLIP_PERMUTATION

    # a person facing the camera (shoulders as wide as the lift's frontal template: yaw 0)
    front = np.array([[12, 32], [24, 32], [24, 14], [40, 12], [54, 11], [24, 50], [40, 52], [54, 53], [64, 22],
                      [88, 22], [112, 22], [64, 42], [88, 42], [112, 42], [10, 30], [10, 34], [11, 27], [11, 37]])
    back = front[list(FLIP_PERMUTATION)]          # the person's right now on the image's right: seen from behind
    out = openpose_visibility(np.stack([front, back]))
    assert (out[0] == front).all()                # a frontal view keeps every joint
    assert (out[1, [KP["nose"], KP["r_eye"], KP["l_eye"]]] == MISSING).all()
    assert (out[1, [KP["neck"], KP["r_shoulder"], KP["l_hip"], KP["r_ankle"]]] == back[[1, 2, 11, 10]]).all()
    unliftable = front.copy()
    unliftable[KP["r_hip"]] = MISSING
    assert (openpose_visibility(unliftable[None])[0] == unliftable).all()
