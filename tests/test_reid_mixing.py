"""Issue 14: how synthesized images enter Re-ID training: pool vs batch (CamStyle) mixing, their weight and
label smoothing."""
import json

import pytest
import torch

from reid_aug.config import ConfigError
from reid_aug.reid.mixing import SyntheticStream, mixed_cross_entropy

from test_reid_benchmark import augmented  # noqa: F401 - the fixture


def _per_sample(logits, targets, eps):
    logp = torch.log_softmax(logits, 1)
    q = torch.full_like(logp, eps / logits.shape[1])
    q[torch.arange(len(targets)), targets] += 1 - eps
    return -(q * logp).sum(1)


def test_pool_with_equal_settings_is_torchreids_cross_entropy():
    from reid_aug.reid.data import import_torchreid

    torch.manual_seed(0)
    logits, targets = torch.randn(10, 7), torch.randint(0, 7, (10,))
    synth = torch.tensor([0, 1] * 5, dtype=torch.bool)
    ce = import_torchreid().losses.CrossEntropyLoss(num_classes=7, eps=0.1, use_gpu=False, label_smooth=True)
    ours = mixed_cross_entropy(logits, targets, synth, 0.1, 0.1, 1.0, "pool")
    torch.testing.assert_close(ours, ce(logits, targets))


def test_batch_sums_the_means_and_the_synthesized_get_their_own_smoothing_and_weight():
    torch.manual_seed(1)
    logits, targets = torch.randn(9, 5), torch.randint(0, 5, (9,))
    synth = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1], dtype=torch.bool)
    real_l = _per_sample(logits[:6], targets[:6], 0.1).mean()
    synth_l = _per_sample(logits[6:], targets[6:], 0.3).mean()
    got = mixed_cross_entropy(logits, targets, synth, 0.1, 0.3, 0.5, "batch")
    torch.testing.assert_close(got, real_l + 0.5 * synth_l)
    pool = mixed_cross_entropy(logits, targets, synth, 0.1, 0.3, 0.5, "pool")
    expect = (_per_sample(logits[:6], targets[:6], 0.1).sum() + 0.5 * _per_sample(logits[6:], targets[6:], 0.3).sum())
    torch.testing.assert_close(pool, expect / (6 + 0.5 * 3))
    # weight 0: the synthesized images do not move the loss
    torch.testing.assert_close(mixed_cross_entropy(logits, targets, synth, 0.1, 0.3, 0.0, "batch"), real_l)


def test_synthetic_stream_is_endless_seeded_and_leaves_the_global_rng_alone(monkeypatch):
    import reid_aug.reid.mixing as mixing

    monkeypatch.setattr(mixing._Items, "__getitem__", lambda self, i: {
        "img": torch.zeros(1), "pid": self.items[i][1], "camid": 0, "dsetid": 1, "impath": self.items[i][0]})
    items = [(f"p{i}", i % 3, 0, 1) for i in range(10)]

    def first(seed, n=5):
        stream = SyntheticStream(items, 4, None, seed=seed)
        return [tuple(next(stream)["impath"]) for _ in range(n)]       # 2 batches per pass (drop_last)

    before = torch.random.get_rng_state()
    batches = first(3)
    assert torch.equal(before, torch.random.get_rng_state())
    assert first(3) == batches and first(4) != batches
    assert all(len(b) == 4 for b in batches) and len(set(batches[0]) | set(batches[1])) == 8


def test_bad_mixing_values_are_clear_errors():
    from reid_aug.reid.experiment import resolve_benchmark

    for bad in ("train.mix=stack", "train.synthetic_ratio=0", "train.synthetic_weight=-1"):
        with pytest.raises(ConfigError, match="train.mix|synthetic"):
            resolve_benchmark(recipe="reid_toy", overrides=[bad])


def test_batch_mixing_keeps_the_baselines_real_batches(tiny_toy, augmented, tmp_path, monkeypatch):  # noqa: F811
    from reid_aug.reid.data import import_torchreid
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    seen = []
    base = import_torchreid().engine.ImageSoftmaxEngine
    orig = base.parse_data_for_train

    def spy(self, data):
        d = torch.as_tensor(data["dsetid"])
        seen.append(([p for p, s in zip(data["impath"], d) if s == 0], int((d == 1).sum())))
        return orig(self, data)

    monkeypatch.setattr(base, "parse_data_for_train", spy)
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=[
        "train.epochs=2", "train.batch_size=8", "train.max_iters_per_epoch=3", "data.height=64", "data.width=32",
        "data.batch_size_test=32", "data.workers=0", "data.test_ids=4", "train.mix=batch",
        "train.synthetic_ratio=0.5", "train.synthetic_weight=0.5", "train.synthetic_label_smooth=0.2"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "b")
    runs = json.loads((out / "results.json").read_text())["runs"]
    base_run, aug_run = runs["baseline_seed0"], runs["augmented_seed0"]
    assert base_run["iterations"] == aug_run["iterations"] == 6
    assert aug_run["n_train_synthesized"] > 0 and aug_run["n_train_real"] == base_run["n_train_real"]
    baseline_batches, augmented_batches = seen[:6], seen[6:]
    assert [b for b, _ in baseline_batches] == [b for b, _ in augmented_batches]    # the same real images, in order
    assert all(n == 0 for _, n in baseline_batches) and all(n == 4 for _, n in augmented_batches)
    report = (out / "report.md").read_text()
    assert "mixed per batch" in report and "loss weight 0.5" in report and "label smoothing 0.2" in report


def test_a_baseline_only_run_serves_a_batch_mixing_benchmark(tiny_toy, augmented, tmp_path):  # noqa: F811
    """Under batch mixing the baseline does not depend on the synthesized set: a `--baseline-only` run (its plan
    named "epochs") is taken over by a benchmark with the same recipe (its baseline plan named "iterations") when
    the steps and schedule agree -- and not when they differ."""
    from reid_aug.reid.budget import same_training
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    small = ["train.epochs=1", "train.batch_size=8", "train.max_iters_per_epoch=3", "data.height=64",
             "data.width=32", "data.batch_size_test=32", "data.workers=0", "data.test_ids=4", "train.mix=batch",
             "train.budget=iterations"]
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=small)
    base = run_benchmark(cfg, dataset=str(tiny_toy), seeds=[0], out_dir=tmp_path / "base", baseline_only=True)
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "aug",
                        baseline_from=base)
    stored = json.loads((base / "results.json").read_text())["runs"]["baseline_seed0"]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert runs["baseline_seed0"]["reused_from"].startswith(str(base)) and stored["training_plan"]["budget"] == "epochs"
    assert runs["baseline_seed0"]["rank1"] == stored["rank1"] and "augmented_seed0" in runs
    plan = dict(stored["training_plan"], budget="iterations")
    assert same_training(stored["training_plan"], plan)
    assert not same_training(stored["training_plan"], dict(plan, total_iters=plan["total_iters"] + 1))
    assert not same_training(None, plan)
