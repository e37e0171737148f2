"""``train.augmented_images: sources``: the no-generation control (issue 20). Every synthesized image is replaced
by its own real source image; names, identities, cameras, the stream and the labels stay."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from reid_aug.config import ConfigError
from reid_aug.errors import DatasetError

SMALL = ["train.epochs=1", "train.batch_size=8", "train.max_iters_per_epoch=2", "data.height=64", "data.width=32",
         "data.batch_size_test=32", "data.workers=0", "data.test_ids=4", "train.mix=batch"]


def _fake_set(dataset_root, out, manifest=True):
    """A synthesized set whose images are noise (never their sources), named and listed as `synthesize` does."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.synthesis.naming import synthesized_name
    from reid_aug.utils.images import save_png

    train = load_dataset(dataset_root).split("train")
    (out / "bounding_box_train").mkdir(parents=True)
    rng, rows = np.random.default_rng(0), []
    for pid, grp in train.groupby("pid"):
        for k, (_, r) in enumerate(grp.head(3).iterrows()):
            name = synthesized_name(int(pid), int(r.camid), k, r["name"])
            save_png(rng.integers(0, 255, (16, 8, 3), dtype=np.uint8), out / "bounding_box_train" / name)
            rows.append(dict(file=name, pid=pid, camid=r.camid, k=k, source=r["name"]))
    if manifest:
        pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out, dict(zip(train["name"], train["path"]))


def _experiment(tiny_toy, syn, tmp_path, *extra):
    from reid_aug.reid.experiment import prepare_experiment, resolve_benchmark

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=SMALL + list(extra))
    return prepare_experiment(cfg, str(tiny_toy), syn, None, tmp_path / "out")


def test_every_synthesized_image_becomes_its_source_and_nothing_else_changes(tiny_toy, tmp_path):
    syn, path_of = _fake_set(tiny_toy, tmp_path / "syn")
    gen = _experiment(tiny_toy, syn, tmp_path).synthetic_items
    src = _experiment(tiny_toy, syn, tmp_path, "train.augmented_images=sources").synthetic_items
    man = pd.read_csv(syn / "manifest.csv")
    source_of = dict(zip(man["file"], man["source"]))
    assert len(gen) == len(src) == len(man) > 0
    for (gp, glab, gcam, gd), (sp, slab, scam, sd) in zip(gen, src):
        assert Path(gp).parent == syn / "bounding_box_train"          # the default reads the generated files
        assert (glab, gcam, gd) == (slab, scam, sd)                   # same label, camera, synthesized flag
        assert Path(sp) == Path(path_of[source_of[Path(gp).name]])    # ... and the control its source
        assert Path(sp).read_bytes() != Path(gp).read_bytes()


def test_the_control_needs_the_manifest_and_a_known_value(tiny_toy, tmp_path):
    syn, _ = _fake_set(tiny_toy, tmp_path / "syn", manifest=False)
    with pytest.raises(DatasetError, match="augmented_images=sources needs .*manifest.csv"):
        _experiment(tiny_toy, syn, tmp_path, "train.augmented_images=sources")
    with pytest.raises(ConfigError, match="train.augmented_images='copies'"):
        _experiment(tiny_toy, syn, tmp_path, "train.augmented_images=copies")


def test_the_control_shares_the_baselines(tiny_toy, tmp_path):
    from reid_aug.reid.experiment import resolve_benchmark, run_benchmark

    syn, _ = _fake_set(tiny_toy, tmp_path / "syn")
    base = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False, overrides=SMALL)
    first = run_benchmark(base, dataset=str(tiny_toy), augmented_dir=syn, seeds=[0], out_dir=tmp_path / "gen")
    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                            overrides=SMALL + ["train.augmented_images=sources"])
    out = run_benchmark(cfg, dataset=str(tiny_toy), augmented_dir=syn, seeds=[0], out_dir=tmp_path / "src",
                        baseline_from=first)
    import json

    a, b = (json.loads((d / "results.json").read_text())["runs"] for d in (first, out))
    assert b["baseline_seed0"]["rank1"] == a["baseline_seed0"]["rank1"] and b["baseline_seed0"].get("reused_from")
    assert "no-generation control" in (out / "report.md").read_text()
