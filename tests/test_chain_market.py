"""Issue 18: the three documented commands, typed in sequence on the real Market-1501, chain.

    reid-aug train-generator market        # generator on Market-1501
    reid-aug synthesize --poses-per-id 10  # augmented training set, Market layout + manifest
    reid-aug benchmark --model resnet50    # torchreid with/without augmentation -> report

Each gets small ``--set`` overrides so that the chain runs in about a minute on 2 CPU cores; every
command must find the previous one's output by itself.
"""
import json
import logging

import pytest
from click.testing import CliRunner

import cli

pytestmark = [pytest.mark.market, pytest.mark.slow]

TINY_GENERATOR = ["model.g1_width=4", "model.g2_width=4", "model.d_width=8", "model.bottleneck=16",
                  "train.g1_iters=3", "train.g2_iters=2", "train.batch_size=2", "train.tensorboard=false",
                  "train.sample_every=100", "train.checkpoint_every=100", "train.n_samples=2"]
SMALL_SYNTHESIS = ["max_identities=3", "batch_size=16", "contact_sheet_ids=3"]
SMALL_REID = ["model.pretrained=false", "data.train_per_id=1", "data.test_ids=4", "data.height=64", "data.width=32",
              "data.check_images=false", "data.workers=0", "train.epochs=1", "train.max_iters_per_epoch=2",
              "train.batch_size=16", "data.batch_size_test=64"]


def _sets(items):
    return [x for item in items for x in ("--set", item)]


def _run(args, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO):
        res = CliRunner().invoke(cli.main, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output, [r.getMessage() for r in caplog.records]


def test_the_three_documented_commands_chain_on_market(market_root, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REID_AUG_MARKET_ROOT", str(market_root))

    out, logs = _run(["train-generator", "market", *_sets(TINY_GENERATOR)], caplog)
    run = tmp_path / "runs" / "pg2_market-market"
    assert "run folder: runs/pg2_market-market" in out
    assert json.loads((run / "run.json").read_text())["complete"] is True
    # on a CPU the GPU recipe says so at once and names the CPU recipe
    assert any("pg2_market_cpu" in m for m in logs)

    out, logs = _run(["synthesize", "--poses-per-id", "10", *_sets(SMALL_SYNTHESIS)], caplog)
    picked = [m for m in logs if m.startswith("using generator")]
    assert len(picked) == 1 and "pg2_market-market" in picked[0] and "market" in picked[0], logs
    synth = run / "synthesized-10"
    assert (synth / "manifest.csv").is_file() and len(list((synth / "bounding_box_train").glob("*.jpg"))) == 30

    out, logs = _run(["benchmark", "--model", "resnet50", *_sets(SMALL_REID)], caplog)
    picked = [m for m in logs if m.startswith("using synthesized set")]
    assert len(picked) == 1 and "runs/pg2_market-market/synthesized-10" in picked[0], logs
    assert "its dataset market" in picked[0]
    bench = tmp_path / "runs" / "benchmark_resnet50-market-pg2_market-market-synthesized-10"
    results = json.loads((bench / "results.json").read_text())
    assert results["runs"]["augmented_seed0"]["n_train_synthesized"] == 30
    assert results["runs"]["baseline_seed0"]["n_train_real"] == 751
    report = (bench / "report.md").read_text().splitlines()
    assert report[2].startswith("Augmentation changed rank-1 by ") and "one seed" in report[2]
    assert "smoke setting" in "\n".join(report)
