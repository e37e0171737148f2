"""``evaluate-generator`` on a tiny synthetic run: records, floors, resume, errors, identity retrieval.

The generator is trained for real (``train_generator`` with ``--set``-style overrides): 200 stage-I steps of a
width-8 G1 at 64x32 on the tiny synthetic dataset (about 20 s on one CPU core).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")

OVERRIDES = ["model.image_size=[64,32]", "model.g1_width=8", "model.g2_width=8", "model.d_width=8",
             "model.bottleneck=16", "train.stages=[g1]", "train.g1_iters=200", "train.batch_size=8", "train.lr=1e-3",
             "train.num_workers=0", "train.tensorboard=false", "train.flip=false", "train.log_every=20",
             "train.sample_every=100000", "train.checkpoint_every=100000", "runtime.device=cpu"]


@pytest.fixture(scope="module")
def trained_run(tiny_toy, tmp_path_factory) -> Path:
    from reid_aug.generator.train import resolve_training, train_generator

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("eval") / "run"
    cfg, out = resolve_training(str(tiny_toy), "pg2_market", OVERRIDES, out)
    return train_generator(cfg, str(tiny_toy), out)


@pytest.fixture(scope="module")
def train_pairs_csv(tiny_toy, tmp_path_factory) -> Path:
    """64 training pairs: the identities a few-dozen-step model has seen (held-out ones need far more training)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.pairs import train_pairs

    path = tmp_path_factory.mktemp("pairs") / "train-pairs.csv"
    train_pairs(load_dataset(tiny_toy)).sample(64, random_state=0).to_csv(path, index=False)
    return path


def _by_row(records):
    return {r["row"]: r for r in records}


def test_records_floor_and_ceiling(trained_run, train_pairs_csv):
    from reid_aug.metrics.evaluate_generator import evaluate_generator, format_records
    from reid_aug.utils.io import sha256_file

    records = evaluate_generator(trained_run, pairs=train_pairs_csv, batch_size=16, workers=0)
    rows = _by_row(records)
    assert [r["row"] for r in records] == ["model", "real_vs_real", "copy_source"]
    model, real, floor = rows["model"], rows["real_vs_real"], rows["copy_source"]
    print(f"SSIM defgan: model {model['ssim']:.4f} vs copy-source floor {floor['ssim']:.4f}; pg2: "
          f"{model['ssim_by_protocol']['pg2']:.4f} vs {floor['ssim_by_protocol']['pg2']:.4f}")
    # the trained model beats the copy-the-source floor, under both protocols
    assert floor["ssim"] < model["ssim"]
    assert floor["ssim_by_protocol"]["pg2"] < model["ssim_by_protocol"]["pg2"]
    assert model["l1"] < floor["l1"]
    # real vs real is the ceiling
    for p in ("defgan", "pg2"):
        assert real["ssim_by_protocol"][p] == pytest.approx(1.0, abs=1e-6)
        assert real["mask_ssim_by_protocol"][p] == pytest.approx(1.0, abs=1e-6)
    assert real["l1"] == 0.0
    # provenance
    assert model["protocol"] == "defgan" and model["ssim"] == model["ssim_by_protocol"]["defgan"]
    assert model["stage"] == "g1" and model["n_pairs"] == 64
    assert model["checkpoint_sha256"] == sha256_file(trained_run / "checkpoint.pt")
    assert model["pairs_source"] == str(train_pairs_csv) and len(model["pairs_sha256"]) == 64
    # no Inception weights here: null + reason, everything else computed
    assert model["is"]["mean"] is None and "inception-weights" in model["is"]["reason"]
    assert model["mask_is"]["mean"] is None
    # files
    doc = json.loads((trained_run / "eval" / "metrics.json").read_text())
    assert doc["records"][0]["row"] == "model" and doc["records"][0]["ssim"] == pytest.approx(model["ssim"])
    table = pd.read_csv(trained_run / "eval" / "metrics.csv")
    assert list(table["row"]) == ["model", "real_vs_real", "copy_source"]
    assert table.loc[0, "ssim_defgan"] == pytest.approx(model["ssim"])
    per_pair = pd.read_csv(trained_run / "eval" / "per_pair.csv")
    assert len(per_pair) == 64 and per_pair["ssim_defgan"].mean() == pytest.approx(model["ssim"], abs=1e-5)
    from PIL import Image

    with Image.open(trained_run / "eval" / "samples.png") as im:
        assert im.size == (4 * 32, 8 * 64)  # source | target pose | generated | target, 8 rows
    text = format_records(records)
    assert "copy_source" in text and "n/a" in text


