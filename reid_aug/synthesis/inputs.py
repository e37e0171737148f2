"""Which generator, which dataset, which folder: the choices ``synthesize`` makes for the user.

- No ``generator`` (no ``--run`` / ``--checkpoint``): the newest *finished* generator run under
  ``runs/`` (:func:`reid_aug.rundir.finished_generator_runs`); none there is a
  :class:`~reid_aug.errors.RunSelectionError` that says how to train one. Never the toy data.
- No ``dataset``: the one the generator was trained on (``run.json`` ``dataset``, else the
  checkpoint's record).
- No ``out``: ``RUN/synthesized-K`` (beside a checkpoint file: ``synthesized-K`` in its folder);
  ``synthesized-imgK`` with ``--per-image K``; tagged ``-<dataset>`` for another dataset than the
  generator's, ``-n<N>s<S>`` for the low-data regime, ``-bank-<dataset>`` for another pose bank.
- ``pose_bank``: the target poses of another dataset (its train split's pose bank); the dataset's
  own folder is the default bank.
- A generator trained on another dataset than the target is a warning naming both datasets, unless
  the user states the choice (``--cross-dataset`` / ``cross_dataset: true``): then one info line.

Each choice made for the user is said in one log line, with how to choose otherwise.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
from pathlib import Path

from reid_aug.errors import RecordError, RunSelectionError, SynthesisError
from reid_aug.rundir import RUNS_ROOT, GeneratorRun, checkpoint_file, dataset_label, finished_generator_runs
from reid_aug.synthesis.config import SynthesisConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """The resolved inputs of a run: ``cfg`` with ``generator``, ``dataset`` and ``out`` filled in,
    the loaded generator, the dataset folder, and what the generator was trained on."""

    cfg: SynthesisConfig
    gen: object
    root: Path
    trained_on: dict
    cross_dataset: bool | None
    bank: object = None
    bank_root: Path | None = None

    @property
    def info(self) -> dict:
        """For the descriptor's ``info``: the generator's training dataset and whether this is cross-dataset."""
        return {"generator_dataset": self.trained_on.get("spec"), "generator_dataset_root": self.trained_on.get("root"),
                "cross_dataset": self.cross_dataset,
                **({"annotations": self.annotations} if self.annotations else {})}

    @property
    def annotations(self) -> str | None:
        """The keypoint folder the generator trained with (``train-generator --annotations``), which its own
        dataset's sources and target poses are read from too; None: the dataset's own keypoints."""
        return None if self.cross_dataset else self.trained_on.get("annotations")

    @property
    def bank_run(self) -> dict | None:
        """For the descriptor's ``run``: which external pose bank (None: the dataset's own)."""
        if self.bank is None:
            return None
        return {"dataset": dataset_label(self.cfg.pose_bank), "fingerprint": self.bank.fingerprint(),
                "n_poses": int(len(self.bank))}


def _finished_at(run: Path) -> str:
    stamp = GeneratorRun(run).checkpoint.stat().st_mtime
    return datetime.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M")


def pick_generator_run(root: str | Path = RUNS_ROOT) -> Path:
    """The newest finished generator run under ``root``; :class:`RunSelectionError` when there is none."""
    root = Path(root)
    finished = finished_generator_runs(root)
    if finished:
        return finished[0]
    unfinished = sorted(p.parent for p in root.glob("*/checkpoint.pt")) if root.is_dir() else []
    where = f"{root}/ (in {Path.cwd()})" if not root.is_absolute() else str(root)
    told = (f" ({', '.join(map(str, unfinished[:3]))} not finished: continue with `reid-aug train-generator "
            f"DATASET --out RUN --resume`)" if unfinished else "")
    raise RunSelectionError(f"no finished generator run under {where}{told}; train one with `reid-aug "
                            f"train-generator market` (on a CPU: --recipe pg2_market_cpu), or pass --run RUN_DIR "
                            f"or --checkpoint FILE")


def trained_on(generator: Path, gen) -> dict:
    """``{"spec", "root"[, "annotations"]}`` of the dataset the generator was trained on ({} when not recorded):
    the checkpoint's record, completed by the run folder's ``run.json``."""
    from reid_aug.records import read_json_object

    info = {k: v for k, v in dict(getattr(gen, "dataset", {}) or {}).items() if k in ("spec", "root", "annotations")
            and v}
    run_json = GeneratorRun(generator if generator.is_dir() else generator.parent).run_json
    if run_json.is_file() and not {"spec", "root"} <= set(info):
        try:
            rec = read_json_object(run_json, "a generator run record (run.json)")
        except RecordError as e:
            log.warning("%s", e)
            return info
        if rec.get("dataset"):
            info.setdefault("spec", str(rec["dataset"]))
        if isinstance(rec.get("data"), dict) and rec["data"].get("root"):
            info.setdefault("root", str(rec["data"]["root"]))
    return info


def same_dataset(trained: dict, spec: str, root: Path) -> bool | None:
    """Whether ``trained`` (see :func:`trained_on`) is the target dataset; None when unknown.

    The same folder, or the same named dataset (``market``, ``toy``) wherever its folder is now."""
    if not trained:
        return None
    if trained.get("root") and Path(trained["root"]).expanduser().resolve() == Path(root).resolve():
        return True
    from reid_aug.dataset.market import is_toy_spec

    def named(s) -> str | None:
        return "market" if s == "market" else "toy" if is_toy_spec(s) else None

    return named(spec) is not None and named(trained.get("spec")) == named(spec)


def _say_dataset_choice(trained: dict, spec: str, root: Path, stated: bool) -> bool | None:
    """Warn (or, when ``stated``, inform) about a generator from another dataset; returns cross-dataset."""
    same = same_dataset(trained, spec, root)
    if same is None:
        log.info("the generator's training dataset is not recorded; cannot check that it is %s", spec)
        return None
    if same:
        return False
    theirs = f"{dataset_label(trained['spec']) if trained.get('spec') else '?'} ({trained.get('root', '?')})"
    ours = f"{dataset_label(spec)} ({root})"
    if stated:
        log.info("cross-dataset synthesis: a generator trained on %s writes images for %s", theirs, ours)
    else:
        log.warning("the generator was trained on %s but synthesizes images for %s: its pose transfer may not "
                    "carry over; pass --cross-dataset (config cross_dataset: true) if this is intended, or "
                    "--dataset to synthesize for its own dataset", theirs, ours)
    return True


def _default_out(generator: Path, cfg: SynthesisConfig, dataset: str, cross: bool | None, external_bank: bool) -> Path:
    """``RUN/synthesized-K`` or ``RUN/synthesized-imgK``, tagged by dataset, subset and pose bank."""
    run = GeneratorRun(generator if generator.is_dir() else generator.parent)
    base = run.synthesized_per_image(cfg.per_image) if cfg.per_image else run.synthesized(cfg.poses_per_id)
    tags = [dataset_label(dataset)] if cross else []
    if cfg.subset:
        tags.append("n{}s{}".format(*cfg.subset))
    if external_bank:
        tags.append(f"bank-{dataset_label(cfg.pose_bank)}")
    return base.with_name("-".join([base.name, *tags]))


def resolve_bank(spec: str | None, root: Path):
    """``(PoseBank, its root)`` of another dataset's train split; ``(None, None)`` for none or the dataset itself."""
    if spec is None:
        return None, None
    from reid_aug.dataset.market import load_dataset, resolve_dataset_root
    from reid_aug.synthesis.posebank import PoseBank

    bank_root = resolve_dataset_root(spec)
    if bank_root.resolve() == Path(root).resolve():
        return None, None
    bank = PoseBank.from_index(load_dataset(bank_root))
    log.info("target poses from the pose bank of %s (%s): %d training poses with a full torso",
             dataset_label(spec), bank_root, len(bank))
    return bank, bank_root


