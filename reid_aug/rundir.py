"""The layout of every folder the toolkit writes, in one place.

A generator run (``train-generator``)::

    RUN/config.yaml  run.json  checkpoint.pt  log.csv  samples/step_XXXXXX.png  tb/
    RUN/eval/                 metrics.json  metrics.csv  samples.png   (the last trained stage)
    RUN/eval-<stage>/         the same for an earlier stage (e.g. eval-g1)
    RUN/synthesized-K/        a synthesized set (default place); synthesized-imgK/ for K per real image

A synthesized set (``synthesize``)::

    SET/synthesis.json  config.yaml  manifest.csv  [manifest.shard-i-of-n.csv]  contact_sheet.png  bounding_box_train/*.jpg
    SET/scores.csv      (filtered sets: Re-ID score of every image; manifest.csv then has a ``kept`` column)

A benchmark folder (``benchmark``)::

    OUT/config.yaml  results.json  results.csv  report.md  bars.png  models/<variant>_seed<S>.pt
    OUT/runs/<variant>_seed<S>/checkpoint.pt   (per-epoch resume state, deleted when the run is done)

Modules ask the classes below for paths instead of spelling file names themselves. The
``latest_*`` functions let the documented commands chain: ``synthesize`` finds the newest
finished generator run, ``benchmark`` the newest synthesized set.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

RUNS_ROOT = Path("runs")


def dataset_label(spec) -> str:
    """A short name for a dataset spec: ``market``, ``toy``, or a folder's name."""
    from reid_aug.dataset.market import is_toy_spec

    if is_toy_spec(spec):
        return "toy"
    text = str(spec)
    return text if text == "market" else Path(text).expanduser().resolve().name


