"""The synthesis levers of issue 14: K per image, the leak-free low-data regime, another dataset's pose bank
(datasets without keypoints, variable image sizes), and filtering by a Re-ID model.

Generators are tiny and untrained (written through the generator's checkpoint API, as in
``test_synthesis.py``); the Re-ID model is an untrained torchreid OSNet saved in the benchmark's format.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_synthesis import _manifest, _run, _write_generator, generator_ckpt, index  # noqa: F401 - fixtures

os.environ.setdefault("OMP_NUM_THREADS", "1")

PER_IMAGE = 2


def _normal_train(index) -> pd.DataFrame:
    train = index.split("train")
    return train[train["kind"] == "normal"]


def _desc(out: Path) -> dict:
    return json.loads((out / "synthesis.json").read_text())


def _gen_run(root: Path, dataset: Path | str | None, data: dict | None = None) -> Path:
    """A generator run folder whose checkpoint records ``dataset`` and whose run.json ``data`` holds ``data``."""
    root.mkdir(parents=True, exist_ok=True)
    rec = {"spec": str(dataset), "root": str(dataset)} if dataset is not None else None
    _write_generator(root / "checkpoint.pt", dataset=rec)
    (root / "run.json").write_text(json.dumps({"dataset": str(dataset), "data": {**(rec or {}), **(data or {})},
                                               "complete": True}))
    return root


# --------------------------------------------------------------------------- K per image
@pytest.fixture(scope="module")
def per_image_set(tmp_path_factory, generator_ckpt, tiny_toy):
    out = tmp_path_factory.mktemp("synth") / "per_image"
    return out, _run(generator_ckpt, out, tiny_toy, per_image=PER_IMAGE, strategy="random")


def test_per_image_writes_k_images_for_every_real_training_image(per_image_set, index):
    import re

    from reid_aug.synthesis.naming import parse_synthesized_name, source_stem

    out, summary = per_image_set
    m = _manifest(out)
    train = _normal_train(index)
    assert sorted(m["source"].unique()) == sorted(train["name"])     # every image, annotated or not
    assert (m.groupby("source").size() == PER_IMAGE).all()
    assert (m.groupby("source")["k"].apply(sorted) == pd.Series([list(range(PER_IMAGE))] * len(train))
            .set_axis(sorted(train["name"]))).all()                  # k counts per source
    assert len(m) == PER_IMAGE * len(train) == summary["written"] and m["file"].is_unique
    pid_of, cam_of = dict(zip(train["name"], train["pid"])), dict(zip(train["name"], train["camid"]))
    for row in m.itertuples():
        pid, cam, k, stem = parse_synthesized_name(row.file)
        assert (pid, cam, k, stem) == (pid_of[row.source], cam_of[row.source], row.k, source_stem(row.source))
        hit = re.compile(r"([-\d]+)_c(\d)").search(row.file)          # torchreid's Market pattern
        assert (int(hit[1]), int(hit[2])) == (pid, cam)
    assert (m["target_pose"].map(pid_of) != m["pid"]).all()          # same dataset: other identities' poses
    assert sorted(p.name for p in (out / "bounding_box_train").iterdir()) == sorted(m["file"])
    desc = _desc(out)
    assert desc["run"]["per_image"] == PER_IMAGE and desc["run"]["poses_per_id"] is None
    assert desc["run"]["every_image"] is True and desc["info"]["n_sources"] == len(train)


def test_per_image_default_folder_differs_from_per_identity(tmp_path):
    from reid_aug.rundir import GeneratorRun
    from reid_aug.synthesis.config import SynthesisConfig
    from reid_aug.synthesis.inputs import _default_out

    run = tmp_path / "run"
    run.mkdir()
    assert _default_out(run, SynthesisConfig(per_image=2), "toy", False, False) == run / "synthesized-img2"
    assert GeneratorRun(run).synthesized_per_image(2) == run / "synthesized-img2"
    assert _default_out(run, SynthesisConfig(poses_per_id=2), "toy", False, False) == run / "synthesized-2"
    tagged = _default_out(run, SynthesisConfig(per_image=1, train_per_id=2, subset_seed=3, pose_bank="market"),
                          "/data/cuhk03", True, True)
    assert tagged == run / "synthesized-img1-cuhk03-n2s3-bank-market"


def test_per_image_resumes_verifies_and_keeps_per_image_targets(per_image_set, tmp_path, generator_ckpt, tiny_toy,
                                                                index):
    from reid_aug.synthesis.plan import build_plan
    from reid_aug.synthesis.verify import verify_synthesis

    ref, _ = per_image_set

    class Killed(Exception):
        pass

    def kill(batch_no, written):
        if batch_no == 2:
            raise Killed

    out = tmp_path / "killed"
    with pytest.raises(Killed):
        _run(generator_ckpt, out, tiny_toy, per_image=PER_IMAGE, strategy="random", on_batch=kill)
    again = _run(generator_ckpt, out, tiny_toy, per_image=PER_IMAGE, strategy="random")
    assert again["skipped_existing"] > 0
    pd.testing.assert_frame_equal(_manifest(out), _manifest(ref))
    assert verify_synthesis(out).ok
    with pytest.raises(Exception, match="different synthesis run.*per_image: 2 there, 3 now"):
        _run(generator_ckpt, out, tiny_toy, per_image=3, strategy="random")
    sharded = tmp_path / "sharded"                                     # two shards give the same set
    for shard in ("0/2", "1/2"):
        _run(generator_ckpt, sharded, tiny_toy, per_image=PER_IMAGE, strategy="random", shard=shard)
    pd.testing.assert_frame_equal(_manifest(sharded), _manifest(ref))
    assert verify_synthesis(sharded).ok
    # an image's targets depend on the image, not on which other images are kept
    full = build_plan(index, 0, "random", seed=0, per_image=PER_IMAGE, every_image=True).table
    keep = _normal_train(index)["name"].iloc[::3].tolist()
    part = build_plan(index, 0, "random", seed=0, per_image=PER_IMAGE, every_image=True, keep=keep).table
    pd.testing.assert_frame_equal(part.reset_index(drop=True),
                                  full[full["source"].isin(keep)].reset_index(drop=True))
    # diverse: the K targets of one image come from K different pose clusters
    div = build_plan(index, 0, "diverse", seed=0, per_image=PER_IMAGE, every_image=True).table
    assert (div.groupby("source")["cluster"].nunique() == PER_IMAGE).all()


# --------------------------------------------------------------------------- low-data regime
def _old_subsample(train: pd.DataFrame, per_id: int, seed: int) -> pd.DataFrame:
    """reid/data.py ``_subsample`` of reid-aug 0.2, copied verbatim (the selection must not change)."""
    rng = np.random.default_rng(seed)
    keep = []
    for _, grp in train.groupby("pid", sort=True):
        idx = grp.index.to_numpy()
        if len(idx) > per_id:
            idx = np.sort(rng.choice(idx, size=per_id, replace=False))
        keep.append(idx)
    return train.loc[np.concatenate(keep)]


def _same_selection(table: pd.DataFrame, cases) -> None:
    from reid_aug.dataset.regime import kept_train, labelled_train

    train = table[(table["split"] == "train") & (table["pid"] > 0)]                  # as build_splits does
    pd.testing.assert_frame_equal(labelled_train(table), train)
    for per_id, seed in cases:
        pd.testing.assert_frame_equal(kept_train(table, per_id, seed), _old_subsample(train, per_id, seed))
    assert kept_train(table, 0, 5).equals(train) and kept_train(table, None, 0).equals(train)


def test_kept_subset_is_bit_identical_to_the_benchmarks_subsample(index):
    _same_selection(index.table, [(1, 0), (2, 0), (2, 7), (4, 3), (6, 1), (50, 0)])
    rng = np.random.default_rng(0)                                   # arbitrary row labels and group sizes
    table = pd.DataFrame({"split": "train", "name": [f"{i:04d}.jpg" for i in range(300)],
                          "pid": rng.integers(-1, 40, 300)}, index=rng.permutation(1000)[:300])
    _same_selection(table, [(1, 0), (3, 11)])


def test_kept_subset_on_market_matches_the_old_subsample(market_root):
    from reid_aug.dataset.market import load_dataset
    from reid_aug.dataset.regime import subset_record

    index = load_dataset(market_root)
    _same_selection(index.table, [(1, 0), (2, 0), (4, 1)])
    rec = subset_record(index, 2, 0)
    assert rec["n_train"] == 12936 and rec["n_kept"] == 1502          # 751 identities x 2 (issue 14)


def test_low_data_sources_are_only_kept_images_and_the_subset_is_recorded(tmp_path, tiny_toy, index):
    from reid_aug.dataset.regime import kept_names_sha256, kept_train, subset_record

    gen = _gen_run(tmp_path / "gen_n2", tiny_toy, {"train_per_id": 2, "subset_seed": 0})
    out = tmp_path / "n2"
    _run(gen, out, tiny_toy, train_per_id=2, subset_seed=0, poses_per_id=3, strategy="random")
    m = _manifest(out)
    kept = kept_train(index, 2, 0)
    assert set(m["source"]) <= set(kept["name"]) and m["pid"].nunique() == kept["pid"].nunique()
    desc = _desc(out)
    assert desc["run"]["subset"] == subset_record(index, 2, 0)
    assert desc["run"]["subset"]["kept_sha256"] == kept_names_sha256(kept["name"])
    assert desc["info"]["generator_regime"] == "kept-subset" and desc["info"]["leak"] is False
    assert desc["info"]["generator_subset"] == {"train_per_id": 2, "seed": 0}
    assert "also those the subset drops" in desc["info"]["target_poses"]
    # per image in the regime: K images for every kept image, and nothing else
    out_img = tmp_path / "n2img"
    _run(gen, out_img, tiny_toy, train_per_id=2, per_image=1, strategy="random")
    assert sorted(_manifest(out_img)["source"]) == sorted(kept["name"])
    from reid_aug.synthesis.verify import verify_synthesis

    assert verify_synthesis(out).ok and verify_synthesis(out_img).ok


def test_a_generator_that_saw_dropped_images_is_refused_unless_the_leak_is_allowed(tmp_path, generator_ckpt,
                                                                                   tiny_toy):
    from reid_aug.errors import SynthesisError

    kw = dict(train_per_id=2, subset_seed=0, poses_per_id=2, strategy="random", max_identities=2)
    all_images = _gen_run(tmp_path / "gen_all", tiny_toy)                        # records no subset: all images
    other_seed = _gen_run(tmp_path / "gen_s1", tiny_toy, {"train_per_id": 2, "subset_seed": 1})
    for gen in (all_images, other_seed, generator_ckpt):                        # generator_ckpt records nothing
        with pytest.raises(SynthesisError) as e:
            _run(gen, tmp_path / "refused", tiny_toy, **kw)
        line = str(e.value)
        assert "\n" not in line and "--train-per-id 2 --subset-seed 0 drops" in line and "--allow-leak" in line
        assert not (tmp_path / "refused").exists()
    _run(all_images, tmp_path / "leaky", tiny_toy, allow_leak=True, **kw)
    info = _desc(tmp_path / "leaky")["info"]
    assert info["leak"] is True and info["generator_regime"] == "leaking" and info["leaked_images"] > 0
    # a generator of another dataset is leak-free by construction
    cross = _gen_run(tmp_path / "gen_cross", tmp_path / "elsewhere")
    _run(cross, tmp_path / "cross", tiny_toy, cross_dataset=True, **kw)
    info = _desc(tmp_path / "cross")["info"]
    assert info["generator_regime"] == "cross-dataset" and info["leak"] is False


def test_generator_subset_is_read_from_its_config_checkpoint_or_run_record(tmp_path):
    from types import SimpleNamespace

    from reid_aug.synthesis.lineage import generator_subset

    ckpt = tmp_path / "checkpoint.pt"
    plain = SimpleNamespace(config=SimpleNamespace(), dataset={"spec": "market"})
    assert generator_subset(plain, ckpt) == (0, 0)
    with_data = SimpleNamespace(config=SimpleNamespace(data=SimpleNamespace(train_per_id=4, subset_seed=2)), dataset={})
    assert generator_subset(with_data, ckpt) == (4, 2)
    (tmp_path / "run.json").write_text(json.dumps({"data": {"train_per_id": 1, "subsample_seed": 5}}))
    assert generator_subset(plain, ckpt) == (1, 5)


# --------------------------------------------------------------------------- another dataset's pose bank
def _copy_without_keypoints(src: Path, dest: Path) -> Path:
    """``src`` without annotations, its train images at CUHK03-like variable sizes."""
    from PIL import Image

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("annotations", "*.png"))
    for i, p in enumerate(sorted((dest / "bounding_box_train").glob("*.jpg"))):
        with Image.open(p) as im:
            im.convert("RGB").resize((40 + 6 * (i % 4), 96 + 9 * (i % 5))).save(p, quality=95)
    return dest


@pytest.fixture(scope="module")
def bare(tmp_path_factory, tiny_toy) -> Path:
    return _copy_without_keypoints(tiny_toy, tmp_path_factory.mktemp("bare") / "bare")


def test_a_dataset_without_keypoints_synthesizes_with_another_pose_bank(tmp_path, generator_ckpt, tiny_toy, bare):
    from PIL import Image

    from reid_aug.dataset.market import load_dataset
    from reid_aug.errors import DatasetError
    from reid_aug.synthesis.posebank import PoseBank
    from reid_aug.synthesis.verify import verify_synthesis

    with pytest.raises(DatasetError, match="no valid training pose"):
        _run(generator_ckpt, tmp_path / "no_bank", bare, poses_per_id=2, strategy="random")
    out = tmp_path / "banked"
    summary = _run(generator_ckpt, out, bare, poses_per_id=3, strategy="random", pose_bank=str(tiny_toy))
    m = _manifest(out)
    train = _normal_train(load_dataset(bare))
    assert summary["skipped_identities"] == [] and sorted(m["pid"].unique()) == sorted(train["pid"].unique())
    assert (m.groupby("pid").size() == 3).all() and set(m["source"]) <= set(train["name"])
    bank = PoseBank.from_index(load_dataset(tiny_toy))
    assert set(m["target_pose"]) <= set(bank.names)
    desc = _desc(out)
    assert desc["run"]["pose_bank"] == {"dataset": tiny_toy.name, "fingerprint": bank.fingerprint(),
                                        "n_poses": len(bank)}
    assert desc["run"]["every_image"] is True and desc["info"]["exclude_own_poses"] is False
    size = desc["info"]["source_size"]
    assert size["generator"] == [128, 64] and size["native"]["distinct"] > 1 and "resized" in size["policy"]
    for f in m["file"].iloc[:5]:
        with Image.open(out / "bounding_box_train" / f) as im:
            assert im.size == (64, 128)                                   # written at the generator's size
    assert verify_synthesis(out).ok
    assert _run(generator_ckpt, out, bare, poses_per_id=3, strategy="random", pose_bank=str(tiny_toy))["written"] == 0
    shifted = tmp_path / "shifted"                                        # another bank: the folder refuses it
    shutil.copytree(tiny_toy, shifted, ignore=shutil.ignore_patterns("*.png"))
    csv = next((shifted / "annotations").glob("*annotation-train.csv"))
    from reid_aug.keypoints.annotations import read_annotations, write_annotations

    write_annotations(csv, {n: np.where(k >= 0, np.maximum(k - 1, 0), k) for n, k in read_annotations(csv).items()})
    with pytest.raises(Exception, match="different synthesis run.*pose_bank"):
        _run(generator_ckpt, out, bare, poses_per_id=3, strategy="random", pose_bank=str(shifted))


def test_across_datasets_no_bank_pose_is_excluded_as_the_identitys_own(index, tmp_path):
    from reid_aug.errors import DatasetError
    from reid_aug.synthesis.plan import build_plan
    from reid_aug.synthesis.posebank import PoseBank
    from reid_aug.synthesis.strategies import assign_units

    full = PoseBank.from_index(index)
    pid = int(full.pids[0])
    own = full.pids == pid
    one_id = PoseBank.from_arrays(full.names[own], full.pids[own], full.keypoints[own], dataset_root=str(tmp_path))
    with pytest.raises(DatasetError, match="no pose of an identity other than"):
        assign_units(one_id, [(pid,)], 2, "random", exclude_own=True)
    for strategy in ("random", "diverse"):
        got = assign_units(one_id, [(pid,)], 2, strategy, exclude_own=False).targets[(pid,)]
        assert len(got) == 2 and (one_id.pids[got] == pid).all()
    plan = build_plan(index, 2, "random", bank=one_id)                  # a bank of another folder
    assert plan.exclude_own is False and (plan.table["target_pid"] == pid).all()
    assert build_plan(index, 2, "random").exclude_own is True


def test_target_keypoints_are_rescaled_to_the_generators_size(index, tmp_path, tiny_toy):
    from PIL import Image

    from reid_aug.pairs.torch_dataset import scale_keypoints
    from reid_aug.synthesis.plan import build_plan

    plan = build_plan(index, 2, "random", image_size=(64, 32))
    native = index.keypoints_for(plan.table["target_pose"].tolist())
    np.testing.assert_array_equal(plan.target_kps, scale_keypoints(native, (128, 64), (64, 32)))
    np.testing.assert_array_equal(build_plan(index, 2, "random", image_size=(128, 64)).target_kps, native)
    small = _write_generator(tmp_path / "small.pt", image_size=(64, 32))
    out = tmp_path / "small"
    _run(small, out, tiny_toy, poses_per_id=2, strategy="random", max_identities=2)
    with Image.open(out / "bounding_box_train" / _manifest(out)["file"].iloc[0]) as im:
        assert im.size == (32, 64)
    assert _desc(out)["info"]["source_size"]["native"] == {"checked": 4, "of": 4, "distinct": 1, "min": [128, 64],
                                                           "max": [128, 64]}


def test_cuhk03_mini_with_market_poses_and_a_market_generator(tmp_path, market_root):
    """The real small-dataset case: CUHK03 (no keypoints, variable sizes) with Market-1501's pose bank."""
    from PIL import Image

    from reid_aug.dataset.market import load_dataset
    from reid_aug.dataset.regime import kept_train
    from reid_aug.synthesis.verify import verify_synthesis

    cuhk = Path(os.environ.get("REID_AUG_CUHK03_ROOT", market_root.parent / "cuhk03-detected-mini"))
    if not (cuhk / "bounding_box_train").is_dir():
        pytest.skip(f"CUHK03-mini not found at {cuhk}")
    gen = _gen_run(tmp_path / "market_gen", market_root)
    out = tmp_path / "cuhk"
    kw = dict(per_image=1, strategy="random", pose_bank="market", cross_dataset=True, max_identities=3)
    _run(gen, out, cuhk, train_per_id=2, **kw)
    m = _manifest(out)
    kept = kept_train(load_dataset(cuhk), 2, 0)
    first = sorted(kept["pid"].unique())[:3]
    assert sorted(m["source"]) == sorted(kept.loc[kept["pid"].isin(first), "name"])
    desc = _desc(out)
    assert desc["info"]["generator_regime"] == "cross-dataset" and desc["info"]["source_size"]["native"]["distinct"] > 1
    assert desc["run"]["pose_bank"]["dataset"] == "market" and desc["run"]["subset"]["n_kept"] == len(kept)
    with Image.open(out / "bounding_box_train" / m["file"].iloc[0]) as im:
        assert im.size == (64, 128)
    assert verify_synthesis(out).ok


