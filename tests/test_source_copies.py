"""benchmarks/source_copies.py: the no-generation twin of a synthesized set (issue 20's teacher-label control)."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def _fake_set(dataset_root, out):
    """A synthesized set whose images are noise (not their sources), named and listed as `synthesize` does."""
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
            rows.append(dict(file=name, pid=pid, camid=r.camid, k=k, source=r["name"], generator_sha256="1" * 64,
                             sha256="x", bytes=0))
    pd.DataFrame(rows).to_csv(out / "manifest.csv", index=False)
    return out, train


def test_every_copy_is_its_source_and_the_benchmark_reads_the_twin_as_the_set(tiny_toy, tmp_path):
    from source_copies import copy_sources

    from reid_aug.reid.data import read_augmented

    syn, train = _fake_set(tiny_toy, tmp_path / "syn")
    rec = copy_sources(syn, tmp_path / "copies", str(tiny_toy))
    man = pd.read_csv(tmp_path / "copies" / "manifest.csv")
    path_of = dict(zip(train["name"], train["path"]))
    assert rec["n_images"] == len(man) == len(pd.read_csv(syn / "manifest.csv")) > 0
    for file, source in zip(man["file"], man["source"]):
        assert (tmp_path / "copies" / "bounding_box_train" / file).read_bytes() == Path(path_of[source]).read_bytes()
    assert set(man["generator_sha256"]) == {"copy-source"} and (man["bytes"] > 0).all()
    a, b = read_augmented(syn), read_augmented(tmp_path / "copies")
    assert a[["name", "pid", "camid"]].equals(b[["name", "pid", "camid"]])
    # a rerun skips the finished files and writes the same record
    assert copy_sources(syn, tmp_path / "copies", str(tiny_toy)) == rec
