"""``reid-aug synthesize --verify SET``: does a synthesized set's manifest match its files?"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reid_aug.errors import SynthesisError
from reid_aug.rundir import SynthesizedSet
from reid_aug.synthesis.folder import MANIFEST_COLUMNS, hash_files, read_descriptor, read_manifest
from reid_aug.synthesis.naming import parse_synthesized_name
from reid_aug.synthesis.plan import plan_sha256

_SHARD_MANIFEST = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.csv$")


@dataclass
class VerifyReport:
    """Differences between a synthesis folder's manifest and its files."""

    out_dir: Path
    n_manifest: int = 0
    n_files: int = 0
    missing: list = field(default_factory=list)      # in the manifest, not on disk
    extra: list = field(default_factory=list)        # on disk (bounding_box_train/), not in the manifest
    mismatched: list = field(default_factory=list)   # (file, reason)
    problems: list = field(default_factory=list)     # folder-level issues

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched or self.problems)

    def summary(self, limit: int = 10) -> str:
        head = (f"{self.out_dir}: {'OK' if self.ok else 'PROBLEMS FOUND'} - {self.n_manifest} manifest rows, "
                f"{self.n_files} files; {len(self.missing)} missing, {len(self.extra)} extra, "
                f"{len(self.mismatched)} mismatched")
        lines = [head]
        lines += [f"  problem: {p}" for p in self.problems]
        for what, items in (("missing", self.missing), ("extra", self.extra)):
            lines += [f"  {what}: {x}" for x in items[:limit]]
            if len(items) > limit:
                lines.append(f"  ... {len(items) - limit} more {what}")
        lines += [f"  mismatched: {f} ({why})" for f, why in self.mismatched[:limit]]
        if len(self.mismatched) > limit:
            lines.append(f"  ... {len(self.mismatched) - limit} more mismatched")
        return "\n".join(lines)


def _load_manifest(sset: SynthesizedSet, rep: VerifyReport) -> pd.DataFrame:
    """The merged manifest, else the shard manifests (noting the missing merge)."""
    if sset.manifest.is_file():
        return read_manifest(sset.manifest)
    shards = sorted(p for p in sset.path.glob("manifest.shard-*-of-*.csv") if _SHARD_MANIFEST.match(p.name))
    rep.problems.append(f"no {sset.manifest.name} (run not finished or shards not merged; shard manifests present: "
                        f"{', '.join(p.name for p in shards) or 'none'})")
    return (pd.concat([read_manifest(p) for p in shards], ignore_index=True) if shards
            else pd.DataFrame(columns=list(MANIFEST_COLUMNS)))


def _descriptor(sset: SynthesizedSet, rep: VerifyReport):
    """The descriptor, or None (noting why) when it is absent or unreadable."""
    try:
        desc = read_descriptor(sset.path)
    except SynthesisError as e:
        rep.problems.append(str(e))
        return None
    if desc is None:
        rep.problems.append(f"no {sset.descriptor.name}: not a synthesis folder, or the run never started")
    return desc


def _check_filter(sset: SynthesizedSet, record: dict | None, manifest: pd.DataFrame, rep: VerifyReport) -> None:
    """A filtered set: scores.csv covers the manifest and its ``kept`` column is the recorded rule's."""
    from reid_aug.errors import RecordError
    from reid_aug.synthesis.filter import apply_filter, read_scores

    if record is None:
        if "kept" in manifest.columns:
            rep.problems.append("the manifest has a kept column but the descriptor records no filter")
        return
    if "kept" not in manifest.columns:
        rep.problems.append("the descriptor records a filter but the manifest has no kept column")
        return
    try:
        expected = apply_filter(manifest, read_scores(sset), record)["kept"].to_numpy()
    except (RecordError, SynthesisError) as e:
        rep.problems.append(f"filter: {e}")
        return
    differ = int((expected != manifest["kept"].to_numpy()).sum())
    if differ:
        rep.problems.append(f"{differ} kept flag(s) of the manifest disagree with scores.csv and the recorded rule")
    if int(manifest["kept"].sum()) != record.get("n_kept"):
        rep.problems.append(f"the manifest keeps {int(manifest['kept'].sum())} images, the descriptor says "
                            f"{record.get('n_kept')}")


def _compare_with_run(run: dict, manifest: pd.DataFrame, rep: VerifyReport) -> None:
    """Row count, plan hash and generator of the merged manifest against the descriptor."""
    if len(manifest) != run.get("n_images"):
        rep.problems.append(f"manifest has {len(manifest)} rows, the run plans {run.get('n_images')}")
    elif plan_sha256(manifest) != run.get("plan_sha256"):
        rep.problems.append("manifest rows (file, source, target_pose) differ from the run's plan "
                            f"(plan hash {run.get('plan_sha256', '')[:12]}...)")
    if set(manifest["generator_sha256"].astype(str)) - {run.get("generator_sha256")}:
        rep.problems.append("manifest rows name another generator checkpoint than the descriptor")


def _row_problem(row, hashes: dict) -> str | None:
    """Why a manifest row disagrees with its file name or bytes (None when it agrees)."""
    try:
        pid, cam, k, _ = parse_synthesized_name(row.file)
    except ValueError as e:
        return str(e)
    if (pid, cam, k) != (int(row.pid), int(row.camid), int(row.k)):
        return f"name says pid {pid} cam {cam} k {k}, row says pid {row.pid} cam {row.camid} k {row.k}"
    if row.file in hashes:
        sha, size = hashes[row.file]
        if sha != row.sha256:
            return (f"sha256 {sha[:12]}... on disk ({size} bytes), {str(row.sha256)[:12]}... in the manifest "
                    f"({row.bytes} bytes)")
    return None


def verify_synthesis(out_dir: str | Path, workers: int = 4) -> VerifyReport:
    """Check ``out_dir``'s manifest against its files and descriptor (hashes every image).

    Reports files listed but absent (``missing``), files present but not listed (``extra``, including
    a killed writer's ``.*.tmp``), files whose bytes or name disagree with their row (``mismatched``),
    and folder-level problems (no descriptor, no merged manifest, row count or plan hash differing
    from the descriptor, duplicate rows, ``kept`` flags that are not the recorded filter's).
    """
    sset = SynthesizedSet(out_dir)
    if not sset.path.is_dir():
        raise SynthesisError(f"{sset.path} is not a folder; pass the --out folder of `reid-aug synthesize`")
    rep = VerifyReport(sset.path)
    desc = _descriptor(sset, rep)
    manifest = _load_manifest(sset, rep)
    rep.n_manifest = len(manifest)
    dups = manifest["file"][manifest["file"].duplicated()].tolist()
    if dups:
        rep.problems.append(f"{len(dups)} duplicate manifest row(s), e.g. {dups[0]}")
    if desc is not None and sset.manifest.is_file():
        _compare_with_run(desc.run, manifest, rep)
        _check_filter(sset, desc.info.get("filter"), manifest, rep)
    on_disk = sorted(e.name for e in os.scandir(sset.images) if e.is_file()) if sset.images.is_dir() else []
    rep.n_files = sum(not n.startswith(".") for n in on_disk)
    listed, disk = set(manifest["file"]), set(on_disk)
    rep.extra = [n for n in on_disk if n not in listed]
    present = [f for f in manifest["file"] if f in disk]
    rep.missing = [f for f in manifest["file"] if f not in disk]
    hashes = dict(zip(present, hash_files([sset.images / f for f in present], workers)))
    for row in manifest.itertuples(index=False):
        why = _row_problem(row, hashes)
        if why is not None:
            rep.mismatched.append((row.file, why))
    return rep
