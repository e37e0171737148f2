"""How close synthesized images stay to their source image (issue 20): a generator that preserves identity by
copying its source shows it here. SSIM (defgan protocol) of each synthesized image against its own source image
(resized to the set's size), beside the same score of the source against another real image of its identity (what
copying the source would score against a real new pose) and against an image of another identity.

    python benchmarks/source_similarity.py RUNS/syn_plain RUNS/syn_id --n 1500 --out benchmarks/results/NAME/source_similarity.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _load(paths, size) -> torch.Tensor:
    """uint8 (B, 3, H, W) at ``size`` = (H, W), resized as the generator's inputs (PIL bilinear)."""
    from PIL import Image

    return torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((size[1], size[0]),
                                                                                      Image.BILINEAR)).copy())
                        .permute(2, 0, 1) for p in paths])


def _summary(x: np.ndarray) -> dict:
    return {"mean": float(x.mean()), "median": float(np.median(x)), "q10": float(np.quantile(x, 0.1)),
            "q90": float(np.quantile(x, 0.9)), "n": int(len(x))}


def set_similarity(set_dir: Path, n: int, seed: int) -> dict:
    from reid_aug.dataset.market import load_dataset
    from reid_aug.metrics.ssim import ssim
    from reid_aug.records import SynthesisDescriptor
    from reid_aug.rundir import SynthesizedSet

    syn = SynthesizedSet(set_dir)
    man = pd.read_csv(syn.manifest).sample(frac=1.0, random_state=seed).head(n)
    real = load_dataset(SynthesisDescriptor.read(syn.descriptor).info["dataset"]).split("train")
    path_of = dict(zip(real["name"], real["path"]))
    by_pid = real.groupby("pid")["name"].apply(list).to_dict()
    rng = np.random.default_rng(seed)
    gen = _load([syn.images / f for f in man["file"]], (128, 64))
    src = _load([path_of[s] for s in man["source"]], gen.shape[-2:])
    same = [rng.choice([x for x in by_pid[p] if x != s] or [s]) for p, s in zip(man["pid"], man["source"])]
    pids = np.array(sorted(by_pid))
    other = [rng.choice(by_pid[int(rng.choice(pids[pids != p]))]) for p in man["pid"]]
    same_img, other_img = _load([path_of[x] for x in same], gen.shape[-2:]), _load([path_of[x] for x in other],
                                                                                      gen.shape[-2:])
    return {"set": str(set_dir), "generated_vs_source": _summary(ssim(gen, src).numpy()),
            "source_vs_same_identity_real": _summary(ssim(src, same_img).numpy()),
            "source_vs_other_identity_real": _summary(ssim(src, other_img).numpy())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", type=Path, nargs="+")
    ap.add_argument("--n", type=int, default=1500, help="synthesized images sampled per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    res = {"what": "SSIM (defgan protocol) of synthesized images against their own source image; references: the "
                   "source against another real image of its identity / of another identity",
           "sets": [set_similarity(s, args.n, args.seed) for s in args.sets]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    for r in res["sets"]:
        print(Path(r["set"]).name, {k: round(v["mean"], 4) for k, v in r.items() if isinstance(v, dict)})


if __name__ == "__main__":
    main()
