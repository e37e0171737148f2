"""The low-data regime: which real training images are kept when only N per identity are used.

One selection, used everywhere the regime matters (the Re-ID benchmark's ``data.train_per_id``,
the sources of ``synthesize --train-per-id``, the checks that a generator or a Re-ID model saw
only kept images)::

    kept = kept_train(index, per_id=2, seed=0)        # DataFrame: the kept rows of the train split
    record = subset_record(index, 2, 0)               # {"train_per_id", "seed", "n_kept", "n_train", "kept_sha256"}

Selection (bit-identical to the benchmark's ``_subsample`` of 0.2): the labelled training images
(``split == "train"``, ``pid > 0``) in the dataset table's order are grouped by identity (sorted
by pid); one ``numpy.random.default_rng(seed)`` walks the groups in that order and, for every
identity with more than ``per_id`` images, draws ``per_id`` of its row labels without replacement
(``rng.choice``); the kept rows keep the table's order. Identities with at most ``per_id``
images keep all of them and draw no number. ``per_id`` of 0 (or None) keeps every image.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reid_aug.utils.io import sha256_lines


def labelled_train(table: pd.DataFrame) -> pd.DataFrame:
    """The train split's labelled rows (junk ``-1`` and distractors ``0`` left out), in table order."""
    return table[(table["split"] == "train") & (table["pid"] > 0)]


def keep_per_identity(train: pd.DataFrame, per_id: int | None, seed: int = 0) -> pd.DataFrame:
    """At most ``per_id`` rows of ``train`` per identity (see the module docstring); all rows when
    ``per_id`` is 0 or None. ``train``: rows with a ``pid`` column, in the dataset table's order."""
    if not per_id or per_id <= 0:
        return train
    rng = np.random.default_rng(seed)
    keep = []
    for _, grp in train.groupby("pid", sort=True):
        idx = grp.index.to_numpy()
        if len(idx) > per_id:
            idx = np.sort(rng.choice(idx, size=per_id, replace=False))
        keep.append(idx)
    return train.loc[np.concatenate(keep)] if keep else train.iloc[:0]


def kept_train(index_or_table, per_id: int | None, seed: int = 0) -> pd.DataFrame:
    """The kept labelled training rows of a :class:`~reid_aug.dataset.market.DatasetIndex` (or its table)."""
    table = getattr(index_or_table, "table", index_or_table)
    return keep_per_identity(labelled_train(table), per_id, seed)


def kept_names_sha256(names) -> str:
    """sha256 of the sorted image names (one per line): which images a subset keeps."""
    return sha256_lines(sorted(str(n) for n in names))


def subset_record(index_or_table, per_id: int | None, seed: int = 0) -> dict:
    """What a record says about the subset: ``train_per_id`` (0 = all), ``seed``, ``n_kept``, ``n_train``
    (labelled training images) and ``kept_sha256`` (:func:`kept_names_sha256` of the kept names)."""
    table = getattr(index_or_table, "table", index_or_table)
    train = labelled_train(table)
    kept = keep_per_identity(train, per_id, seed)
    return {"train_per_id": int(per_id or 0), "seed": int(seed), "n_kept": int(len(kept)), "n_train": int(len(train)),
            "kept_sha256": kept_names_sha256(kept["name"])}


def saw_only(index_or_table, theirs: tuple[int | None, int], ours: tuple[int | None, int]) -> list[str]:
    """Names of training images that a model trained on the subset ``theirs`` = (per_id, seed) saw but the
    subset ``ours`` drops (empty: ``theirs`` is inside ``ours``, no leak)."""
    table = getattr(index_or_table, "table", index_or_table)
    train = labelled_train(table)
    seen = set(keep_per_identity(train, *theirs)["name"])
    allowed = set(keep_per_identity(train, *ours)["name"])
    return sorted(seen - allowed)
