"""PG² training machinery on the tiny synthetic dataset: learning, resume, DDP, NaN guard, checkpoints."""
import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from reid_aug.errors import CheckpointError, TrainingDivergedError, TrainingError
from reid_aug.generator.checkpoint import KIND, load_checkpoint
from reid_aug.generator.data import PairSchedule
from reid_aug.generator.inference import load_generator
from reid_aug.generator.losses import pose_mask_l1
from reid_aug.generator.pg2 import FAMILY as PG2
from reid_aug.generator.train import resolve_training, train_generator
from reid_aug.utils.io import sha256_file

ROOT = Path(__file__).resolve().parent.parent

# Tiny networks and short stages: every run here takes seconds on one CPU core.
TINY = ["model.g1_width=4", "model.g2_width=4", "model.d_width=4", "model.bottleneck=8", "train.batch_size=4",
        "train.num_workers=0", "train.tensorboard=false", "train.log_every=1", "train.sample_every=1000",
        "train.n_samples=2", "train.lr=1e-3", "train.d_lr=1e-3", "runtime.threads=0"]


def _cfg(dataset, out, *extra):
    cfg, out = resolve_training(str(dataset), "pg2_toy", TINY + list(extra), out)
    return cfg, out


def _log(run_dir):
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _fixed_batch(dataset, cfg, every=10):
    from reid_aug.dataset.market import load_dataset
    from reid_aug.pairs import PosePairDataset, train_pairs

    index = load_dataset(dataset)
    ds = PosePairDataset(index, train_pairs(index).iloc[::every], pose_mode=cfg.model.pose_mode)
    return torch.utils.data.default_collate([ds[i] for i in range(len(ds))])


def _same(x, y) -> bool:
    """Exact equality of nested dicts/lists of tensors and plain values."""
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    return x == y


def _all_weights(ckpt):
    return {f"{net}.{k}": v for net, sd in ckpt["models"].items() for k, v in sd.items()}


def test_short_run_lowers_pose_mask_l1_and_loads_for_inference(tiny_toy, tmp_path):
    cfg, out = _cfg(tiny_toy, tmp_path / "run", "model.g1_width=8", "model.bottleneck=64",
                    "train.stages=[g1, g2]", "train.g1_iters=40", "train.g2_iters=2", "train.batch_size=8",
                    "train.log_every=5", "train.tensorboard=true", "train.sample_every=20")
    run = train_generator(cfg, str(tiny_toy), out)

    # The pose-mask L1 on a fixed set of training pairs, before (same seed -> same initial G1) and after.
    batch = _fixed_batch(tiny_toy, cfg)
    torch.manual_seed(cfg.train.seed)
    g1_start = PG2.build_networks(cfg, ("g1",))["g1"]
    gen = load_generator(run)
    with torch.no_grad():
        start = pose_mask_l1(g1_start(batch["src_img"], batch["tgt_pose"]), batch["tgt_img"], batch["tgt_mask"])
    end = pose_mask_l1(gen.generate(batch["src_img"], batch["tgt_pose"], stage="g1"), batch["tgt_img"],
                       batch["tgt_mask"])
    assert end < start * 2 / 3, (float(start), float(end))
    rows = _log(run)
    g1_rows = [r for r in rows if r["stage"] == "g1"]
    assert [int(r["step"]) for r in g1_rows] == list(range(5, 41, 5))
    assert float(g1_rows[-1]["posemask_l1"]) < float(g1_rows[0]["posemask_l1"])
    g2_rows = [r for r in rows if r["stage"] == "g2"]
    assert len(g2_rows) == 1 and all(g2_rows[0][k] for k in ("adv", "d_loss", "d_real", "d_fake"))

    # Run folder: resolved config, grids (start, every 20 steps, stage ends), TensorBoard events.
    assert (run / "config.yaml").is_file() and (run / "run.json").is_file()
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == [
        "step_000000.png", "step_000020.png", "step_000040.png", "step_000042.png"]
    from PIL import Image

    with Image.open(run / "samples" / "step_000042.png") as im:
        assert im.size == (5 * 64, cfg.train.n_samples * 128)
    assert list((run / "tb").glob("events.out.tfevents.*"))

    # load_generator: attributes and G2 = G1 + G2's difference map.
    assert gen.stages == ("g1", "g2") and gen.image_size == (128, 64) and gen.pose_mode == "pg2"
    assert gen.sha256 == sha256_file(run / "checkpoint.pt") and gen.complete and gen.step == 42
    assert gen.config == cfg
    out_g2 = gen.generate(batch["src_img"], batch["tgt_pose"])  # default = last trained stage
    with torch.no_grad():
        g1_img = gen.g1(batch["src_img"], batch["tgt_pose"])
        expected = g1_img + gen.g2(g1_img, batch["src_img"])
    torch.testing.assert_close(out_g2, expected, rtol=0, atol=0)
    torch.testing.assert_close(gen.pose_maps(batch["tgt_kp"]), batch["tgt_pose"])
    # The checkpoint is a weights_only file.
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    assert raw["kind"] == KIND and raw["complete"] and raw["trained"] == ["g1", "g2"]


