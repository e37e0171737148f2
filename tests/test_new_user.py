"""Issue 18: what a new user hits, each defect reproduced and now showing the intended behaviour."""
import logging
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import cli
from reid_aug.errors import RecordError, RunSelectionError


def _invoke(args, cwd=None):
    old = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli.main, args)
    finally:
        os.chdir(old)


def _one_clean_line(res):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output and "UnicodeDecodeError" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.output
    return errors[0]


def test_benchmark_with_nothing_to_pick_stops_and_never_builds_the_toy_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_AUG_CACHE", str(tmp_path / "cache"))
    res = _invoke(["benchmark", "--model", "resnet50"], cwd=tmp_path)
    line = _one_clean_line(res)
    assert "no synthesized set under runs/" in line and "reid-aug synthesize" in line and "--baseline-only" in line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()
    res = _invoke(["benchmark", "--model", "resnet50", "--baseline-only"], cwd=tmp_path)
    assert "--baseline-only needs --dataset" in _one_clean_line(res)


def test_benchmark_picks_the_newest_synthesized_set_and_its_dataset(tmp_path, caplog):
    from reid_aug.records import SynthesisDescriptor
    from reid_aug.reid.inputs import resolve_benchmark_inputs

    for i, name in enumerate(("old", "new")):
        d = tmp_path / "runs" / f"gen-{name}" / "synthesized-3"
        d.mkdir(parents=True)
        SynthesisDescriptor(run={"poses_per_id": 3}, info={"dataset": f"/data/{name}"}).write(d / "synthesis.json")
        (d / "manifest.csv").write_text("file,pid\n")
        os.utime(d / "synthesis.json", (1000 + i, 1000 + i))
        os.utime(d / "manifest.csv", (1000 + i, 1000 + i))
    half = tmp_path / "runs" / "gen-half" / "synthesized-3"          # no manifest: not finished
    half.mkdir(parents=True)
    SynthesisDescriptor(run={}, info={"dataset": "/data/half"}).write(half / "synthesis.json")
    with caplog.at_level(logging.INFO, logger="reid_aug.reid.inputs"):
        dataset, aug = resolve_benchmark_inputs(None, None, root=tmp_path / "runs")
    assert aug == tmp_path / "runs" / "gen-new" / "synthesized-3" and dataset == "/data/new"
    assert any("using synthesized set" in r.getMessage() and "--augmented" in r.getMessage() for r in caplog.records)
    assert resolve_benchmark_inputs("market", None, root=tmp_path / "runs")[0] == "market"
    assert resolve_benchmark_inputs("market", None, baseline_only=True, root=tmp_path / "runs") == ("market", None)
    with pytest.raises(RunSelectionError, match="contradict"):
        resolve_benchmark_inputs(None, half, baseline_only=True)


def test_default_benchmark_folder_depends_on_model_dataset_and_set(tmp_path):
    from reid_aug.rundir import BenchmarkDir

    a = BenchmarkDir.default("resnet50", "market", tmp_path / "runs" / "pg2-market" / "synthesized-10").path
    b = BenchmarkDir.default("resnet50", "market", tmp_path / "runs" / "pg2-market" / "synthesized-2").path
    c = BenchmarkDir.default("resnet50", "market", None).path
    d = BenchmarkDir.default("osnet_x0_25", "market", None).path
    assert len({a, b, c, d}) == 4 and a.name == "benchmark_resnet50-market-pg2-market-synthesized-10"


def test_binary_results_and_baseline_from_are_one_line_errors(tmp_path, tiny_toy):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "results.json").write_bytes(bytes(range(256)) * 8)
    args = ["benchmark", "--recipe", "reid_toy", "--no-pretrained", "--dataset", str(tiny_toy), "--baseline-only",
            "--set", "train.epochs=1"]
    line = _one_clean_line(_invoke(args + ["--out", str(out)]))
    assert str(out / "results.json") in line
    binary = tmp_path / "other.json"
    binary.write_bytes(np.random.default_rng(0).bytes(3000))
    line = _one_clean_line(_invoke(args + ["--out", str(tmp_path / "b2"), "--baseline-from", str(binary)]))
    assert str(binary) in line
    from reid_aug.reid.results import load_results as _load_results

    with pytest.raises(RecordError):
        _load_results(out / "results.json")


