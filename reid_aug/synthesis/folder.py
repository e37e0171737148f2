"""The synthesized-set folder: descriptor, manifests, stale temp files, contact sheet.

Layout (paths from :class:`reid_aug.rundir.SynthesizedSet`)::

    SET/synthesis.json                  run descriptor (what this folder is; written before any image)
    SET/config.yaml                     the resolved options of the last run into this folder
    SET/bounding_box_train/*.jpg        the synthesized images (names: reid_aug.synthesis.naming)
    SET/manifest.csv                    one row per image (written atomically when every image exists)
    SET/manifest.shard-I-of-N.csv       per-shard manifests of a sharded run (merged into manifest.csv)
    SET/contact_sheet.png               a row per identity (first 12): a source image, then its synthesized ones

Restarts and shards
    ``synthesis.json`` (:class:`~reid_aug.records.SynthesisDescriptor`) holds the run's identity
    (generator sha256, stage, dataset fingerprint, K, strategy, seed, clusters, JPEG quality, plan
    hash, ...). A run started on a folder with the same descriptor writes only the missing images
    (every image is written atomically, so a file on disk is complete) and then writes the manifest
    from the plan and the files; a folder holding another run, or images without a descriptor, is
    refused. Each shard writes ``manifest.shard-i-of-n.csv``; the shard that finds all ``n`` present
    writes the merged ``manifest.csv``. A run without a shard covers every block, so it also
    completes and merges the output of shards.
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from reid_aug.errors import RecordError, SynthesisError
from reid_aug.records import SynthesisDescriptor, read_csv
from reid_aug.rundir import SynthesizedSet
from reid_aug.utils.io import atomic_create_text, atomic_write_text, sha256_file

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("file", "pid", "camid", "k", "source", "target_pose", "target_pid", "cluster", "strategy",
                    "seed", "stage", "generator_sha256", "sha256", "bytes")
# Added by the view strategies (rotate, views): the rotation of the source's own pose and the source's view.
VIEW_COLUMNS = ("angle", "source_view")
# Keys of the descriptor's ``run`` that follow from the others (a difference there is named by its cause).
_DERIVED_KEYS = ("plan_sha256", "n_images", "n_identities", "n_clusters")


# --------------------------------------------------------------------------- descriptor
def read_descriptor(out_dir: str | Path) -> SynthesisDescriptor | None:
    """The folder's descriptor (either format version), None when there is none."""
    path = SynthesizedSet(out_dir).descriptor
    if not path.is_file():
        return None
    try:
        return SynthesisDescriptor.read(path)
    except RecordError as e:
        raise SynthesisError(f"{e}; the folder was not written by `reid-aug synthesize`: choose another --out") \
            from None


def _check_same_run(out_dir: Path, old: SynthesisDescriptor, new: SynthesisDescriptor) -> SynthesisDescriptor:
    diffs = [k for k in sorted(set(old.run) | set(new.run)) if old.run.get(k) != new.run.get(k)]
    primary = [k for k in diffs if k not in _DERIVED_KEYS]
    diffs = primary or diffs                    # name the cause (K, seed, ...), not its consequences
    if diffs:
        detail = "; ".join(f"{k}: {old.run.get(k)!r} there, {new.run.get(k)!r} now" for k in diffs)
        raise SynthesisError(f"{out_dir} holds a different synthesis run ({detail}); choose another --out, or "
                             f"delete {out_dir} to start over")
    return old


def _stray_files(sset: SynthesizedSet) -> list[str]:
    """Up to 6 images/manifests of an unknown run."""
    stray = []
    if sset.images.is_dir():
        stray = [e.name for e in os.scandir(sset.images) if not e.name.startswith(".")][:3]
    if sset.path.is_dir():
        stray += [p.name for p in sset.path.glob("manifest*.csv")][:3]
    return stray


def prepare_out_dir(out_dir: str | Path, desc: SynthesisDescriptor) -> SynthesisDescriptor:
    """Check that ``out_dir`` is empty or holds this same run; write the descriptor. Returns the one in force
    (an existing descriptor's ``layout`` wins, so restarts and shards cut the plan the same way)."""
    sset = SynthesizedSet(out_dir)
    old = read_descriptor(sset.path)
    if old is not None:
        return _check_same_run(sset.path, old, desc)
    stray = _stray_files(sset)
    if stray:
        old = read_descriptor(sset.path)        # another shard may have just started this very run
        if old is not None:
            return _check_same_run(sset.path, old, desc)
        raise SynthesisError(f"{sset.path} holds files of an unknown run ({', '.join(stray)}, ...) but no "
                             f"{sset.descriptor.name}; choose another --out, or delete those files")
    if atomic_create_text(sset.descriptor, json.dumps(desc.to_dict(), indent=2) + "\n"):
        return desc
    return _check_same_run(sset.path, read_descriptor(sset.path), desc)


