"""Market-1501 reader, `prepare`, and the clear errors for bad dataset folders."""
import json
import shutil
import sys
import types

import numpy as np
import pandas as pd
import pytest

from reid_aug.dataset import check_images, load_dataset, parse_market_name, resolve_dataset_root
from reid_aug.dataset.market import name_kind
from reid_aug.dataset.prepare import format_summary, prepare_dataset
from reid_aug.errors import DatasetError
from reid_aug.keypoints import MISSING
from reid_aug.keypoints.annotations import read_annotations, write_annotations
from reid_aug.pairs.torch_dataset import load_image

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def write_jpeg(path, seed=0, size=(64, 128)):
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, quality=90)


def standing_kp(dx=0):
    kp = np.full((18, 2), MISSING, np.int16)
    kp[[1, 2, 5, 8, 11]] = [(26, 32 + dx), (27, 22 + dx), (27, 42 + dx), (64, 26 + dx), (64, 38 + dx)]
    return kp


def make_tree(root, files, annotations=None, sub="Market-1501-v15.09.15", pairs=None):
    """A tiny Market-layout dataset: files = {split: [names]}; annotations = {name: kp} or None."""
    image_root = root / sub if sub else root
    for split, d in SPLIT_DIRS.items():
        (image_root / d).mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(files.get(split, [])):
            write_jpeg(image_root / d / name, seed=hash((split, i)) % 1000)
    if annotations is not None:
        train_names = set(files.get("train", []))
        write_annotations(root / "annotations" / "tiny-annotation-train.csv",
                          {n: k for n, k in annotations.items() if n in train_names})
        write_annotations(root / "annotations" / "tiny-annotation-test.csv",
                          {n: k for n, k in annotations.items() if n not in train_names})
    if pairs is not None:
        (root / "annotations" / "tiny-pairs-test.csv").write_text(
            "from,to\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    return root


TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s1_000100_01.jpg"]
QUERY = ["0010_c1s1_001051_00.jpg"]
GALLERY = ["0010_c2s1_000301_01.jpg", "-1_c4s6_022316_11.jpg.jpg", "0000_c1s6_023071_04.jpg.jpg",
           "0011_c6s1_000200_02.jpg"]
FILES = {"train": TRAIN, "query": QUERY, "gallery": GALLERY}


@pytest.fixture
def tiny(tmp_path):
    ann = {n: standing_kp() for n in TRAIN + GALLERY}
    ann[TRAIN[2]] = standing_kp()
    ann[TRAIN[2]][8] = MISSING  # right hip missing: has_pose but not pose_ok
    del ann["0011_c6s1_000200_02.jpg"]  # no annotation row
    ann["0099_c1s1_000001_01.jpg"] = standing_kp()  # a row without an image
    root = make_tree(tmp_path / "tiny", FILES, ann)
    (root / "Market-1501-v15.09.15" / "bounding_box_train" / "Thumbs.db").write_bytes(b"junk")
    return root


# ----------------------------------------------------------------------------- names
@pytest.mark.parametrize("name, expected", [
    ("0002_c1s1_000451_03.jpg", (2, 1)),
    ("1501_c6s4_001877_05.jpg", (1501, 6)),
    ("-1_c3s2_012345_01.jpg", (-1, 3)),
    ("0000_c1s6_023071_04.jpg", (0, 1)),
    ("0000_c1s6_023071_04.jpg.jpg", (0, 1)),
    ("1488_c5s3_071737_01.jpg.jpg", (1488, 5)),
    ("-1_c4s6_022316_11.jpg.jpg", (-1, 4)),
    ("0005_c2_f0046985.jpg", (5, 2)),          # DukeMTMC-reID
    ("0001_c1_1.png", (1, 1)),                  # CUHK03-NP
    ("bounding_box_train/0002_c1s1_000451_03.jpg", (2, 1)),
])
def test_parse_market_name_known_answers(name, expected):
    assert parse_market_name(name) == expected


@pytest.mark.parametrize("name", ["foo.jpg", "0002_s1_000451_03.jpg", "abc_c1s1_000451_03.jpg",
                                  "0002_c0s1_000451_03.jpg", "0002_c1s1_000451_03.txt", "-2_c1s1_000451_03.jpg",
                                  "0002_c1s1_000451_03"])
def test_parse_market_name_rejects(name):
    with pytest.raises(DatasetError, match="cannot parse|camera"):
        parse_market_name(name)


def test_name_kind():
    assert [name_kind(p) for p in (-1, 0, 1, 1501)] == ["junk", "distractor", "normal", "normal"]


# ----------------------------------------------------------------------------- reader
def test_load_tiny_dataset(tiny):
    index = load_dataset(tiny)
    t = index.table
    assert list(t.columns) == ["split", "name", "path", "pid", "camid", "kind", "has_pose", "pose_ok"]
    assert t.groupby("split").size().to_dict() == {"train": 3, "query": 1, "gallery": 4}  # Thumbs.db ignored
    assert index.image_root == tiny / "Market-1501-v15.09.15" and index.annotations_dir == tiny / "annotations"
    row = t.set_index("name").loc["-1_c4s6_022316_11.jpg.jpg"]
    assert (row.pid, row.camid, row.kind, row.split) == (-1, 4, "junk", "gallery")
    assert t.set_index("name").loc["0000_c1s6_023071_04.jpg.jpg"].kind == "distractor"
    by_name = t.set_index("name")
    assert by_name.loc[TRAIN[0], "pose_ok"] and not by_name.loc[TRAIN[2], "pose_ok"] and by_name.loc[TRAIN[2], "has_pose"]
    assert not by_name.loc["0011_c6s1_000200_02.jpg", "has_pose"] and not by_name.loc[QUERY[0], "has_pose"]
    assert sorted(index.missing_pose["name"]) == sorted(["0011_c6s1_000200_02.jpg", QUERY[0]])
    kps = index.keypoints_for([TRAIN[0], QUERY[0]])
    assert kps.shape == (2, 18, 2) and kps.dtype == np.int16
    assert np.array_equal(kps[0], standing_kp()) and (kps[1] == MISSING).all()
    assert index.path_of(TRAIN[1]).is_file() and len(index.split("train")) == 3
    assert index.test_pairs_csv is None
    with pytest.raises(DatasetError, match="not in the dataset"):
        index.path_of("nope.jpg")


@pytest.mark.parametrize("sub", [None, "Market-1501-v15.09.15", "DukeMTMC-reID"])
def test_layout_variants(tmp_path, sub):
    root = make_tree(tmp_path / "d", FILES, sub=sub)
    index = load_dataset(root)
    assert index.image_root == (root / sub if sub else root)
    assert len(index.table) == 8 and not index.table["has_pose"].any()


def test_missing_split_folder_is_named(tmp_path):
    root = make_tree(tmp_path / "d", FILES)
    shutil.rmtree(root / "Market-1501-v15.09.15" / "query")
    with pytest.raises(DatasetError, match=r"lacks the folder\(s\) query.*bounding_box_test/ and query/"):
        load_dataset(root)


def test_no_layout_error_says_what_is_expected(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no Market-1501 layout.*Market-1501-v15\.09\.15.*bounding_box_train"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_several_datasets_in_one_folder_is_an_error(tmp_path):
    make_tree(tmp_path / "d", FILES, sub="A")
    make_tree(tmp_path / "d", FILES, sub="B")
    with pytest.raises(DatasetError, match="several datasets.*A, B"):
        load_dataset(tmp_path / "d")


def test_unparseable_names_are_listed(tmp_path):
    root = make_tree(tmp_path / "d", {**FILES, "train": TRAIN + ["photo.jpg", "0003_x1_00.jpg"]})
    with pytest.raises(DatasetError, match=r"2 file name\(s\).*train: 0003_x1_00.jpg; train: photo.jpg"):
        load_dataset(root)


def test_malformed_annotation_file_is_reported_with_line(tmp_path):
    root = make_tree(tmp_path / "d", FILES, {n: standing_kp() for n in TRAIN})
    csv = root / "annotations" / "tiny-annotation-train.csv"
    lines = csv.read_text().splitlines()
    lines[2] = lines[2].replace("[", "(", 1)
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"tiny-annotation-train.csv:3: malformed row"):
        load_dataset(root)


def test_two_annotation_files_of_one_kind_is_an_error(tmp_path):
    root = make_tree(tmp_path / "d", FILES, {n: standing_kp() for n in TRAIN})
    shutil.copy(root / "annotations" / "tiny-annotation-train.csv", root / "annotations" / "old-annotation-train.csv")
    with pytest.raises(DatasetError, match="several files matching"):
        load_dataset(root)


# ----------------------------------------------------------------------------- corrupt images
def _corrupt_copy(tmp_path, sources):
    """A dataset whose train images are copies of `sources`; the second is truncated, the third is not a JPEG."""
    root = make_tree(tmp_path / "d", {"query": QUERY, "gallery": GALLERY[:1]})
    train = root / "Market-1501-v15.09.15" / "bounding_box_train"
    names = [f"{i + 1:04d}_c1s1_00000{i}_01.jpg" for i in range(len(sources))]
    for src, name in zip(sources, names):
        shutil.copy(src, train / name)
    data = (train / names[1]).read_bytes()
    (train / names[1]).write_bytes(data[: len(data) // 2])
    (train / names[2]).write_bytes(b"\x00" * 100)
    return root, train, names


def _check_corrupt_errors(root, train, names):
    with pytest.raises(DatasetError) as e:
        load_dataset(root, check_images=True)
    msg = str(e.value)
    assert "2 of" in msg and names[1] in msg and names[2] in msg and names[0] not in msg
    assert "truncated" in msg and "Replace them" in msg
    index = load_dataset(root)  # without the check, indexing still works
    with pytest.raises(DatasetError, match=names[1]):
        check_images(index)
    assert check_images([train / names[0], train / names[3]]) == 2
    with pytest.raises(DatasetError, match=f"cannot decode image .*{names[1]}.*--check-images"):
        load_image(train / names[1])
    with pytest.raises(DatasetError, match="not found"):
        load_image(train / "missing.jpg")
    assert load_image(train / names[0]).shape == (3, 128, 64)


def test_corrupt_and_truncated_generated_jpegs(tmp_path):
    srcs = []
    for i in range(4):
        p = tmp_path / "src" / f"{i}.jpg"
        write_jpeg(p, seed=i)
        srcs.append(p)
    _check_corrupt_errors(*_corrupt_copy(tmp_path, srcs))


@pytest.mark.market
def test_corrupt_and_truncated_real_jpegs(tmp_path, market_root):
    train = market_root / "Market-1501-v15.09.15" / "bounding_box_train"
    srcs = [train / n for n in ["0002_c1s1_000451_03.jpg", "0002_c1s1_000551_01.jpg",
                                "0007_c2s3_070952_01.jpg", "0010_c6s4_002427_02.jpg"]]
    _check_corrupt_errors(*_corrupt_copy(tmp_path, srcs))


# ----------------------------------------------------------------------------- dataset specs
def test_resolve_dataset_root(tmp_path, monkeypatch):
    root = make_tree(tmp_path / "m", FILES)
    monkeypatch.setenv("REID_AUG_MARKET_ROOT", str(root))
    assert resolve_dataset_root("market") == root
    monkeypatch.setenv("REID_AUG_MARKET_ROOT", str(tmp_path / "gone"))
    with pytest.raises(DatasetError, match="REID_AUG_MARKET_ROOT=.*gone is not a folder"):
        resolve_dataset_root("market")
    monkeypatch.delenv("REID_AUG_MARKET_ROOT")
    monkeypatch.chdir(tmp_path)  # no ../shared/datasets/market1501 here
    with pytest.raises(DatasetError, match="set REID_AUG_MARKET_ROOT.*or pass the dataset folder"):
        resolve_dataset_root("market")
    fallback = make_tree(tmp_path / "shared" / "datasets" / "market1501", FILES)
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")  # ../shared/datasets/market1501 relative to the cwd
    assert resolve_dataset_root("market") == fallback.resolve()
    assert resolve_dataset_root(root) == root and resolve_dataset_root(str(root)) == root


def test_resolve_toy_builds_through_ensure_toy(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("reid_aug.toyset.render")
    fake.ensure_toy = lambda: calls.append(1) or tmp_path / "toy"
    monkeypatch.setitem(sys.modules, "reid_aug.toyset.render", fake)
    assert resolve_dataset_root("toy") == tmp_path / "toy" and calls == [1]
    # "synthetic" is the toy dataset's old name: old run records still resolve.
    assert resolve_dataset_root("synthetic") == tmp_path / "toy" and calls == [1, 1]


# ----------------------------------------------------------------------------- prepare
def test_prepare_writes_index_and_reports_missing_annotations(tiny, tmp_path):
    work = tmp_path / "work"
    summary = prepare_dataset(tiny, work)
    table = pd.read_csv(work / "index.csv", keep_default_na=False)
    assert len(table) == 8 and list(table.columns)[:6] == ["split", "name", "path", "pid", "camid", "kind"]
    assert table.set_index("name").loc["-1_c4s6_022316_11.jpg.jpg", "pid"] == -1
    on_disk = json.loads((work / "summary.json").read_text())
    assert on_disk == {k: v for k, v in summary.items() if k != "work_dir"}
    assert summary["splits"]["train"] == {**summary["splits"]["train"], "images": 3, "identities": 2, "cameras": 3,
                                          "with_keypoints": 3, "pose_ok": 2, "missing_annotation": 0}
    assert summary["splits"]["gallery"]["junk"] == 1 and summary["splits"]["gallery"]["distractors"] == 1
    assert summary["splits"]["gallery"]["identities"] == 2
    miss = summary["missing_annotation"]
    assert miss["count"] == 2 and miss["by_split"] == {"train": 0, "query": 1, "gallery": 1}
    assert sorted(miss["examples"]) == ["gallery/0011_c6s1_000200_02.jpg", f"query/{QUERY[0]}"]
    assert summary["annotation_rows_without_image"] == {"count": 1, "examples": ["0099_c1s1_000001_01.jpg"]}
    assert summary["train_pairs"] == {"pairs": 2, "images": 2, "identities": 1}
    text = format_summary(summary)
    assert "images without an annotation row: 2 (query 1, gallery 1)" in text and "0011_c6s1_000200_02.jpg" in text
    assert "train pairs: 2 over 2 images of 1 identities" in text
    assert not list(work.glob(".*.tmp"))  # atomic writes leave no temp files


def test_prepare_warns_about_unannotated_gallery_images_but_not_the_query(tiny, tmp_path, caplog):
    """Market's annotation files never cover query images: that is normal and is said as info only."""
    import logging

    with caplog.at_level(logging.INFO, logger="reid_aug.dataset.prepare"):
        prepare_dataset(tiny, tmp_path / "work")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 image(s) have no annotation row (gallery 1" in warnings[0]
    assert QUERY[0] not in warnings[0] and "reid-aug annotate" in warnings[0]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any("do not cover the 1 query images" in m for m in infos)


def test_prepare_check_images_fails_cleanly_and_writes_nothing(tiny, tmp_path):
    bad = tiny / "Market-1501-v15.09.15" / "query" / QUERY[0]
    bad.write_bytes(bad.read_bytes()[:200])
    with pytest.raises(DatasetError, match=QUERY[0]):
        prepare_dataset(tiny, tmp_path / "work", check_images=True)
    assert not (tmp_path / "work" / "index.csv").exists()


def test_synthetic_dataset_reads_back_with_identical_keypoints(tiny_toy):
    index = load_dataset(tiny_toy)
    assert set(index.table["split"]) == {"train", "query", "gallery"}
    merged = {}
    for f in sorted((tiny_toy / "annotations").glob("*annotation-*.csv")):
        merged.update(read_annotations(f))
    assert merged.keys() == index.keypoints.keys()
    assert all(np.array_equal(merged[n], index.keypoints[n]) for n in merged)


# ----------------------------------------------------------------------------- real Market-1501
@pytest.fixture(scope="module")
def market_summary(market_root, tmp_path_factory):
    return prepare_dataset(market_root, tmp_path_factory.mktemp("prep"))


@pytest.mark.market
def test_real_market_counts(market_summary):
    s = market_summary["splits"]
    assert (s["train"]["images"], s["query"]["images"], s["gallery"]["images"]) == (12936, 3368, 19732)
    assert s["train"]["identities"] == 751 and s["query"]["identities"] == 750
    assert s["gallery"]["identities"] == 750  # the 750 test identities, besides junk and distractors
    assert (s["gallery"]["junk"], s["gallery"]["distractors"]) == (3819, 2798)
    assert all(s[k]["cameras"] == 6 for k in s)
    assert s["train"]["with_keypoints"] == 12936 and s["gallery"]["with_keypoints"] == 19732
    # the pose-transfer annotations cover train + bounding_box_test, not query: reported, not dropped
    assert market_summary["missing_annotation"]["count"] == 3368
    assert market_summary["missing_annotation"]["by_split"]["query"] == 3368
    assert market_summary["train_pairs"] == {"pairs": 263632, "images": 12116, "identities": 745}
    assert market_summary["test_pairs"]["n"] == 12000


@pytest.mark.market
def test_real_market_double_extension_names(market_root):
    index = load_dataset(market_root)
    t = index.table.set_index("name")
    double = [n for n in t.index if n.endswith(".jpg.jpg")]
    assert len(double) == 24
    assert t.loc["1488_c5s3_071737_01.jpg.jpg", ["pid", "camid", "split", "has_pose"]].tolist() == [1488, 5, "gallery",
                                                                                                    True]
    assert index.keypoints["1488_c5s3_071737_01.jpg.jpg"][1].tolist() == [26, 32]  # neck (y, x) of that row
