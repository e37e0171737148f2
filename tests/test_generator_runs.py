"""A new user's `train-generator` (issue 18 items 2 and 3): the GPU recipe on a CPU says so at once and
estimates its duration, loader workers fit the machine, the progress bar has a rate from the first
step, Ctrl-C leaves a checkpoint that resumes bit-identically, runs never overwrite each other, a dry
run writes nothing, and run.json says when a run is complete."""
import csv
import logging
import os
import signal
import warnings
from pathlib import Path

import pytest
import torch

from reid_aug.errors import TrainingError
from reid_aug.generator.checkpoint import load_checkpoint
from reid_aug.generator.train import resolve_training, train_generator
from reid_aug.records import read_json_object
from reid_aug.rundir import GeneratorRun, finished_generator_runs

TINY = ["model.g1_width=4", "model.g2_width=4", "model.d_width=4", "model.bottleneck=8", "train.batch_size=4",
        "train.num_workers=0", "train.tensorboard=false", "train.log_every=1", "train.sample_every=1000",
        "train.n_samples=2", "train.lr=1e-3", "train.d_lr=1e-3", "runtime.threads=0"]


def _cfg(data, recipe="pg2_toy", *extra):
    return resolve_training(str(data), recipe, TINY + list(extra), None)[0]


def _rows(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("pairs_per_s", "wall_s")} for r in csv.DictReader(f)]


def _weights(run: Path) -> dict:
    ckpt = load_checkpoint(run)
    return {f"{n}.{k}": v for n, sd in ckpt["models"].items() for k, v in sd.items()}


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# --------------------------------------------------------------------------- item 2: GPU recipe on a CPU
def test_gpu_recipe_on_cpu_warns_before_the_data_and_estimates_the_duration(tiny_toy, tmp_path, caplog,
                                                                             monkeypatch):
    import reid_aug.generator.train as train_mod

    seen_before_data = []
    real_load = train_mod.load_training_data

    def load_training_data(*a, **k):
        seen_before_data.append([r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING])
        return real_load(*a, **k)

    monkeypatch.setattr(train_mod, "load_training_data", load_training_data)
    cfg = _cfg(tiny_toy, "pg2_market", "train.stages=[g1]", "train.g1_iters=8", "runtime.device=auto")
    assert cfg.runtime.expects_gpu and cfg.runtime.cpu_recipe == "pg2_market_cpu"
    with caplog.at_level(logging.INFO, logger="reid_aug"):
        train_generator(cfg, str(tiny_toy), tmp_path / "run")
    early = " ".join(seen_before_data[0])
    assert "GPU recipe" in early and "--recipe pg2_market_cpu" in early
    estimate = [r.getMessage() for r in caplog.records if "on this machine" in r.getMessage()]
    assert len(estimate) == 1 and "stages g1 (8 steps, 2 left)" in estimate[0]
    assert "--recipe pg2_market_cpu" in estimate[0]

    caplog.clear()   # a CPU recipe on a CPU: no such warning
    with caplog.at_level(logging.INFO, logger="reid_aug"):
        train_generator(_cfg(tiny_toy, "pg2_toy", "train.stages=[g1]", "train.g1_iters=8"), str(tiny_toy),
                        tmp_path / "cpu")
    assert not [r for r in caplog.records if "GPU recipe" in r.getMessage() or "on this machine" in r.getMessage()]


def test_loader_workers_follow_the_machine_and_do_not_change_the_data(tiny_toy, tmp_path, monkeypatch):
    import reid_aug.runtime as runtime

    created = []
    real_loader = torch.utils.data.DataLoader

    class SpyLoader(real_loader):
        def __init__(self, *a, **k):
            created.append(k.get("num_workers"))
            super().__init__(*a, **k)

    monkeypatch.setattr(torch.utils.data, "DataLoader", SpyLoader)
    monkeypatch.setattr(runtime, "machine_cpus", lambda: 2)      # the 2-core machine of the report
    extra = ("train.stages=[g1]", "train.g1_iters=3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        four = train_generator(_cfg(tiny_toy, "pg2_toy", *extra, "train.num_workers=4"), str(tiny_toy),
                               tmp_path / "four")
    assert created == [1]
    assert not [w for w in caught if "worker" in str(w.message)]
    none = train_generator(_cfg(tiny_toy, "pg2_toy", *extra, "train.num_workers=0"), str(tiny_toy), tmp_path / "none")
    assert created == [1, 0]
    assert _rows(four) == _rows(none) and _same_weights(four, none)


def test_progress_bar_has_a_total_and_a_rate_from_the_first_step(tiny_toy, tmp_path, monkeypatch):
    import io

    import tqdm

    shown = io.StringIO()
    real = tqdm.tqdm

    class Visible(real):
        def __init__(self, *a, **k):
            k.update(file=shown, disable=False)
            super().__init__(*a, **k)

    monkeypatch.setattr(tqdm, "tqdm", Visible)
    train_generator(_cfg(tiny_toy, "pg2_toy", "train.stages=[g1]", "train.g1_iters=1"), str(tiny_toy), tmp_path / "r")
    text = shown.getvalue()
    assert "0/1 [" in text                                # drawn before the first step ends
    assert "1/1 [" in text and ("it/s]" in text or "s/it]" in text) and "?it/s" not in text.split("1/1")[-1]


