"""The built-in toy pedestrian dataset (reid_aug.toyset.render)."""
from __future__ import annotations

import csv
import hashlib
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reid_aug.toyset import render as syn
from reid_aug.toyset.render import ToyParams, ensure_toy, iter_samples, make_toy, plan_dataset
from reid_aug.errors import DatasetError
from reid_aug.keypoints.annotations import read_annotations
from reid_aug.keypoints.skeleton import KP, MISSING, TORSO_JOINTS

TORCHREID_PATTERN = re.compile(r"([-\d]+)_c(\d)")          # what torchreid's Market1501 reader uses
MARKET_NAME = re.compile(r"^(-1|\d{4})_c([1-6])s([1-6])_(\d{6})_(\d{2})\.jpg$")
SMALL = dict(n_train_ids=6, n_test_ids=6, images_per_id=4, gallery_per_id=5, n_test_pairs=40)
FACE = [KP["nose"], KP["r_eye"], KP["l_eye"]]


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _params(root: Path) -> ToyParams:
    return ToyParams(**json.loads((root / "toy.json").read_text())["params"])


def _names(root: Path, folder: str) -> list[str]:
    return sorted(p.name for p in (root / folder).iterdir())


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return make_toy(tmp_path_factory.mktemp("syn") / "small", seed=0, **SMALL)


@pytest.fixture(scope="module")
def small_samples(small):
    """The same dataset drawn again in memory, with background-only copies."""
    return list(iter_samples(_params(small), with_background=True))


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_bytes_and_other_seed_differs(small, tmp_path):
    again = make_toy(tmp_path / "again", seed=0, **SMALL)
    digest = _tree_digest(small)
    assert digest == _tree_digest(again)
    assert any(k.endswith(".jpg") for k in digest) and "annotations/toy-annotation-test.csv" in digest

    other = make_toy(tmp_path / "other", seed=1, **SMALL)
    d1 = _tree_digest(other)
    assert d1["annotations/toy-annotation-train.csv"] != digest["annotations/toy-annotation-train.csv"]
    jpg0 = [v for k, v in digest.items() if k.endswith(".jpg")]
    jpg1 = [v for k, v in d1.items() if k.endswith(".jpg")]
    assert not set(jpg0) & set(jpg1)


# ----------------------------------------------------------------------------- layout


def test_layout_names_and_market_protocol(small):
    p = _params(small)
    for folder in ("bounding_box_train", "bounding_box_test", "query", "annotations"):
        assert (small / folder).is_dir()
    assert (small / "contact_sheet.png").is_file()
    all_names = []
    parsed = {}
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        rows = []
        for n in _names(small, folder):
            assert MARKET_NAME.match(n), n
            pid, cam = map(int, TORCHREID_PATTERN.search(n).groups())
            assert 1 <= cam <= 6
            rows.append((n, pid, cam))
        parsed[folder] = rows
        all_names += [r[0] for r in rows]
    assert len(all_names) == len(set(all_names))
    from reid_aug.dataset.market import parse_market_name

    for rows in parsed.values():
        for n, pid, cam in rows:
            assert parse_market_name(n) == (pid, cam)

    train, gallery, query = parsed["bounding_box_train"], parsed["bounding_box_test"], parsed["query"]
    assert len(train) == p.n_train_ids * p.images_per_id
    normal = [r for r in gallery if r[1] > 0]
    assert len(normal) == p.n_test_ids * p.gallery_per_id
    n_junk = sum(r[1] == -1 for r in gallery)
    n_distr = sum(r[1] == 0 for r in gallery)
    assert n_junk == round(p.junk_frac * len(normal)) > 0
    assert n_distr == round(p.distractor_frac * len(normal)) > 0
    assert all(r[1] > 0 for r in train + query)

    # Train and test identities are disjoint; every test identity has queries and gallery images.
    train_ids = {r[1] for r in train}
    test_ids = {r[1] for r in normal}
    assert len(train_ids) == p.n_train_ids and len(test_ids) == p.n_test_ids
    assert not train_ids & test_ids
    assert {r[1] for r in query} == test_ids
    # Each identity is seen by >= 2 cameras; queries: at most one per identity and camera, from a
    # camera the identity's gallery has, and the gallery always holds it in another camera.
    for rows in (train, normal):
        cams = {}
        for _, pid, cam in rows:
            cams.setdefault(pid, set()).add(cam)
        assert all(len(c) >= 2 for c in cams.values())
    gal_cams = {}
    for _, pid, cam in normal:
        gal_cams.setdefault(pid, set()).add(cam)
    q_pairs = [(pid, cam) for _, pid, cam in query]
    assert len(q_pairs) == len(set(q_pairs))
    for pid, cam in q_pairs:
        assert cam in gal_cams[pid] and gal_cams[pid] - {cam}
    assert all(n.endswith("_00.jpg") for n, _, _ in query)


