"""Re-ID benchmark: data lists, LSRO, weights, and a one-epoch baseline-vs-augmented run."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from reid_aug.errors import DatasetError, WeightsMissingError


def _make_augmented(dataset_root, out, per_id=2):
    """A fake `synthesize` output: copies of real train images under new Market-parsable names + manifest."""
    from reid_aug.dataset.market import load_dataset

    train = load_dataset(dataset_root).split("train")
    img_dir = out / "bounding_box_train"
    img_dir.mkdir(parents=True)
    rows = []
    for pid, grp in train.groupby("pid"):
        for k, (_, r) in enumerate(grp.head(per_id).iterrows()):
            name = f"{pid:04d}_c{r.camid}s9_9{k:05d}_99.jpg"
            shutil.copy(r.path, img_dir / name)
            rows.append(dict(file=name, pid=pid, camid=r.camid, source_image=r["name"], target_pose_image=r["name"],
                             strategy="random", seed=0, generator_sha256="0" * 64))
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out


@pytest.fixture(scope="module")
def augmented(tiny_toy, tmp_path_factory):
    return _make_augmented(tiny_toy, tmp_path_factory.mktemp("aug") / "synth")


def test_augmented_dataset_keeps_source_pids(tiny_toy, augmented):
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import (REAL_DSETID, SYNTHESIZED_DSETID, TORCHREID_MARKET_PATTERN, build_datamanager,
                                    build_splits, read_augmented)

    index = load_dataset(tiny_toy)
    aug = read_augmented(augmented)
    base = build_splits(index)
    splits = build_splits(index, aug)
    real_pids = sorted(index.split("train").query("pid > 0")["pid"].unique())
    # contiguous labels 0..P-1 from the real train pids, in pid order; synthetic images add no identity
    assert splits.pid2label == {int(p): i for i, p in enumerate(real_pids)}
    labels = {lab for _, lab, _, _ in splits.train}
    assert labels == set(range(len(real_pids))) == {lab for _, lab, _, _ in base.train}
    label2pid = {v: k for k, v in splits.pid2label.items()}
    synth = [t for t in splits.train if t[3] == SYNTHESIZED_DSETID]
    assert len(synth) == len(aug) == splits.n_synthesized > 0
    for path, lab, cam0, _ in synth:
        # torchreid's own Market pattern on the file name gives the same identity and camera
        pid, cam = map(int, TORCHREID_MARKET_PATTERN.search(path.rsplit("/", 1)[-1]).groups())
        assert label2pid[lab] == pid and cam0 == cam - 1
    assert all(t[3] == REAL_DSETID for t in splits.train[:splits.n_real])
    assert splits.n_real == base.n_real == len(base.train)
    # query/gallery untouched: junk out, distractors in, cameras 0-based
    gal = index.split("gallery")
    assert len(splits.gallery) == int((gal["pid"] != -1).sum())
    if (gal["pid"] == 0).any():
        assert any(pid == 0 for _, pid, _ in splits.gallery)
    assert min(c for _, _, c in splits.query + splits.gallery) == int(index.table["camid"].min()) - 1
    # torchreid sees one source with exactly these identities (no pid shift of the synthetic part)
    dm = build_datamanager(splits, 64, 32, ["random_flip"], batch_size=4, workers=0)
    assert dm.num_train_pids == len(real_pids)
    batch = next(iter(dm.train_loader))
    assert batch["img"].shape == (4, 3, 64, 32) and int(batch["pid"].max()) < len(real_pids)


def test_subsample_per_identity(tiny_toy):
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import build_splits

    index = load_dataset(tiny_toy)
    s1 = build_splits(index, train_per_id=2, subsample_seed=1)
    s2 = build_splits(index, train_per_id=2, subsample_seed=1)
    counts = pd.Series([lab for _, lab, _, _ in s1.train]).value_counts()
    assert counts.max() <= 2 and len(counts) == s1.num_train_pids
    assert s1.train == s2.train                      # deterministic for a seed


def test_a_filtered_set_gives_only_its_kept_images(tiny_toy, augmented, tmp_path):
    """reid-aug filter marks images in the manifest; Re-ID must train on exactly those (before: on all of them)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import build_splits, read_augmented

    filtered = tmp_path / "filtered"
    shutil.copytree(augmented, filtered)
    man = pd.read_csv(filtered / "manifest.csv")
    man["kept"] = (np.arange(len(man)) % 3 == 0).astype(int)
    man.to_csv(filtered / "manifest.csv", index=False)
    aug = read_augmented(filtered)
    kept_names = {Path(f).name for f in man.loc[man["kept"] == 1, "file"]}
    assert set(aug["name"]) == kept_names and 0 < len(aug) < len(man)
    assert build_splits(load_dataset(tiny_toy), aug).n_synthesized == len(kept_names)
    man["kept"] = 0
    man.to_csv(filtered / "manifest.csv", index=False)
    with pytest.raises(DatasetError, match="kept none"):
        read_augmented(filtered)