# --------------------------------------------------------------------------- item 2: Ctrl-C
@pytest.mark.parametrize("how", ["exception", "signal"])
def test_ctrl_c_checkpoints_the_last_step_and_resumes_bit_identically(tiny_toy, tmp_path, how):
    extra = ("train.stages=[g1, g2]", "train.g1_iters=3", "train.g2_iters=4", "train.checkpoint_every=100",
             "loss.d_variant=official")
    cfg = _cfg(tiny_toy, "pg2_toy", *extra)
    full = train_generator(cfg, str(tiny_toy), tmp_path / "full")

    def ctrl_c(stage, step, values):
        if how == "exception" and (stage, step) == ("g2", 3):
            raise KeyboardInterrupt
        if how == "signal" and (stage, step) == ("g2", 2):
            # the real key, pressed here between steps: the step in progress next (3) finishes, then the loop stops
            os.kill(os.getpid(), signal.SIGINT)

    part = tmp_path / "part"
    # a shell's background job starts with SIGINT ignored: install Python's handler so "put back" has one answer
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train_generator(cfg, str(tiny_toy), part, step_hook=ctrl_c)
        restored = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, outer)
    ckpt = load_checkpoint(part)   # no periodic checkpoint was due: this one is Ctrl-C's
    assert (ckpt["stage"], ckpt["step"], ckpt["global_step"]) == ("g2", 3, 6)
    assert not list(part.glob(".checkpoint.pt.*"))
    info = read_json_object(part / "run.json")
    assert info["complete"] is False and info["trained"] == ["g1", "g2"]
    assert restored is signal.default_int_handler   # the handler is put back
    train_generator(cfg, str(tiny_toy), part, resume=True)
    assert _same_weights(full, part) and _rows(full) == _rows(part)
    assert read_json_object(part / "run.json")["complete"] is True


def test_cli_ctrl_c_is_one_line_and_exit_130(tiny_toy, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import cli
    import reid_aug.generator.train as train_mod

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "train_generator", interrupted)
    res = CliRunner().invoke(cli.main, ["train-generator", str(tiny_toy), "--out", str(tmp_path / "run")])
    assert res.exit_code == 130 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == ["interrupted before the first checkpoint"]


# --------------------------------------------------------------------------- item 3: runs do not overwrite
def test_default_run_folder_names_the_dataset(tiny_toy):
    assert resolve_training("market")[1] == Path("runs/pg2_market-market")
    assert resolve_training("toy")[1] == Path("runs/pg2_toy-toy")
    assert resolve_training(str(tiny_toy), "pg2_market")[1] == Path("runs/pg2_market-tiny")


def test_an_existing_run_is_refused_before_any_file_changes(tiny_toy, tmp_path):
    """A run killed before its first checkpoint (config.yaml, run.json, log.csv only) is still a run."""
    class Killed(Exception):
        pass

    def kill(stage, step, values):
        raise Killed

    run = tmp_path / "run"
    cfg = _cfg(tiny_toy, "pg2_toy", "train.stages=[g1]", "train.g1_iters=3", "train.checkpoint_every=100")
    with pytest.raises(Killed):
        train_generator(cfg, str(tiny_toy), run, step_hook=kill)
    files = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir() if p.is_file()}
    assert {"config.yaml", "run.json", "log.csv"} <= set(files) and "checkpoint.pt" not in files
    other = _cfg(tiny_toy, "pg2_toy", "train.stages=[g1]", "train.g1_iters=5", "loss.lambda_l1=1")
    for dry_run in (False, True):
        with pytest.raises(TrainingError, match=r"already holds a run .*--resume.*--out NEW_FOLDER"):
            train_generator(other, str(tiny_toy), run, dry_run=dry_run)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in run.iterdir() if p.is_file()} == files


def test_dry_run_writes_nothing_and_says_what_a_run_would_do(tiny_toy, tmp_path, caplog):
    out = tmp_path / "runs" / "dry"
    cfg = _cfg(tiny_toy, "pg2_toy", "train.g1_iters=7", "train.g2_iters=3")
    with caplog.at_level(logging.INFO, logger="reid_aug"):
        assert train_generator(cfg, str(tiny_toy), out, dry_run=True) == out
    assert not (tmp_path / "runs").exists()
    text = " ".join(r.getMessage() for r in caplog.records if "dry run" in r.getMessage())
    for part in ("nothing written", "172 pairs", "D variant 'unconditional'", "G1 ", "G2 ", "D ", "device cpu",
                 "stages g1+g2 (7+3 iterations", "output (2, 3, 128, 64) of stage g2"):
        assert part in text, (part, text)


def test_run_json_says_complete_only_when_training_ended(tiny_toy, tmp_path):
    root = tmp_path / "runs"
    seen = []

    def look(stage, step, values):
        seen.append((read_json_object(root / "a" / "run.json")["complete"],
                     [p.name for p in finished_generator_runs(root)]))

    cfg = _cfg(tiny_toy, "pg2_toy", "train.g1_iters=2", "train.g2_iters=1")
    train_generator(cfg, str(tiny_toy), root / "a", step_hook=look)
    assert seen == [(False, [])] * 3
    info = read_json_object(GeneratorRun(root / "a").run_json)
    assert info["complete"] is True and info["trained"] == ["g1", "g2"] and info["family"] == "pg2"
    assert finished_generator_runs(root) == [root / "a"]
    # a run stopped by its time budget is not finished
    stopped = _cfg(tiny_toy, "pg2_toy", "train.g1_iters=50", "train.max_minutes=1e-9")
    train_generator(stopped, str(tiny_toy), root / "b")
    info = read_json_object(root / "b" / "run.json")
    assert info["complete"] is False and info["trained"] == ["g1"]
    assert load_checkpoint(root / "b")["step"] == 1 and finished_generator_runs(root) == [root / "a"]
