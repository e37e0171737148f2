"""``reid-aug synthesize``: plan, names, resume, shards, verify, generator/dataset choice, clear errors.

A tiny untrained PG² generator is written through the generator's own checkpoint API
(``build_networks`` + ``save_checkpoint``), so these tests do not depend on training.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")

K = 3
BATCH = 6


def _write_generator(path: Path, image_size=(128, 64), seed: int = 0, dataset: dict | None = None,
                     complete: bool = True) -> Path:
    import torch

    from reid_aug.config import to_dict
    from reid_aug.generator.checkpoint import save_checkpoint
    from reid_aug.generator.pg2 import FAMILY as PG2
    from reid_aug.generator.config import ModelConfig, PG2Config

    torch.manual_seed(seed)
    cfg = PG2Config(model=ModelConfig(image_size=tuple(image_size), g1_width=8, g2_width=8, d_width=8, bottleneck=16))
    nets = PG2.build_networks(cfg, ("g1", "g2"))
    save_checkpoint({"config": to_dict(cfg), "models": {k: v.state_dict() for k, v in nets.items()},
                     "stage_index": 2, "step": 0, "global_step": 0, "trained": ["g1", "g2"], "complete": complete,
                     **({"dataset": dataset} if dataset is not None else {})}, path)
    return path


@pytest.fixture(scope="module")
def generator_ckpt(tmp_path_factory) -> Path:
    return _write_generator(tmp_path_factory.mktemp("gen") / "checkpoint.pt")


@pytest.fixture(scope="module")
def index(tiny_toy):
    from reid_aug.dataset.market import load_dataset

    return load_dataset(tiny_toy)


def _opts(generator, out, dataset, **kw):
    from reid_aug.synthesis.config import SynthesisConfig

    base = dict(generator=str(generator), out=str(out), dataset=str(dataset), poses_per_id=K, strategy="diverse",
                seed=0, batch_size=BATCH, workers=2, loader_threads=1, device="cpu")
    base.update(kw)
    return SynthesisConfig(**base)


def _run(generator, out, dataset, on_batch=None, **kw):
    from reid_aug.synthesis.synthesize import synthesize

    return synthesize(_opts(generator, out, dataset, **kw), on_batch=on_batch)


def _drop_torso(kp: np.ndarray) -> np.ndarray:
    from reid_aug.synthesis.posebank import TORSO

    kp = kp.copy()
    kp[list(TORSO)] = -1                                   # both shoulders, both hips
    return kp


def _copy_with_edited_poses(dataset: Path, dest: Path, edit) -> Path:
    """Copy ``dataset`` with every annotation row's (18, 2) keypoints replaced by ``edit(name, kp)``."""
    from reid_aug.keypoints.annotations import read_annotations, write_annotations

    shutil.copytree(dataset, dest, ignore=shutil.ignore_patterns("*.png"))
    for csv in (dest / "annotations").glob("*annotation-*.csv"):
        write_annotations(csv, {name: edit(name, kp) for name, kp in read_annotations(csv).items()})
    return dest


def _manifest(out: Path) -> pd.DataFrame:
    from reid_aug.synthesis.folder import read_manifest

    return read_manifest(out / "manifest.csv")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, generator_ckpt, tiny_toy):
    out = tmp_path_factory.mktemp("synth") / "reference"
    summary = _run(generator_ckpt, out, tiny_toy)
    return out, summary