# --------------------------------------------------------------------------- files
def remove_stale_temps(img_dir: Path, names: set) -> int:
    """Remove ``.NAME.*.tmp`` left by a killed writer, for this shard's names only (other shards may be writing)."""
    n = 0
    if not img_dir.is_dir():
        return 0
    for e in os.scandir(img_dir):
        if e.name.startswith(".") and e.name.endswith(".tmp"):
            target = e.name[1:].rsplit(".", 2)[0]
            if target in names:
                try:
                    os.unlink(e.path)
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def hash_files(paths: list[Path], workers: int = 4) -> list[tuple[str, int]]:
    """``(sha256, size)`` of each file, hashed in ``workers`` threads."""
    def one(p):
        return sha256_file(p), os.path.getsize(p)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, paths))


# --------------------------------------------------------------------------- manifests
def manifest_frame(rows: pd.DataFrame, meta: dict, hashes: list[tuple[str, int]]) -> pd.DataFrame:
    """Plan rows + the run's ``strategy``, ``seed``, ``stage``, ``generator_sha256`` + each file's hash and size."""
    df = rows[["file", "pid", "camid", "k", "source", "target_pose", "target_pid", "cluster"]].copy()
    for key in ("strategy", "seed", "stage", "generator_sha256"):
        df[key] = meta[key]
    df["sha256"] = [h for h, _ in hashes]
    df["bytes"] = [int(b) for _, b in hashes]
    views = [c for c in VIEW_COLUMNS if c in rows.columns]     # strategies rotate / views
    for c in views:
        df[c] = rows[c].to_numpy()
    return df[list(MANIFEST_COLUMNS) + views].reset_index(drop=True)


def write_manifest(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def read_manifest(path: str | Path) -> pd.DataFrame:
    """A (shard or merged) manifest; a damaged file is one clear error naming it."""
    return read_csv(path, "a synthesis manifest (manifest.csv)", required=("file", "source", "target_pose"),
                    dtype={"file": str, "source": str, "target_pose": str, "sha256": str,
                           "generator_sha256": str, "strategy": str, "stage": str})


def merge_shard_manifests(out_dir: str | Path, n: int, plan_files: list[str]) -> pd.DataFrame | None:
    """Merge ``n`` shard manifests into ``manifest.csv`` once all are present and cover ``plan_files``
    (the plan's file names, in plan order) with every image on disk. Returns the merged frame or None."""
    sset = SynthesizedSet(out_dir)
    parts = [sset.shard_manifest(i, n) for i in range(n)]
    present = [p for p in parts if p.is_file()]
    if len(present) < n:
        log.info("%d of %d shard manifests present; manifest.csv will be written by the last shard to finish",
                 len(present), n)
        return None
    merged = pd.concat([read_manifest(p) for p in parts], ignore_index=True)
    order = {f: i for i, f in enumerate(plan_files)}
    if set(merged["file"]) != set(order) or len(merged) != len(order):
        log.warning("the %d shard manifests in %s do not cover the plan (%d rows vs %d planned); run "
                    "`reid-aug synthesize` without --shard to complete it", n, sset.path, len(merged), len(order))
        return None
    missing = [f for f in merged["file"] if not (sset.images / f).is_file()]
    if missing:
        log.warning("%d image(s) listed by shard manifests are missing (e.g. %s); run `reid-aug synthesize` "
                    "again to rewrite them", len(missing), missing[0])
        return None
    merged = merged.iloc[np.argsort(merged["file"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    write_manifest(merged, sset.manifest)
    return merged


# --------------------------------------------------------------------------- contact sheet
def _read_rgb(path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(3, H, W) uint8 of an image file, resized to ``size`` = (w, h) when given."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        return np.asarray(im.resize(size) if size is not None else im).transpose(2, 0, 1)


def contact_sheet(out_dir: str | Path, manifest: pd.DataFrame, source_paths: dict, n_ids: int = 12,
                  max_cols: int = 16) -> Path:
    """PNG with one row per identity (first ``n_ids``): a source image, a gap, then its synthesized images."""
    from reid_aug.utils.images import image_grid, save_png

    sset = SynthesizedSet(out_dir)
    pids = list(dict.fromkeys(manifest["pid"].tolist()))[:n_ids]
    first = _read_rgb(sset.images / manifest["file"].iloc[0])
    h, w = first.shape[1:]
    k = min(int(manifest.groupby("pid").size().max()), max_cols)
    pad, gap = 2, 8
    sources = np.full((len(pids), 3, h, w), 255, np.uint8)
    synthesized = np.full((k, len(pids), 3, h, w), 255, np.uint8)         # one (B,3,H,W) column per k
    for r, pid in enumerate(pids):
        rows = manifest[manifest["pid"] == pid].head(k)
        src = source_paths.get(rows["source"].iloc[0])
        if src is not None and Path(src).is_file():
            sources[r] = _read_rgb(src, (w, h))
        for c, f in enumerate(rows["file"]):
            synthesized[c, r] = _read_rgb(sset.images / f)
    left = image_grid([sources], pad=pad)
    right = image_grid(list(synthesized), pad=pad)
    spacer = np.full((left.shape[0], gap - pad, 3), 255, np.uint8)          # the gap after the source column
    return save_png(np.concatenate([left, spacer, right], axis=1), sset.contact_sheet)