# --------------------------------------------------------------------------- filtering
def _reid_model(path: Path, index, per_id: int = 0, seed: int = 0, pids=None) -> Path:
    import torch

    from reid_aug.config import from_dict
    from reid_aug.reid.config import BenchmarkConfig
    from reid_aug.reid.models import build_model, save_reid_model

    torch.manual_seed(0)
    pids = sorted(int(p) for p in _normal_train(index)["pid"].unique()) if pids is None else pids
    cfg = from_dict(BenchmarkConfig, {"model": {"name": "osnet_x0_25", "pretrained": False},
                                      "data": {"height": 64, "width": 32, "train_per_id": per_id,
                                               "subsample_seed": seed}})
    save_reid_model(build_model("osnet_x0_25", num_classes=len(pids)).eval(), cfg, path,
                    {"num_classes": len(pids), "variant": "baseline", "seed": 0,
                     "pid2label": {str(p): i for i, p in enumerate(pids)}})
    return path


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, generator_ckpt, tiny_toy):
    out = tmp_path_factory.mktemp("filter") / "set"
    _run(generator_ckpt, out, tiny_toy, poses_per_id=3, strategy="random")
    return out


def _brute_force(index, out: Path, model_path: Path, manifest: pd.DataFrame) -> pd.DataFrame:
    """Rank of the own identity and cosine to its centroid, one image and one identity at a time."""
    from reid_aug.reid.models import extract_features, load_reid_model

    model, _ = load_reid_model(model_path)
    train = index.table[(index.table["split"] == "train") & (index.table["pid"] > 0)]
    real = extract_features(model, train["path"].tolist(), 64, 32).numpy().astype(np.float64)
    gen = extract_features(model, [out / "bounding_box_train" / f for f in manifest["file"]], 64, 32).numpy()
    centroids = {}
    for pid in sorted(train["pid"].unique()):
        feats = [f / np.linalg.norm(f) for f in real[train["pid"].to_numpy() == pid]]
        c = np.mean(feats, axis=0)
        centroids[int(pid)] = c / np.linalg.norm(c)
    rows = []
    for f, pid in zip(gen.astype(np.float64), manifest["pid"]):
        f = f / np.linalg.norm(f)
        cos = {p: float(f @ c) for p, c in centroids.items()}
        rows.append((1 + sum(v > cos[int(pid)] for v in cos.values()), cos[int(pid)]))
    return pd.DataFrame(rows, columns=["rank", "cosine"])