@dataclasses.dataclass(frozen=True)
class _Folder:
    """A folder of a known layout; ``path`` may be given as a string."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))


@dataclasses.dataclass(frozen=True)
class GeneratorRun(_Folder):

    @classmethod
    def default(cls, recipe_stem: str, dataset) -> "GeneratorRun":
        """``runs/<recipe>-<dataset>``: two datasets trained with one recipe never share a folder."""
        return cls(RUNS_ROOT / f"{recipe_stem}-{dataset_label(dataset)}")

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def log_csv(self) -> Path:
        return self.path / "log.csv"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    def sample_png(self, global_step: int) -> Path:
        return self.samples / f"step_{global_step:06d}.png"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    def eval_dir(self, stage: str | None = None, last_stage: str | None = None, tag: str | None = None) -> "EvalDir":
        """``eval/`` for the last trained stage (or ``stage=None``), ``eval-<stage>/`` for an earlier one;
        ``tag`` (keypoints other than the run's, e.g. ``kp-dataset``) is appended: ``eval-kp-dataset/``."""
        earlier = stage is not None and last_stage is not None and stage != last_stage
        name = f"eval-{stage}" if earlier else "eval"
        return EvalDir(self.path / (f"{name}-{tag}" if tag else name))

    def synthesized(self, poses_per_id: int) -> Path:
        return self.path / f"synthesized-{poses_per_id}"

    def synthesized_per_image(self, per_image: int) -> Path:
        """The default set of ``synthesize --per-image K`` (K images per real image)."""
        return self.path / f"synthesized-img{per_image}"

    def exists(self) -> bool:
        """Anything of a run is there (a checkpoint, config, run record or log)."""
        return any(p.exists() for p in (self.checkpoint, self.config, self.run_json, self.log_csv))


def checkpoint_file(path: str | Path) -> Path:
    """A run folder -> its ``checkpoint.pt``; a file path is kept."""
    path = Path(path)
    return GeneratorRun(path).checkpoint if path.is_dir() else path


@dataclasses.dataclass(frozen=True)
class EvalDir(_Folder):

    @property
    def metrics_json(self) -> Path:
        return self.path / "metrics.json"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def samples_png(self) -> Path:
        return self.path / "samples.png"

    @property
    def partial(self) -> Path:
        return self.path / "partial.pt"


@dataclasses.dataclass(frozen=True)
class SynthesizedSet(_Folder):

    @property
    def descriptor(self) -> Path:
        return self.path / "synthesis.json"

    @property
    def manifest(self) -> Path:
        return self.path / "manifest.csv"

    @property
    def config(self) -> Path:
        """The resolved options of the last ``synthesize`` into this folder."""
        return self.path / "config.yaml"

    def shard_manifest(self, i: int, n: int) -> Path:
        return self.path / f"manifest.shard-{i}-of-{n}.csv"

    @property
    def images(self) -> Path:
        return self.path / "bounding_box_train"

    @property
    def contact_sheet(self) -> Path:
        return self.path / "contact_sheet.png"

    @property
    def scores(self) -> Path:
        """Per-image Re-ID scores of ``--filter`` / ``reid-aug filter``."""
        return self.path / "scores.csv"

    def complete(self) -> bool:
        return self.descriptor.is_file() and self.manifest.is_file()


@dataclasses.dataclass(frozen=True)
class BenchmarkDir(_Folder):

    @classmethod
    def default(cls, model: str, dataset, augmented_dir=None) -> "BenchmarkDir":
        """``runs/benchmark_<model>-<dataset>-<set>``: another model, dataset or synthesized set never lands in
        (or is blocked by) the same default folder. ``<set>`` is ``<run>-<set folder>`` or ``baseline``."""
        if augmented_dir is None:
            tag = "baseline"
        else:
            aug = Path(augmented_dir).expanduser().resolve()
            tag = f"{aug.parent.name}-{aug.name}"
        return cls(RUNS_ROOT / f"benchmark_{model}-{dataset_label(dataset)}-{tag}")

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def results_json(self) -> Path:
        return self.path / "results.json"

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    @property
    def report_md(self) -> Path:
        return self.path / "report.md"

    @property
    def bars_png(self) -> Path:
        return self.path / "bars.png"

    @property
    def curves_png(self) -> Path:
        """Rank-1 / mAP during training (``eval.curve_every``)."""
        return self.path / "curves.png"

    def model_file(self, tag: str) -> Path:
        """``models/<variant>_seed<S>.pt``."""
        return self.path / "models" / f"{tag}.pt"

    def resume_checkpoint(self, tag: str) -> Path:
        return self.path / "runs" / tag / "checkpoint.pt"


# --------------------------------------------------------------------------- discovery
def _newest(paths) -> list[Path]:
    return sorted(paths, key=lambda p: p.stat().st_mtime_ns, reverse=True)


def finished_generator_runs(root: str | Path = RUNS_ROOT) -> list[Path]:
    """Run folders under ``root`` whose training finished, newest first.

    Finished = ``run.json`` says ``"complete": true`` (written when the last stage ends); older
    runs without that field are asked through their checkpoint.
    """
    from reid_aug.records import read_json_object
    from reid_aug.errors import RecordError

    root = Path(root)
    out = []
    for ckpt in root.glob("*/checkpoint.pt") if root.is_dir() else ():
        run = GeneratorRun(ckpt.parent)
        try:
            info = read_json_object(run.run_json, "a generator run record") if run.run_json.is_file() else {}
        except RecordError:
            continue
        complete = info.get("complete")
        if complete is None:
            complete = _checkpoint_complete(ckpt)
        if complete:
            out.append(run.path)
    # by the checkpoint's time: a run folder's own mtime moves when a synthesized set is written into it
    return sorted(out, key=lambda p: GeneratorRun(p).checkpoint.stat().st_mtime_ns, reverse=True)


def _checkpoint_complete(ckpt: Path) -> bool:
    import torch

    try:
        obj = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - an unreadable checkpoint is not a finished run
        return False
    return bool(isinstance(obj, dict) and obj.get("complete"))


def synthesized_sets(root: str | Path = RUNS_ROOT) -> list[Path]:
    """Complete synthesized sets under ``root`` (any depth up to a run's ``synthesized-K``), newest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    sets = {p.parent for pattern in ("*/synthesis.json", "*/*/synthesis.json") for p in root.glob(pattern)}
    return _newest(s for s in sets if SynthesizedSet(s).complete())
