"""Issue 13: Deformable GAN as a registered generator family: recipes, training, resume, NaN guard, DDP,
inference with the source pose, synthesis and evaluation through the shared commands."""
import os
import subprocess
import sys

import pytest
import torch

from reid_aug.config import ConfigError, load_config
from reid_aug.errors import TrainingDivergedError
from reid_aug.generator.checkpoint import load_checkpoint
from reid_aug.generator.defgan.config import DefGANConfig
from reid_aug.generator.family import family_names, get_family
from reid_aug.generator.inference import load_generator
from reid_aug.generator.train import resolve_training, train_generator

from test_generator_train import DDP_SCRIPT, ROOT, _all_weights, _log, _same

TINY = ["model.width=2", "model.d_width=2", "train.batch_size=4", "train.num_workers=0", "train.tensorboard=false",
        "train.log_every=1", "train.sample_every=1000", "train.n_samples=2", "runtime.threads=0"]


def _cfg(dataset, out, *extra, recipe="defgan_toy"):
    return resolve_training(str(dataset), recipe, TINY + list(extra), out)


def test_registered_and_recipes_hold_the_papers_settings():
    assert "defgan" in family_names() and get_family("defgan").name == "defgan"
    full = load_config(DefGANConfig, "defgan_market")
    assert (full.train.steps, full.train.batch_size, full.train.lr, full.train.d_lr) == (90000, 4, 2e-4, 2e-4)
    assert (full.loss.nn_weight, full.loss.nn_k, full.model.warp_skip, full.model.warped_levels) == (0.01, 3, "mask", 4)
    assert full.loss.nn_features == "patch"          # the recorded offline deviation (no VGG weights)
    base = load_config(DefGANConfig, "defgan_ablation_baseline")
    assert (base.model.warp_skip, base.loss.nn_weight, base.loss.l1_weight) == ("none", 0.0, 100.0)
    dsc = load_config(DefGANConfig, "defgan_ablation_dsc")
    assert (dsc.model.warp_skip, dsc.loss.nn_weight, dsc.loss.l1_weight) == ("mask", 0.0, 100.0)
    perc = load_config(DefGANConfig, "defgan_ablation_percloss")
    assert (perc.loss.nn_weight, perc.loss.nn_k) == (0.5, 1)
    cpu = load_config(DefGANConfig, "defgan_market_cpu")
    assert not cpu.runtime.expects_gpu and full.runtime.expects_gpu and full.runtime.cpu_recipe == "defgan_market_cpu"


@pytest.mark.parametrize("override, match", [
    ("model.pose_mode=pg2", "gaussian"), ("train.stages=[g1]", "one stage"), ("model.bg_grow=-1", "bg_grow"),
    ("loss.nn_k=2", "nn_k"), ("model.warp_skip=affine", "warp_skip"), ("loss.nn_features=vgg16", "nn_features")])
