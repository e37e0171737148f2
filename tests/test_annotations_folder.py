"""Keypoints from another folder than the dataset's own (``reid-aug annotate --out DIR``), followed through
``train-generator --annotations`` -> ``evaluate-generator`` -> ``synthesize``.

The other folder holds the tiny toy dataset's keypoints moved 3 px to the right, with the hips of a few
training images removed, and no test-pairs file: a reader that ignores the folder trains on more pairs, scores
other target poses, and writes the records to the same place.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

os.environ.setdefault("OMP_NUM_THREADS", "1")

OVERRIDES = ["model.image_size=[64,32]", "model.g1_width=8", "model.g2_width=8", "model.d_width=8",
             "model.bottleneck=16", "train.stages=[g1]", "train.g1_iters=20", "train.batch_size=8", "train.lr=1e-3",
             "train.num_workers=0", "train.tensorboard=false", "train.log_every=10", "train.sample_every=100000",
             "train.checkpoint_every=100000", "runtime.device=cpu"]
NO_HIPS = 3     # training images whose hips the other folder drops


@pytest.fixture(scope="module")
def other_annotations(tiny_toy, tmp_path_factory) -> Path:
    from reid_aug.keypoints.annotations import read_annotations, write_annotations

    out = tmp_path_factory.mktemp("other-kp")
    for split in ("train", "test"):
        kps = read_annotations(tiny_toy / "annotations" / f"toy-annotation-{split}.csv", height=None, width=None)
        moved = {}
        for i, (name, kp) in enumerate(sorted(kps.items())):
            kp = np.where(kp >= 0, kp + np.array([0, 3]), kp)
            if split == "train" and i < NO_HIPS:
                kp[[8, 11]] = -1
            moved[name] = np.minimum(kp, [127, 63])
        write_annotations(out / f"toy-annotation-{split}.csv", moved)
    return out


def test_reader_takes_the_folder_and_keeps_the_dataset_pairs(tiny_toy, other_annotations):
    from reid_aug.dataset.market import annotation_record, load_dataset
    from reid_aug.utils.io import sha256_file

    own = load_dataset(tiny_toy)
    other = load_dataset(tiny_toy, annotations_dir=other_annotations)
    name = sorted(own.keypoints)[NO_HIPS + 1]
    a, b = own.keypoints[name], other.keypoints[name]
    found = a[:, 1] >= 0
    assert np.all(b[found, 1] == np.minimum(a[found, 1] + 3, 63))
    assert int(other.table["pose_ok"].sum()) < int(own.table["pose_ok"].sum())
    # the standard test pairs belong to the dataset: a folder without its own pairs file keeps them
    assert other.test_pairs_csv == own.test_pairs_csv is not None
    rec = annotation_record(other, other_annotations)
    assert rec["annotations"] == str(other_annotations.resolve())
    assert rec["annotations_sha256"] == {p.name: sha256_file(p) for p in sorted(other_annotations.glob("*.csv"))}
    assert annotation_record(own, None) == {}


@pytest.fixture(scope="module")
def run_on_other(tiny_toy, other_annotations, tmp_path_factory) -> Path:
    """20 stage-I steps on the other keypoints, through the CLI (``--annotations``)."""
    import cli

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "g1"
    sets = [a for o in OVERRIDES for a in ("--set", o)]
    res = CliRunner().invoke(cli.main, ["train-generator", str(tiny_toy), "--recipe", "pg2_market", "--out", str(out),
                                        "--annotations", str(other_annotations), *sets])
    assert res.exit_code == 0, res.output
    return out


def test_training_reads_and_records_the_folder(tiny_toy, other_annotations, run_on_other):
    from reid_aug.dataset.market import load_dataset
    from reid_aug.pairs import train_pairs

    run = json.loads((run_on_other / "run.json").read_text())
    info = run["data"]
    assert info["annotations"] == str(other_annotations.resolve())
    assert set(info["annotations_sha256"]) == {"toy-annotation-train.csv", "toy-annotation-test.csv"}
    assert info["n_pairs"] == len(train_pairs(load_dataset(tiny_toy, annotations_dir=other_annotations)))
    assert info["n_pairs"] < len(train_pairs(load_dataset(tiny_toy)))
    ckpt = torch.load(run_on_other / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["dataset"]["annotations"] == info["annotations"]


def test_evaluation_follows_the_run_and_keeps_other_keypoints_apart(run_on_other, other_annotations):
    from reid_aug.metrics.evaluate_generator import evaluate_generator

    own = {r["row"]: r for r in evaluate_generator(run_on_other, limit=16, batch_size=8, workers=0)}
    assert own["model"]["annotations"] == str(other_annotations.resolve())
    assert (run_on_other / "eval" / "metrics.json").is_file()
    theirs = {r["row"]: r for r in evaluate_generator(run_on_other, limit=16, batch_size=8, workers=0,
                                                      annotations="dataset")}
    assert theirs["model"]["annotations"] is None
    assert (run_on_other / "eval-kp-dataset" / "metrics.json").is_file()
    # same 16 pairs, other target poses (3 px apart): other generated images, same real targets
    assert theirs["model"]["pairs_sha256"] == own["model"]["pairs_sha256"]
    assert theirs["model"]["ssim"] != pytest.approx(own["model"]["ssim"], abs=1e-6)
    assert theirs["real_vs_real"]["ssim"] == pytest.approx(1.0, abs=1e-6)
    # the run's own evaluation is still there and is reused, not overwritten by the other keypoints
    again = json.loads((run_on_other / "eval" / "metrics.json").read_text())["records"]
    assert again[0]["ssim"] == pytest.approx(own["model"]["ssim"]) and again[0]["annotations"] is not None


def test_synthesis_reads_the_generators_keypoints(run_on_other, other_annotations, tiny_toy):
    from reid_aug.synthesis.config import SynthesisConfig
    from reid_aug.synthesis.inputs import resolve_inputs

    inputs = resolve_inputs(SynthesisConfig(generator=str(run_on_other)), torch.device("cpu"))
    assert inputs.annotations == str(other_annotations.resolve())
    assert inputs.info["annotations"] == inputs.annotations


def test_missing_folder_is_one_line(tiny_toy, tmp_path):
    import cli

    res = CliRunner().invoke(cli.main, ["train-generator", str(tiny_toy), "--recipe", "pg2_market", "--out",
                                        str(tmp_path / "r"), "--annotations", str(tmp_path / "nowhere"), "--dry-run"])
    assert res.exit_code != 0
    assert "nowhere" in res.output and "does not exist" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()
