"""The keypoint annotation CSV: exact round trip (real files and a fixture) and errors with line numbers."""
import numpy as np
import pytest

from reid_aug.errors import DatasetError
from reid_aug.keypoints import FLIP_PERMUTATION, MASK_LIMBS, MISSING, NUM_KEYPOINTS
from reid_aug.keypoints.annotations import (
    HEADER,
    AnnotationError,
    format_annotations,
    parse_annotation_text,
    read_annotations,
    stack_keypoints,
    write_annotations,
)

FIXTURE = (
    "name:keypoints_y:keypoints_x\n"
    "0002_c1s1_000451_03.jpg: [14, 24, 25, 44, 61, 24, 42, 56, 61, 86, 112, 60, 86, 101, 12, 11, 10, -1]: "
    "[38, 33, 20, 14, 20, 46, 52, 63, 29, 33, 34, 43, 36, 14, 35, 39, 27, -1]\n"
    "-1_c5s3_086412_11.jpg: [-1, 38, -1, -1, -1, 38, 49, 63, -1, -1, -1, 66, 89, 114, -1, -1, -1, -1]: "
    "[-1, 0, -1, -1, -1, 8, 14, 14, -1, -1, -1, 10, 17, 27, -1, -1, -1, -1]\n"
    "1488_c5s3_071737_01.jpg.jpg: [0, 127, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1]: "
    "[0, 63, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1]\n"
)
GOOD_ROW = FIXTURE.splitlines()[1]


def test_fixture_parses_to_known_values_and_round_trips(tmp_path):
    kps = parse_annotation_text(FIXTURE)
    assert list(kps) == ["0002_c1s1_000451_03.jpg", "-1_c5s3_086412_11.jpg", "1488_c5s3_071737_01.jpg.jpg"]
    first = kps["0002_c1s1_000451_03.jpg"]
    assert first.dtype == np.int16 and first.shape == (NUM_KEYPOINTS, 2)
    assert first[0].tolist() == [14, 38] and first[17].tolist() == [MISSING, MISSING]
    assert kps["1488_c5s3_071737_01.jpg.jpg"][1].tolist() == [127, 63]  # last valid pixel of a 128x64 image
    assert format_annotations(kps) == FIXTURE
    path = tmp_path / "sub" / "x-annotation-train.csv"
    write_annotations(path, kps)
    assert path.read_text() == FIXTURE
    back = read_annotations(path)
    assert list(back) == list(kps) and all(np.array_equal(back[n], kps[n]) for n in kps)


def test_random_keypoints_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    kps = {}
    for i in range(50):
        kp = np.stack([rng.integers(0, 128, 18), rng.integers(0, 64, 18)], 1).astype(np.int16)
        kp[rng.random(18) < 0.3] = MISSING
        kps[f"{i:04d}_c{i % 6 + 1}s1_{i:06d}_01.jpg"] = kp
    write_annotations(tmp_path / "a.csv", kps)
    back = read_annotations(tmp_path / "a.csv")
    assert list(back) == list(kps) and all(np.array_equal(back[n], kps[n]) for n in kps)


@pytest.mark.market
@pytest.mark.parametrize("which", ["train", "test"])
def test_real_annotation_files_round_trip_byte_exact(market_root, which):
    path = market_root / "annotations" / f"market-annotation-{which}.csv"
    text = path.read_text()
    kps = read_annotations(path)
    assert len(kps) == {"train": 12936, "test": 19732}[which]
    assert format_annotations(kps) == text


def _bad(row: str, lineno_text: str = ":3:"):
    text = FIXTURE.splitlines()[0] + "\n" + GOOD_ROW + "\n" + row + "\n"
    with pytest.raises(AnnotationError) as e:
        parse_annotation_text(text, path="x.csv")
    assert str(e.value).startswith("x.csv" + lineno_text), str(e.value)
    return str(e.value)


def test_malformed_row_names_the_line():
    msg = _bad("0003_c1s1_000451_03.jpg [1, 2]: [3, 4]")
    assert "malformed row" in msg and "expected" in msg
    _bad("0003_c1s1_000451_03.jpg: [1, 2, 3: [3, 4]")


def test_wrong_count_names_the_line():
    row = GOOD_ROW.replace("[14, 24, ", "[24, ").replace("0002_", "0003_")
    msg = _bad(row)
    assert "17 values, expected 18" in msg and "keypoints_y" in msg


def test_non_integer_value_names_the_line():
    assert "non-integer" in _bad(GOOD_ROW.replace("[14, 24,", "[14.5, 24,").replace("0002_", "0003_"))


@pytest.mark.parametrize("y, x, what", [(128, 10, "y=128"), (10, 64, "x=64"), (-2, 10, "y=-2")])
def test_out_of_range_coordinate_names_the_line_and_joint(y, x, what):
    ys = [y] + [-1] * 17
    xs = [x] + [-1] * 17
    msg = _bad(f"0003_c1s1_000451_03.jpg: {ys}: {xs}")
    assert "joint 0" in msg and what in msg and "128x64" in msg


def test_half_missing_joint_and_duplicate_and_header_errors():
    ys, xs = [5] + [-1] * 17, [-1] * 18
    assert "missing in one coordinate" in _bad(f"0003_c1s1_000451_03.jpg: {ys}: {xs}")
    assert "duplicate row" in _bad(GOOD_ROW)
    with pytest.raises(AnnotationError, match=r"x.csv:1: expected header"):
        parse_annotation_text("name,keypoints_y,keypoints_x\n", path="x.csv")
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations("/nonexistent/annotation.csv")
    assert issubclass(AnnotationError, DatasetError)


def test_other_image_size_bounds():
    text = HEADER + "\nx_c1s1_0_0.jpg: " + str([200] + [-1] * 17) + ": " + str([100] + [-1] * 17) + "\n"
    assert parse_annotation_text(text, height=256, width=176)["x_c1s1_0_0.jpg"][0].tolist() == [200, 100]
    with pytest.raises(AnnotationError, match="outside the 128x64 image"):
        parse_annotation_text(text)


def test_stack_keypoints_fills_missing_rows():
    kps = parse_annotation_text(FIXTURE)
    out = stack_keypoints(kps, ["-1_c5s3_086412_11.jpg", "nope.jpg"])
    assert out.shape == (2, 18, 2) and np.array_equal(out[0], kps["-1_c5s3_086412_11.jpg"])
    assert (out[1] == MISSING).all()


def test_skeleton_tables_are_consistent():
    perm = np.array(FLIP_PERMUTATION)
    assert (perm[perm] == np.arange(18)).all()          # an involution
    assert perm[2] == 5 and perm[10] == 13 and perm[16] == 17 and perm[0] == 0 and perm[1] == 1
    assert len(MASK_LIMBS) == 23 and len(set(MASK_LIMBS)) == 23
    # the mask limbs map onto themselves under a left/right swap, so masks mirror exactly
    swapped = {tuple(sorted((perm[a], perm[b]))) for a, b in MASK_LIMBS}
    assert swapped == {tuple(sorted(limb)) for limb in MASK_LIMBS}