def test_augmented_folder_errors(tiny_toy, augmented, tmp_path):
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import build_splits, read_augmented, read_image_checked

    bad = tmp_path / "bad"
    shutil.copytree(augmented, bad)
    extra = next((bad / "bounding_box_train").iterdir())
    shutil.copy(extra, extra.with_name("0001_c1s9_999999_99.jpg"))
    with pytest.raises(DatasetError, match="--verify"):
        read_augmented(bad)                           # manifest and files disagree
    other = tmp_path / "other"
    (other / "bounding_box_train").mkdir(parents=True)
    shutil.copy(extra, other / "bounding_box_train" / "9876_c1s9_000001_99.jpg")
    with pytest.raises(DatasetError, match="another dataset"):
        build_splits(load_dataset(tiny_toy), read_augmented(other))
    corrupt = tmp_path / "0001_c1s1_000001_00.jpg"
    corrupt.write_bytes(extra.read_bytes()[:200])     # truncated JPEG: torchreid's read_image would loop forever
    with pytest.raises(DatasetError, match="cannot be decoded"):
        read_image_checked(str(corrupt))


def test_lsro_loss_equals_hand_computation():
    from reid_aug.reid.lsro import LSROLoss

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 3.0]])
    targets = torch.tensor([0, 2, 1, 1])
    synthetic = torch.tensor([False, True, False, True])
    K, eps = 3, 0.1
    logp = logits.numpy() - np.log(np.exp(logits.numpy()).sum(1, keepdims=True))
    per_sample = []
    for i in range(4):
        if synthetic[i]:
            q = np.full(K, 1 / K)                          # LSRO: uniform over the K identities
        else:
            q = np.full(K, eps / K)
            q[targets[i]] += 1 - eps                       # torchreid label smoothing
        per_sample.append(-(q * logp[i]).sum())
    expected = np.mean(per_sample)
    got = LSROLoss(K, eps=eps)(logits, targets, synthetic)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # all-real batch = torchreid's CrossEntropyLoss; all-synthetic = mean of -mean_k log p_k
    from reid_aug.reid.data import import_torchreid

    ce = import_torchreid().losses.CrossEntropyLoss(K, eps=eps, use_gpu=False)
    none = torch.zeros(4, dtype=torch.bool)
    assert LSROLoss(K, eps=eps)(logits, targets, none).item() == pytest.approx(ce(logits, targets).item(), rel=1e-6)
    assert LSROLoss(K)(logits, targets, ~none).item() == pytest.approx(float(-logp.mean()), rel=1e-6)
    # gradient pushes synthetic logits toward uniform: d/dz of -mean log softmax = softmax - 1/K
    z = logits[1:2].clone().requires_grad_(True)
    LSROLoss(K)(z, targets[1:2], torch.tensor([True])).backward()
    np.testing.assert_allclose(z.grad.numpy(), torch.softmax(logits[1:2], 1).numpy() - 1 / K, atol=1e-6)


