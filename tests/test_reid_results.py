"""reid_aug.reid.results and budget: results.json through the typed record, setups compared by what they do,
and 0.1 result files still usable for --baseline-from and the report."""
import json
from pathlib import Path

import pytest

from reid_aug.config import to_dict
from reid_aug.errors import ReidAugError

OLD = Path(__file__).parent / "data" / "v0.1" / "results.json"


def _demo_quick_cfg(*overrides):
    """Today's config of the run that wrote tests/data/v0.1/results.json (`demo --quick` of 0.1)."""
    from reid_aug.reid.experiment import resolve_benchmark

    return resolve_benchmark(recipe="reid_toy", model="osnet_x0_25", pretrained=False,
                             overrides=["train.epochs=2", "data.height=64", "data.width=32", *overrides])


def test_effective_schedule_compares_what_a_schedule_does():
    from reid_aug.reid.budget import decay_epochs, effective_schedule
    from reid_aug.reid.config import TrainConfig

    assert decay_epochs(TrainConfig(epochs=60, lr_scheduler="single_step", stepsize=(20,))) == [20, 40]
    assert decay_epochs(TrainConfig(epochs=60, lr_decay_at=(0.34, 0.67))) == [20, 40]
    assert decay_epochs(TrainConfig(epochs=20, lr_scheduler="single_step", stepsize=(2,))) == list(range(2, 20, 2))
    assert decay_epochs(TrainConfig(epochs=7, lr_scheduler="multi_step", stepsize=(3, 9))) == [3]
    assert decay_epochs(TrainConfig(epochs=7, lr_scheduler="cosine")) is None
    old = to_dict(TrainConfig(epochs=60, lr_scheduler="single_step", stepsize=(20,)))
    new = to_dict(TrainConfig(epochs=60, lr_decay_at=(0.34, 0.67)))
    assert old != new and effective_schedule(old) == effective_schedule(new)
    assert effective_schedule(old)["lr_schedule"] == {"decay_epochs": [20, 40]}
    other = to_dict(TrainConfig(epochs=60, lr_decay_at=(0.5,)))
    assert effective_schedule(other) != effective_schedule(new)
    # keys that are not the schedule still count
    assert effective_schedule({**new, "lr": 1e-3}) != effective_schedule(new)


def test_old_results_still_serve_baseline_reuse_and_the_report(tmp_path):
    from reid_aug.reid.results import check_same_setup, load_results, reuse_baselines
    from reid_aug.reid.tables import write_report

    old = load_results(OLD)
    assert old["runs"]["augmented_seed0"]["n_train_synthesized"] == 72          # renamed from n_train_synthetic
    assert "n_train_synthetic" not in old["runs"]["baseline_seed0"]
    # 0.1 wrote `single_step, stepsize [6]` and no lr_decay_at / test_ids; today's recipe says `lr_decay_at: [0.86]`:
    # the same schedule (no decay within 2 epochs), so the old folder is the same benchmark
    cfg = _demo_quick_cfg()
    setup = {**old["setup"], "config": to_dict(cfg)}
    check_same_setup(old, setup, tmp_path)
    # ... and its baseline can be taken over for another synthesized set
    other_set = {**setup, "augmented_dir": "/elsewhere/synthesized-6", "augmented_manifest_sha256": "0" * 64}
    results = {"setup": other_set, "seeds": [], "runs": {}}
    plan = {"baseline": old["runs"]["baseline_seed0"]["training_plan"]}
    assert reuse_baselines(results, other_set, plan, [0], OLD, tmp_path) == 1
    taken = results["runs"]["baseline_seed0"]
    assert taken["rank1"] == old["runs"]["baseline_seed0"]["rank1"] and taken["reused_from"] == str(OLD)
    # the report reads it: the result sentence first, in numbers
    write_report(tmp_path / "report", old, seeds=[0])
    md = (tmp_path / "report" / "report.md").read_text()
    d1 = 100 * (old["runs"]["augmented_seed0"]["rank1"] - old["runs"]["baseline_seed0"]["rank1"])
    assert md.splitlines()[2].startswith(f"Augmentation changed rank-1 by {d1:+.1f} points")
    assert "72 synthesized train images" in md and "± –" not in md


def test_another_setup_in_the_folder_is_refused_naming_the_folder_what_differs_and_out(tmp_path):
    from reid_aug.reid.results import check_same_setup, load_results, reuse_baselines

    old = load_results(OLD)
    setup = {**old["setup"], "config": to_dict(_demo_quick_cfg("train.epochs=3"))}
    with pytest.raises(ReidAugError) as err:
        check_same_setup(old, setup, tmp_path / "bench")
    msg = str(err.value)
    assert str(tmp_path / "bench") in msg and "config.train.epochs" in msg and "--out" in msg
    assert "config.train.lr_schedule" not in msg            # 2 or 3 epochs: still no decay
    with pytest.raises(ReidAugError, match=r"not comparable \(config.train.epochs differ\)"):
        reuse_baselines({"setup": setup, "seeds": [], "runs": {}}, setup, {}, [0], OLD, tmp_path)
    check_same_setup({}, setup, tmp_path)                   # an empty folder holds no other benchmark


def test_results_round_trip_through_the_typed_record(tmp_path):
    from reid_aug.reid.results import load_results, write_results

    old = load_results(OLD)
    write_results(tmp_path / "results.json", old)
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["schema"] == "reid-aug/benchmark-results" and data["schema_version"] == 1
    assert load_results(tmp_path / "results.json") == old
    assert load_results(tmp_path / "absent.json") == {}