@pytest.mark.parametrize("content", ["random", "truncated", "generator"])
def test_reid_model_errors_are_one_line_without_torch_text(tmp_path, content):
    from reid_aug.errors import CheckpointError
    from reid_aug.reid.models import load_reid_model

    path = tmp_path / "model.pt"
    if content == "random":
        path.write_bytes(np.random.default_rng(1).bytes(5000))
    elif content == "truncated":
        torch.save({"format": "reid_aug.reid/1", "state_dict": {"w": torch.zeros(1000)}}, path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        torch.save({"kind": "reid-aug/generator", "format_version": 2, "models": {}}, path)
    with pytest.raises(CheckpointError) as err:
        load_reid_model(path)
    msg = str(err.value)
    assert "\n" not in msg and "weights_only" not in msg and "arbitrary code" not in msg
    assert "not a Re-ID model" in msg and "reid-aug benchmark" in msg
    if content == "generator":
        assert "reid-aug/generator" in msg


def test_a_schedule_that_no_longer_fits_warns_and_fractions_follow_the_epochs(caplog):
    from reid_aug.reid.experiment import resolve_benchmark
    from reid_aug.reid.budget import lr_decays, lr_schedule

    with caplog.at_level(logging.WARNING, logger="reid_aug.reid.experiment"):
        old = resolve_benchmark(recipe="reid_cpu_market", overrides=["train.epochs=20", "train.lr_decay_at=[]"])
    assert lr_decays(old.train) == 9
    assert any("does not fit 20 epochs" in r.getMessage() and "lr_decay_at" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="reid_aug.reid.experiment"):
        new = resolve_benchmark(recipe="reid_cpu_market", overrides=["train.epochs=20"])
    assert lr_schedule(new.train) == ("multi_step", [13]) and lr_decays(new.train) == 1
    assert not caplog.records
    # the recipe's own length keeps its old schedule exactly: one decay at epoch 2 of 3
    base = resolve_benchmark(recipe="reid_cpu_market")
    assert lr_schedule(base.train) == ("multi_step", [2]) and lr_decays(base.train) == 1
    assert lr_schedule(resolve_benchmark(recipe="reid_resnet50_market").train) == ("multi_step", [20, 40])


def test_binary_recipe_and_pairs_files_are_one_line_errors(tmp_path, tiny_toy):
    recipe = tmp_path / "mine.yaml"
    recipe.write_bytes(bytes(range(256)) * 4)
    line = _one_clean_line(_invoke(["benchmark", "--recipe", str(recipe), "--dataset", str(tiny_toy),
                                    "--baseline-only"]))
    assert str(recipe) in line and "recipe" in line
    pairs = tmp_path / "pairs.csv"
    pairs.write_bytes(bytes(range(256)) * 4)
    from reid_aug.errors import DatasetError
    from reid_aug.pairs.pairs import read_pairs_csv

    with pytest.raises(DatasetError, match="not UTF-8 text"):
        read_pairs_csv(pairs)


def test_market_not_found_names_no_development_path(tmp_path, monkeypatch):
    from reid_aug.dataset.market import resolve_dataset_root
    from reid_aug.errors import DatasetError

    monkeypatch.delenv("REID_AUG_MARKET_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError) as err:
        resolve_dataset_root("market")
    msg = str(err.value)
    assert "REID_AUG_MARKET_ROOT" in msg and "shared" not in msg and "looked for" not in msg


def test_result_sentence_and_spread_only_with_two_or_more_seeds(tmp_path):
    from reid_aug.reid.tables import bar_chart, headline, results_table

    def run(variant, seed, r1, mp):
        return {"variant": variant, "seed": seed, "rank1": r1, "rank5": r1, "mAP": mp}

    one = {"baseline_seed0": run("baseline", 0, 0.41, 0.20), "augmented_seed0": run("augmented", 0, 0.27, 0.13)}
    text = headline(one, [0])
    assert text.startswith("Augmentation changed rank-1 by -14.0 points and mAP by -7.0 points")
    assert "one seed: an anecdote" in text
    gen = {k: "n/a" for k in ("ssim", "is", "mask_ssim", "mask_is")}
    table = results_table(one, [0], gen, rerank=False)
    assert "± –" not in table and "mean ± std" not in table and "41.0" in table
    three = dict(one, baseline_seed1=run("baseline", 1, 0.40, 0.2), augmented_seed1=run("augmented", 1, 0.30, 0.15),
                 baseline_seed2=run("baseline", 2, 0.42, 0.2), augmented_seed2=run("augmented", 2, 0.28, 0.12))
    text = headline(three, [0, 1, 2])
    # deltas -14, -10, -14: mean -12.7, sd 2.3, t(0.975, 2) = 4.303 -> half-width 5.7
    assert "by -12.7 ± 2.3 (95 % CI [-18.4, -6.9]) points" in text and "over 3 seeds" in text
    assert "mean ± std" in results_table(three, [0, 1, 2], gen, rerank=False)
    base_only = {"baseline_seed0": one["baseline_seed0"]}
    assert "no synthesized set" in headline(base_only, [0])
    assert "no augmented run has finished yet" in headline(base_only, [0], augmented=True)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    seen = {}
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):
        ax = fig.axes[0]
        seen["errorbars"] = sum(len(c.lines[2]) for c in ax.containers if hasattr(c, "lines") and c.lines)
        seen["title"] = ax.get_title()
        return real_savefig(fig, *a, **k)

    plt.Figure.savefig = spy
    try:
        bar_chart(one, [0], tmp_path / "one.png")
        one_seed = dict(seen)
        bar_chart(three, [0, 1, 2], tmp_path / "three.png")
    finally:
        plt.Figure.savefig = real_savefig
    assert one_seed["errorbars"] == 0 and "no spread" in one_seed["title"]
    assert seen["errorbars"] > 0 and "mean ± std" in seen["title"]
