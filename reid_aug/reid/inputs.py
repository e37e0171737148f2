"""What ``benchmark`` compares when the user names nothing: the newest synthesized set and its dataset.

The three documented commands chain as typed (``train-generator market``, ``synthesize
--poses-per-id 10``, ``benchmark --model resnet50``): each takes the previous one's newest output
under ``runs/`` and says in one line what it picked. Nothing is picked silently, and the toy dataset
is never a fallback: it is used only by ``demo`` and an explicit ``--dataset toy``.
"""
from __future__ import annotations

import logging
from pathlib import Path

from reid_aug.errors import RunSelectionError
from reid_aug.records import SynthesisDescriptor
from reid_aug.rundir import RUNS_ROOT, SynthesizedSet, synthesized_sets

log = logging.getLogger(__name__)


def resolve_benchmark_inputs(dataset, augmented_dir, baseline_only: bool = False,
                             root: str | Path = RUNS_ROOT) -> tuple[str, Path | None]:
    """``(dataset spec, synthesized set or None)`` for a benchmark.

    - ``augmented_dir`` None and not ``baseline_only``: the newest complete synthesized set under ``root``.
    - ``dataset`` None: the dataset the set was synthesized for (its ``synthesis.json``).
    - ``baseline_only``: no set; ``dataset`` must then be given.
    Raises :class:`RunSelectionError` where there is nothing to pick.
    """
    if baseline_only and augmented_dir is not None:
        raise RunSelectionError("--baseline-only and --augmented contradict each other: pass one of them")
    picked = False
    if augmented_dir is None and not baseline_only:
        sets = synthesized_sets(root)
        if not sets:
            raise RunSelectionError(
                f"nothing to benchmark: no synthesized set under {root}/ (a folder with synthesis.json and "
                f"manifest.csv). Run `reid-aug synthesize --poses-per-id 10` first, pass --augmented DIR, or pass "
                f"--baseline-only --dataset DATASET to train only the baseline")
        augmented_dir, picked = sets[0], True
    if dataset is None:
        if augmented_dir is None:
            raise RunSelectionError("--baseline-only needs --dataset (market, toy or a dataset folder)")
        dataset = _dataset_of(Path(augmented_dir))
    if picked:
        log.info("using synthesized set %s and its dataset %s; pass --augmented/--dataset to choose "
                 "(--baseline-only for no set)", augmented_dir, dataset)
    elif augmented_dir is None:
        log.info("--baseline-only: training the baseline on %s, no synthesized images", dataset)
    return str(dataset), (Path(augmented_dir) if augmented_dir is not None else None)


def _dataset_of(augmented_dir: Path) -> str:
    desc_file = SynthesizedSet(augmented_dir).descriptor
    if not desc_file.is_file():
        raise RunSelectionError(f"{augmented_dir} has no synthesis.json, so its dataset is unknown: pass --dataset")
    spec = SynthesisDescriptor.read(desc_file).dataset
    if not spec:
        raise RunSelectionError(f"{desc_file} does not record its dataset: pass --dataset")
    return spec