def test_values_match_a_direct_computation(trained_run, tiny_toy):
    """The first test pairs recomputed by hand: generator -> to_uint8 -> skimage SSIM (published loop)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.generator.inference import load_generator
    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.metrics.ssim import real_to_uint8, ssim_skimage, to_uint8
    from reid_aug.pairs import PosePairDataset, test_pairs

    records = evaluate_generator(trained_run, batch_size=5, limit=10, protocol="pg2", workers=0)
    model = _by_row(records)["model"]
    assert model["protocol"] == "pg2" and model["n_pairs"] == 10
    gen = load_generator(trained_run)
    index = load_dataset(tiny_toy)
    pairs, info = test_pairs(index)
    assert model["pairs_source"] == info["source"]
    data = PosePairDataset(index, pairs.iloc[:10], pose_mode=gen.pose_mode, size=gen.image_size)
    batch = torch.utils.data.default_collate([data[i] for i in range(10)])
    fake = to_uint8(gen.generate(batch["src_img"], batch["tgt_pose"]))
    real = real_to_uint8(batch["tgt_img"])
    assert model["ssim"] == pytest.approx(ssim_skimage(fake, real, "pg2").mean(), abs=1e-6)
    assert model["mask_ssim_by_protocol"]["defgan"] == pytest.approx(
        ssim_skimage(fake, real, "defgan", mask=batch["tgt_mask"]).mean(), abs=1e-6)
    # PG²'s mask-SSIM: its score_mask.py masks with the SOURCE's PG² mask (what its test step writes to mask/)
    from reid_aug.pose.maps import pose_masks

    src_mask = pose_masks(batch["src_kp"], gen.image_size, style="pg2")
    assert model["mask_ssim"] == model["mask_ssim_by_protocol"]["pg2"] == pytest.approx(
        ssim_skimage(fake, real, "pg2", mask=src_mask).mean(), abs=1e-6)
    assert model["mask_ssim"] != pytest.approx(ssim_skimage(fake, real, "pg2", mask=batch["tgt_mask"]).mean(),
                                               abs=1e-6)
    # both evaluations are kept in metrics.json; the defgan one stays first
    doc = json.loads((trained_run / "eval" / "metrics.json").read_text())
    assert {(r["protocol"], r["row"]) for r in doc["records"]} >= {("defgan", "model"), ("pg2", "model")}
    assert doc["records"][0]["protocol"] == "defgan"


def test_interrupted_evaluation_resumes_to_the_same_records(trained_run, monkeypatch):
    import reid_aug.metrics.evaluate_generator as ev

    kw = dict(batch_size=4, limit=16, workers=0, protocol="defgan")
    full = _by_row(ev.evaluate_generator(trained_run, **kw))

    monkeypatch.setattr(ev, "RESUME_EVERY", 1)
    monkeypatch.setattr(ev, "RESUME_MIN_SECONDS", 0.0)
    calls = {"n": 0}
    real_l1 = ev.l1_pm1

    def failing_l1(a, b):
        calls["n"] += 1
        if calls["n"] == 3 * 3:  # during the third batch (three rows per batch)
            raise KeyboardInterrupt
        return real_l1(a, b)

    monkeypatch.setattr(ev, "l1_pm1", failing_l1)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate_generator(trained_run, force=True, **kw)
    partial = list((trained_run / "eval").glob("partial-*.pt"))
    assert len(partial) == 1 and torch.load(partial[0], weights_only=True)["batches"] == 2
    monkeypatch.setattr(ev, "l1_pm1", real_l1)
    resumed = _by_row(ev.evaluate_generator(trained_run, force=True, **kw))
    assert not list((trained_run / "eval").glob("partial-*.pt"))
    for row in ev.ROWS:
        for key in ("ssim", "mask_ssim", "l1"):
            assert resumed[row][key] == pytest.approx(full[row][key], abs=1e-12)


def test_finished_evaluation_is_reused_not_recomputed(trained_run, monkeypatch):
    import reid_aug.metrics.evaluate_generator as ev
    from reid_aug.generator.inference import PoseTransferGenerator

    kw = dict(batch_size=4, limit=8, workers=0, protocol="pg2")
    first = ev.evaluate_generator(trained_run, **kw)

    def no_generation(*a, **k):
        raise AssertionError("the finished evaluation was recomputed")

    monkeypatch.setattr(PoseTransferGenerator, "generate", no_generation)
    again = ev.evaluate_generator(trained_run, **kw)
    assert again == first
    # other inputs (pairs, protocol) or --force mean a new evaluation
    for changed in (dict(kw, limit=12), dict(kw, protocol="defgan")):
        with pytest.raises(AssertionError, match="recomputed"):
            ev.evaluate_generator(trained_run, **changed)
    with pytest.raises(AssertionError, match="recomputed"):
        ev.evaluate_generator(trained_run, force=True, **kw)


def test_clear_errors(trained_run, tmp_path):
    from reid_aug.errors import CheckpointError, ReidAugError, WeightsMissingError
    from reid_aug.metrics.evaluate_generator import evaluate_generator

    with pytest.raises(ReidAugError, match="no trained 'g2'"):
        evaluate_generator(trained_run, stage="g2", limit=2, workers=0)
    with pytest.raises(WeightsMissingError, match="does not exist"):
        evaluate_generator(trained_run, inception_weights=tmp_path / "missing.pth", limit=2, workers=0)
    with pytest.raises(CheckpointError):
        evaluate_generator(tmp_path, limit=2, workers=0)
    with pytest.raises(ReidAugError, match="protocol"):
        evaluate_generator(trained_run, protocol="ssim2", limit=2, workers=0)


def test_cli(trained_run):
    from click.testing import CliRunner

    from cli import main

    result = CliRunner().invoke(main, ["evaluate-generator", str(trained_run), "--limit", "6", "--batch-size", "3"])
    assert result.exit_code == 0, result.output
    assert "copy_source" in result.output and "no Inception weights" in result.output
    bad = CliRunner().invoke(main, ["evaluate-generator", str(trained_run), "--stage", "g2", "--limit", "2"])
    assert bad.exit_code == 2 and "error:" in bad.output


def test_identity_retrieval_with_a_reid_model(trained_run, tiny_toy, tmp_path):
    """Wiring check with an untrained torchreid model saved in the benchmark's format: the copy-source row (the
    real source image as query) must equal a nearest-neighbour search done here from the image files."""
    from reid_aug.config import from_dict
    from reid_aug.dataset.market import load_dataset
    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.pairs import test_pairs
    from reid_aug.reid.models import build_model, extract_features, save_reid_model
    from reid_aug.reid.config import BenchmarkConfig
    from reid_aug.reid.data import test_transform
    from PIL import Image

    torch.manual_seed(0)
    cfg = from_dict(BenchmarkConfig, {"model": {"name": "osnet_x0_25", "pretrained": False},
                                      "data": {"height": 64, "width": 32}})
    model = build_model("osnet_x0_25", num_classes=8).eval()
    path = tmp_path / "reid.pt"
    save_reid_model(model, cfg, path, {"num_classes": 8})
    records = _by_row(evaluate_generator(trained_run, reid_model=path, limit=12, batch_size=6, workers=0))
    for row in ("model", "real_vs_real", "copy_source"):
        assert 0.0 <= records[row]["id_retrieval"]["mean"] <= 1.0
    assert records["model"]["reid_model"] == str(path)

    index = load_dataset(tiny_toy)
    pairs = test_pairs(index)[0].iloc[:12]
    gallery = index.split("gallery")
    gallery = gallery[gallery["kind"] != "junk"].reset_index(drop=True)
    gf = extract_features(model, gallery["path"].tolist(), 64, 32, device="cpu")
    # the evaluated source images are the files resized (PIL bilinear) to the generator's 64x32
    transform = test_transform(64, 32)
    with torch.no_grad():
        qf = model(torch.stack([transform(Image.open(index.path_of(n)).convert("RGB").resize((32, 64), Image.BILINEAR))
                                for n in pairs["from"]]))
    dist = torch.cdist(qf, gf)
    names = gallery["name"].tolist()
    pid = dict(zip(index.table["name"], index.table["pid"]))
    hits = []
    for i, (s, t) in enumerate(zip(pairs["from"], pairs["to"])):
        for n in (s, t):
            if n in names:
                dist[i, names.index(n)] = float("inf")
        hits.append(int(gallery["pid"][int(dist[i].argmin())]) == pid[s])
    assert records["copy_source"]["id_retrieval"]["mean"] == pytest.approx(sum(hits) / len(hits))


def test_inception_fields_with_a_weights_file(trained_run, tmp_path, monkeypatch):
    """IS / mask-IS of every row are filled from a weights file (a randomly initialised TF-2015 InceptionV3 port
    written here: the loading path, not the value, is under test; the network runs at 75x75 instead of 299x299
    to keep the test short)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.utils.io import sha256_file

    class RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)
    empty = tmp_path / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(0)
    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(RandomInit("r", ["logits_unbiased"], feature_extractor_weights_path=str(empty)).state_dict(), weights)
    records = _by_row(evaluate_generator(trained_run, inception_weights=weights, limit=10, batch_size=10, workers=0))
    for row in ("model", "real_vs_real", "copy_source"):
        for key in ("is", "mask_is"):
            d = records[row][key]
            # 10 images in 10 splits: one image per split, KL(p || p) = 0, IS = 1 exactly
            assert d["mean"] == pytest.approx(1.0) and d["n"] == 10 and d["splits"] == 10
            assert d["weights_sha256"] == sha256_file(weights)
    assert records["model"]["inception_weights"] == str(weights)


