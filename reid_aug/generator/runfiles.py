"""The files of a generator run folder besides the checkpoint: the guard against overwriting a run,
``config.yaml`` + ``run.json`` (the run record) and ``log.csv``. Paths come from
:class:`reid_aug.rundir.GeneratorRun`.

``run.json``::

    family, dataset, data {spec, root, n_pairs, pairs_sha256}, torch, world_size,
    [init_from {checkpoint, sha256, stages, networks, global_step}],
    complete (false while training; true once the last stage ended), trained (stages trained so far)
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from reid_aug.config import save_config
from reid_aug.errors import RecordError, TrainingError
from reid_aug.generator.identity import identity_record
from reid_aug.records import read_json_object, write_json
from reid_aug.rundir import GeneratorRun
from reid_aug.utils.io import atomic_write_text


def run_files(run: GeneratorRun) -> list[Path]:
    """The files that make a folder a run (any one of them is enough)."""
    return [p for p in (run.config, run.run_json, run.log_csv, run.checkpoint) if p.exists()]


def check_new_run(run: GeneratorRun, resume: bool) -> None:
    """Refuse to start over an existing run without ``--resume`` (called before anything is written)."""
    found = run_files(run)
    if found and not resume:
        raise TrainingError(f"{run.path} already holds a run ({', '.join(p.name for p in found)}); pass --resume "
                            f"to continue it, or --out NEW_FOLDER to start another")


def read_run_record(run: GeneratorRun) -> dict:
    """``run.json`` as a dict ({} when absent)."""
    if not run.run_json.is_file():
        return {}
    return read_json_object(run.run_json, "a generator run record (run.json)")


def write_run_files(cfg, family: str, dataset: str, run: GeneratorRun, data_info: dict, trained: list[str],
                    init_info: dict | None = None) -> None:
    """``config.yaml`` and ``run.json`` at the start of training (``complete`` false)."""
    identity = identity_record(cfg)      # before anything is written: a missing identity network fails cleanly
    save_config(cfg, run.config)
    try:
        old = read_run_record(run)
    except RecordError:
        old = {}
    info = {"family": family, "dataset": dataset, "data": data_info, "torch": torch.__version__,
            "world_size": int(os.environ.get("WORLD_SIZE", "1")), "complete": False, "trained": list(trained)}
    if identity:
        info["identity_model"] = identity
    init_info = init_info or old.get("init_from")   # a resumed init_from run keeps its record
    if init_info:
        info["init_from"] = init_info
    write_json(run.run_json, info)


def mark_run(run: GeneratorRun, complete: bool, trained: list[str]) -> None:
    """Record in ``run.json`` whether training finished and which stages are trained."""
    info = read_run_record(run)
    info.update(complete=bool(complete), trained=list(trained))
    write_json(run.run_json, info)


# --------------------------------------------------------------------------- log.csv
def log_columns(terms) -> tuple[str, ...]:
    """Columns of log.csv: means over each logging interval; empty where a term does not apply."""
    return ("stage", "step", "global_step", *terms, "pairs_per_s", "wall_s")


class CsvLog:
    """Append-only ``log.csv`` (flushed per row); on resume it is cut back to the checkpoint's rows."""

    def __init__(self, path: Path, columns: tuple[str, ...], keep_rows: int | None):
        self.path, self.columns = path, columns
        rows = self._read_rows()[:keep_rows] if keep_rows is not None else []
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(columns)
        w.writerows(rows)
        atomic_write_text(path, buf.getvalue())
        self.rows = len(rows)
        self._f = open(path, "a", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")

    def _read_rows(self) -> list[list[str]]:
        """The rows so far, in this log's columns (a log of an earlier version with other columns keeps its values
        by name; a column it lacks stays empty); drops a torn last line."""
        if not self.path.is_file():
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return []
        header = rows[0]
        return [[dict(zip(header, r)).get(c, "") for c in self.columns] for r in rows[1:] if len(r) == len(header)]

    def write(self, row: dict) -> None:
        self._w.writerow(["" if row.get(c) is None else row[c] for c in self.columns])
        self._f.flush()
        self.rows += 1

    def close(self) -> None:
        self._f.close()


class RunOutputs:
    """What rank 0 writes while training: ``log.csv`` rows, TensorBoard scalars and images."""

    def __init__(self, run: GeneratorRun, columns: tuple[str, ...], keep_rows: int | None, tensorboard: bool,
                 purge_step: int | None):
        import logging

        self.csv = CsvLog(run.log_csv, columns, keep_rows)
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run.tensorboard), purge_step=purge_step)
            except ImportError as e:  # tensorboard is optional at run time
                logging.getLogger(__name__).warning("TensorBoard unavailable (%s); writing log.csv and PNG grids "
                                                    "only", e)

    def add_row(self, row: dict, scalars: dict[str, float], global_step: int) -> int:
        """One log.csv row (+ the same numbers as TensorBoard scalars); returns the rows written so far."""
        self.csv.write(row)
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(k, v, global_step)
        return self.csv.rows

    def add_image(self, grid, global_step: int) -> None:
        if self.writer is not None:
            self.writer.add_image("samples", grid, global_step, dataformats="HWC")

    def close(self) -> None:
        self.csv.close()
        if self.writer is not None:
            self.writer.close()