def test_pair_schedule_is_a_pure_function_of_the_step():
    a = PairSchedule(10, 4, seed=3, stage_index=0, flip=True)
    b = PairSchedule(10, 4, seed=3, stage_index=0, flip=True)
    steps = [a.global_batch(s) for s in range(5)]
    idx = [i for s in steps for i in s[0]]
    assert sorted(idx[:10]) == list(range(10)) and sorted(idx[10:20]) == list(range(10))  # epochs
    assert all((b.global_batch(s)[0] == steps[s][0]).all() for s in (4, 2, 0))           # random access
    flips = [f for s in steps for f in s[1]]
    assert 0 < sum(flips) < len(flips)
    # Two ranks split each global batch into contiguous halves.
    r0, r1 = (PairSchedule(10, 4, 3, 0, True, rank=r, world=2) for r in (0, 1))
    assert list(r0.local_batch_of(1)[0]) + list(r1.local_batch_of(1)[0]) == list(steps[1][0])
    assert not (PairSchedule(10, 4, 3, 1, True).global_batch(0)[0] == steps[0][0]).all()


def test_killed_run_resumes_to_bit_identical_weights(tiny_toy, tmp_path, monkeypatch):
    extra = ["train.stages=[g1, g2]", "train.g1_iters=3", "train.g2_iters=4", "train.checkpoint_every=2",
             "loss.d_variant=official"]
    cfg, _ = _cfg(tiny_toy, None, *extra)
    full = train_generator(cfg, str(tiny_toy), tmp_path / "full")

    class Killed(Exception):
        pass

    def kill_at(stage, step):
        def hook(s, k, values):
            if (s, k) == (stage, step):
                raise Killed(f"{s}:{k}")
        return hook

    part = tmp_path / "part"
    with pytest.raises(Killed):
        train_generator(cfg, str(tiny_toy), part, step_hook=kill_at("g2", 3))
    ckpt = load_checkpoint(part)  # a valid checkpoint of the last multiple of checkpoint_every
    assert (ckpt["stage"], ckpt["step"], ckpt["global_step"], ckpt["trained"]) == ("g2", 2, 5, ["g1", "g2"])
    assert not list(part.glob(".checkpoint.pt.*"))  # no temp files left behind
    # Without --resume the run folder is protected.
    with pytest.raises(TrainingError, match="--resume"):
        train_generator(cfg, str(tiny_toy), part)
    train_generator(cfg, str(tiny_toy), part, resume=True)

    a, b = load_checkpoint(full), load_checkpoint(part)
    wa, wb = _all_weights(a), _all_weights(b)
    assert wa.keys() == wb.keys() and {k.split(".")[0] for k in wa} == {"g1", "g2", "d"}
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    assert _same(a["optimizers"], b["optimizers"])
    # log.csv of the resumed run has the same rows (losses) as the uninterrupted one.
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("pairs_per_s", "wall_s")} for r in rows]  # noqa
    assert strip(_log(full)) == strip(_log(part)) and len(_log(full)) == 7

    # Resuming with another model/loss is refused; a finished run resumes to a no-op.
    cfg2, _ = _cfg(tiny_toy, None, *extra, "loss.lambda_l1=1")
    with pytest.raises(CheckpointError, match="loss.lambda_l1"):
        train_generator(cfg2, str(tiny_toy), part, resume=True)
    before = sha256_file(part / "checkpoint.pt")
    train_generator(cfg, str(tiny_toy), part, resume=True)
    assert sha256_file(part / "checkpoint.pt") == before

    # A crash while the checkpoint is being written leaves the previous one intact.
    crash = tmp_path / "crash"

    def broken_save(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt("killed while writing")

    def break_saving(s, k, values):
        if (s, k) == ("g1", 2):
            monkeypatch.setattr(torch, "save", broken_save)

    with pytest.raises(KeyboardInterrupt):
        train_generator(cfg, str(tiny_toy), crash, step_hook=break_saving)
    monkeypatch.undo()
    good = load_checkpoint(crash)
    assert (good["stage"], good["step"]) == ("g1", 2)
    assert not list(crash.glob(".checkpoint.pt.*"))


@pytest.mark.parametrize("how", ["loss", "lr"])
def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tiny_toy, tmp_path, monkeypatch, how):
    if how == "loss":
        # A hook arms a NaN in the loss from step 4 on (after the checkpoint of step 2).
        import reid_aug.generator.pg2 as train_mod

        armed = {"on": False}
        real_recon_loss = train_mod.recon_loss

        def recon_loss(kind, pred, target, mask):
            loss, terms = real_recon_loss(kind, pred, target, mask)
            return (loss * float("nan"), terms) if armed["on"] else (loss, terms)

        def arm(stage, step, values):
            armed["on"] = step == 3

        monkeypatch.setattr(train_mod, "recon_loss", recon_loss)
        cfg, out = _cfg(tiny_toy, tmp_path / "run", "train.stages=[g1]", "train.g1_iters=6",
                        "train.checkpoint_every=2")
        with pytest.raises(TrainingDivergedError, match=r"non-finite loss at stage g1 step 4.*last good checkpoint"):
            train_generator(cfg, str(tiny_toy), out, step_hook=arm)
        ckpt = load_checkpoint(out)
        assert ckpt["step"] == 2
        assert all(torch.isfinite(v).all() for v in _all_weights(ckpt).values() if v.is_floating_point())
        assert [int(r["step"]) for r in _log(out)] == [1, 2, 3]
        # The weights were not touched by the bad step: resuming from the kept checkpoint works.
        monkeypatch.undo()
        train_generator(cfg, str(tiny_toy), out, resume=True)
        assert load_checkpoint(out)["complete"]
    else:
        # lr = inf: the first update makes the weights inf/NaN; the checkpoint writer refuses them.
        cfg, out = _cfg(tiny_toy, tmp_path / "run", "train.stages=[g1]", "train.g1_iters=6",
                        "train.checkpoint_every=1", "train.lr=.inf")
        with pytest.raises(TrainingDivergedError, match="NaN/inf"):
            train_generator(cfg, str(tiny_toy), out)
        assert not (out / "checkpoint.pt").exists()  # nothing good to keep; nothing bad written