def resolve_inputs(cfg: SynthesisConfig, device) -> Inputs:
    """Pick the generator (newest finished run when none is given), load it on ``device``, pick the
    dataset (the generator's when none is given), the pose bank and the output folder; say what was picked."""
    from reid_aug.dataset.market import resolve_dataset_root
    from reid_aug.generator.inference import load_generator

    picked = cfg.generator is None
    generator = pick_generator_run() if picked else Path(cfg.generator)
    gen = load_generator(generator, device=device)        # CheckpointError for the wrong kind of file
    trained = trained_on(generator, gen)
    dataset = cfg.dataset
    if dataset is None:
        dataset = trained.get("spec")
        if dataset is None:
            raise SynthesisError(f"{checkpoint_file(generator)} does not record the dataset it was trained on; "
                                 f"pass --dataset market|toy|PATH")
    when = f" (finished {_finished_at(generator)})" if picked else ""
    if picked or cfg.dataset is None:
        log.info("using generator %s%s and %s dataset %s; pass %s to choose", generator, when,
                 "its" if cfg.dataset is None else "the", dataset,
                 "/".join(f for f, auto in (("--run", picked), ("--dataset", cfg.dataset is None)) if auto))
    root = resolve_dataset_root(dataset)
    cross = _say_dataset_choice(trained, dataset, root, bool(cfg.cross_dataset))
    bank, bank_root = resolve_bank(cfg.pose_bank, root)
    out = cfg.out if cfg.out is not None else _default_out(generator, cfg, dataset, cross, bank is not None)
    cfg = dataclasses.replace(cfg, generator=str(generator), dataset=str(dataset), out=str(out))
    return Inputs(cfg, gen, Path(root), trained, cross, bank, bank_root)
