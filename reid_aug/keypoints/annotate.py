"""``reid-aug annotate``: estimate 18-joint poses for every image of a Market-layout dataset.

Writes ``<name>-annotation-train.csv`` (bounding_box_train) and ``<name>-annotation-test.csv``
(bounding_box_test and query) in the format :mod:`reid_aug.keypoints.annotations` reads, in each
image's own pixel coordinates, plus ``annotate-report.json``. Where they go:

- ``--out DIR``, or the dataset's own ``annotations/`` when its folder is writable, else
  ``$REID_AUG_CACHE/annotations/<dataset>-<hash>/``;
- outside the dataset, a pointer ``$REID_AUG_CACHE/annotations/pointers.json`` (image folder ->
  annotation folder) lets every command find them (:func:`recorded_annotations`).

Work goes across ``workers`` processes (one estimator each). Rows are appended to a partial file as they
come, so an interrupted run continues where it stopped; a corrupt image is reported by name and skipped.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid_aug.config import ConfigError, to_dict
from reid_aug.keypoints.annotations import format_annotations, parse_annotation_text, write_annotations
from reid_aug.keypoints.skeleton import MISSING, TORSO_JOINTS
from reid_aug.utils.io import atomic_write_text

log = logging.getLogger(__name__)

PARTIAL = ".annotate-partial.csv"
PARTIAL_INFO = ".annotate-partial.json"
FAILED = ".annotate-failed.json"
REPORT = "annotate-report.json"
FILE_SPLITS = {"train": ("train",), "test": ("gallery", "query")}


@dataclass(frozen=True)
class AnnotateConfig:
    """``recipes/annotate.yaml``; the values were chosen on Market-1501 train images (benchmarks/results/annotate/)."""

    visibility: float = 0.3   # a joint below this BlazePose visibility becomes -1
    pad: float = 0.75         # the crop sits on a square canvas pad x its longer side larger on each side
    frame: int = 384          # ... resized to frame x frame pixels for the estimator
    openpose_visibility: bool = True    # drop the joints OpenPose would not report at the pose's view (the face
                                        # of a back view; reid_aug.keypoints.blazepose.openpose_visibility)
    workers: int = 0          # estimator processes; 0 = one per CPU core
    chunk: int = 16           # images per task sent to a worker

    def __post_init__(self):
        checks = [("visibility", 0.0 <= self.visibility <= 1.0, "must be in [0, 1]"),
                  ("pad", 0.0 <= self.pad <= 3.0, "must be in [0, 3]"),
                  ("frame", 64 <= self.frame <= 2048, "must be in [64, 2048]"),
                  ("workers", self.workers >= 0, "must be >= 0"), ("chunk", self.chunk >= 1, "must be >= 1")]
        for name, ok, what in checks:
            if not ok:
                raise ConfigError(f"annotate {name}={getattr(self, name)!r}: {what}")

    @property
    def estimator_settings(self) -> dict:
        """What decides the keypoints (a partial run continues only with the same)."""
        out = {"estimator": "mediapipe-pose-full", "visibility": self.visibility, "pad": self.pad, "frame": self.frame}
        if self.openpose_visibility:
            out["openpose_visibility"] = True
        return out


def load_annotate_config(recipe=None, overrides=()) -> AnnotateConfig:
    from reid_aug.config import load_config

    return load_config(AnnotateConfig, recipe or "annotate", list(overrides))


# --------------------------------------------------------------------------- where files go
def _cache_root() -> Path:
    return Path(os.environ.get("REID_AUG_CACHE") or Path.home() / ".cache" / "reid-aug") / "annotations"


def _pointer_file() -> Path:
    return _cache_root() / "pointers.json"


def recorded_annotations(image_root: Path) -> Path | None:
    """The annotation folder ``annotate`` recorded for a dataset whose own folder could not hold it."""
    try:
        pointers = json.loads(_pointer_file().read_text())
    except (OSError, ValueError):
        return None
    found = pointers.get(str(Path(image_root).resolve()))
    return Path(found) if found and Path(found).is_dir() else None


def _record_pointer(image_root: Path, dest: Path) -> None:
    path = _pointer_file()
    try:
        pointers = json.loads(path.read_text())
    except (OSError, ValueError):
        pointers = {}
    pointers[str(Path(image_root).resolve())] = str(dest.resolve())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(pointers, indent=1, sort_keys=True) + "\n")


def _writable(folder: Path) -> bool:
    """Whether we may write into ``folder`` (or create it): a folder without write permission bits counts as
    read-only even for root, who could write it anyway -- a dataset marked read-only is left alone."""
    import stat

    target = folder if folder.exists() else folder.parent
    try:
        mode = target.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(target, os.W_OK | os.X_OK)


def destination(root: Path, out: str | os.PathLike | None) -> tuple[Path, bool]:
    """``(folder, pointer)``: where the annotation files go, and whether a pointer must lead readers there."""
    if out is not None:
        return Path(out), True
    own = root / "annotations"
    if _writable(own):
        return own, False
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
    return _cache_root() / f"{root.name}-{digest}", True


def output_files(dest: Path, name: str, overwrite: bool) -> dict[str, Path]:
    """``{"train": path, "test": path}``; refuses (before any work) to replace existing files unless ``overwrite``."""
    found = {k: sorted(dest.glob(f"*annotation-{k}.csv")) if dest.is_dir() else [] for k in FILE_SPLITS}
    existing = [p for ps in found.values() for p in ps]
    if existing and not overwrite:
        raise ConfigError(f"{dest} already holds {', '.join(p.name for p in existing)}; pass --overwrite to "
                          f"replace them, or --out DIR to write elsewhere")
    return {k: (found[k][0] if len(found[k]) == 1 else dest / f"{name}-annotation-{k}.csv") for k in FILE_SPLITS}


# --------------------------------------------------------------------------- workers
_WORKER: dict = {}   # this process's estimator and visibility threshold


def _init_worker(cfg: AnnotateConfig) -> None:
    from reid_aug.keypoints.blazepose import BlazePose

    try:
        _WORKER.update(estimator=BlazePose(cfg.pad, cfg.frame), visibility=cfg.visibility,
                       openpose_visibility=cfg.openpose_visibility)
    except Exception as e:  # noqa: BLE001 - a Pool re-spawns workers whose initializer fails, forever:
        _WORKER["error"] = e  # keep the error and raise it from the first task instead


def _estimate_chunk(items: list[tuple[str, str]]) -> list[tuple[str, list | None, str | None]]:
    """``[(name, path)]`` -> ``[(name, keypoints (18, 2) as lists or None, error or None)]`` in the worker."""
    from PIL import Image

    from reid_aug.keypoints.blazepose import openpose_visibility, to_openpose18

    if "error" in _WORKER:
        raise _WORKER["error"]
    out = []
    for name, path in items:
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001 - any decoder failure: report the file, go on
            out.append((name, None, f"{type(e).__name__}: {e}"))
            continue
        kp = to_openpose18(_WORKER["estimator"].points(rgb), rgb.shape[:2], _WORKER["visibility"])
        if _WORKER.get("openpose_visibility"):
            kp = openpose_visibility(kp[None])[0]
        out.append((name, kp.tolist(), None))
    return out


# --------------------------------------------------------------------------- resume state
class _Partial:
    """The rows written so far (``.annotate-partial.csv``, appended and flushed per chunk) and the failures."""

    def __init__(self, dest: Path, settings: dict, overwrite: bool):
        self.rows_path, self.info_path, self.failed_path = dest / PARTIAL, dest / PARTIAL_INFO, dest / FAILED
        self.rows: dict[str, np.ndarray] = {}
        self.failed: dict[str, str] = {}
        if self.rows_path.is_file() and not overwrite:
            before = json.loads(self.info_path.read_text()) if self.info_path.is_file() else None
            if before != settings:
                raise ConfigError(f"{self.rows_path} was written with other settings ({before}); run with the same "
                                  f"settings to continue it, or --overwrite to start again")
            self.rows = _read_partial_rows(self.rows_path)
            if self.failed_path.is_file():
                self.failed = json.loads(self.failed_path.read_text())
        else:
            dest.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.info_path, json.dumps(settings, sort_keys=True))
            atomic_write_text(self.rows_path, format_annotations({}))
            self.failed_path.unlink(missing_ok=True)
        self._fh = open(self.rows_path, "a")

    def add(self, results) -> None:
        lines = []
        for name, kp, error in results:
            if error is not None:
                self.failed[name] = error
                log.warning("cannot read %s (%s): skipped", name, error)
            else:
                self.rows[name] = np.asarray(kp, np.int16)
                lines.append(format_annotations({name: self.rows[name]}).split("\n", 1)[1])
        self._fh.write("".join(lines))
        self._fh.flush()
        if any(e is not None for _, _, e in results):
            atomic_write_text(self.failed_path, json.dumps(self.failed, indent=1))

    def close(self) -> None:
        self._fh.close()

    def remove(self) -> None:
        for p in (self.rows_path, self.info_path, self.failed_path):
            p.unlink(missing_ok=True)


def _read_partial_rows(path: Path) -> dict[str, np.ndarray]:
    """Rows of a partial file; a last line cut by a kill is dropped (it is estimated again)."""
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return parse_annotation_text(text, path, height=None, width=None)


# --------------------------------------------------------------------------- the job
def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _run_estimator(todo: list[tuple[str, str]], cfg: AnnotateConfig, partial: _Partial) -> None:
    """Estimate ``todo`` across ``cfg.workers`` processes (in this process for one), with a progress bar."""
    from tqdm import tqdm

    from reid_aug.runtime import machine_cpus

    workers = min(cfg.workers or machine_cpus(), max(1, len(todo) // cfg.chunk))
    bar = tqdm(total=len(todo), desc="annotate", unit="img", dynamic_ncols=True, smoothing=0.05)
    try:
        if workers <= 1:
            _init_worker(cfg)
            results = map(_estimate_chunk, _chunks(todo, cfg.chunk))
            for res in results:
                partial.add(res)
                bar.update(len(res))
            return
        import multiprocessing as mp

        # spawn: MediaPipe's graph threads do not survive a fork
        with mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(cfg,)) as pool:
            for res in pool.imap(_estimate_chunk, _chunks(todo, cfg.chunk)):
                partial.add(res)
                bar.update(len(res))
    finally:
        bar.close()


def annotate_dataset(dataset, cfg: AnnotateConfig | None = None, out=None, overwrite: bool = False,
                     limit: int | None = None) -> dict:
    """Annotate every image of ``dataset`` (``market``, ``toy`` or a folder); returns the report.

    ``limit`` annotates only the first N images of each file (a quick look; the report says so).
    Raises :class:`ConfigError` before any work when files exist (without ``overwrite``) and
    :class:`~reid_aug.keypoints.blazepose.PoseExtraMissing` without MediaPipe.
    """
    from reid_aug.dataset.market import load_dataset, resolve_dataset_root
    from reid_aug.keypoints.blazepose import require_mediapipe

    cfg = cfg or load_annotate_config()
    require_mediapipe()          # before any file is touched
    root = resolve_dataset_root(dataset)
    index = load_dataset(root, annotations_dir=False)
    dest, pointer = destination(root, out)
    files = output_files(dest, root.name, overwrite)
    wanted = {k: index.table[index.table["split"].isin(s)] for k, s in FILE_SPLITS.items()}
    if limit is not None:
        wanted = {k: t.head(limit) for k, t in wanted.items()}
    partial = _Partial(dest, cfg.estimator_settings, overwrite)
    done = set(partial.rows) | set(partial.failed)
    todo = [(r.name, r.path) for t in wanted.values() for r in t.itertuples() if r.name not in done]
    if done:
        log.info("continuing: %d image(s) already annotated in %s, %d to go", len(done), partial.rows_path, len(todo))
    start = time.monotonic()
    try:
        _run_estimator(todo, cfg, partial)
    finally:
        partial.close()
    seconds = time.monotonic() - start
    for k, table in wanted.items():
        write_annotations(files[k], {n: partial.rows[n] for n in table["name"] if n in partial.rows})
    report = _report(root, dest, files, wanted, partial, cfg, seconds, len(todo), limit)
    atomic_write_text(dest / REPORT, json.dumps(report, indent=1) + "\n")
    partial.remove()
    if pointer:
        _record_pointer(index.image_root, dest)
    return report


def _report(root, dest, files, wanted, partial, cfg, seconds, n_run, limit) -> dict:
    names = [n for t in wanted.values() for n in t["name"]]
    kps = np.stack([partial.rows[n] for n in names if n in partial.rows]) if partial.rows else np.zeros((0, 18, 2))
    found = kps[..., 0] != MISSING
    valid = found[:, list(TORSO_JOINTS)].all(axis=1) if len(kps) else np.zeros(0, bool)
    from reid_aug.keypoints.skeleton import KEYPOINT_NAMES

    return {
        "dataset": str(root), "annotations": str(dest.resolve()), "files": {k: str(p) for k, p in files.items()},
        "settings": {**cfg.estimator_settings, **to_dict(cfg)}, "limit": limit,
        "images": len(names), "annotated": int(len(kps)), "failed": dict(partial.failed),
        "person_found": float(found.any(axis=1).mean()) if len(kps) else 0.0,
        "valid_share": float(valid.mean()) if len(kps) else 0.0,
        "detection_rate": {KEYPOINT_NAMES[j]: float(found[:, j].mean()) if len(kps) else 0.0 for j in range(18)},
        "seconds_this_run": round(seconds, 2), "images_this_run": n_run,
        "images_per_second": round(n_run / seconds, 2) if seconds > 0 and n_run else None,
    }


def format_report(report: dict) -> str:
    """The report's first line says what happened; then where the files are."""
    failed = len(report["failed"])
    rate = report["images_per_second"]
    lines = [f"annotated {report['annotated']} of {report['images']} images: a person in "
             f"{report['person_found']:.1%}, valid for pairs (both shoulders and hips) {report['valid_share']:.1%}"
             + (f"; {failed} unreadable image(s) skipped" if failed else "")
             + (f"; {rate} images/s" if rate else "")]
    lines += [f"  {k}: {p}" for k, p in report["files"].items()]
    if report.get("limit"):
        lines.append(f"  (--limit {report['limit']}: only the first images of each file)")
    return "\n".join(lines)