# --------------------------------------------------------------------------- plan
def test_exactly_k_images_per_identity_with_valid_poses(reference, index):
    out, summary = reference
    m = _manifest(out)
    train = index.split("train")
    train = train[train["kind"] == "normal"]
    valid = train[train["pose_ok"]]
    expected_ids = sorted(valid["pid"].unique().tolist())
    assert sorted(m["pid"].unique().tolist()) == expected_ids
    assert (m.groupby("pid").size() == K).all()
    assert len(m) == K * len(expected_ids) == summary["written"] == summary["n_images"]
    assert sorted(summary["skipped_identities"]) == sorted(set(train["pid"]) - set(expected_ids))
    ok_names = set(valid["name"])
    pid_of = dict(zip(train["name"], train["pid"]))
    assert set(m["source"]) <= ok_names and set(m["target_pose"]) <= ok_names
    assert (m["source"].map(pid_of) == m["pid"]).all()                 # source is the identity's own image
    assert (m["target_pose"].map(pid_of) != m["pid"]).all()            # target pose from another identity
    assert (m["target_pose"].map(pid_of) == m["target_pid"]).all()
    cam_of = dict(zip(train["name"], train["camid"]))
    assert (m["source"].map(cam_of) == m["camid"]).all()
    # sources cycle: all of an identity's valid images are used before any repeats
    n_valid = valid.groupby("pid").size()
    for pid, g in m.groupby("pid"):
        assert g["source"].nunique() == min(K, int(n_valid[pid]))
    files = sorted(p.name for p in (out / "bounding_box_train").iterdir())
    assert files == sorted(m["file"])
    from PIL import Image

    sheet = Image.open(out / "contact_sheet.png")                      # a row per identity: source + K images
    assert sheet.size == (2 + 66 * (K + 1) + 8, 2 + 130 * min(12, len(expected_ids)))
    desc = json.loads((out / "synthesis.json").read_text())
    assert desc["run"]["n_images"] == len(m) and desc["run"]["strategy"] == "diverse"
    assert m["generator_sha256"].nunique() == 1 and (m["strategy"] == "diverse").all()


