"""Issue 20: teacher soft labels for synthesized images (DG-Net), beside same-id and LSRO."""
import json
import math

import pytest
import torch

from reid_aug.config import ConfigError
from reid_aug.errors import CheckpointError
from reid_aug.reid.teacher import ramp_weight, teacher_loss

from test_reid_benchmark import augmented  # noqa: F401 - the fixture

SMALL = ["train.epochs=1", "train.batch_size=8", "train.max_iters_per_epoch=2", "data.height=64", "data.width=32",
         "data.batch_size_test=32", "data.workers=0", "data.test_ids=4"]


def test_loss_is_ce_on_real_plus_weighted_tempered_kl_on_synthesized():
    torch.manual_seed(0)
    s, t = torch.randn(6, 5), torch.randn(2, 5)
    y = torch.randint(0, 5, (6,))
    syn = torch.tensor([0, 1, 0, 0, 1, 0], dtype=torch.bool)
    logp = torch.log_softmax(s, 1)
    q = torch.full((4, 5), 0.1 / 5)
    q[torch.arange(4), y[~syn]] += 0.9
    ce = -(q * logp[~syn]).sum(1).mean()
    T = 2.0
    p_t = torch.softmax(t / T, 1)            # the temperature shapes the teacher only (DG-Net)
    kl = sum(float(p_t[i, k]) * math.log(float(p_t[i, k]) / float(torch.softmax(s[syn], 1)[i, k]))
             for i in range(2) for k in range(5)) / 2
    torch.testing.assert_close(teacher_loss(s, y, syn, t, 0.1, T, 0.5), ce + 0.5 * torch.tensor(kl))
    # a student that already agrees with the teacher has no KL left
    same = s.clone()
    same[syn] = t
    torch.testing.assert_close(teacher_loss(same, y, syn, t, 0.1, 1.0, 1.0), teacher_loss(same, y, syn, t, 0.1, 1.0, 0.0))
    assert ramp_weight(2.0, 0.5, 0, 100) == 0 and ramp_weight(2.0, 0.5, 25, 100) == 1.0 == ramp_weight(2.0, 0.5, 50, 100) / 2
    assert ramp_weight(2.0, 0.0, 0, 100) == 2.0


def test_a_sharp_teacher_that_is_always_right_gives_the_hard_labels():
    """Temperature -> 0 and the teacher's argmax = the source identity: the teacher mode's loss equals batch mixing
    with hard same-id labels (no smoothing on the synthesized images, the same weight); a softer teacher differs."""
    from reid_aug.reid.mixing import mixed_cross_entropy

    torch.manual_seed(3)
    s, y = torch.randn(8, 6, requires_grad=True), torch.randint(0, 6, (8,))
    syn = torch.tensor([0, 0, 1, 0, 1, 1, 0, 0], dtype=torch.bool)
    t = torch.randn(3, 6)
    t[torch.arange(3), y[syn]] = t.max() + 0.5               # right, by a margin
    hard = mixed_cross_entropy(s, y, syn, 0.1, 0.0, 0.7, "batch")
    sharp = teacher_loss(s, y, syn, t, 0.1, 1e-4, 0.7)
    torch.testing.assert_close(sharp, hard)
    g_hard, = torch.autograd.grad(hard, s)
    g_sharp, = torch.autograd.grad(sharp, s)
    torch.testing.assert_close(g_sharp, g_hard)
    assert abs(float(teacher_loss(s, y, syn, t, 0.1, 1.0, 0.7).detach()) - float(hard.detach())) > 1e-3   # soft: another
    assert torch.isfinite(teacher_loss(s, y, syn, t * 1e6, 0.1, 1e-6, 0.7).detach())     # an exactly one-hot teacher