def test_images_are_128x64_rgb_jpegs(small):
    for folder in ("bounding_box_train", "query"):
        for n in _names(small, folder)[:5]:
            with Image.open(small / folder / n) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 128)


def test_other_image_size(tmp_path):
    out = make_toy(tmp_path / "big", seed=3, n_train_ids=2, n_test_ids=2, images_per_id=2, gallery_per_id=2,
                         height=160, width=80)
    kps = read_annotations(out / "annotations" / "toy-annotation-train.csv", height=160, width=80)
    n = _names(out, "bounding_box_train")[0]
    with Image.open(out / "bounding_box_train" / n) as im:
        assert im.size == (80, 160)
    assert max(int(k[:, 0].max()) for k in kps.values()) > 127   # feet below row 127: the body scales


# ----------------------------------------------------------------------------- annotations


def test_annotations_round_trip_exactly(small, small_samples):
    train = read_annotations(small / "annotations" / "toy-annotation-train.csv")
    test = read_annotations(small / "annotations" / "toy-annotation-test.csv")
    assert set(train) == set(_names(small, "bounding_box_train"))
    assert set(test) == set(_names(small, "bounding_box_test")) | set(_names(small, "query"))
    assert len(small_samples) == len(train) + len(test)
    for rec, r in small_samples:
        got = (train if rec.split == "train" else test)[rec.name]
        assert got.dtype == np.int16 and got.shape == (18, 2)
        np.testing.assert_array_equal(got, r.keypoints)
        # The JPEG on disk is the in-memory image (up to compression and its sensor noise).
        with Image.open(small / rec.folder / rec.name) as im:
            disk = np.asarray(im, dtype=np.float32)
        err = float(np.abs(disk - r.image).mean())
        assert err < 8.0, f"{rec.name}: mean abs difference {err:.1f} to the in-memory drawing"
    # Missing joints are -1 in both coordinates, present ones inside the image.
    for kp in list(train.values()) + list(test.values()):
        miss = kp[:, 0] == MISSING
        assert np.all(kp[miss] == MISSING)
        assert np.all((kp[~miss, 0] < 128) & (kp[~miss, 1] < 64) & (kp[~miss] >= 0).all(axis=1))
    # Empty distractor crops have no pose; normal images almost always do.
    normal = [r.keypoints for rec, r in small_samples if rec.kind == "normal"]
    assert np.mean([np.all(k[list(TORSO_JOINTS), 0] != MISSING) for k in normal]) > 0.75


def test_keypoints_lie_on_the_drawn_person(small_samples):
    n_joints = 0
    for rec, r in small_samples:
        present = r.keypoints[:, 0] != MISSING
        ys, xs = r.keypoints[present, 0], r.keypoints[present, 1]
        assert r.mask[ys, xs].all(), rec.name
        differs = np.abs(r.image[ys, xs].astype(int) - r.background[ys, xs].astype(int)).max(axis=1) > 0
        assert differs.mean() >= 0.95 if present.any() else True, rec.name
        n_joints += int(present.sum())
        if r.pose is None:
            assert not present.any() and not r.mask.any()
    assert n_joints > 1000