def test_filter_keeps_exactly_the_images_whose_identity_ranks_within_k(small_set, tmp_path, index, monkeypatch):
    from reid_aug.synthesis.config import FilterConfig
    from reid_aug.synthesis.filter import filter_set
    from reid_aug.synthesis.verify import verify_synthesis

    out = tmp_path / "set"
    shutil.copytree(small_set, out)
    model = _reid_model(tmp_path / "reid.pt", index)
    rec = filter_set(out, FilterConfig(model=str(model), rule="top-k", k=1), "cpu")
    m, scores = _manifest(out), pd.read_csv(out / "scores.csv")
    expect = _brute_force(index, out, model, m)
    assert scores["file"].tolist() == m["file"].tolist()
    np.testing.assert_array_equal(scores["rank"], expect["rank"])
    np.testing.assert_allclose(scores["cosine"], expect["cosine"], atol=2e-6)
    np.testing.assert_array_equal(m["kept"], (expect["rank"] <= 1).astype(int))
    n_kept = int((expect["rank"] <= 1).sum())
    assert (rec["n_kept"], rec["n_images"], rec["rule"], rec["k"]) == (n_kept, len(m), "top-k", 1)
    assert rec["kept_fraction"] == round(n_kept / len(m), 6)
    kept_ids = m.loc[expect["rank"].to_numpy() <= 1, "pid"]
    assert (rec["n_identities"], rec["n_identities_kept"]) == (m["pid"].nunique(), kept_ids.nunique())
    assert _desc(out)["info"]["filter"] == rec and verify_synthesis(out).ok
    # another rule reuses the scores: no feature is extracted again
    import reid_aug.reid.models as models

    monkeypatch.setattr(models, "extract_features", lambda *a, **k: pytest.fail("features extracted again"))
    filter_set(out, FilterConfig(model=str(model), rule="top-k", k=3), "cpu")
    np.testing.assert_array_equal(_manifest(out)["kept"], (expect["rank"] <= 3).astype(int))
    values = np.unique(expect["cosine"].round(4))
    t = float((values[len(values) // 2 - 1] + values[len(values) // 2]) / 2)      # between two images' cosines
    rec = filter_set(out, FilterConfig(model=str(model), rule="threshold", threshold=t), "cpu")
    np.testing.assert_array_equal(_manifest(out)["kept"], (expect["cosine"] >= t).astype(int))
    assert rec["threshold"] == t and "k" not in rec and verify_synthesis(out).ok
    # a flipped flag is found
    m = _manifest(out)
    m.loc[0, "kept"] = 1 - m.loc[0, "kept"]
    m.to_csv(out / "manifest.csv", index=False)
    assert any("kept flag" in p for p in verify_synthesis(out).problems)


def test_synthesize_with_filter_and_a_resumed_filtered_set(tmp_path, generator_ckpt, tiny_toy, index):
    from click.testing import CliRunner

    import cli
    from reid_aug.synthesis.verify import verify_synthesis

    model = _reid_model(tmp_path / "reid.pt", index)
    out = tmp_path / "filtered"
    args = ["synthesize", "--checkpoint", str(generator_ckpt), "--dataset", str(tiny_toy), "--out", str(out),
            "--poses-per-id", "2", "--batch-size", "6", "--device", "cpu"]
    result = CliRunner().invoke(cli.main, args + ["--filter", str(model), "--filter-k", "2"])
    assert result.exit_code == 0, result.output
    kept = _manifest(out)["kept"].copy()
    assert f"filter: {int(kept.sum())} of {len(kept)} images kept" in result.output
    result = CliRunner().invoke(cli.main, args)                          # resumed without --filter: stays filtered
    assert result.exit_code == 0, result.output
    pd.testing.assert_series_equal(_manifest(out)["kept"], kept)
    assert verify_synthesis(out).ok
    result = CliRunner().invoke(cli.main, ["filter", str(out), "--reid-model", str(model), "--rule", "top-k",
                                           "--k", "1"])
    assert result.exit_code == 0 and "images kept" in result.output, result.output


def test_a_reid_model_that_saw_other_images_is_refused(tmp_path, index):
    from reid_aug.errors import SynthesisError
    from reid_aug.reid.models import load_reid_model
    from reid_aug.synthesis.filter import _load_model, check_model_regime

    def check(model_path, subset):
        _, cfg, meta = _load_model(model_path, "cpu")
        return check_model_regime(meta, cfg, index, subset)

    on_all = _reid_model(tmp_path / "all.pt", index)
    assert check(on_all, None)["train_per_id"] == 0
    with pytest.raises(SynthesisError, match="trained on every training image.*saw .* image"):
        check(on_all, (2, 0))
    on_kept = _reid_model(tmp_path / "kept.pt", index, per_id=2, seed=0)
    assert check(on_kept, (2, 0)) == {"train_per_id": 2, "seed": 0, "variant": "baseline"}
    assert check(on_kept, None)["train_per_id"] == 2                     # fewer images than allowed: fine
    with pytest.raises(SynthesisError, match="2 image.*subset seed 0"):
        check(on_kept, (2, 1))
    other = _reid_model(tmp_path / "other.pt", index, pids=[1, 2, 3])
    with pytest.raises(SynthesisError, match="3 identities that are not the 8 training identities"):
        check(other, None)
    assert load_reid_model(on_all)[1].data.train_per_id == 0


def test_filter_scores_known_answer():
    from reid_aug.errors import SynthesisError
    from reid_aug.synthesis.filter import identity_scores

    real = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 2.0]])   # identity 5 -> x axis, 9 -> y axis
    real_pids = [5, 5, 9, 9]
    gen = np.array([[2.0, 1.0], [1.0, 2.0], [1.0, 1.0]])
    rank, cos = identity_scores(gen, [5, 5, 9], real, real_pids)
    np.testing.assert_array_equal(rank, [1, 2, 1])                      # a tie counts as ranking first
    np.testing.assert_allclose(cos, [2 / np.sqrt(5), 1 / np.sqrt(5), 1 / np.sqrt(2)])
    with pytest.raises(SynthesisError, match="identity 7"):
        identity_scores(gen, [5, 7, 9], real, real_pids)


