"""Issue 14: `reid-aug sweep`: a grid of benchmark cells x seeds with paired 95 % intervals, resumable."""
import json

import numpy as np
import pytest
from scipy import stats

from reid_aug.config import ConfigError
from reid_aug.reid.sweep import cell_name, cells, parse_grid, run_sweep

from test_reid_benchmark import augmented  # noqa: F401 - the fixture

SMALL = ["train.epochs=1", "train.batch_size=8", "train.max_iters_per_epoch=2", "data.height=64", "data.width=32",
         "data.batch_size_test=32", "data.workers=0", "data.test_ids=4"]


def test_grid_parsing_and_cells():
    grid = parse_grid(["train.mix=pool,batch", "data.train_per_id=2, 4"])
    assert grid == [("train.mix", ["pool", "batch"]), ("data.train_per_id", ["2", "4"])]
    assert [cell_name(c) for c in cells(grid)] == [
        "train.mix=pool__data.train_per_id=2", "train.mix=pool__data.train_per_id=4",
        "train.mix=batch__data.train_per_id=2", "train.mix=batch__data.train_per_id=4"]
    for bad in (["train.mix"], ["=a"], ["train.mix=pool", "train.mix=batch"], []):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_sweep_runs_every_cell_reports_paired_intervals_and_resumes(tiny_toy, augmented, tmp_path,  # noqa: F811
                                                                    monkeypatch):
    with pytest.raises(ConfigError, match="train.mix"):         # a bad cell is refused before any training
        run_sweep(parse_grid(["train.mix=pool,stack"]), recipe="reid_toy", overrides=SMALL, dataset=str(tiny_toy),
                  augmented=augmented, seeds=[0, 1], out_dir=tmp_path / "bad", model="osnet_x0_25", pretrained=False)
    assert not (tmp_path / "bad").exists()
    grid = parse_grid(["train.mix=pool,batch"])
    out = run_sweep(grid, recipe="reid_toy", overrides=SMALL, dataset=str(tiny_toy), augmented=augmented,
                    seeds=[0, 1], out_dir=tmp_path / "sw", model="osnet_x0_25", pretrained=False)
    summary = json.loads((out / "sweep.json").read_text())
    assert [c["cell"] for c in summary["cells"]] == ["train.mix=pool", "train.mix=batch"]
    for c in summary["cells"]:
        runs = json.loads((out / "cells" / c["cell"] / "results.json").read_text())["runs"]
        d = [100 * (runs[f"augmented_seed{s}"]["rank1"] - runs[f"baseline_seed{s}"]["rank1"]) for s in (0, 1)]
        half = stats.t.ppf(0.975, 1) * np.std(d, ddof=1) / np.sqrt(2)
        assert c["delta_rank1"] == pytest.approx(np.mean(d)) and c["n_seeds"] == 2
        assert c["delta_rank1_lo"] == pytest.approx(np.mean(d) - half)
    md = (out / "sweep.md").read_text().splitlines()
    assert "cells raised rank-1" in md[2] and (out / "sweep.png").stat().st_size > 1000
    # a restart trains nothing, and a call for one seed still tables every seed finished in the cells
    from reid_aug.reid import experiment

    monkeypatch.setattr(experiment, "train_and_evaluate", lambda *a, **k: pytest.fail("retrained a finished run"))
    run_sweep(grid, recipe="reid_toy", overrides=SMALL, dataset=str(tiny_toy), augmented=augmented, seeds=[1],
              out_dir=tmp_path / "sw", model="osnet_x0_25", pretrained=False)
    again = json.loads((out / "sweep.json").read_text())
    assert again["seeds"] == [0, 1] and [c["n_seeds"] for c in again["cells"]] == [2, 2]
    assert again["cells"][0]["delta_rank1"] == pytest.approx(summary["cells"][0]["delta_rank1"])


