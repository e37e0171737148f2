"""How much identity a synthesized set carries, judged by Re-ID models trained on the real images (issues 14, 20).

    python benchmarks/identity_judge.py SET --reid-model OUT/models/baseline_seed1.pt [--reid-model ...] \
        --out benchmarks/results/NAME/identity_judge.json

For every generated image: the rank of its own identity among all training identities' centroids (the normalised
mean feature of each identity's real training images; 1 = its own identity is the nearest) and its cosine to its
own centroid, as `reid-aug filter` scores them (`reid_aug.synthesis.filter.identity_scores`). Reference, the same
scores of the real training images themselves, each against leave-one-out centroids (its identity's centroid
without it), so that real and generated images are judged by one rule. Chance: top-1 = 1 / number of identities.
A judge that did not train on the images it scores (another seed) is independent of the filter model.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def leave_one_out_scores(feats: np.ndarray, pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rank, cosine) of every real image against the centroids, its own computed without it; (N,) each.
    Identities with a single image are left out (NaN)."""
    from reid_aug.synthesis.filter import _normalize

    f = _normalize(feats.astype(np.float64))
    ids, inv = np.unique(pids, return_inverse=True)
    sums = np.zeros((len(ids), f.shape[1]))
    np.add.at(sums, inv, f)
    counts = np.bincount(inv)
    cents = _normalize(sums)
    sims = f @ cents.T                                                  # (N, P)
    own_sum = sums[inv] - f                                             # own centroid without the image
    own = np.einsum("nd,nd->n", f, _normalize(own_sum))
    sims[np.arange(len(f)), inv] = own
    rank = (1 + (sims > own[:, None]).sum(axis=1)).astype(float)
    single = counts[inv] < 2
    rank[single], own[single] = np.nan, np.nan
    return rank, own


def summary(rank: np.ndarray, cos: np.ndarray) -> dict:
    ok = ~np.isnan(rank)
    r, c = rank[ok], cos[ok]
    return {"n": int(ok.sum()), "top1": float(np.mean(r <= 1)), "top5": float(np.mean(r <= 5)),
            "top10": float(np.mean(r <= 10)), "median_rank": float(np.median(r)), "mean_cosine": float(np.mean(c))}


def judge(set_dir: Path, model_path: Path) -> dict:
    from reid_aug.dataset.market import load_dataset
    from reid_aug.records import SynthesisDescriptor
    from reid_aug.reid.models import extract_features
    from reid_aug.rundir import SynthesizedSet
    from reid_aug.synthesis.filter import _load_model, identity_scores
    from reid_aug.synthesis.folder import read_manifest

    sset = SynthesizedSet(set_dir)
    desc = SynthesisDescriptor.read(sset.descriptor)
    manifest = read_manifest(sset.manifest)
    real = load_dataset(desc.info["dataset"]).split("train")
    model, mcfg, _ = _load_model(model_path, "cpu")
    h, w = mcfg.data.height, mcfg.data.width
    t0 = time.time()
    rf = extract_features(model, real["path"].tolist(), h, w, 64, desc="real features").numpy()
    gf = extract_features(model, [sset.images / f for f in manifest["file"]], h, w, 64,
                          desc="generated features").numpy()
    g_rank, g_cos = identity_scores(gf, manifest["pid"].to_numpy(), rf, real["pid"].to_numpy())
    r_rank, r_cos = leave_one_out_scores(rf, real["pid"].to_numpy())
    n_ids = int(real["pid"].nunique())
    return {"reid_model": str(model_path), "n_identities": n_ids, "chance_top1": 1 / n_ids,
            "generated": summary(g_rank.astype(float), g_cos), "real_leave_one_out": summary(r_rank, r_cos),
            "seconds": round(time.time() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set_dir", type=Path)
    ap.add_argument("--reid-model", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    rows = [judge(args.set_dir, m) for m in args.reid_model]
    from reid_aug.utils.io import atomic_write_text

    atomic_write_text(args.out, json.dumps({"set": str(args.set_dir), "judges": rows}, indent=1) + "\n")
    for r in rows:
        g, q = r["generated"], r["real_leave_one_out"]
        print(f"{Path(r['reid_model']).name}: generated top-1 {100 * g['top1']:.1f} % (top-5 {100 * g['top5']:.1f} %, "
              f"median rank {g['median_rank']:.0f}, cosine {g['mean_cosine']:.3f}); real leave-one-out top-1 "
              f"{100 * q['top1']:.1f} % (top-5 {100 * q['top5']:.1f} %, median rank {q['median_rank']:.0f}, cosine "
              f"{q['mean_cosine']:.3f}); chance {100 * r['chance_top1']:.1f} %")


if __name__ == "__main__":
    main()
