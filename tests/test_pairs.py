"""Training/test pairs and the PyTorch pair dataset."""
import hashlib

import numpy as np
import pytest
import torch

from reid_aug.dataset import load_dataset
from reid_aug.errors import DatasetError
from reid_aug.keypoints import MISSING
from reid_aug.keypoints.annotations import write_annotations
from reid_aug.pairs import pairs as pairs_mod
from reid_aug.pairs import (
    PoseImageDataset,
    PosePairDataset,
    add_pose_maps,
    load_image,
    train_pair_pool,
    train_pairs,
)
from reid_aug.pose.maps import flip_images, flip_keypoints, flip_pose_maps, pose_heatmaps, pose_masks

SPLIT_DIRS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}


def standing_kp(dy=0):
    kp = np.full((18, 2), MISSING, np.int16)
    kp[[0, 1, 2, 5, 8, 11, 9, 12]] = [(14 + dy, 30), (26 + dy, 32), (27 + dy, 22), (27 + dy, 42), (64 + dy, 26),
                                      (64 + dy, 38), (90 + dy, 26), (90 + dy, 37)]
    return kp


def build(root, spec, size=(64, 128), test_pairs_rows=None):
    """spec = {split: [(name, kp or None)]}: tiny JPEGs + annotation CSVs in the Market layout."""
    from PIL import Image

    rng = np.random.default_rng(0)
    ann = {"train": {}, "test": {}}
    for split, d in SPLIT_DIRS.items():
        (root / d).mkdir(parents=True, exist_ok=True)
        for name, kp in spec.get(split, []):
            arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / d / name, quality=90)
            if kp is not None:
                ann["train" if split == "train" else "test"][name] = kp
    write_annotations(root / "annotations" / "fix-annotation-train.csv", ann["train"])
    write_annotations(root / "annotations" / "fix-annotation-test.csv", ann["test"])
    if test_pairs_rows is not None:
        (root / "annotations" / "fix-pairs-test.csv").write_text(
            "from,to\n" + "".join(f"{a},{b}\n" for a, b in test_pairs_rows))
    return root


def no_hip(kp):
    kp = kp.copy()
    kp[11] = MISSING
    return kp


A = [f"0001_c{c}s1_00000{c}_01.jpg" for c in (1, 2, 3)]        # 3 complete poses -> 6 pairs
B = ["0002_c1s1_000010_01.jpg", "0002_c4s1_000011_01.jpg"]      # 2 complete -> 2 pairs
B_BAD = "0002_c5s1_000012_01.jpg"                               # left hip missing: excluded
C = "0003_c2s1_000020_01.jpg"                                   # an identity's only complete pose: no pair
D = "0004_c1s1_000030_01.jpg"                                   # no annotation row: excluded
G = [f"0050_c{c}s1_00010{c}_01.jpg" for c in (1, 2, 3)] + [f"0051_c{c}s1_00020{c}_01.jpg" for c in (1, 2)]


@pytest.fixture(scope="module")
def fixture_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs") / "fix"
    spec = {
        "train": [(n, standing_kp(i)) for i, n in enumerate(A)] + [(n, standing_kp(-i)) for i, n in enumerate(B)]
        + [(B_BAD, no_hip(standing_kp())), (C, standing_kp()), (D, None)],
        "query": [("0050_c4s1_000300_00.jpg", None)],
        "gallery": [(n, standing_kp(i)) for i, n in enumerate(G)] + [("0000_c1s1_000400_01.jpg", standing_kp())],
    }
    build(root, spec, test_pairs_rows=[(G[0], G[1]), (G[3], G[4]), (G[2], G[0])])
    return load_dataset(root)


