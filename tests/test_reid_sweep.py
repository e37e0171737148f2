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
    # a restart trains nothing
    from reid_aug.reid import experiment

    monkeypatch.setattr(experiment, "train_and_evaluate", lambda *a, **k: pytest.fail("retrained a finished run"))
    run_sweep(grid, recipe="reid_toy", overrides=SMALL, dataset=str(tiny_toy), augmented=augmented, seeds=[0, 1],
              out_dir=tmp_path / "sw", model="osnet_x0_25", pretrained=False)