def test_missing_pretrained_weights_error(tiny_toy, tmp_path, monkeypatch):
    from click.testing import CliRunner

    import cli
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty_torch_home" / "hub"))
    cfg = resolve_benchmark(model="resnet18", recipe="reid_toy", pretrained=True)
    with pytest.raises(WeightsMissingError) as err:
        run_benchmark(cfg, dataset=str(tiny_toy), out_dir=tmp_path / "out", baseline_only=True)
    msg = str(err.value)
    assert "--weights FILE" in msg and "--no-pretrained" in msg and "resnet18" in msg
    assert not (tmp_path / "out" / "results.json").exists()      # failed before any work
    res = CliRunner().invoke(cli.main, ["benchmark", "--model", "resnet18", "--recipe", "reid_toy",
                                        "--pretrained", "--dataset", str(tiny_toy), "--baseline-only",
                                        "--out", str(tmp_path / "out2")])
    assert res.exit_code == 2 and "--no-pretrained" in res.output and "Traceback" not in res.output


def test_weights_file_loads_backbone_and_tolerates_classifier(tmp_path):
    from reid_aug.reid.models import build_model, load_backbone_weights

    # an "ImageNet" file the test writes itself: torchvision's resnet18 layout, 1000-way fc
    import torchvision

    tv = torchvision.models.resnet18(weights=None)
    torch.nn.init.normal_(tv.conv1.weight)
    path = tmp_path / "resnet18-test.pth"
    torch.save({f"module.{k}": v for k, v in tv.state_dict().items()}, path)    # DataParallel prefix
    model = build_model("resnet18", num_classes=7)
    before = model.classifier.weight.detach().clone()
    info = load_backbone_weights(model, path)
    assert torch.equal(model.conv1.weight, tv.conv1.weight)
    assert torch.equal(model.layer4[1].bn2.running_var, tv.layer4[1].bn2.running_var)
    assert torch.equal(model.classifier.weight, before)                          # 7-way head untouched
    assert "fc.weight" in info["discarded"] and info["matched"] == len(tv.state_dict()) - 2


def test_one_epoch_benchmark_writes_report(tiny_toy, augmented, tmp_path, monkeypatch):
    from reid_aug.reid import experiment as bm
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark
    from reid_aug.reid.models import extract_features, load_reid_model

    gen_eval = tmp_path / "metrics.json"
    # evaluate-generator's document: records, the headline "model" row first
    model_row = {"row": "model", "stage": "g2", "protocol": "defgan", "n_pairs": 12, "ssim": 0.4321,
                 "mask_ssim": 0.7654, "is": {"mean": None, "reason": "no Inception weights"},
                 "mask_is": {"mean": 3.25, "std": 0.125}}
    gen_eval.write_text(json.dumps({"headline": {"stage": "g2", "protocol": "defgan"}, "records": [
        {**model_row, "protocol": "pg2", "ssim": 0.9999}, model_row,
        {**model_row, "row": "real_vs_real", "ssim": 1.0}]}))
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", labels="lsro", pretrained=False,
                            rerank=True, overrides=["train.epochs=1", "train.batch_size=8", "data.height=64",
                                                    "data.width=32", "data.batch_size_test=32", "data.workers=0"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], generator_eval=gen_eval,
                        out_dir=tmp_path / "bench")
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"baseline_seed0", "augmented_seed0"}
    for rec in results["runs"].values():
        assert 0 <= rec["rank1"] <= rec["rank5"] <= 1 and 0 < rec["mAP"] <= 1
        assert 0 <= rec["rerank"]["mAP"] <= 1 and rec["wall_s"] > 0
    assert results["runs"]["augmented_seed0"]["epochs"] == 1
    assert results["runs"]["augmented_seed0"]["n_train_synthesized"] > 0
    assert results["runs"]["baseline_seed0"]["n_train_synthesized"] == 0
    report = (out / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["baseline", "augmented", "delta", "baseline (re-ranked)",
                                                         "augmented (re-ranked)", "delta (re-ranked)"]
    assert "| 0.4321 | n/a | 0.7654 | 3.25 ± 0.12 |" in report and "0.9999" not in report
    assert "IS: n/a (no Inception weights)" in report and "trapezoid" in report
    assert (out / "bars.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    csv = pd.read_csv(out / "results.csv")
    assert sorted(csv["variant"]) == ["augmented", "baseline"]
    # saved models reload and give the same features
    model, cfg2 = load_reid_model(out / "models" / "augmented_seed0.pt")
    assert cfg2 == cfg
    paths = sorted(str(p) for p in (tiny_toy).rglob("*.jpg"))[:4]
    f = extract_features(model, paths, cfg.data.height, cfg.data.width, batch_size=2)
    assert f.shape == (4, results["runs"]["augmented_seed0"]["feature_dim"]) and torch.isfinite(f).all()
    # the demo recipe is iteration-matched: the baseline (fewer images) takes exactly the augmented run's steps
    base, aug = results["runs"]["baseline_seed0"], results["runs"]["augmented_seed0"]
    per_epoch = {v: (r["n_train_real"] + r["n_train_synthesized"]) // 8 for v, r in (("b", base), ("a", aug))}
    assert per_epoch["a"] > per_epoch["b"]
    assert aug["iterations"] == per_epoch["a"] == base["iterations"] == sum(h["iterations"] for h in base["history"])
    assert base["epochs"] == -(-per_epoch["a"] // per_epoch["b"]) > 1 and base["budget"] == "iterations"
    assert f"iteration-matched: both variants take {aug['iterations']} optimizer steps" in report
    assert results["seeds"] == [0] and "seeds" not in results["setup"]
    # a restart skips the finished runs
    train_for_real = bm.train_and_evaluate
    monkeypatch.setattr(bm, "train_and_evaluate", lambda *a, **k: pytest.fail("finished run trained again"))
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], generator_eval=gen_eval,
                  out_dir=out)
    # extending the seeds on the same folder trains only the new seed's runs
    trained = []
    monkeypatch.setattr(bm, "train_and_evaluate", lambda *a, **k: trained.append(a[1:3]) or train_for_real(*a, **k))
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0, 1], generator_eval=gen_eval,
                  out_dir=out)
    assert trained == [("baseline", 1), ("augmented", 1)]
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"] == [0, 1] and len(results["runs"]) == 4
    assert results["runs"]["baseline_seed1"]["iterations"] == results["runs"]["augmented_seed1"]["iterations"]
    # a call for one seed reports every seed of the folder
    monkeypatch.setattr(bm, "train_and_evaluate", lambda *a, **k: pytest.fail("finished run trained again"))
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[1], generator_eval=gen_eval,
                  out_dir=out)
    report = (out / "report.md").read_text()
    assert "Seeds: 0, 1." in report and "over 2 seeds" in report
    # ... but refuses to mix results of another config
    other = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                              overrides=["train.epochs=2"])
    with pytest.raises(Exception, match="different benchmark"):
        run_benchmark(other, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=out)