def test_wrong_kind_checkpoints_are_clear_errors(tmp_path):
    bare = tmp_path / "osnet.pth"
    torch.save({"conv1.weight": torch.zeros(3), "fc.bias": torch.zeros(1)}, bare)
    reid = tmp_path / "model.pth.tar"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 3}, reid)
    other = tmp_path / "other.pt"
    torch.save({"kind": "reid-aug/reid", "format_version": 1}, other)
    newer = tmp_path / "newer.pt"
    torch.save({"kind": KIND, "format_version": 99}, newer)
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    cases = [(bare, "bare state dict"), (reid, "'state_dict'"), (other, "kind 'reid-aug/reid'"),
             (newer, "format version 99"), (text, "cannot be read as a safe PyTorch file"),
             (tmp_path / "missing", "no generator checkpoint"), (tmp_path, "no generator checkpoint")]
    for path, match in cases:
        with pytest.raises(CheckpointError, match=match) as info:
            load_generator(path)
        assert path.name in str(info.value)


DDP_SCRIPT = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {root!r})
    torch.set_num_threads(1)
    from reid_aug.generator.train import resolve_training, train_generator
    cfg, out = resolve_training({data!r}, "pg2_toy", {overrides!r}, {out!r})
    train_generator(cfg, {data!r}, out)
