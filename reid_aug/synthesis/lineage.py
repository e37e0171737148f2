"""What the generator saw: the leak check of the low-data regime (``synthesize --train-per-id N``).

In the low-data regime only N real images per identity exist (:mod:`reid_aug.dataset.regime`). A
generator trained on images this regime drops has seen those identities' other images: its output
carries information the regime forbids. So:

- a generator trained on **another dataset** (``cross-dataset``) is leak-free by construction;
- a generator of **this dataset** must have been trained on a subset inside the kept one
  (``kept-subset``); its subset is read from its checkpoint config (``data.train_per_id`` and
  ``data.subset_seed``, also accepted as ``subsample_seed``), the checkpoint's dataset record or
  the run's ``run.json`` ``data``; a generator that records none was trained on every image;
- anything else is refused with one line, unless ``allow_leak`` (``--allow-leak``): then the run
  goes on, warns, and the descriptor says ``leak: true``.

Without a subset every image is allowed (``all-images``). A generator whose training dataset is
not recorded counts as this dataset's unless ``--cross-dataset`` states otherwise.
"""
from __future__ import annotations

import logging
from pathlib import Path

from reid_aug.dataset.regime import saw_only
from reid_aug.errors import RecordError, SynthesisError
from reid_aug.rundir import GeneratorRun, dataset_label

log = logging.getLogger(__name__)

_SEED_KEYS = ("subset_seed", "subsample_seed")


def _subset_in(record) -> tuple[int, int] | None | bool:
    """``(per_id, seed)`` from a mapping or dataclass with ``train_per_id``; ``(0, 0)`` when it says
    every image; False when it says nothing."""
    if record is None:
        return False
    get = record.get if isinstance(record, dict) else (lambda k, d=None: getattr(record, k, d))
    per_id = get("train_per_id", None)
    if per_id is None:
        return False
    seed = next((get(k) for k in _SEED_KEYS if get(k, None) is not None), 0)
    return (int(per_id or 0), int(seed or 0))


def _run_record(generator: Path) -> dict:
    from reid_aug.records import read_json_object

    run_json = GeneratorRun(generator if generator.is_dir() else generator.parent).run_json
    if not run_json.is_file():
        return {}
    try:
        return read_json_object(run_json, "a generator run record (run.json)")
    except RecordError as e:
        log.warning("%s", e)
        return {}


def generator_subset(gen, generator: str | Path) -> tuple[int, int]:
    """``(train_per_id, seed)`` of the images the generator was trained on; ``(0, 0)``: every image
    (also when nothing is recorded)."""
    rec = _run_record(Path(generator))
    config = getattr(gen, "config", None)
    for where in (getattr(config, "data", None), getattr(gen, "dataset", None), rec.get("data"),
                  (rec.get("config") or {}).get("data") if isinstance(rec.get("config"), dict) else None):
        found = _subset_in(where)
        # every image (0) is also what a config says by default: a record further on may still name a subset
        if found is not False and found[0]:
            return found
    return (0, 0)


def describe_subset(subset) -> str:
    per_id, seed = subset or (0, 0)
    return f"{per_id} image(s) per identity (subset seed {seed})" if per_id else "every training image"


def generator_regime(inputs, index, cfg) -> dict:
    """``{"generator_regime", "generator_subset", "leak"}`` for the descriptor's ``info``; raises a one-line
    :class:`SynthesisError` for a generator that saw images the regime drops (unless ``cfg.allow_leak``)."""
    cross = inputs.cross_dataset if inputs.cross_dataset is not None else (True if cfg.cross_dataset else None)
    if cross:
        return {"generator_regime": "cross-dataset", "generator_subset": None, "leak": False}
    theirs = generator_subset(inputs.gen, cfg.generator)
    record = {"generator_subset": {"train_per_id": theirs[0], "seed": theirs[1]}, "leak": False}
    if cfg.subset is None:
        return {"generator_regime": "all-images", **record}
    leaked = saw_only(index, theirs, cfg.subset)
    if not leaked:
        return {"generator_regime": "kept-subset", **record}
    n, s = cfg.subset
    what = (f"generator {cfg.generator} was trained on {describe_subset(theirs)} of "
            f"{dataset_label(cfg.dataset)}{'' if inputs.cross_dataset is False else ' (as far as it records)'}: "
            f"it saw {len(leaked)} image(s) that --train-per-id {n} --subset-seed {s} drops (e.g. {leaked[0]})")
    if not cfg.allow_leak:
        raise SynthesisError(f"{what}; train one on the kept images (`reid-aug train-generator DATASET --set "
                             f"data.train_per_id={n} --set data.subset_seed={s}`), use one trained on another "
                             f"dataset (--cross-dataset), or pass --allow-leak to go on (recorded as leak: true)")
    log.warning("LEAK: %s; going on because of --allow-leak: the descriptor records leak: true", what)
    return {"generator_regime": "leaking", **record, "leak": True, "leaked_images": len(leaked)}