def test_generator_metrics_reader_reads_the_evaluation_record(tmp_path):
    from pathlib import Path

    from reid_aug.reid.tables import read_generator_metrics

    absent = read_generator_metrics(tmp_path / "nope.json")
    assert all(absent[k].startswith("n/a") and "not found" in absent[k] for k in ("ssim", "is", "mask_ssim", "mask_is"))
    assert read_generator_metrics(None)["ssim"].startswith("n/a (no evaluate-generator records")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert "unreadable" in read_generator_metrics(broken)["is"]
    binary = tmp_path / "binary.json"
    binary.write_bytes(bytes(range(256)))
    assert "unreadable" in read_generator_metrics(binary)["ssim"]
    # a 0.1 record (tests/data/v0.1): the headline model row, IS null with its reason
    old = Path(__file__).parent / "data" / "v0.1" / "eval_metrics.json"
    rec = json.loads(old.read_text())
    model = next(r for r in rec["records"] if r["row"] == "model")
    got = read_generator_metrics(old)
    assert got["ssim"] == f"{model['ssim']:.4g}" and got["mask_ssim"] == f"{model['mask_ssim']:.4g}"
    assert got["is"].startswith("n/a (no Inception weights") and "stage g2, defgan protocol" in got["source"]
    # a JSON file of another kind is not guessed at through aliases
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"SSIM": 0.5, "mask-SSIM": {"mean": 0.8}, "IS": None}))
    assert read_generator_metrics(flat)["ssim"].startswith("n/a (")


