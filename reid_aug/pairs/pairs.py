"""Training and test pairs for pose transfer.

Training pairs follow Deformable GAN / PATN: every ordered pair ``(from, to)`` of two different
images of the same identity in the train split, keeping only images whose two shoulders and
two hips are all annotated (``pose_ok``). On Market-1501 that is 263,632 pairs over 12,116
images of 745 identities.

Test pairs come from the dataset's ``*pairs-test.csv`` (header ``from,to``) when there is one,
else they are sampled with a seed. Different row orders give different test sets, so every
consumer records ``info = {source, seed, sha256, n}`` next to its results.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from reid_aug.errors import DatasetError
from reid_aug.utils.io import sha256_lines

log = logging.getLogger(__name__)


def _same_id_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """All ordered pairs of different images with the same pid, grouped by pid, in ``rows`` order."""
    src, tgt = [], []
    names = rows["name"].to_numpy()
    for _, idx in rows.groupby("pid", sort=True).indices.items():
        n = len(idx)
        if n < 2:
            continue
        ii, jj = np.meshgrid(idx, idx, indexing="ij")
        keep = ii != jj
        src.append(names[ii[keep]])
        tgt.append(names[jj[keep]])
    if not src:
        return pd.DataFrame({"from": pd.Series(dtype=str), "to": pd.Series(dtype=str)})
    return pd.DataFrame({"from": np.concatenate(src), "to": np.concatenate(tgt)})


def train_pair_pool(index) -> pd.DataFrame:
    """The train rows that pairs are drawn from: ``pose_ok`` images of normal identities, sorted by name.

    On Market-1501: 12,116 images of 745 identities (4 of them are an identity's only such image
    and so take part in no pair).
    """
    train = index.split("train")
    return train[train["pose_ok"] & (train["kind"] == "normal")].sort_values("name", kind="stable")


def train_pairs(index) -> pd.DataFrame:
    """Same-identity ordered pairs (no self pairs) among the :func:`train_pair_pool` images.

    Returns a DataFrame with columns ``from``, ``to`` (image names), ordered by pid, then source
    name, then target name.
    """
    pool = train_pair_pool(index)
    pairs = _same_id_pairs(pool)
    log.info("%d training pairs over %d images of %d identities", len(pairs), len(pool), pool["pid"].nunique())
    return pairs


def pairs_sha256(pairs: pd.DataFrame) -> str:
    """sha256 of the ordered ``from,to`` lines (the identity of a test set)."""
    return sha256_lines(f"{a},{b}" for a, b in zip(pairs["from"], pairs["to"]))


def read_pairs_csv(path: str | Path) -> pd.DataFrame:
    """Read a ``from,to`` pair CSV; :class:`DatasetError` for a missing file or wrong header."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"pair file {path} not found")
    try:
        with open(path, encoding="utf-8") as f:
            header = f.readline().strip()
    except UnicodeDecodeError:
        raise DatasetError(f"{path} is not a pair CSV: it is not UTF-8 text (a binary or damaged file)") from None
    if header.replace(" ", "") != "from,to":
        raise DatasetError(f"{path}:1: expected header 'from,to', found {header!r}")
    pairs = pd.read_csv(path, dtype=str, skipinitialspace=True, keep_default_na=False)
    pairs.columns = [c.strip() for c in pairs.columns]
    empty = (pairs["from"] == "") | (pairs["to"] == "")
    if empty.any():
        line = int(np.flatnonzero(empty.to_numpy())[0]) + 2
        raise DatasetError(f"{path}:{line}: a pair with an empty name; each row must be FROM_NAME,TO_NAME")
    return pairs[["from", "to"]].reset_index(drop=True)


def test_pairs(index, pairs_csv: str | Path | None = None, n: int = 12000,
               seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Test pairs and their provenance ``info = {source, seed, sha256, n}``.

    - ``pairs_csv`` given, or the dataset has ``annotations/*pairs-test.csv``: read it (all rows;
      ``n`` and ``seed`` are ignored, ``info["seed"]`` is None). Names absent from the dataset are
      an error.
    - otherwise: ``n`` ordered same-identity pairs (no self pairs) drawn without replacement with
      ``numpy.random.default_rng(seed)`` from the gallery images of normal identities with
      ``pose_ok`` (fewer if there are not that many); ``info["source"] = "sampled"``.
    """
    csv = Path(pairs_csv) if pairs_csv is not None else index.test_pairs_csv
    if csv is not None:
        pairs = read_pairs_csv(csv)
        known = set(index.table["name"])
        unknown = sorted(set(pairs["from"]) - known | set(pairs["to"]) - known)
        if unknown:
            raise DatasetError(f"{csv}: {len(unknown)} image name(s) are not in the dataset at {index.image_root}, "
                               f"e.g. {unknown[:3]}; is this the pair file of another dataset?")
        no_pose = (~pairs["to"].isin(set(index.keypoints))).sum()
        if no_pose:
            log.warning("%s: %d pair(s) have a target without keypoints (all-missing pose)", csv, no_pose)
        source, used_seed = str(csv), None
    else:
        gallery = index.split("gallery")
        rows = gallery[gallery["pose_ok"] & (gallery["kind"] == "normal")].sort_values("name", kind="stable")
        candidates = _same_id_pairs(rows)
        if len(candidates) == 0:
            raise DatasetError(f"no test pairs for {index.image_root}: no *pairs-test.csv and no two annotated "
                               f"gallery images of one identity; pass a pair file with --pairs")
        rng = np.random.default_rng(seed)
        take = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
        pairs = candidates.iloc[take].reset_index(drop=True)
        if len(pairs) < n:
            log.warning("only %d test pairs available (asked for %d)", len(pairs), n)
        source, used_seed = "sampled", int(seed)
    info = {"source": source, "seed": used_seed, "sha256": pairs_sha256(pairs), "n": int(len(pairs))}
    return pairs, info


# Not a pytest test, even when a test module imports it by name.
test_pairs.__test__ = False