def test_images_are_jpegs_of_the_generator_output(reference, generator_ckpt, index):
    """A written file holds the JPEG of the generator's clipped output on its (source, target pose)."""
    import hashlib

    import torch

    from reid_aug.generator.inference import load_generator
    from reid_aug.pairs import load_image
    from reid_aug.synthesis.writer import encode_jpeg

    out, _ = reference
    m = _manifest(out)
    gen = load_generator(generator_ckpt)
    rows = m.iloc[:2]
    src = torch.stack([load_image(index.path_of(s)) for s in rows["source"]])
    pose = gen.pose_maps(torch.from_numpy(index.keypoints_for(rows["target_pose"].tolist()).astype(np.int64)))
    ref = ((gen.generate(src, pose).clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    for i, (_, row) in enumerate(rows.iterrows()):
        data = (out / "bounding_box_train" / row["file"]).read_bytes()
        assert data == encode_jpeg(ref[i], 95)
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["bytes"]


def test_deterministic_for_a_seed(reference, tmp_path, generator_ckpt, tiny_toy):
    out, _ = reference
    _run(generator_ckpt, tmp_path / "again", tiny_toy)
    pd.testing.assert_frame_equal(_manifest(tmp_path / "again"), _manifest(out))
    from reid_aug.synthesis.plan import build_plan
    from reid_aug.dataset.market import load_dataset

    idx = load_dataset(tiny_toy)
    a = build_plan(idx, K, "diverse", seed=0).table
    b = build_plan(idx, K, "diverse", seed=1).table
    assert not a.equals(b)                                             # the seed matters


def test_kill_and_resume_gives_the_same_manifest(reference, tmp_path, generator_ckpt, tiny_toy):
    out_ref, _ = reference
    out = tmp_path / "killed"

    class Killed(Exception):
        pass

    def kill_after_two(batch_no, written):
        if batch_no == 2:
            raise Killed

    with pytest.raises(Killed):
        _run(generator_ckpt, out, tiny_toy, on_batch=kill_after_two)
    img_dir = out / "bounding_box_train"
    partial = sorted(p.name for p in img_dir.iterdir())
    assert 0 < len(partial) < len(_manifest(out_ref))
    assert not (out / "manifest.csv").exists()
    # a writer killed mid-file leaves a hidden temp file: the restart must remove it
    victim = sorted(set(_manifest(out_ref)["file"]) - set(partial))[0]
    (img_dir / f".{victim}.abc123.tmp").write_bytes(b"\xff\xd8 truncated")
    summary = _run(generator_ckpt, out, tiny_toy)
    assert summary["skipped_existing"] == len(partial)
    assert summary["written"] == len(_manifest(out_ref)) - len(partial)
    pd.testing.assert_frame_equal(_manifest(out), _manifest(out_ref))
    assert not list(img_dir.glob(".*.tmp"))
    from reid_aug.synthesis.verify import verify_synthesis

    assert verify_synthesis(out).ok
    # a finished run started again writes nothing
    assert _run(generator_ckpt, out, tiny_toy)["written"] == 0


def test_verify_catches_deleted_extra_and_changed_files(reference, tmp_path):
    from click.testing import CliRunner

    import cli
    from reid_aug.synthesis.verify import verify_synthesis

    src, _ = reference
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    assert verify_synthesis(out).ok
    files = sorted((out / "bounding_box_train").iterdir())
    files[0].unlink()
    shutil.copy(files[1], out / "bounding_box_train" / "0999_c1_g00_intruder.jpg")
    data = bytearray(files[2].read_bytes())
    data[-10] ^= 0xFF
    files[2].write_bytes(bytes(data))
    rep = verify_synthesis(out)
    assert not rep.ok
    assert rep.missing == [files[0].name]
    assert rep.extra == ["0999_c1_g00_intruder.jpg"]
    assert [f for f, _ in rep.mismatched] == [files[2].name]
    result = CliRunner().invoke(cli.main, ["synthesize", "--verify", str(out)])
    assert result.exit_code == 1
    assert files[0].name in result.output and "intruder" in result.output and "1 missing" in result.output


# --------------------------------------------------------------------------- names
REAL_EXAMPLES = ["0002_c1s1_000451_03.jpg", "-1_c3s2_064853_01.jpg", "0000_c1s6_034621_04.jpg",
                 "1488_c5s3_071737_01.jpg.jpg", "1501_c6s4_001902_01.jpg"]


def test_generated_names_parse_with_torchreids_market_code(reference):
    """torchreid's own Market1501.process_dir (regex ``([-\\d]+)_c(\\d)``) reads the source pid and camera."""
    import inspect
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.data.datasets.image.market1501 import Market1501

    assert "re.compile(r'([-\\d]+)_c(\\d)')" in inspect.getsource(Market1501.process_dir)
    out, _ = reference
    m = _manifest(out).set_index("file")
    data = Market1501.process_dir(None, str(out / "bounding_box_train"), relabel=False)
    assert len(data) == len(m)
    for path, pid, camid in data:
        row = m.loc[Path(path).name]
        assert (pid, camid) == (row["pid"], row["camid"] - 1)          # torchreid's camids are 0-based
    from reid_aug.dataset.market import parse_market_name

    for f, row in m.iterrows():
        assert parse_market_name(f) == (row["pid"], row["camid"])


def test_synthesized_and_real_names_never_collide(reference, tiny_toy, request):
    from reid_aug.synthesis.naming import (MARKET_NAME, SYNTHESIZED_NAME, parse_synthesized_name, source_stem,
                                           synthesized_name)

    out, _ = reference
    generated = _manifest(out)["file"].tolist()
    generated += [synthesized_name(p, c, k, s) for p, c, k, s in
                  [(2, 1, 0, "0002_c1s1_000451_03.jpg"), (1488, 5, 123, "1488_c5s3_071737_01.jpg.jpg"),
                   (7, 6, 9, "0007_c6s4_001902_01.jpg")]]
    real = list(REAL_EXAMPLES)
    real += [p.name for d in ("bounding_box_train", "bounding_box_test", "query")
             for p in sorted(tiny_toy.rglob(f"{d}/*.jpg"))]
    env = os.environ.get("REID_AUG_MARKET_ROOT")
    if env and Path(env, "Market-1501-v15.09.15").is_dir():               # every real name when available
        for d in ("bounding_box_train", "bounding_box_test", "query"):
            real += [n for n in os.listdir(Path(env, "Market-1501-v15.09.15", d)) if n.endswith(".jpg")]
    assert all(MARKET_NAME.match(n) for n in real), [n for n in real if not MARKET_NAME.match(n)][:3]
    assert not any(SYNTHESIZED_NAME.match(n) for n in real)
    assert not any(MARKET_NAME.match(n) for n in generated)
    assert all(SYNTHESIZED_NAME.match(n) for n in generated)
    assert not set(generated) & set(real)
    assert parse_synthesized_name("1488_c5_g123_1488_c5s3_071737_01.jpg") == (1488, 5, 123, "1488_c5s3_071737_01")
    assert source_stem("1488_c5s3_071737_01.jpg.jpg") == "1488_c5s3_071737_01"
    with pytest.raises(ValueError):
        parse_synthesized_name("0002_c1s1_000451_03.jpg")


# --------------------------------------------------------------------------- shards
def test_two_shards_equal_one_shard_and_merge(reference, tmp_path, generator_ckpt, tiny_toy):
    from reid_aug.synthesis.verify import verify_synthesis

    out_ref, _ = reference
    ref = _manifest(out_ref)
    out = tmp_path / "sharded"
    s0 = _run(generator_ckpt, out, tiny_toy, shard=(0, 2))
    assert not (out / "manifest.csv").exists() and (out / "manifest.shard-0-of-2.csv").is_file()
    assert 0 < s0["written"] < len(ref)
    s1 = _run(generator_ckpt, out, tiny_toy, shard="1/2", batch_size=BATCH + 1)  # layout comes from the folder
    assert s0["written"] + s1["written"] == len(ref)
    part0 = pd.read_csv(out / "manifest.shard-0-of-2.csv")
    part1 = pd.read_csv(out / "manifest.shard-1-of-2.csv")
    assert not set(part0["pid"]) & set(part1["pid"])                     # shards split identities
    pd.testing.assert_frame_equal(_manifest(out), ref)
    assert verify_synthesis(out).ok
    # one shard alone, then a run without --shard completes and merges it
    out2 = tmp_path / "completed"
    a = _run(generator_ckpt, out2, tiny_toy, shard=(1, 2))
    b = _run(generator_ckpt, out2, tiny_toy)
    assert b["skipped_existing"] == a["written"] and a["written"] + b["written"] == len(ref)
    pd.testing.assert_frame_equal(_manifest(out2), ref)


def test_torchrun_environment_selects_the_shard(monkeypatch):
    from reid_aug.errors import SynthesisError
    from reid_aug.synthesis.config import parse_shard, shard_from_env

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert shard_from_env() == (1, 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert shard_from_env() is None
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(SynthesisError):
            parse_shard(bad)


# --------------------------------------------------------------------------- clear errors
def test_clear_errors(reference, tmp_path, generator_ckpt, tiny_toy):
    import torch

    from reid_aug.errors import CheckpointError, DatasetError
    from reid_aug.errors import SynthesisError

    out_ref, _ = reference
    # the folder holds a different run
    copy = tmp_path / "other"
    shutil.copytree(out_ref, copy)
    with pytest.raises(SynthesisError, match="different synthesis run.*seed"):
        _run(generator_ckpt, copy, tiny_toy, seed=5)
    # images but no descriptor
    foreign = tmp_path / "foreign" / "bounding_box_train"
    foreign.mkdir(parents=True)
    (foreign / "0001_c1s1_000001_01.jpg").write_bytes(b"x")
    with pytest.raises(SynthesisError, match="unknown run"):
        _run(generator_ckpt, foreign.parent, tiny_toy)
    # not a PG² checkpoint
    bogus = tmp_path / "resnet.pt"
    torch.save({"conv1.weight": torch.zeros(1)}, bogus)
    with pytest.raises(CheckpointError, match="not a reid-aug generator checkpoint"):
        _run(bogus, tmp_path / "o1", tiny_toy)
    # a dataset whose annotations have no torso
    ds = _copy_with_edited_poses(tiny_toy, tmp_path / "noposes", lambda name, kp: _drop_torso(kp))
    with pytest.raises(DatasetError, match="no valid training pose"):
        _run(generator_ckpt, tmp_path / "o3", ds)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


def test_identity_without_full_torso_uses_partial_poses_and_one_without_annotations_is_skipped(
        tmp_path, generator_ckpt, tiny_toy, index):
    """Market-1501 has 6 train identities without a full-torso image: they are still augmented (sources with
    partial poses), while an identity with no annotated joint at all is skipped and reported, not a crash."""
    train = index.split("train")
    train = train[train["kind"] == "normal"]
    pids = sorted(train["pid"].unique().tolist())
    partial_pid, bare_pid = pids[0], pids[1]
    pid_of = dict(zip(train["name"], train["pid"]))

    def edit(name, kp):
        if pid_of.get(name) == partial_pid:
            return _drop_torso(kp)                         # not a pair image, not in the pose bank
        if pid_of.get(name) == bare_pid:
            return np.full_like(kp, -1)                    # annotated, but no joint found
        return kp

    ds = _copy_with_edited_poses(tiny_toy, tmp_path / "ds", edit)

    summary = _run(generator_ckpt, tmp_path / "out", ds)
    m = _manifest(tmp_path / "out")
    assert summary["skipped_identities"] == [bare_pid]
    assert summary["partial_pose_identities"] == [partial_pid]
    assert sorted(m["pid"].unique().tolist()) == [p for p in pids if p != bare_pid]
    assert (m.groupby("pid").size() == K).all()
    own = m[m["pid"] == partial_pid]
    n_partial = int((train["pid"] == partial_pid).sum())
    assert set(own["source"]) <= set(train.loc[train["pid"] == partial_pid, "name"])
    assert own["source"].nunique() == min(K, n_partial)                 # still all sources before any repeat
    assert not (m["target_pose"].map(pid_of) == partial_pid).any()     # its poses are not in the bank
    desc = json.loads((tmp_path / "out" / "synthesis.json").read_text())
    assert desc["info"]["skipped_identities"] == [bare_pid]
    assert desc["info"]["partial_pose_identities"] == [partial_pid]


# --------------------------------------------------------------------------- config, choices (issue 18: 1, 7, 8)
def test_resolved_config_is_saved_beside_the_images(reference, generator_ckpt, tiny_toy):
    from reid_aug.config import load_config
    from reid_aug.synthesis.config import SynthesisConfig

    out, _ = reference
    saved = load_config(SynthesisConfig, out / "config.yaml")
    assert saved == _opts(generator_ckpt, out, tiny_toy)
    desc = json.loads((out / "synthesis.json").read_text())
    assert desc["schema"] == "reid-aug/synthesis" and desc["info"]["cross_dataset"] is None   # nothing recorded


def _fake_run(runs: Path, name: str, dataset: Path, mtime: float, complete: bool | None, run_json=True) -> Path:
    """A generator run folder: checkpoint (complete flag, dataset record), run.json (``complete`` unless None)."""
    run = runs / name
    run.mkdir(parents=True)
    _write_generator(run / "checkpoint.pt", dataset={"spec": str(dataset), "root": str(dataset)},
                     complete=bool(complete) if complete is not None else True)
    if run_json:
        rec = {"dataset": str(dataset), "data": {"spec": str(dataset), "root": str(dataset)}}
        if complete is not None:
            rec["complete"] = complete
        (run / "run.json").write_text(json.dumps(rec))
    os.utime(run / "checkpoint.pt", (mtime, mtime))
    return run


def test_synthesize_with_no_run_takes_the_newest_finished_run_and_its_dataset(tmp_path, monkeypatch, caplog, tiny_toy):
    """Issue 18 item 1: `synthesize --poses-per-id K` as typed after `train-generator` finds the run."""
    import logging

    from click.testing import CliRunner

    import cli

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    _fake_run(runs, "older", tiny_toy, 1_000_000_000, complete=True)
    _fake_run(runs, "newest_finished", tiny_toy, 1_100_000_000, complete=None, run_json=False)  # checkpoint says
    _fake_run(runs, "unfinished", tiny_toy, 1_200_000_000, complete=False)                   # newest, not done
    with caplog.at_level(logging.INFO):
        result = CliRunner().invoke(cli.main, ["synthesize", "--poses-per-id", "2", "--set", "max_identities=2",
                                               "--batch-size", "4", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    out = runs / "newest_finished" / "synthesized-2"
    assert (out / "manifest.csv").is_file() and "-> runs/newest_finished/synthesized-2" in result.output
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("using generator")]
    assert len(said) == 1, said
    assert f"runs/newest_finished (finished " in said[0] and f"its dataset {tiny_toy}" in said[0]
    assert said[0].endswith("pass --run/--dataset to choose")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "trained on" in r.getMessage()]
    desc = json.loads((out / "synthesis.json").read_text())
    assert desc["info"]["dataset"] == str(tiny_toy) and desc["info"]["cross_dataset"] is False
    assert not (runs / "older" / "synthesized-2").exists()


def test_nothing_to_pick_is_a_clear_error_not_the_toy_data(tmp_path, monkeypatch, tiny_toy):
    from click.testing import CliRunner

    import cli
    from reid_aug.errors import RunSelectionError
    from reid_aug.synthesis.inputs import pick_generator_run

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RunSelectionError, match="no finished generator run under runs/.*train-generator market"):
        pick_generator_run()
    _fake_run(tmp_path / "runs", "halfway", tiny_toy, 1_000_000_000, complete=False)
    result = CliRunner().invoke(cli.main, ["synthesize", "--poses-per-id", "2"])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith("error: no finished generator run") and "\n" not in line
    assert "runs/halfway not finished" in line and "--resume" in line and "--run RUN_DIR" in line
    assert sorted(p.name for p in (tmp_path / "runs" / "halfway").iterdir()) == ["checkpoint.pt", "run.json"]


def test_a_generator_from_another_dataset_warns_unless_cross_dataset_is_stated(tmp_path, caplog, tiny_toy):
    """Issue 18 item 8: a mismatch names both datasets and the flag; stated, it is one info line; recorded."""
    import logging

    gen = _write_generator(tmp_path / "gen" / "checkpoint.pt",
                           dataset={"spec": "toy", "root": str(tmp_path / "somewhere" / "toy")})
    kw = dict(poses_per_id=2, max_identities=2, strategy="random")
    with caplog.at_level(logging.INFO):
        _run(gen, tmp_path / "warned", tiny_toy, **kw)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "trained on" in r.getMessage()]
    assert len(warned) == 1
    assert "trained on toy (" in warned[0] and f"{tiny_toy.name} ({tiny_toy})" in warned[0]
    assert "--cross-dataset" in warned[0]
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _run(gen, tmp_path / "stated", tiny_toy, cross_dataset=True, **kw)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "trained on" in r.getMessage()]
    assert len([r for r in caplog.records if "cross-dataset synthesis" in r.getMessage()]) == 1
    for name in ("warned", "stated"):
        info = json.loads((tmp_path / name / "synthesis.json").read_text())["info"]
        assert info["cross_dataset"] is True and info["generator_dataset"] == "toy"
    # the same named dataset wherever its folder is now is no mismatch
    from reid_aug.synthesis.inputs import same_dataset

    assert same_dataset({"spec": "toy", "root": "/old/cache/toy"}, "toy", tmp_path)
    assert same_dataset({"spec": "market", "root": "/elsewhere"}, "market", tmp_path)
    assert same_dataset({"spec": "toy", "root": "/x"}, "market", tmp_path) is False
    assert same_dataset({"spec": "/a/data", "root": str(tiny_toy)}, str(tiny_toy), tiny_toy)
    assert same_dataset({}, "market", tmp_path) is None