def test_training_resumes_from_its_epoch_checkpoint(tiny_toy, tmp_path):
    """2 epochs in one go == 1 epoch, 'kill', then resume to 2 (same weights, same loss history)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.models import build_model
    from reid_aug.reid.data import build_datamanager, build_splits, import_torchreid
    from reid_aug.reid.engine import make_engine_class, train_epochs
    from reid_aug.runtime import seed_everything

    reid = import_torchreid()
    splits = build_splits(load_dataset(tiny_toy))

    def engine():
        seed_everything(3)
        dm = build_datamanager(splits, 64, 32, ["random_flip", "random_crop"], batch_size=8, workers=0)
        model = build_model("osnet_x0_25", dm.num_train_pids)
        opt = reid.optim.build_optimizer(model, optim="adam", lr=1e-3)
        sched = reid.optim.build_lr_scheduler(opt, lr_scheduler="single_step", stepsize=1, gamma=0.5)
        return make_engine_class()(dm, model, opt, sched)

    straight = engine()
    full = train_epochs(straight, 2, tmp_path / "a.pt", max_iters_per_epoch=3)
    first = engine()
    train_epochs(first, 1, tmp_path / "b.pt", max_iters_per_epoch=3)
    resumed = engine()                           # a fresh process would rebuild everything like this
    part = train_epochs(resumed, 2, tmp_path / "b.pt", max_iters_per_epoch=3)
    assert [h["epoch"] for h in part["history"]] == [1, 2]
    assert [h["loss"] for h in part["history"]] == pytest.approx([h["loss"] for h in full["history"]], rel=1e-5)
    assert part["history"][1]["lr"] == pytest.approx(0.5e-3)      # the scheduler state came back too
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), k


def test_training_plan_matches_iterations():
    from reid_aug.reid.budget import training_plan
    from reid_aug.reid.experiment import resolve_benchmark

    demo = resolve_benchmark(recipe="reid_toy", overrides=["train.epochs=10", "train.batch_size=16"])
    assert demo.train.budget == "iterations"
    plan = training_plan(demo, {"baseline": 600, "augmented": 1500})
    # augmented 93 it/epoch x 10 = 930; the baseline (37 it/epoch) 930 / 37 = 25.14 epochs -> 26, the last cut
    assert plan["augmented"] == {"budget": "iterations", "epochs": 10, "iters_per_epoch": 93, "total_iters": 930,
                                 "lr_step_iters": 0, "epochs_equivalent": 10.0}
    b = plan["baseline"]
    assert (b["epochs"], b["iters_per_epoch"], b["total_iters"], b["lr_step_iters"]) == (26, 37, 930, 93)
    assert 25 * 37 < 930 <= 26 * 37 and b["epochs_equivalent"] == pytest.approx(930 / 37)
    # epochs budget: the old behaviour, whole epochs each
    ep = resolve_benchmark(recipe="reid_toy", overrides=["train.budget=epochs", "train.epochs=10",
                                                               "train.batch_size=16"])
    plan = training_plan(ep, {"baseline": 600, "augmented": 1500})
    assert [(p["epochs"], p["total_iters"], p["lr_step_iters"]) for p in plan.values()] == [(10, 370, 0), (10, 930, 0)]
    # without an augmented folder the budget has no effect; max_iters_per_epoch caps both variants
    assert training_plan(demo, {"baseline": 600})["baseline"]["total_iters"] == 370
    capped = resolve_benchmark(recipe="reid_toy", overrides=["train.epochs=4", "train.batch_size=16",
                                                                   "train.max_iters_per_epoch=50"])
    plan = training_plan(capped, {"baseline": 600, "augmented": 1500})
    assert plan["augmented"]["total_iters"] == 200 and plan["baseline"]["total_iters"] == 200
    assert plan["baseline"]["epochs"] == 6 and plan["baseline"]["lr_step_iters"] == 50       # 37 it/epoch
    # real Market-1501 CPU recipe, K = 10 (+7,510 images): every seed's pair is iteration-matched
    market = resolve_benchmark(recipe="reid_cpu_market")
    plan = training_plan(market, {"baseline": 12936, "augmented": 12936 + 7510})
    assert plan["baseline"]["total_iters"] == plan["augmented"]["total_iters"] == market.train.epochs * 638
    assert resolve_benchmark(recipe="reid_resnet50_market").train.budget == "epochs"
    with pytest.raises(Exception, match="train.budget"):
        resolve_benchmark(recipe="reid_toy", overrides=["train.budget=steps"])


def test_epochs_budget_keeps_old_behaviour(tiny_toy, augmented, tmp_path, monkeypatch):
    from reid_aug.reid import experiment as bm
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                            overrides=["train.budget=epochs", "train.epochs=1", "train.batch_size=8",
                                       "data.batch_size_test=32", "data.workers=0"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=tmp_path / "b")
    results = json.loads((out / "results.json").read_text())
    for rec in results["runs"].values():
        n_train = rec["n_train_real"] + rec["n_train_synthesized"]
        assert rec["epochs"] == 1 and rec["iterations"] == n_train // 8 == rec["history"][0]["iterations"]
        assert rec["budget"] == "epochs"
    assert results["runs"]["augmented_seed0"]["iterations"] > results["runs"]["baseline_seed0"]["iterations"]
    report = (out / "report.md").read_text()
    assert "Training budget: epochs" in report and "iteration-matched: both" not in report
    # a folder written before train.budget existed (no such key) is the epochs budget: resumed, not refused
    monkeypatch.setattr(bm, "train_and_evaluate", lambda *a, **k: pytest.fail("finished run trained again"))
    old = json.loads((out / "results.json").read_text())
    del old["setup"]["config"]["train"]["budget"]
    (out / "results.json").write_text(json.dumps(old))
    run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=out)
    # ... but another budget on the same folder is refused
    other = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                              overrides=["train.budget=iterations", "train.epochs=1", "train.batch_size=8",
                                         "data.batch_size_test=32", "data.workers=0"])
    with pytest.raises(Exception, match="different benchmark"):
        run_benchmark(other, dataset=str(tiny_toy), augmented_dir=augmented, seeds=[0], out_dir=out)

    # another augmented set against the same baseline (--baseline-from): only the augmented run trains
    aug2 = _make_augmented(tiny_toy, tmp_path / "aug2" / "synth", per_id=1)
    trained = []
    monkeypatch.setattr(bm, "train_and_evaluate",
                        lambda *a, **k: trained.append(a[1:3]) or {**results["runs"]["augmented_seed0"], "seed": a[2]})
    out2 = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=aug2, seeds=[0], out_dir=tmp_path / "b2",
                         baseline_from=out)
    assert trained == [("augmented", 0)]
    res2 = json.loads((out2 / "results.json").read_text())
    base, src_base = res2["runs"]["baseline_seed0"], results["runs"]["baseline_seed0"]
    assert base["reused_from"] == str(out / "results.json") and base["rank1"] == src_base["rank1"]
    assert (out2 / "models" / "baseline_seed0.pt").read_bytes() == (out / "models" / "baseline_seed0.pt").read_bytes()
    assert res2["setup"]["augmented_manifest_sha256"] != results["setup"]["augmented_manifest_sha256"]
    # the synthetic-label mode does not tell baselines apart (a baseline has no synthetic image)
    lsro = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, labels="lsro",
                             overrides=["train.budget=epochs", "train.epochs=1", "train.batch_size=8",
                                        "data.batch_size_test=32", "data.workers=0"])
    trained.clear()
    run_benchmark(lsro, dataset=str(tiny_toy), augmented_dir=aug2, seeds=[0], out_dir=tmp_path / "b4",
                  baseline_from=out)
    assert trained == [("augmented", 0)]
    # baselines of another config are not comparable
    with pytest.raises(Exception, match="not comparable.*config"):
        run_benchmark(other, dataset=str(tiny_toy), augmented_dir=aug2, seeds=[0], out_dir=tmp_path / "b3",
                      baseline_from=out)


def test_iteration_budget_cuts_the_last_epoch_and_steps_lr_by_iterations(tiny_toy, tmp_path):
    """total_iters / lr_step_iters: epochs of 3 it, 7 it in all -> 3 + 3 + 1; LR halves after iteration 5
    (an "epoch" of the augmented run); a kill after epoch 1 + resume gives the same run."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.models import build_model
    from reid_aug.reid.data import build_datamanager, build_splits, import_torchreid
    from reid_aug.reid.engine import make_engine_class, train_epochs
    from reid_aug.runtime import seed_everything

    reid = import_torchreid()
    splits = build_splits(load_dataset(tiny_toy))

    def engine():
        seed_everything(5)
        dm = build_datamanager(splits, 64, 32, ["random_flip"], batch_size=8, workers=0)
        model = build_model("osnet_x0_25", dm.num_train_pids)
        opt = reid.optim.build_optimizer(model, optim="adam", lr=1e-3)
        sched = reid.optim.build_lr_scheduler(opt, lr_scheduler="single_step", stepsize=1, gamma=0.5)
        return make_engine_class()(dm, model, opt, sched)

    kw = dict(max_iters_per_epoch=3, total_iters=7, lr_step_iters=5)
    straight = train_epochs(engine(), 3, tmp_path / "a.pt", **kw)
    assert straight["iterations"] == 7 and [h["iterations"] for h in straight["history"]] == [3, 3, 1]
    assert [h["lr"] for h in straight["history"]] == pytest.approx([1e-3, 1e-3, 0.5e-3])
    assert straight["history"][-1]["lr_end"] == pytest.approx(0.5e-3)     # one step at 5, none at 7

    class Killed(Exception):
        pass

    def kill(epoch, rec):
        raise Killed

    with pytest.raises(Killed):
        train_epochs(engine(), 3, tmp_path / "b.pt", on_epoch_end=kill, **kw)
    resumed = train_epochs(engine(), 3, tmp_path / "b.pt", **kw)
    assert [h["iterations"] for h in resumed["history"]] == [3, 3, 1]
    assert [h["loss"] for h in resumed["history"]] == pytest.approx([h["loss"] for h in straight["history"]], rel=1e-5)
    assert [h["lr_end"] for h in resumed["history"]] == pytest.approx([h["lr_end"] for h in straight["history"]])
    with pytest.raises(ValueError, match="cannot reach"):
        train_epochs(engine(), 2, tmp_path / "c.pt", **kw)