def test_bad_configs_are_clear_errors(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(DefGANConfig, "defgan_market", [override])


def test_dry_run_prints_the_paper_size_parameter_counts(tiny_toy, tmp_path, caplog):
    cfg, out = resolve_training(str(tiny_toy), "defgan_market", ["train.n_samples=2", "runtime.device=cpu"],
                                tmp_path / "dry")
    with caplog.at_level("INFO", logger="reid_aug.generator.train"):
        train_generator(cfg, str(tiny_toy), out, dry_run=True)
    text = " ".join(r.getMessage() for r in caplog.records)
    # the official Keras model's counts (tests/test_defgan_params.py): G 61,109,085, D 2,803,782
    assert "G 61.11M, D 2.80M" in text and "family defgan" in text and "deformable skips 'mask'" in text
    assert not out.exists()


def test_training_learns_loads_and_needs_the_source_pose(tiny_toy, tmp_path):
    cfg, out = _cfg(tiny_toy, tmp_path / "run", "train.steps=12", "train.lr=2e-3")
    run = train_generator(cfg, str(tiny_toy), out)
    rows = _log(run)
    assert len(rows) == 12 and all(float(r["d_loss"]) > 0 for r in rows)
    first, last = sum(float(r["l1"]) for r in rows[:3]), sum(float(r["l1"]) for r in rows[-3:])
    assert last < first                                     # starts from noise: the pixel error falls
    gen = load_generator(run)
    assert gen.stages == ("defgan",) and gen.family.conditions == ("src_pose", "src_kp", "tgt_kp")
    from reid_aug.generator.data import load_training_data

    batch = load_training_data(str(tiny_toy), (128, 64), "gaussian", 2, 0).sample_batch
    out_img = gen.generate(batch["src_img"], batch["tgt_pose"], src_pose=batch["src_pose"], src_kp=batch["src_kp"],
                           tgt_kp=batch["tgt_kp"])
    assert out_img.shape == (2, 3, 128, 64) and out_img.abs().max() <= 1
    with pytest.raises(ValueError, match="needs src_pose, src_kp, tgt_kp"):
        gen.generate(batch["src_img"], batch["tgt_pose"])
    # the source pose matters: another source skeleton changes the image (deformable skips + source stream)
    moved = gen.generate(batch["src_img"], batch["tgt_pose"], src_pose=batch["tgt_pose"], src_kp=batch["tgt_kp"],
                         tgt_kp=batch["tgt_kp"])
    assert not torch.equal(moved, out_img)


def test_killed_run_resumes_to_bit_identical_weights(tiny_toy, tmp_path):
    cfg, _ = _cfg(tiny_toy, None, "train.steps=5", "train.checkpoint_every=2")
    full = train_generator(cfg, str(tiny_toy), tmp_path / "full")

    class Killed(Exception):
        pass

    def kill(stage, step, values):
        if step == 4:
            raise Killed

    part = tmp_path / "part"
    with pytest.raises(Killed):
        train_generator(cfg, str(tiny_toy), part, step_hook=kill)
    assert load_checkpoint(part)["step"] == 4 or load_checkpoint(part)["step"] == 2
    train_generator(cfg, str(tiny_toy), part, resume=True)
    a, b = load_checkpoint(full), load_checkpoint(part)
    wa, wb = _all_weights(a), _all_weights(b)
    assert wa.keys() == wb.keys() and {k.split(".")[0] for k in wa} == {"g", "d"}
    assert all(torch.equal(wa[k], wb[k]) for k in wa)       # dropout noise included: the RNG state is restored
    assert _same(a["optimizers"], b["optimizers"])


def test_nan_guard_keeps_the_last_good_checkpoint(tiny_toy, tmp_path, monkeypatch):
    from reid_aug.generator.defgan import family as fam

    armed = {"on": False}
    real = fam.DefGANFamily.nn_loss

    def nn_loss(self, cfg, device):
        loss = real(self, cfg, device)
        return (lambda a, b: loss(a, b) * float("nan")) if armed["on"] else loss

    monkeypatch.setattr(fam.DefGANFamily, "nn_loss", nn_loss)
    cfg, out = _cfg(tiny_toy, tmp_path / "run", "train.steps=6", "train.checkpoint_every=2")
    with pytest.raises(TrainingDivergedError, match=r"non-finite loss at stage defgan step 4"):
        train_generator(cfg, str(tiny_toy), out, step_hook=lambda s, k, v: armed.update(on=k == 3))
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in _all_weights(ckpt).values()
                                     if v.is_floating_point())


def test_two_process_ddp_trains(tiny_toy, tmp_path):
    overrides = TINY + ["train.steps=3", "runtime.device=cpu"]
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.replace('"pg2_toy"', '"defgan_toy"').format(
        root=str(ROOT), data=str(tiny_toy), overrides=overrides, out=str(tmp_path / "ddp")))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp")
    assert ckpt["complete"] and ckpt["global_step"] == 3 and len(_log(tmp_path / "ddp")) == 3
    assert all(torch.isfinite(v).all() for v in _all_weights(ckpt).values() if v.is_floating_point())


def test_synthesize_and_evaluate_take_a_defgan_run(tiny_toy, tmp_path):
    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.synthesis.config import load_synthesis_config
    from reid_aug.synthesis.synthesize import synthesize

    cfg, out = _cfg(tiny_toy, tmp_path / "run", "train.steps=2")
    run = train_generator(cfg, str(tiny_toy), out)
    recs = evaluate_generator(run, limit=8, workers=0)
    assert {r["row"] for r in recs} >= {"model", "copy_source"}
    scfg = load_synthesis_config(overrides=[f"generator={run}", "poses_per_id=2", f"out={tmp_path / 'syn'}",
                                            "max_identities=3", "workers=1"])
    summary = synthesize(scfg)
    assert summary["written"] == 6 and summary["stage"] == "defgan"


def test_the_demo_takes_either_generator():
    from reid_aug.demo import demo_config

    quick = demo_config(quick=True, overrides=["generator=defgan"])
    assert quick.generator_recipe_name == "defgan_toy" and "train.steps=40" in quick.generator_overrides
    pg2 = demo_config(quick=True, overrides=["generator_set.train.g1_iters=7"])
    assert "train.g1_iters=7" in pg2.generator_overrides and "train.g2_iters=20" in pg2.generator_overrides
    cfg, _ = resolve_training("toy", quick.generator_recipe_name, quick.generator_overrides)
    assert cfg.family == "defgan" and cfg.train.steps == 40


def test_demo_report_names_the_generator_of_the_family(tmp_path):
    from reid_aug.report.demo_report import d_loss_caption
    from reid_aug.rundir import GeneratorRun

    run = GeneratorRun(tmp_path / "r")
    run.path.mkdir()
    run.log_csv.write_text("stage,step,d_loss\ndefgan,1,0.02\n")
    run.config.write_text("family: defgan\nloss: {nn_weight: 0.01}\n")
    text = d_loss_caption(run)
    assert "G2" not in text and "the generator" in text and "λ = 0.01" in text
    run.config.write_text("family: pg2\nloss: {lambda_l1: 10}\n")
    assert "G2 refines G1's image" in d_loss_caption(run)