# ----------------------------------------------------------------------------- train pairs
def test_train_pairs_on_hand_made_fixture(fixture_index):
    pairs = train_pairs(fixture_index)
    assert list(pairs.columns) == ["from", "to"] and len(pairs) == 3 * 2 + 2 * 1
    expected = {(a, b) for a in A for b in A if a != b} | {(B[0], B[1]), (B[1], B[0])}
    assert set(zip(pairs["from"], pairs["to"])) == expected
    assert list(zip(pairs["from"], pairs["to"]))[:2] == [(A[0], A[1]), (A[0], A[2])]  # pid, then names, ordered
    pool = train_pair_pool(fixture_index)
    assert sorted(pool["name"]) == sorted(A + B + [C]) and pool["pid"].nunique() == 3


@pytest.fixture(scope="module")
def market_index(market_root):
    return load_dataset(market_root)


@pytest.mark.market
def test_real_market_train_pairs(market_index):
    index = market_index
    pairs = train_pairs(index)
    pool = train_pair_pool(index)
    assert len(pairs) == 263632
    assert len(pool) == 12116 and pool["pid"].nunique() == 745
    pid = dict(zip(index.table["name"], index.table["pid"]))
    src, tgt = pairs["from"].map(pid), pairs["to"].map(pid)
    assert (src == tgt).all() and (pairs["from"] != pairs["to"]).all()
    assert not pairs.duplicated().any() and set(pairs["from"]) <= set(pool["name"])
    n = pool.groupby("pid").size()
    assert int((n * (n - 1)).sum()) == 263632
    ds = PosePairDataset(index, pairs.iloc[[0, 100000]])
    item = ds[1]
    assert item["src_img"].shape == (3, 128, 64) and -1 <= item["src_img"].min() < item["src_img"].max() <= 1
    assert torch.equal(item["tgt_kp"], torch.from_numpy(index.keypoints[item["tgt_name"]].astype(np.int64)))
    assert item["tgt_mask"].sum() > 500  # a real body covers a good part of the 8192 pixels


# ----------------------------------------------------------------------------- test pairs
def test_test_pairs_from_csv(fixture_index):
    pairs, info = pairs_mod.test_pairs(fixture_index)
    assert list(zip(pairs["from"], pairs["to"])) == [(G[0], G[1]), (G[3], G[4]), (G[2], G[0])]
    expected_hash = hashlib.sha256(f"{G[0]},{G[1]}\n{G[3]},{G[4]}\n{G[2]},{G[0]}\n".encode()).hexdigest()
    assert info == {"source": str(fixture_index.test_pairs_csv), "seed": None, "sha256": expected_hash, "n": 3}