def test_training_curve_is_recorded_drawn_and_leaves_training_unchanged(tiny_toy, tmp_path):
    """eval.curve_every = 1: one evaluation per epoch in the record and in curves.png; the last point is the
    final model's result, and the losses and final metrics equal a run without the curve (RNG put back)."""
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    base = ["train.epochs=2", "train.batch_size=8", "data.height=64", "data.width=32", "data.batch_size_test=32",
            "data.workers=0", "train.max_iters_per_epoch=3", "data.val_ids=4", "eval.split=val"]
    runs = {}
    for every in (0, 1):
        cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                                overrides=base + [f"eval.curve_every={every}"])
        out = run_benchmark(cfg, dataset=str(tiny_toy), seeds=[0], baseline_only=True, out_dir=tmp_path / f"b{every}")
        runs[every] = json.loads((out / "results.json").read_text())["runs"]["baseline_seed0"]
    plain, curved = runs[0], runs[1]
    assert "curve" not in plain and not (tmp_path / "b0" / "curves.png").exists()
    assert [p["epoch"] for p in curved["curve"]] == [1, 2] and [p["iterations"] for p in curved["curve"]] == [3, 6]
    assert curved["curve"][-1]["mAP"] == pytest.approx(curved["mAP"])
    assert curved["curve"][-1]["rank1"] == pytest.approx(curved["rank1"])
    assert [h["loss"] for h in curved["history"]] == pytest.approx([h["loss"] for h in plain["history"]], rel=1e-6)
    assert curved["mAP"] == pytest.approx(plain["mAP"], rel=1e-6)
    assert (tmp_path / "b1" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "curves.png" in (tmp_path / "b1" / "report.md").read_text()


def test_training_curve_keeps_the_final_point_between_evaluations():
    from reid_aug.reid.experiment import training_curve

    hist = [{"epoch": 1, "iterations": 5}, {"epoch": 2, "iterations": 5, "curve_rank1": 0.2, "curve_mAP": 0.1},
            {"epoch": 3, "iterations": 2}]
    assert training_curve(hist, {"rank1": 0.3, "mAP": 0.25}) == [
        {"epoch": 2, "iterations": 10, "rank1": 0.2, "mAP": 0.1},
        {"epoch": 3, "iterations": 12, "rank1": 0.3, "mAP": 0.25}]
