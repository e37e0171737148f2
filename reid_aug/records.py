"""Reading and writing the project's JSON/YAML/CSV records.

Every record (evaluation metrics, synthesis descriptor, benchmark results, run files) is read
through :func:`read_json` / :func:`read_yaml` / :func:`read_csv`: a binary, truncated or
malformed file becomes one :class:`~reid_aug.errors.RecordError` line naming the file, never a
``UnicodeDecodeError`` traceback. Typed records derive from :class:`Record`: a frozen dataclass
with a ``schema`` name and ``version``, written atomically and read back with readers for older
layouts of the same file.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from reid_aug.errors import RecordError
from reid_aug.utils.io import atomic_write_text

R = TypeVar("R", bound="Record")


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise RecordError(f"{path} does not exist (expected {what})")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"{path} is not {what}: it is not UTF-8 text (a binary or damaged file)") from None


def read_json(path: str | Path, what: str = "a JSON record") -> Any:
    """Parse a JSON file; any decode error is a :class:`RecordError` naming the file."""
    path = Path(path)
    text = _read_text(path, what)
    try:
        return json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path} is not {what}: invalid JSON ({e})") from None


def read_json_object(path: str | Path, what: str = "a JSON record") -> dict:
    """:func:`read_json` for records that must be a JSON object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise RecordError(f"{path} is not {what}: expected a JSON object, found {type(data).__name__}")
    return data


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_yaml(path: str | Path, what: str = "a YAML file") -> Any:
    import yaml

    path = Path(path)
    text = _read_text(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise RecordError(f"{path} is not {what}: invalid YAML ({first})") from None


def read_csv(path: str | Path, what: str = "a CSV record", required: tuple[str, ...] = (), **kwargs):
    """A CSV file as a DataFrame; ``required`` columns must be present."""
    import pandas as pd

    path = Path(path)
    _read_text(path, what)  # binary -> RecordError before pandas guesses
    try:
        df = pd.read_csv(path, **kwargs)
    except (ValueError, pd.errors.ParserError) as e:
        raise RecordError(f"{path} is not {what}: {str(e).splitlines()[0]}") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise RecordError(f"{path} is not {what}: column(s) {', '.join(missing)} missing "
                          f"(found {', '.join(map(str, df.columns))})")
    return df


@dataclasses.dataclass(frozen=True)
class Record:
    """Base of the typed records. Subclasses set ``SCHEMA``, ``VERSION`` and ``WHAT`` and may
    override :meth:`upgrade` to read older layouts (files without ``schema_version`` are version 0)."""

    SCHEMA: ClassVar[str] = ""
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "a reid-aug record"

    def to_dict(self) -> dict:
        return {"schema": self.SCHEMA, "schema_version": self.VERSION, **dataclasses.asdict(self)}

    def write(self, path: str | Path) -> Path:
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def upgrade(cls, data: dict, version: int, path: Path) -> dict:
        """Turn a record of an older ``version`` into this version's fields (default: as is)."""
        return data

    @classmethod
    def from_dict(cls: type[R], data: dict, path: Path | None = None) -> R:
        path = Path(path) if path is not None else Path("<record>")
        version = data.get("schema_version", 0)
        if not isinstance(version, int) or version > cls.VERSION:
            raise RecordError(f"{path} has {cls.WHAT} schema version {version!r}; this reid-aug reads versions "
                              f"<= {cls.VERSION}: upgrade reid-aug")
        schema = data.get("schema")
        if schema not in (None, cls.SCHEMA):
            raise RecordError(f"{path} is a {schema!r} record, not {cls.WHAT}")
        data = cls.upgrade({k: v for k, v in data.items() if k not in ("schema", "schema_version")}, version, path)
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as e:
            raise RecordError(f"{path} is not {cls.WHAT}: {e}") from None

    @classmethod
    def read(cls: type[R], path: str | Path) -> R:
        return cls.from_dict(read_json_object(path, cls.WHAT), Path(path))


# --------------------------------------------------------------------------- the typed records
@dataclasses.dataclass(frozen=True)
class EvaluationRecord(Record):
    """``RUN/eval*/metrics.json`` written by ``evaluate-generator``.

    ``records``: one dict per row (``row`` = ``model`` | ``real_vs_real`` | ``copy_source``) with
    ``ssim``, ``mask_ssim``, ``ssim_by_protocol``, ``mask_ssim_by_protocol``, ``l1``, ``is``,
    ``mask_is``, ``id_retrieval`` and the provenance fields (checkpoint, pairs, protocol, ...).
    """

    SCHEMA: ClassVar[str] = "reid-aug/evaluation"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "an evaluate-generator record (metrics.json)"

    headline: dict
    records: list
    what: str = "reid-aug evaluate-generator records"

    def row(self, name: str = "model") -> dict | None:
        return next((r for r in self.records if r.get("row") == name), None)

    def value(self, key: str, row: str = "model", protocol: str | None = None):
        """A row's metric; ``protocol`` picks ``<key>_by_protocol[protocol]`` for ssim / mask_ssim."""
        r = self.row(row) or {}
        if protocol is not None and isinstance(r.get(f"{key}_by_protocol"), dict):
            return r[f"{key}_by_protocol"].get(protocol)
        v = r.get(key)
        return v.get("mean") if isinstance(v, dict) else v


@dataclasses.dataclass(frozen=True)
class SynthesisDescriptor(Record):
    """``SET/synthesis.json`` written by ``synthesize``.

    ``run``: what decides the images (generator hash, stage, dataset fingerprint, K, strategy,
    seed, plan hash, counts); two runs with equal ``run`` write identical files. ``layout``: how
    the work is cut (does not change the images). ``info``: paths and per-identity notes.
    """

    SCHEMA: ClassVar[str] = "reid-aug/synthesis"
    VERSION: ClassVar[int] = 2
    WHAT: ClassVar[str] = "a synthesis descriptor (synthesis.json)"

    run: dict
    layout: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def upgrade(cls, data: dict, version: int, path: Path) -> dict:
        # Version 1 named itself with "kind"/"format_version" (before the common record header).
        if "kind" in data and data["kind"] != cls.SCHEMA:
            raise RecordError(f"{path} is a {data['kind']!r} file, not {cls.WHAT}")
        return {k: v for k, v in data.items() if k not in ("kind", "format_version")}

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None):
        if "schema_version" not in data and data.get("format_version") == 1:
            data = dict(data, schema_version=1)
        return super().from_dict(data, path)

    @property
    def dataset(self) -> str | None:
        """The dataset spec the set was synthesized for."""
        return self.info.get("dataset")

    @property
    def generator(self) -> str | None:
        return self.info.get("generator")


@dataclasses.dataclass(frozen=True)
class BenchmarkResults(Record):
    """``OUT/results.json`` written by ``benchmark``.

    ``setup``: dataset, augmented set (+ manifest hash), weights and the resolved config;
    ``seeds``; ``runs``: ``{"<variant>_seed<S>": {rank1, mAP, cmc, n_train_real,
    n_train_synthesized, training_plan, history, ...}}``.
    """

    SCHEMA: ClassVar[str] = "reid-aug/benchmark-results"
    VERSION: ClassVar[int] = 1
    WHAT: ClassVar[str] = "benchmark results (results.json)"

    setup: dict
    seeds: list
    runs: dict

    @classmethod
    def upgrade(cls, data: dict, version: int, path: Path) -> dict:
        if version == 0:
            # Before 0.2 a run counted its generated images as "n_train_synthetic".
            runs = {}
            for tag, rec in (data.get("runs") or {}).items():
                rec = dict(rec)
                if "n_train_synthetic" in rec:
                    rec["n_train_synthesized"] = rec.pop("n_train_synthetic")
                runs[tag] = rec
            data = dict(data, runs=runs)
        return data