def test_left_right_and_face_joints_follow_the_view(small_samples):
    by_view: dict[str, list[np.ndarray]] = {}
    for rec, r in small_samples:
        if rec.kind == "normal":
            by_view.setdefault(r.pose.view, []).append(r.keypoints)
    assert set(by_view) == {"front", "back", "left", "right"}
    for view, kps in by_view.items():
        k = np.stack(kps)
        pres = k[..., 0] != MISSING
        both = pres[:, KP["r_shoulder"]] & pres[:, KP["l_shoulder"]]
        rx, lx = k[both, KP["r_shoulder"], 1], k[both, KP["l_shoulder"], 1]
        if view == "front":     # facing the camera: the person's right is on the image's left
            assert np.all(rx < lx) and pres[:, KP["nose"]].mean() > 0.8
        elif view == "back":    # a back view hides the face
            assert np.all(rx > lx) and not pres[:, FACE].any()
            assert pres[:, [KP["r_ear"], KP["l_ear"]]].any()
        elif view == "right":   # right side towards the camera: far-side (left) eye and ear hidden
            assert not pres[:, [KP["l_eye"], KP["l_ear"]]].any() and pres[:, KP["r_ear"]].any()
        else:
            assert not pres[:, [KP["r_eye"], KP["r_ear"]]].any() and pres[:, KP["l_ear"]].any()


def test_single_drawings_known_answers():
    rng = np.random.default_rng(5)
    person = syn.sample_person(rng)
    base = syn.sample_pose(rng, 128, 64, person)
    for view, yaw in (("front", 0.0), ("back", np.pi)):
        pose = dataclasses.replace(base, view=view, yaw=yaw, dropped=())
        kp = syn.pose_keypoints(person, pose, 128, 64)
        face_present = kp[FACE, 0] != MISSING
        assert face_present.all() if view == "front" else not face_present.any()
        # Head above neck above hips above knees above ankles.
        y = {n: kp[KP[n], 0] for n in ("neck", "r_hip", "r_knee", "r_ankle")}
        assert y["neck"] < y["r_hip"] < y["r_knee"] < y["r_ankle"]
    # Rotating by pi about the vertical axis mirrors the figure about the pelvis.
    front = syn.pose_keypoints(person, dataclasses.replace(base, yaw=0.3, dropped=()), 128, 64)
    back = syn.pose_keypoints(person, dataclasses.replace(base, yaw=0.3 + np.pi, dropped=()), 128, 64)
    for j in (KP["r_shoulder"], KP["l_hip"], KP["r_ankle"]):
        assert abs((front[j, 1] - base.cx) + (back[j, 1] - base.cx)) <= 1.0
        assert front[j, 0] == back[j, 0]
    # A dropped joint is missing in the annotation.
    kp = syn.pose_keypoints(person, dataclasses.replace(base, yaw=0.0, dropped=(KP["l_wrist"],)), 128, 64)
    assert kp[KP["l_wrist"], 0] == MISSING and kp[KP["r_wrist"], 0] != MISSING


# ----------------------------------------------------------------------------- pairs and sheet


