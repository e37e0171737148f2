"""Several processes on one benchmark folder: run claims, stale claims, and merges that keep others' runs."""
import json
import os
import socket
import subprocess
import sys

import pytest

from reid_aug.reid.claims import claim, claim_path, held_elsewhere, release

from test_reid_benchmark import augmented  # noqa: F401 - the fixture

SMALL = ["train.epochs=1", "train.batch_size=8", "train.max_iters_per_epoch=2", "data.height=64", "data.width=32",
         "data.batch_size_test=32", "data.workers=0", "data.test_ids=4"]


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _claim_as(folder, tag, pid):
    path = claim_path(folder, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": socket.gethostname(), "pid": pid}))


def test_claims_first_wins_stale_ones_are_taken_over(tmp_path):
    assert claim(tmp_path, "baseline_seed0") and claim(tmp_path, "baseline_seed0")     # re-entrant for its owner
    assert held_elsewhere(tmp_path, "baseline_seed0") is None
    _claim_as(tmp_path, "augmented_seed0", os.getppid())                  # a live process holds it
    assert not claim(tmp_path, "augmented_seed0") and held_elsewhere(tmp_path, "augmented_seed0")
    _claim_as(tmp_path, "augmented_seed1", _dead_pid())                   # its process is gone
    assert held_elsewhere(tmp_path, "augmented_seed1") is None and claim(tmp_path, "augmented_seed1")
    assert json.loads(claim_path(tmp_path, "augmented_seed1").read_text())["pid"] == os.getpid()
    release(tmp_path, "augmented_seed1")
    assert not claim_path(tmp_path, "augmented_seed1").exists()


def test_a_run_claimed_elsewhere_is_passed_over_and_others_runs_survive(tiny_toy, augmented, tmp_path,  # noqa: F811
                                                                       monkeypatch):
    from reid_aug.reid import experiment
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=SMALL)
    out = tmp_path / "bench"
    _claim_as(out, "baseline_seed0", os.getppid())
    trained, real = [], experiment.train_and_evaluate

    def train(exp, variant, seed):
        rec = real(exp, variant, seed)
        if not trained:          # meanwhile another process finishes seed 1's baseline and writes it
            on_disk = json.loads((out / "results.json").read_text())
            on_disk["runs"]["baseline_seed1"] = dict(rec, variant="baseline", seed=1, marker="other process")
            (out / "results.json").write_text(json.dumps(on_disk))
        trained.append((variant, seed))
        return rec

    monkeypatch.setattr(experiment, "train_and_evaluate", train)
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0, 1], out_dir=out)
    assert trained == [("augmented", 0), ("augmented", 1)]     # baseline 0 claimed, baseline 1 done elsewhere
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert set(runs) == {"augmented_seed0", "augmented_seed1", "baseline_seed1"}
    assert runs["baseline_seed1"]["marker"] == "other process"
    assert not claim_path(out, "augmented_seed0").exists()       # released when done
    # the other process dies: its claim is stale, and the next start trains the run
    _claim_as(out, "baseline_seed0", _dead_pid())
    trained.append("restart")
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0, 1], out_dir=out)
    assert trained[-2:] == ["restart", ("baseline", 0)]
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 4


def test_a_cell_waits_for_a_shared_baseline_in_training_elsewhere(tiny_toy, augmented, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    """A sweep cell whose baseline another live process is training in an earlier cell waits, then takes it over
    instead of training it twice."""
    from reid_aug.reid import experiment
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                            overrides=SMALL + ["train.mix=batch"])
    first, second = tmp_path / "cell1", tmp_path / "cell2"
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=first)
    done = json.loads((first / "results.json").read_text())
    held = dict(done, runs={k: v for k, v in done["runs"].items() if k != "baseline_seed0"})
    (first / "results.json").write_text(json.dumps(held))          # baseline 0 "still in training" there
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    _claim_as(first, "baseline_seed0", worker.pid)

    def finish_when_polled(_seconds):        # the other process finishes while this one waits
        if worker.poll() is None:
            worker.wait()
            (first / "results.json").write_text(json.dumps(done))

    trained, real = [], experiment.train_and_evaluate
    monkeypatch.setattr(experiment.time, "sleep", finish_when_polled)
    monkeypatch.setattr(experiment, "train_and_evaluate", lambda *a, **k: trained.append(a[1:3]) or real(*a, **k))
    other = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                              overrides=SMALL + ["train.mix=batch", "train.synthetic_ratio=0.5"])
    run_benchmark(other, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=second,
                  shared_baselines=[first])
    assert trained == [("augmented", 0)]
    runs = json.loads((second / "results.json").read_text())["runs"]
    assert "cell1" in runs["baseline_seed0"]["reused_from"]
    assert runs["baseline_seed0"]["mAP"] == done["runs"]["baseline_seed0"]["mAP"]


def test_each_seed_is_taken_from_whichever_folder_has_it(tiny_toy, augmented, tmp_path, monkeypatch):  # noqa: F811
    """Several --baseline-from folders: seed 0's baseline from the first, seed 1's from the second, none trained."""
    from reid_aug.reid import experiment
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                            overrides=SMALL + ["train.mix=batch"])
    a, b = tmp_path / "base0", tmp_path / "base1"
    run_benchmark(cfg, dataset=str(tiny_toy), seeds=[0], out_dir=a, baseline_only=True)
    run_benchmark(cfg, dataset=str(tiny_toy), seeds=[1], out_dir=b, baseline_only=True)
    trained, real = [], experiment.train_and_evaluate
    monkeypatch.setattr(experiment, "train_and_evaluate", lambda *a, **k: trained.append(a[1:3]) or real(*a, **k))
    waited = []       # taken over when the results are opened: no baseline is left to the per-seed wait
    monkeypatch.setattr(experiment, "_await_shared_baseline", lambda exp, tag, *_: waited.append(tag))
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0, 1], out_dir=tmp_path / "aug",
                        shared_baselines=[a, b])
    assert sorted(trained) == [("augmented", 0), ("augmented", 1)] and waited == []
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert "base0" in runs["baseline_seed0"]["reused_from"] and "base1" in runs["baseline_seed1"]["reused_from"]