def test_teacher_needs_a_model_of_the_same_identities(tiny_toy, augmented, tmp_path):  # noqa: F811
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    with pytest.raises(ConfigError, match="train.teacher=PATH"):
        resolve_benchmark(recipe="reid_toy", labels="teacher")
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=SMALL)
    base = run_benchmark(cfg, dataset=str(tiny_toy), seeds=[0], out_dir=tmp_path / "base", baseline_only=True)
    teacher = base / "models" / "baseline_seed0.pt"
    assert teacher.is_file()
    # the teacher's identities are the student's: a benchmark with the subsample keeps all ids here, so change them
    meta = torch.load(teacher, weights_only=True)
    meta["pid2label"] = {"99999": 0}
    torch.save(meta, tmp_path / "other.pt")
    bad = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, labels="teacher",
                            overrides=SMALL + [f"train.teacher={tmp_path / 'other.pt'}"])
    with pytest.raises(CheckpointError, match="other identities"):
        run_benchmark(bad, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "bad")
    assert not (tmp_path / "bad" / "results.json").exists()
    # same identities, but the teacher saw every image and this run keeps 2 per identity: its soft labels would
    # carry the dropped images into the low-data regime
    leaky = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, labels="teacher",
                              overrides=SMALL + [f"train.teacher={teacher}", "data.train_per_id=2"])
    with pytest.raises(CheckpointError, match="every image.s. per identity .seed 0., this run on 2 .seed 0."):
        run_benchmark(leaky, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "leaky")
    assert not (tmp_path / "leaky" / "results.json").exists()


def test_teacher_run_trains_with_a_frozen_teacher(tiny_toy, augmented, tmp_path, monkeypatch):  # noqa: F811
    from reid_aug.reid import teacher as tmod
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=SMALL)
    base = run_benchmark(cfg, dataset=str(tiny_toy), seeds=[0], out_dir=tmp_path / "base", baseline_only=True)
    teacher_file = base / "models" / "baseline_seed0.pt"
    seen = []
    orig = tmod.Teacher.logits

    def spy(self, images):
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        out = orig(self, images)
        after = self.model.state_dict()
        seen.append((len(images), all(torch.equal(before[k], after[k]) for k in before), self.model.training))
        return out

    monkeypatch.setattr(tmod.Teacher, "logits", spy)
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, labels="teacher",
                            overrides=SMALL + [f"train.teacher={teacher_file}", "train.teacher_temperature=2",
                                               "train.mix=batch", "train.synthetic_ratio=0.5"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "t")
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"baseline_seed0", "augmented_seed0"} and results["setup"]["teacher_sha256"]
    # 2 augmented steps, 4 synthesized images each; the teacher's weights and BN statistics never move
    assert seen == [(4, True, False), (4, True, False)]


def test_own_baseline_teacher_is_the_first_seeds_baseline(tiny_toy, augmented, tmp_path):  # noqa: F811
    """``train.teacher=baseline``: every augmented seed learns from the baseline of the benchmark's first seed,
    the file that run wrote (sha256 recorded per run); without that baseline the run is refused in one line."""
    from reid_aug.errors import ReidAugError
    from reid_aug.reid.experiment import _own_baseline_teacher, prepare_experiment, resolve_benchmark, run_benchmark
    from reid_aug.utils.io import sha256_file

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, labels="teacher",
                            overrides=SMALL + ["train.teacher=baseline", "train.mix=batch", "train.synthetic_ratio=0.5"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[1, 0], out_dir=tmp_path / "own")
    runs = json.loads((out / "results.json").read_text())["runs"]
    teacher = out / "models" / "baseline_seed1.pt"
    assert runs["baseline_seed1"]["model_path"] == str(teacher)
    for seed in (0, 1):
        assert runs[f"augmented_seed{seed}"]["teacher"] == str(teacher)
        assert runs[f"augmented_seed{seed}"]["teacher_sha256"] == sha256_file(teacher)
        assert "teacher" not in runs[f"baseline_seed{seed}"]
    assert "own baseline of its first seed" in (out / "report.md").read_text()
    exp = prepare_experiment(cfg, str(tiny_toy), augmented, None, tmp_path / "empty")
    exp.folder.path.mkdir(parents=True)
    with pytest.raises(ReidAugError, match="the teacher baseline_seed0 did not finish"):
        _own_baseline_teacher(exp, 0)


def test_budget_note_under_batch_mixing_says_real_exposure_is_unchanged():
    from reid_aug.reid.tables import budget_note

    plan = {v: {"epochs": 7, "total_iters": 259, "iters_per_epoch": 37, "epochs_equivalent": 7.0,
                "lr_step_iters": 0} for v in ("baseline", "augmented")}
    note = budget_note({"mix": "batch", "budget": "iterations"}, {}, plan)
    assert "same 259 optimizer steps over the same real batches" in note and "fewer times" not in note
    assert "fewer times" in budget_note({"mix": "pool", "budget": "iterations"}, {}, plan)
    assert "teacher's soft labels" in budget_note({"mix": "batch", "labels": "teacher"}, {}, plan)