def test_test_pairs_are_same_identity_torso_complete_gallery_pairs(small):
    with open(small / "annotations" / "toy-pairs-test.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["from", "to"]
    pairs = [tuple(r) for r in rows[1:]]
    ann = read_annotations(small / "annotations" / "toy-annotation-test.csv")
    gallery = set(_names(small, "bounding_box_test"))
    assert len(pairs) == len(set(pairs)) == SMALL["n_test_pairs"]
    for a, b in pairs:
        assert a != b and a in gallery and b in gallery
        assert a.split("_")[0] == b.split("_")[0] and int(a.split("_")[0]) > 0
        for n in (a, b):
            assert np.all(ann[n][list(TORSO_JOINTS), 0] != MISSING)


def test_contact_sheet_is_a_real_picture(small):
    with Image.open(small / "contact_sheet.png") as im:
        assert im.format == "PNG" and im.width > 500 and im.height > 500
        a = np.asarray(im.convert("RGB"), dtype=np.float32)
    assert a.std() > 20        # not blank


# ----------------------------------------------------------------------------- folders


def test_existing_outputs(small, tmp_path):
    # Same parameters: returned untouched.
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    assert make_toy(small, seed=0, **SMALL) == small
    assert before == {p: p.stat().st_mtime_ns for p in small.rglob("*")}
    # Other parameters or foreign content: a clear error, nothing touched.
    with pytest.raises(DatasetError, match="other parameters"):
        make_toy(small, seed=1, **SMALL)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a toy dataset"):
        make_toy(foreign, seed=0, **SMALL)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        make_toy(a_file, **SMALL)
    # An existing empty folder is filled.
    empty = tmp_path / "empty"
    empty.mkdir()
    make_toy(empty, seed=0, n_train_ids=2, n_test_ids=2, images_per_id=2, gallery_per_id=2)
    assert (empty / "toy.json").is_file()
    with pytest.raises(DatasetError, match="images_per_id"):
        make_toy(tmp_path / "bad", images_per_id=1)


def test_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    real_render = syn.render
    calls = {"n": 0}

    def failing_render(*a, **k):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real_render(*a, **k)

    monkeypatch.setattr(syn, "render", failing_render)
    with pytest.raises(KeyboardInterrupt):
        make_toy(tmp_path / "out", **SMALL)
    assert list(tmp_path.iterdir()) == []
    # A temp folder left by a killed process (its pid is gone) is cleaned up by the next build.
    monkeypatch.setattr(syn, "render", real_render)
    stale = tmp_path / ".out.partial-999999999-abc"
    (stale / "query").mkdir(parents=True)
    make_toy(tmp_path / "out", n_train_ids=2, n_test_ids=2, images_per_id=2, gallery_per_id=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_losing_a_race_discards_its_copy(small, monkeypatch):
    """The other process renamed its copy into place while this one was drawing."""
    real_check = syn._check_existing
    seen = {"n": 0}

    def check(out, params):
        seen["n"] += 1
        return False if seen["n"] == 1 else real_check(out, params)

    monkeypatch.setattr(syn, "_check_existing", check)
    before = _tree_digest(small)
    assert make_toy(small, seed=0, **SMALL) == small
    assert seen["n"] == 2
    assert _tree_digest(small) == before
    assert sorted(p.name for p in small.parent.iterdir()) == [small.name]


def test_stale_revision(tmp_path, monkeypatch):
    """A folder drawn by another revision of the drawing code is never taken for this one."""
    import functools

    tiny = dict(n_train_ids=2, n_test_ids=2, images_per_id=2, gallery_per_id=2)
    monkeypatch.setattr(syn, "make_toy", functools.partial(make_toy, **tiny))
    root = ensure_toy(cache_dir=tmp_path, seed=4)
    assert root.stat().st_mode & 0o044 == 0o044          # readable by others, unlike a mkdtemp folder
    marker = root / "toy.json"
    info = json.loads(marker.read_text())
    assert info["revision"] == syn.DRAWING_REVISION
    info["revision"] = syn.DRAWING_REVISION - 1
    marker.write_text(json.dumps(info))
    with pytest.raises(syn.StaleToyError, match="another revision"):
        make_toy(root, seed=4, **tiny)
    assert ensure_toy(cache_dir=tmp_path, seed=4) == root   # the cache is rebuilt
    assert json.loads(marker.read_text())["revision"] == syn.DRAWING_REVISION
    assert sorted(p.name for p in tmp_path.iterdir()) == [root.name]


# ----------------------------------------------------------------------------- default size


def _band_colours(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        a = np.asarray(im, dtype=np.float32)
    h, w = a.shape[:2]
    centre = a[:, w // 4: 3 * w // 4]
    return np.concatenate([centre[i * h // 4:(i + 1) * h // 4].mean(axis=(0, 1)) for i in range(4)])


def mean_colour_rank1(root: Path) -> tuple[float, float]:
    """Rank-1 of a mean-colour (4 horizontal bands of the image centre) nearest-neighbour matcher,
    Market protocol (junk and same identity + same camera removed from each query's gallery);
    returns (rank-1, chance)."""
    def load(folder):
        names = _names(root, folder)
        ids = np.array([[int(v) for v in TORCHREID_PATTERN.search(n).groups()] for n in names])
        return np.stack([_band_colours(root / folder / n) for n in names]), ids[:, 0], ids[:, 1]

    qf, qp, qc = load("query")
    gf, gp, gc = load("bounding_box_test")
    dist = ((qf[:, None] - gf[None]) ** 2).sum(-1)
    hits = []
    for i in range(len(qf)):
        keep = (gp != -1) & ~((gp == qp[i]) & (gc == qc[i]))
        hits.append(gp[np.flatnonzero(keep)[np.argmin(dist[i, keep])]] == qp[i])
    return float(np.mean(hits)), 1.0 / len(set(gp[gp > 0].tolist()))


def test_default_dataset_via_cache_is_a_fair_reid_problem(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_AUG_CACHE", str(tmp_path / "cache"))
    root = ensure_toy(seed=0)
    assert root == tmp_path / "cache" / "toy-v1-seed0"
    info = json.loads((root / "toy.json").read_text())
    assert info["params"] == dataclasses.asdict(ToyParams())
    counts = info["counts"]
    assert counts["bounding_box_train"] == syn.DEFAULT_N_TRAIN_IDS * syn.DEFAULT_IMAGES_PER_ID
    assert 1500 <= sum(counts[k] for k in ("bounding_box_train", "bounding_box_test", "query")) <= 3000
    assert counts["test_pairs"] == syn.DEFAULT_N_TEST_PAIRS
    mtime = (root / "toy.json").stat().st_mtime_ns
    assert ensure_toy(seed=0) == root and (root / "toy.json").stat().st_mtime_ns == mtime

    # Identities can be told apart from colours, but far from perfectly: backgrounds, lighting,
    # viewpoints and look-alike identities get in the way. Measured: about 0.10-0.15 (chance 0.007).
    rank1, chance = mean_colour_rank1(root)
    print(f"mean-colour NN rank-1 on the default test split: {rank1:.3f} (chance {chance:.4f})")
    assert rank1 > 5 * chance
    assert rank1 < 0.5

    # The dataset goes through the Market reader like real data.
    from reid_aug.dataset.market import load_dataset

    index = load_dataset(root)
    t = index.table
    assert t["has_pose"].all()
    assert set(t[t["split"] == "gallery"]["kind"]) == {"normal", "junk", "distractor"}
    assert index.test_pairs_csv is not None and index.test_pairs_csv.name == "toy-pairs-test.csv"
    train_ann = read_annotations(root / "annotations" / "toy-annotation-train.csv")
    for name in list(train_ann)[:50]:
        np.testing.assert_array_equal(index.keypoints[name], train_ann[name])


def test_plan_is_cheap_and_matches_params():
    params = ToyParams(seed=7, **SMALL)
    records, persons = plan_dataset(params)
    assert len(persons) == SMALL["n_train_ids"] + SMALL["n_test_ids"]
    assert [r.index for r in records] == list(range(len(records)))
    assert plan_dataset(params)[0] == records


def test_the_old_command_name_still_draws_the_toy_dataset(tmp_path):
    from click.testing import CliRunner

    import cli

    res = CliRunner().invoke(cli.main, ["make-synthetic", "--out", str(tmp_path / "t"), "--n-train-ids", "2",
                                        "--n-test-ids", "2", "--images-per-id", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t" / "toy.json").is_file() and "make-synthetic" not in CliRunner().invoke(
        cli.main, ["--help"]).output