def test_stages_of_a_two_stage_run_keep_separate_records(tiny_toy, tmp_path, monkeypatch):
    """G1 of a G1+G2 run is evaluated into eval-g1/, never over the G2 records in eval/ (which benchmark reads)."""
    import reid_aug.metrics.evaluate_generator as ev
    from reid_aug.generator.inference import PoseTransferGenerator
    from reid_aug.generator.train import resolve_training, train_generator

    overrides = [o for o in OVERRIDES if not o.startswith(("train.stages", "train.g1_iters"))]
    cfg, out = resolve_training(str(tiny_toy), "pg2_market", overrides + [
        "train.stages=[g1,g2]", "train.g1_iters=10", "train.g2_iters=4"], tmp_path / "run")
    run = train_generator(cfg, str(tiny_toy), out)
    kw = dict(batch_size=4, limit=8, workers=0)
    g2 = {r["row"]: r for r in ev.evaluate_generator(run, **kw)}
    g1 = {r["row"]: r for r in ev.evaluate_generator(run, stage="g1", **kw)}
    assert g2["model"]["stage"] == "g2" and g1["model"]["stage"] == "g1"
    assert g1["model"]["l1"] != g2["model"]["l1"]
    on_disk = json.loads((run / "eval" / "metrics.json").read_text())["records"][0]
    assert on_disk["stage"] == "g2" and on_disk["l1"] == pytest.approx(g2["model"]["l1"])
    assert json.loads((run / "eval-g1" / "metrics.json").read_text())["records"][0]["stage"] == "g1"
    assert (run / "eval-g1" / "samples.png").is_file()

    def no_generation(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(PoseTransferGenerator, "generate", no_generation)
    assert ev.evaluate_generator(run, **kw)[0]["l1"] == g2["model"]["l1"]              # both still reusable
    assert ev.evaluate_generator(run, stage="g1", **kw)[0]["l1"] == g1["model"]["l1"]


def test_evaluation_config_takes_recipe_set_and_flags(tmp_path):
    from reid_aug.errors import ConfigError
    from reid_aug.metrics.evaluate_generator import EvaluationConfig, load_evaluation_config

    assert load_evaluation_config() == EvaluationConfig()
    cfg = load_evaluation_config(None, ["limit=10", "workers=0", "protocol=pg2"], {"protocol": "defgan", "stage": None})
    assert (cfg.limit, cfg.workers, cfg.protocol) == (10, 0, "defgan")      # a typed flag wins over --set
    with pytest.raises(ConfigError, match="limit=0"):
        load_evaluation_config(None, ["limit=0"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_evaluation_config(None, ["limits=3"])