def test_validation_split_holds_out_training_identities(tiny_toy, augmented, tmp_path):  # noqa: F811
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import build_splits, read_augmented
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    index = load_dataset(tiny_toy)
    aug = read_augmented(augmented)
    full = build_splits(index, aug)
    val = build_splits(index, aug, val_ids=2, val_seed=0, split="val")
    held = {pid for _, pid, _ in val.query}
    assert len(held) == 2 and {pid for _, pid, _ in val.gallery} <= held
    label_of = {v: k for k, v in val.pid2label.items()}
    assert not held & {label_of[lab] for _, lab, _, _ in val.train}             # neither real nor synthesized
    assert val.num_train_pids == full.num_train_pids - 2
    assert len({(pid, cam) for _, pid, cam in val.query}) == len(val.query)     # one query per camera
    assert build_splits(index, aug, val_ids=2, val_seed=0).query == full.query  # split=test: the test set
    with pytest.raises(ConfigError, match="eval.split"):
        resolve_benchmark(recipe="reid_toy", overrides=["eval.split=val"])
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                            overrides=SMALL[:-1] + ["data.val_ids=3", "eval.split=val"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "v")
    assert "**Validation** (not the test split)" in (out / "report.md").read_text()


def test_sweep_cells_share_identical_baselines_only(tiny_toy, augmented, tmp_path, monkeypatch):  # noqa: F811
    """Cells that differ only in keys acting on synthesized images take the baseline runs over from an earlier
    cell; a key that changes the baseline (the learning rate) trains its own."""
    from reid_aug.reid import experiment

    trained, real = [], experiment.train_and_evaluate
    monkeypatch.setattr(experiment, "train_and_evaluate", lambda *a, **k: trained.append(a[1:3]) or real(*a, **k))
    grid = parse_grid(["train.lr=0.001,0.002", "train.synthetic_ratio=0.25,0.5"])
    out = run_sweep(grid, recipe="reid_toy", overrides=SMALL + ["train.mix=batch"], dataset=str(tiny_toy),
                    augmented=augmented, seeds=[0], out_dir=tmp_path / "sw", model="osnet_x0_25", pretrained=False)
    assert trained == [("baseline", 0), ("augmented", 0), ("augmented", 0)] * 2    # lr 0.001: 2 cells, lr 0.002: 2
    names = [cell_name(c) for c in cells(grid)]
    recs = [json.loads((out / "cells" / n / "results.json").read_text())["runs"]["baseline_seed0"] for n in names]
    assert "reused_from" not in recs[0] and "reused_from" not in recs[2]
    assert names[0] in recs[1]["reused_from"] and names[2] in recs[3]["reused_from"]
    assert recs[1]["mAP"] == recs[0]["mAP"] and recs[3]["mAP"] == recs[2]["mAP"]
    # another sweep takes the baselines over from this one's cells (--baseline-from), passing over the others
    trained.clear()
    other = run_sweep(parse_grid(["train.synthetic_weight=0.5"]), recipe="reid_toy",
                      overrides=SMALL + ["train.mix=batch", "train.lr=0.002"], dataset=str(tiny_toy),
                      augmented=augmented, seeds=[0], out_dir=tmp_path / "sw2", model="osnet_x0_25", pretrained=False,
                      baseline_from=[out / "cells" / n for n in names])
    assert trained == [("augmented", 0)]
    rec = json.loads((other / "cells" / "train.synthetic_weight=0.5" / "results.json").read_text())["runs"]
    assert names[2] in rec["baseline_seed0"]["reused_from"] and rec["baseline_seed0"]["mAP"] == recs[2]["mAP"]


def test_a_one_seed_cell_says_it_has_no_interval(tmp_path):
    from reid_aug.reid.sweep import write_summary

    nan = float("nan")
    row = {"cell": "augmented=set", "n_seeds": 1, "baseline_rank1": 43.3, "baseline_mAP": 22.6,
           "delta_rank1": -6.2, "delta_rank1_lo": nan, "delta_rank1_hi": nan, "rank1_ci_excludes_0": False,
           "delta_mAP": -2.3, "delta_mAP_lo": nan, "delta_mAP_hi": nan, "mAP_ci_excludes_0": False}
    two = {**row, "cell": "augmented=other", "n_seeds": 2, "delta_rank1_lo": -9.0, "delta_rank1_hi": -3.4}
    write_summary(tmp_path, [row, two], ["augmented"], [0])
    md = (tmp_path / "sweep.md").read_text()
    assert "nan" not in md
    assert "| -6.2 [no interval: 1 seed] |" in md and "-6.2 [-9.0, -3.4]" in md