""")


def test_two_process_ddp_matches_one_process(tiny_toy, tmp_path):
    overrides = TINY + ["train.stages=[g1, g2]", "train.g1_iters=3", "train.g2_iters=2", "runtime.device=cpu"]
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(root=str(ROOT), data=str(tiny_toy), overrides=overrides,
                                        out=str(tmp_path / "ddp")))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cfg, _ = resolve_training(str(tiny_toy), "pg2_toy", overrides, None)
    single = train_generator(cfg, str(tiny_toy), tmp_path / "single")

    ddp, one = load_checkpoint(tmp_path / "ddp"), load_checkpoint(single)
    assert ddp["complete"] and ddp["global_step"] == 5
    # Stage I has no BatchNorm: two half batches with averaged gradients == one full batch.
    for k, v in one["models"]["g1"].items():
        torch.testing.assert_close(ddp["models"]["g1"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    rows_ddp, rows_one = _log(tmp_path / "ddp"), _log(single)
    assert len(rows_ddp) == len(rows_one) == 5  # rank 0 alone writes
    for a, b in zip(rows_ddp[:3], rows_one[:3]):  # losses averaged over ranks == full-batch losses
        assert float(a["posemask_l1"]) == pytest.approx(float(b["posemask_l1"]), rel=1e-4)
    assert all(torch.isfinite(v).all() for v in ddp["models"]["g2"].values() if v.is_floating_point())


def test_cli_train_generator_and_dry_run(tiny_toy, tmp_path):
    from click.testing import CliRunner

    import cli

    args = ["train-generator", str(tiny_toy), "--recipe", "pg2_toy", "--out", str(tmp_path / "run")]
    sets = [x for o in TINY + ["train.g1_iters=2", "train.g2_iters=1"] for x in ("--set", o)]
    res = CliRunner().invoke(cli.main, args + sets + ["--dry-run"])
    assert res.exit_code == 0, res.output
    assert not (tmp_path / "run").exists()  # a dry run writes nothing (issue 18)
    res = CliRunner().invoke(cli.main, args + sets)
    assert res.exit_code == 0, res.output
    assert load_checkpoint(tmp_path / "run")["complete"]
    res = CliRunner().invoke(cli.main, args + sets)  # existing run without --resume: one clear line
    assert res.exit_code == 2 and "--resume" in res.output
    res = CliRunner().invoke(cli.main, args + sets + ["--set", "train.stages=[g2]"])
    assert res.exit_code == 2 and "needs a G1 stage" in res.output


def test_one_stage_g1_plus_d_ablation(tiny_toy, tmp_path):
    cfg, out = resolve_training(str(tiny_toy), "pg2_ablation_g1_d", TINY + ["train.g1d_iters=2"],
                                tmp_path / "g1d")
    assert cfg.train.stages == ("g1+d",) and cfg.model.g1_width == 4
    train_generator(cfg, str(tiny_toy), out)
    ckpt = load_checkpoint(out)
    assert ckpt["trained"] == ["g1+d"] and set(ckpt["models"]) == {"g1", "d"}
    rows = _log(out)
    assert [r["stage"] for r in rows] == ["g1+d", "g1+d"] and all(r["adv"] and r["d_loss"] for r in rows)
    gen = load_generator(out)
    assert gen.stages == ("g1",) and gen.g2 is None
    src = torch.zeros(1, 3, 128, 64)
    pose = -torch.ones(1, 18, 128, 64)
    assert gen.generate(src, pose).shape == (1, 3, 128, 64)
    with pytest.raises(CheckpointError, match="no trained G2"):
        gen.generate(src, pose, stage="g2")


def test_init_from_takes_over_stage_one_and_trains_only_stage_two(tiny_toy, tmp_path):
    """Stage II retrained with another loss weight from a finished run's G1 (train.init_from)."""
    cfg, src = _cfg(tiny_toy, tmp_path / "src", "train.g1_iters=3", "train.g2_iters=2", "loss.lambda_l1=10")
    train_generator(cfg, str(tiny_toy), src)
    src_ckpt = load_checkpoint(src)

    cfg2, out = _cfg(tiny_toy, tmp_path / "lambda100", "train.g1_iters=3", "train.g2_iters=2",
                     "loss.lambda_l1=100", f"train.init_from={src}")
    train_generator(cfg2, str(tiny_toy), out)
    ckpt = load_checkpoint(out)
    assert ckpt["trained"] == ["g1", "g2"] and ckpt["complete"] and ckpt["global_step"] == 3 + 2
    # G1 is the source run's, bit for bit; G2 was trained again under the new loss
    assert _same(ckpt["models"]["g1"], src_ckpt["models"]["g1"])
    assert not _same(ckpt["models"]["g2"], src_ckpt["models"]["g2"])
    assert [r["stage"] for r in _log(out)] == ["g2", "g2"]
    import json
    info = json.loads((out / "run.json").read_text())["init_from"]
    assert info["stages"] == ["g1"] and info["sha256"] == sha256_file(src / "checkpoint.pt")
    assert load_generator(out).stages == ("g1", "g2")

    # a G1 of other widths, or a source with nothing finished to share, is a clear error
    cfg3, out3 = _cfg(tiny_toy, tmp_path / "wide", "model.g1_width=6", f"train.init_from={src}")
    with pytest.raises(CheckpointError, match="does not fit"):
        train_generator(cfg3, str(tiny_toy), out3)
    cfg4, out4 = _cfg(tiny_toy, tmp_path / "g1d", "train.stages=[g1+d,g2]", f"train.init_from={src}")
    with pytest.raises(CheckpointError, match="no finished stage 'g1\\+d'"):
        train_generator(cfg4, str(tiny_toy), out4)
