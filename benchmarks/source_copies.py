"""The no-generation control of issue 20: a synthesized set's twin in which every image is its own source image.

Same names, identities, cameras, counts and per-identity shares as the synthesized set SET (so the Re-ID run draws
the same stream of extra images, with the same labels), but each file is the real source image it was generated
from, byte for byte. Trained with teacher soft labels it is distillation on extra draws of real images, without a
single generated pixel: what teacher labels give on their own.

    python benchmarks/source_copies.py RUNS/syn_id RUNS/copies_id --dataset market

Writes OUT/bounding_box_train/*.jpg, OUT/manifest.csv (SET's rows; sha256 / bytes of the copies, generator_sha256
"copy-source") and OUT/copies.json (what this folder is). Finished files are skipped on a rerun.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def copy_sources(set_dir: Path, out: Path, dataset: str) -> dict:
    """Write the copies; returns the ``copies.json`` record."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.records import read_csv
    from reid_aug.rundir import SynthesizedSet
    from reid_aug.utils.io import atomic_write_bytes, atomic_write_text, sha256_file

    src_set, dst_set = SynthesizedSet(set_dir), SynthesizedSet(out)
    man = read_csv(src_set.manifest, "a synthesis manifest (manifest.csv)", required=("file", "pid", "camid", "source"))
    index = load_dataset(dataset)
    (out / "bounding_box_train").mkdir(parents=True, exist_ok=True)
    shas, sizes = [], []
    for file, source in zip(man["file"], man["source"]):
        dst = out / "bounding_box_train" / Path(str(file)).name
        if not dst.is_file():
            atomic_write_bytes(dst, index.path_of(str(source)).read_bytes())
        shas.append(sha256_file(dst))
        sizes.append(dst.stat().st_size)
    man = man.assign(sha256=shas, bytes=sizes, generator_sha256="copy-source")
    text = man.to_csv(index=False)
    atomic_write_text(dst_set.manifest, text)
    record = {"what": "no-generation control: every image is its own source image (benchmarks/source_copies.py)",
              "from_set": str(set_dir), "from_manifest_sha256": sha256_file(src_set.manifest),
              "dataset": str(index.image_root), "n_images": int(len(man)), "n_identities": int(man["pid"].nunique()),
              "n_sources": int(man["source"].nunique())}
    atomic_write_text(out / "copies.json", json.dumps(record, indent=2) + "\n")
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set_dir", type=Path, help="a `reid-aug synthesize` output folder")
    ap.add_argument("out", type=Path)
    ap.add_argument("--dataset", default="market", help="the dataset the set was synthesized from")
    args = ap.parse_args()
    if args.out.resolve() == args.set_dir.resolve():
        sys.exit("source_copies: OUT must differ from SET")
    rec = copy_sources(args.set_dir, args.out, args.dataset)
    print(f"{rec['n_images']} copies of {rec['n_sources']} source images ({rec['n_identities']} identities) in "
          f"{args.out}")


if __name__ == "__main__":
    main()