def test_test_pairs_csv_errors(fixture_index, tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text(f"src,dst\n{G[0]},{G[1]}\n")
    with pytest.raises(DatasetError, match="p.csv:1: expected header 'from,to'"):
        pairs_mod.test_pairs(fixture_index, bad)
    bad.write_text(f"from,to\n{G[0]},0999_c1s1_000001_01.jpg\n")
    with pytest.raises(DatasetError, match="1 image name.*0999_c1s1_000001_01.jpg.*another dataset"):
        pairs_mod.test_pairs(fixture_index, bad)
    bad.write_text(f"from,to\n{G[0]},{G[1]}\n{G[0]},\n")
    with pytest.raises(DatasetError, match="p.csv:3: a pair with an empty name"):
        pairs_mod.test_pairs(fixture_index, bad)
    with pytest.raises(DatasetError, match="not found"):
        pairs_mod.test_pairs(fixture_index, tmp_path / "none.csv")


def test_sampled_test_pairs_are_seeded_and_hashed(fixture_index):
    fixture_index.test_pairs_csv, saved = None, fixture_index.test_pairs_csv
    try:
        p0, i0 = pairs_mod.test_pairs(fixture_index, n=5, seed=0)
        p0b, i0b = pairs_mod.test_pairs(fixture_index, n=5, seed=0)
        all_pairs, i_all = pairs_mod.test_pairs(fixture_index, n=100, seed=1)
    finally:
        fixture_index.test_pairs_csv = saved
    assert p0.equals(p0b) and i0 == i0b and i0["source"] == "sampled" and i0["seed"] == 0 and i0["n"] == 5
    # gallery pairs only: 3 * 2 + 2 * 1 = 8 ordered pairs of pose_ok normal identities (distractor excluded)
    assert i_all["n"] == 8 and set(zip(all_pairs["from"], all_pairs["to"])) == (
        {(a, b) for a in G[:3] for b in G[:3] if a != b} | {(G[3], G[4]), (G[4], G[3])})
    assert i_all["sha256"] == pairs_mod.pairs_sha256(all_pairs) and i_all["sha256"] != i0["sha256"]


@pytest.mark.market
def test_real_market_test_pairs(market_index):
    pairs, info = pairs_mod.test_pairs(market_index)
    assert info["n"] == 12000 and info["seed"] is None and info["source"].endswith("market-pairs-test.csv")
    assert (pairs.iloc[0]["from"], pairs.iloc[0]["to"]) == ("0228_c6s3_006817_02.jpg", "0228_c6s1_052601_01.jpg")
    assert info["sha256"] == "025cecd558be400e0de2a6b4dd29361892087bc1b18fb1aa3b5a567a028d7b64"


# ----------------------------------------------------------------------------- torch datasets
def test_pair_dataset_items(fixture_index):
    pairs = train_pairs(fixture_index)
    ds = PosePairDataset(fixture_index, pairs)
    assert len(ds) == 8
    item = ds[0]
    assert set(item) >= {"src_img", "src_pose", "tgt_img", "tgt_pose", "tgt_mask", "src_kp", "tgt_kp",
                         "src_name", "tgt_name"}
    assert (item["src_name"], item["tgt_name"]) == (A[0], A[1]) and item["flipped"] is False
    assert item["src_img"].shape == item["tgt_img"].shape == (3, 128, 64) and item["src_img"].dtype == torch.float32
    assert item["src_img"].min() >= -1 and item["src_img"].max() <= 1 and item["src_img"].std() > 0.3
    assert torch.equal(item["src_img"], load_image(fixture_index.path_of(A[0])))
    assert item["src_pose"].shape == (18, 128, 64) and set(item["src_pose"].unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(item["tgt_kp"], torch.from_numpy(standing_kp(1).astype(np.int64)))
    assert torch.equal(item["tgt_pose"], pose_heatmaps(standing_kp(1)))
    assert torch.equal(item["tgt_mask"], pose_masks(standing_kp(1))) and item["tgt_mask"].shape == (1, 128, 64)
    gauss = PosePairDataset(fixture_index, pairs, pose_mode="gaussian")[0]["src_pose"]
    assert 0 <= gauss.min() and gauss.max() == pytest.approx(1.0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["src_img"].shape == (4, 3, 128, 64) and batch["tgt_mask"].shape == (4, 1, 128, 64)
    assert batch["src_name"] == [A[0]] * 2 + [A[1]] * 2


@pytest.mark.parametrize("mode", ["pg2", "gaussian"])
def test_batched_maps_equal_per_item_maps(fixture_index, mode):
    pairs = train_pairs(fixture_index)
    full = next(iter(torch.utils.data.DataLoader(PosePairDataset(fixture_index, pairs, pose_mode=mode), batch_size=8)))
    lean_ds = PosePairDataset(fixture_index, pairs, pose_mode=mode, with_maps=False)
    assert "src_pose" not in lean_ds[0] and "tgt_mask" not in lean_ds[0]
    lean = add_pose_maps(next(iter(torch.utils.data.DataLoader(lean_ds, batch_size=8))), pose_mode=mode)
    for k in ("src_pose", "tgt_pose", "tgt_mask", "src_img", "tgt_kp"):
        assert torch.equal(full[k], lean[k]), k


def test_flip_is_consistent_within_a_pair(fixture_index):
    pairs = train_pairs(fixture_index)
    plain = PosePairDataset(fixture_index, pairs)[3]
    ds = PosePairDataset(fixture_index, pairs, flip=True)
    torch.manual_seed(0)
    items = [ds[3] for _ in range(100)]
    flipped = [it for it in items if it["flipped"]]
    assert 25 <= len(flipped) <= 75  # probability 0.5 per item
    for it in items:
        if not it["flipped"]:
            assert all(torch.equal(it[k], plain[k]) for k in ("src_img", "tgt_img", "src_pose", "tgt_mask"))
            continue
        assert torch.equal(it["src_img"], flip_images(plain["src_img"]))
        assert torch.equal(it["tgt_img"], flip_images(plain["tgt_img"]))
        assert torch.equal(it["src_kp"], flip_keypoints(plain["src_kp"], 64))
        assert torch.equal(it["tgt_kp"], flip_keypoints(plain["tgt_kp"], 64))
        assert torch.equal(it["src_pose"], flip_pose_maps(plain["src_pose"]))
        assert torch.equal(it["tgt_pose"], flip_pose_maps(plain["tgt_pose"]))
        assert torch.equal(it["tgt_mask"], flip_images(plain["tgt_mask"]))
        assert (it["src_name"], it["tgt_name"]) == (plain["src_name"], plain["tgt_name"])


def test_other_image_size_is_resized_with_keypoints(tmp_path):
    kp = standing_kp()
    kp = np.where(kp == MISSING, MISSING, kp // 2).astype(np.int16)  # keypoints of a 64x32 image
    spec = {"train": [("0001_c1s1_000001_01.jpg", kp), ("0001_c2s1_000002_01.jpg", kp)],
            "query": [("0002_c1s1_000003_00.jpg", None)], "gallery": [("0002_c2s1_000004_01.jpg", None)]}
    index = load_dataset(build(tmp_path / "small", spec, size=(32, 64)))
    item = PosePairDataset(index, train_pairs(index))[0]
    assert item["src_img"].shape == (3, 128, 64)
    present = kp != MISSING
    expected = np.where(present, 2 * kp.astype(np.int64) + 1, MISSING)  # pixel centres: (k + 0.5) * 2
    assert torch.equal(item["src_kp"], torch.from_numpy(expected))
    assert PosePairDataset(index, train_pairs(index), size=(64, 32))[0]["src_kp"].tolist() == kp.tolist()


def test_corrupt_image_in_a_pair_gives_a_clear_error(tmp_path):
    spec = {"train": [("0001_c1s1_000001_01.jpg", standing_kp()), ("0001_c2s1_000002_01.jpg", standing_kp())],
            "query": [("0002_c1s1_000003_00.jpg", None)], "gallery": [("0002_c2s1_000004_01.jpg", None)]}
    root = build(tmp_path / "c", spec)
    bad = root / "bounding_box_train" / "0001_c2s1_000002_01.jpg"
    bad.write_bytes(bad.read_bytes()[:300])
    index = load_dataset(root)
    with pytest.raises(DatasetError, match="0001_c2s1_000002_01.jpg.*corrupt or truncated"):
        PosePairDataset(index, train_pairs(index))[0]


def test_pose_image_dataset(fixture_index):
    ds = PoseImageDataset(fixture_index, [A[2], D], size=(128, 64), pose_mode="pg2")
    it = ds[0]
    assert it["img"].shape == (3, 128, 64) and it["pose"].shape == (18, 128, 64) and it["mask"].shape == (1, 128, 64)
    assert torch.equal(it["kp"], torch.from_numpy(standing_kp(2).astype(np.int64))) and it["name"] == A[2]
    no_pose = ds[1]  # an image without annotation: all-missing pose, empty mask
    assert (no_pose["kp"] == MISSING).all() and (no_pose["pose"] == -1).all() and no_pose["mask"].sum() == 0