def test_a_generator_trained_on_the_kept_subset_is_accepted_by_that_regime_only(tmp_path, tiny_toy, index):
    """train-generator --set data.train_per_id=N trains on pairs among the kept images and records the subset."""
    from reid_aug.dataset.regime import kept_train
    from reid_aug.errors import SynthesisError
    from reid_aug.generator.checkpoint import load_checkpoint
    from reid_aug.generator.train import resolve_training, train_generator
    from reid_aug.pairs.pairs import train_pair_pool

    from test_generator_train import TINY

    cfg, out = resolve_training(str(tiny_toy), "pg2_toy", TINY + ["train.stages=[g1]", "train.g1_iters=1",
                                                                  "data.train_per_id=2", "data.subset_seed=0"],
                                tmp_path / "gen")
    run = train_generator(cfg, str(tiny_toy), out)
    info = load_checkpoint(run)["dataset"]
    kept = set(kept_train(index, 2, 0)["name"])
    pool = train_pair_pool(index)
    pool = pool[pool["name"].isin(kept)]
    expect = sum(n * (n - 1) for n in pool.groupby("pid").size())        # ordered pairs among the kept images
    assert info["train_per_id"] == 2 and info["subset_seed"] == 0 and info["n_pairs"] == expect > 0
    kw = dict(poses_per_id=2, strategy="random", max_identities=2)
    _run(run, tmp_path / "ok", tiny_toy, train_per_id=2, subset_seed=0, **kw)
    assert _desc(tmp_path / "ok")["info"]["generator_regime"] == "kept-subset"
    with pytest.raises(SynthesisError, match="--allow-leak"):
        _run(run, tmp_path / "other", tiny_toy, train_per_id=2, subset_seed=1, **kw)
