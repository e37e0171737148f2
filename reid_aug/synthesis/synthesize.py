"""``reid-aug synthesize``: K pose-transferred images per training identity, as a Market-layout folder.

Output folder ``DIR``::

    DIR/synthesis.json                  run descriptor (what this folder is; written before any image)
    DIR/bounding_box_train/*.jpg        the generated images (names below)
    DIR/manifest.csv                    one row per image (written atomically when every image exists)
    DIR/manifest.shard-I-of-N.csv       per-shard manifests of a sharded run (merged into manifest.csv)
    DIR/contact_sheet.png               a row per identity (first 12): a source image, then its generated ones

File names
    ``PPPP_cC_gKK_<source stem>.jpg``, e.g. ``0002_c1_g03_0002_c1s1_000451_03.jpg``: identity ``PPPP``
    (the source's, at least 4 digits) and camera ``C`` (the source image's) first, so that torchreid's
    ``re.compile(r'([-\\d]+)_c(\\d)').search`` and reid-aug's own ``parse_market_name`` read the source
    identity and camera; then ``_g`` + the 2-digit (or wider) index ``KK`` of the image among the
    identity's K; then the stem of the source image, for traceability. Real Market-1501 names are
    ``PPPP_cCsS_FFFFFF_NN.jpg``: the camera digit is always followed by ``s``, never by ``_g``, so a
    real name can never match :data:`SYNTH_NAME` and a generated name never matches
    :data:`MARKET_NAME` (DukeMTMC-reID's ``_cC_fFFFFFFF`` and CUHK03-NP's ``_cC_N`` do not start with
    ``_g`` either). Names are unique within a run because ``(PPPP, KK)`` is.

Plan (deterministic for a seed, see :mod:`reid_aug.synthesis.posebank`)
    Every training identity (sorted by pid) gets K rows. Its source images are its images whose pose
    has both shoulders and hips (the rule of the training pairs, so sources look like what the
    generator was trained on); an identity with no such image falls back to its images with at least
    one annotated joint (PG² reads only the source *image*, never its pose, and a Re-ID user wants
    every identity augmented: on Market-1501 this keeps identities 53, 79, 84, 98, 122 and 1218, so
    K = 10 gives 751 x 10 = 7,510 images). Sources cycle in a per-identity shuffled order (all are
    used before any repeats); target poses come from the pose bank by strategy. Identities with no
    annotated image at all are skipped and reported; identities on the fallback are reported too.

Restarts and shards
    ``synthesis.json`` holds the run's identity (generator sha256, stage, dataset fingerprint, K,
    strategy, seed, clusters, JPEG quality, plan hash, ...). A run started on a folder with the same
    descriptor writes only the missing images (every image is written atomically, so a file on disk
    is complete) and then writes the manifest from the plan and the files; a folder holding another
    run, or images without a descriptor, is refused. Identities are cut into fixed blocks of
    ``layout.block_identities`` consecutive identities (fixed by the first run, stored in the
    descriptor); shard ``i`` of ``n`` takes the blocks ``b`` with ``b % n == i``, and a batch never
    straddles two blocks, so every image is computed in the same batch whatever the sharding or the
    restarts (bit-identical outputs on CPU). Each shard writes ``manifest.shard-i-of-n.csv``; the shard
    that finds all ``n`` present writes the merged ``manifest.csv``. A run without ``--shard`` (or
    ``RANK``/``WORLD_SIZE`` from torchrun) covers every block, so it also completes and merges the
    output of shards.
"""
from __future__ import annotations

import collections
import json
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reid_aug.errors import CheckpointError, DatasetError, ReidAugError, SynthesisError
from reid_aug.keypoints import MISSING
from reid_aug.synthesis.posebank import (
    SALT_SOURCES,
    STRATEGIES,
    PoseBank,
    assign_target_poses,
)
from reid_aug.utils.io import atomic_path, atomic_write_text, sha256_file, sha256_lines

log = logging.getLogger(__name__)

KIND = "reid-aug/synthesis"
FORMAT_VERSION = 1
DESCRIPTOR = "synthesis.json"
MANIFEST = "manifest.csv"
IMAGE_DIR = "bounding_box_train"
CONTACT_SHEET = "contact_sheet.png"
MANIFEST_COLUMNS = ("file", "pid", "camid", "k", "source", "target_pose", "target_pid", "cluster", "strategy",
                    "seed", "stage", "generator_sha256", "sha256", "bytes")

# A generated name (see the module docstring).
SYNTH_NAME = re.compile(r"^(?P<pid>\d+)_c(?P<cam>\d+)_g(?P<k>\d+)_(?P<source>[^/\\]+)\.jpg$")
# A real Market-1501 name, including junk (-1), distractors (0000) and the official *.jpg.jpg names.
MARKET_NAME = re.compile(r"^(?P<pid>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})\.jpg(\.jpg)?$")
# torchreid.reid.data.datasets.image.market1501.Market1501.process_dir
TORCHREID_MARKET_PATTERN = re.compile(r"([-\d]+)_c(\d)")
_SHARD_MANIFEST = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.csv$")
_IMAGE_EXT = re.compile(r"(\.(jpe?g|png))+$", re.IGNORECASE)


# --------------------------------------------------------------------------- names
def source_stem(name: str) -> str:
    """``0002_c1s1_000451_03.jpg`` -> ``0002_c1s1_000451_03`` (also strips a doubled ``.jpg.jpg``)."""
    return _IMAGE_EXT.sub("", Path(name).name)


def synthetic_name(pid: int, camid: int, k: int, source: str) -> str:
    """The file name of the ``k``-th generated image of identity ``pid`` from ``source`` (camera ``camid``)."""
    if pid < 1 or camid < 0 or k < 0:
        raise ValueError(f"bad synthetic name fields pid={pid} camid={camid} k={k}")
    return f"{int(pid):04d}_c{int(camid)}_g{int(k):02d}_{source_stem(source)}.jpg"


def parse_synthetic_name(name: str) -> tuple[int, int, int, str]:
    """``(pid, camid, k, source stem)`` of a generated name; ``ValueError`` for any other name."""
    m = SYNTH_NAME.match(Path(name).name)
    if m is None:
        raise ValueError(f"{name!r} is not a reid-aug synthetic image name (PPPP_cC_gKK_SOURCE.jpg)")
    return int(m["pid"]), int(m["cam"]), int(m["k"]), m["source"]


# --------------------------------------------------------------------------- options
def parse_shard(spec) -> tuple[int, int] | None:
    """``"i/n"`` (0-based) -> ``(i, n)``; None stays None."""
    if spec is None or spec == "":
        return None
    if isinstance(spec, (tuple, list)):
        i, n = int(spec[0]), int(spec[1])
    else:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(spec))
        if m is None:
            raise SynthesisError(f"--shard {spec!r}: expected i/n with 0 <= i < n, e.g. --shard 0/2")
        i, n = int(m[1]), int(m[2])
    if n < 1 or not 0 <= i < n:
        raise SynthesisError(f"--shard {i}/{n}: expected i/n with 0 <= i < n, e.g. --shard 0/2")
    return i, n


def shard_from_env() -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` of a torchrun launch, or None."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return parse_shard((int(os.environ.get("RANK", "0")), world))


@dataclass(frozen=True)
class SynthesisOptions:
    """What ``synthesize`` does.

    ``generator``: a run folder or checkpoint file of ``train-generator``; ``dataset``: market |
    synthetic | PATH; ``shard``: ``(i, n)`` or None (then torchrun's RANK/WORLD_SIZE, if any);
    ``stage``: g1 | g2 | None (the last trained); ``device``: None = cuda if available (cuda:LOCAL_RANK
    under torchrun) else cpu; ``n_clusters``: diverse only, default K; ``max_identities``: only the
    first N usable identities (a smaller plan, part of the run's identity).
    """

    generator: Path
    out_dir: Path
    dataset: str = "synthetic"
    poses_per_id: int = 10
    strategy: str = "random"
    seed: int = 0
    batch_size: int = 64
    shard: tuple[int, int] | None = None
    stage: str | None = None
    jpeg_quality: int = 95
    workers: int = 2
    loader_threads: int = 2
    device: str | None = None
    n_clusters: int | None = None
    contact_sheet_ids: int = 12
    max_identities: int | None = None

    def __post_init__(self):
        if self.poses_per_id < 1:
            raise SynthesisError(f"--poses-per-id must be >= 1, got {self.poses_per_id}")
        if self.strategy not in STRATEGIES:
            raise SynthesisError(f"--strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.batch_size < 1 or self.workers < 1 or self.loader_threads < 1:
            raise SynthesisError("--batch-size, --workers and loader_threads must be >= 1")
        if not 1 <= self.jpeg_quality <= 100:
            raise SynthesisError(f"--jpeg-quality must be in 1..100, got {self.jpeg_quality}")
        if self.stage not in (None, "g1", "g2"):
            raise SynthesisError(f"--stage {self.stage!r}: expected g1 or g2")
        if self.n_clusters is not None and self.n_clusters < self.poses_per_id:
            raise SynthesisError(f"n_clusters={self.n_clusters} must be >= --poses-per-id={self.poses_per_id}")
        if self.shard is not None:
            object.__setattr__(self, "shard", parse_shard(self.shard))
        object.__setattr__(self, "generator", Path(self.generator))
        object.__setattr__(self, "out_dir", Path(self.out_dir))

    @classmethod
    def from_cli(cls, run_dir=None, checkpoint=None, dataset="synthetic", poses_per_id=10, out_dir=None,
                 strategy="random", seed=0, batch_size=64, shard=None, stage=None, jpeg_quality=95, workers=2,
                 device=None, **extra) -> "SynthesisOptions":
        """The CLI's flags -> options (exactly one of ``--run`` / ``--checkpoint``; ``--out`` defaults to
        ``RUN/synthesized-K`` or, for a checkpoint file, ``synthesized-K`` beside it)."""
        if (run_dir is None) == (checkpoint is None):
            raise SynthesisError("pass exactly one of --run RUN_DIR (a train-generator run folder) or "
                                 "--checkpoint FILE")
        generator = Path(run_dir if run_dir is not None else checkpoint)
        if out_dir is None:
            base = generator if run_dir is not None else generator.parent
            out_dir = base / f"synthesized-{poses_per_id}"
        return cls(generator=generator, out_dir=Path(out_dir), dataset=str(dataset), poses_per_id=int(poses_per_id),
                   strategy=strategy, seed=int(seed), batch_size=int(batch_size), shard=parse_shard(shard),
                   stage=stage, jpeg_quality=int(jpeg_quality), workers=int(workers),
                   device=device, **extra)


# --------------------------------------------------------------------------- plan
@dataclass
class SynthesisPlan:
    """Every image of a run, in order (identity, then k).

    ``table``: one row per image, columns ``file, pid, camid, k, source, target_pose, target_pid,
    cluster``; ``target_kps``: int16 (N, 18, 2) aligned with the rows; ``source_paths``: name -> path;
    ``skipped``: identities with no usable source image; ``sha256``: hash of the ``file,source,target``
    lines; ``dataset_fingerprint``: hash of the train split (names, sizes, keypoints);
    ``partial_pose_identities``: identities whose sources are images without a full torso (fallback).
    """

    table: pd.DataFrame
    target_kps: np.ndarray
    source_paths: dict
    skipped: list
    n_clusters: int
    sha256: str
    dataset_fingerprint: str
    identities: list = field(default_factory=list)
    partial_pose_identities: list = field(default_factory=list)


def dataset_fingerprint(index) -> str:
    """sha256 over the train split's names, file sizes and keypoints (cheap: no image is read)."""
    train = index.split("train").sort_values("name", kind="stable")
    kps = index.keypoints_for(train["name"].tolist())
    lines = []
    for (name, path), kp in zip(zip(train["name"], train["path"]), kps):
        try:
            size = os.stat(path).st_size
        except OSError:
            size = -1
        lines.append(f"{name},{size},{','.join(map(str, kp.reshape(-1).tolist()))}")
    return sha256_lines(lines)


def plan_sha256(table: pd.DataFrame) -> str:
    return sha256_lines(f"{f},{s},{t}" for f, s, t in zip(table["file"], table["source"], table["target_pose"]))


def build_plan(index, poses_per_id: int, strategy: str = "random", seed: int = 0, n_clusters: int | None = None,
               max_identities: int | None = None) -> SynthesisPlan:
    """The full plan of a run (all shards). Raises ``DatasetError`` for a dataset without valid poses."""
    bank = PoseBank.from_index(index)                     # raises when no train pose has a torso
    train = index.split("train")
    train = train[train["kind"] == "normal"].sort_values("name", kind="stable")
    usable = train[train["pose_ok"].astype(bool)]
    sources_by_pid = {int(p): g["name"].tolist() for p, g in usable.groupby("pid", sort=True)}
    all_pids = sorted(int(p) for p in train["pid"].unique())
    rest = train[~train["pid"].isin(list(sources_by_pid))]
    partial = []
    if len(rest):
        # fallback sources: any annotated joint (the generator never reads the source's pose)
        kps = np.asarray(index.keypoints_for(rest["name"].tolist()))
        annotated = (kps[..., 0] != MISSING).any(axis=1)   # an image without a row is all MISSING
        for p, g in rest[annotated].groupby("pid", sort=True):
            sources_by_pid[int(p)] = g["name"].tolist()
            partial.append(int(p))
    skipped = [p for p in all_pids if p not in sources_by_pid]
    pids = [p for p in all_pids if p in sources_by_pid]
    if partial:
        log.info("%d of %d training identities have no image with both shoulders and hips annotated; their "
                 "images with partial poses are the sources: %s%s", len(partial), len(all_pids),
                 ", ".join(map(str, partial[:10])), ", ..." if len(partial) > 10 else "")
    if skipped:
        log.warning("%d of %d training identities have no image with an annotated joint and are skipped: %s%s",
                    len(skipped), len(all_pids), ", ".join(map(str, skipped[:10])),
                    ", ..." if len(skipped) > 10 else "")
    if max_identities is not None:
        pids = pids[: int(max_identities)]
    if not pids:
        raise DatasetError(f"no training identity of {index.root} has a usable source image")
    assignment = assign_target_poses(bank, pids, poses_per_id, strategy, seed, n_clusters)
    camid_of = dict(zip(train["name"], train["camid"]))
    rows, tgt_rows = [], []
    for pid in pids:
        rng = np.random.default_rng([int(seed), pid, SALT_SOURCES])
        srcs = [sources_by_pid[pid][i] for i in rng.permutation(len(sources_by_pid[pid]))]
        for k in range(poses_per_id):
            src = srcs[k % len(srcs)]                      # all sources before any repeat
            t = int(assignment.targets[pid][k])
            cam = int(camid_of[src])
            rows.append((synthetic_name(pid, cam, k, src), pid, cam, k, src, str(bank.names[t]),
                         int(bank.pids[t]), int(assignment.clusters[pid][k])))
            tgt_rows.append(t)
    table = pd.DataFrame(rows, columns=["file", "pid", "camid", "k", "source", "target_pose", "target_pid",
                                        "cluster"])
    paths = dict(zip(train["name"], train["path"]))
    return SynthesisPlan(table=table, target_kps=bank.keypoints[np.asarray(tgt_rows, dtype=np.int64)],
                         source_paths={s: paths[s] for s in table["source"].unique()}, skipped=skipped,
                         n_clusters=assignment.n_clusters, sha256=plan_sha256(table),
                         dataset_fingerprint=dataset_fingerprint(index), identities=pids,
                         partial_pose_identities=sorted(set(partial) & set(pids)))


def plan_blocks(plan_table: pd.DataFrame, block_identities: int) -> np.ndarray:
    """(N,) block number of every plan row: ``block_identities`` consecutive identities per block."""
    pid_rank = pd.factorize(plan_table["pid"], sort=False)[0]
    return (pid_rank // max(1, int(block_identities))).astype(np.int64)


def plan_batches(plan_table: pd.DataFrame, block_identities: int, batch_size: int,
                 shard: tuple[int, int] | None) -> list[np.ndarray]:
    """Row indices of every batch of ``shard``: blocks ``b % n == i``, each cut into <= batch_size rows."""
    blocks = plan_blocks(plan_table, block_identities)
    i, n = shard or (0, 1)
    out = []
    for b in np.unique(blocks):
        if b % n != i:
            continue
        rows = np.flatnonzero(blocks == b)
        out += [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
    return out


# --------------------------------------------------------------------------- descriptor
def _descriptor(opts: SynthesisOptions, plan: SynthesisPlan, gen, stage: str, dataset_root: Path,
                block_identities: int) -> dict:
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "run": {
            "generator_sha256": gen.sha256,
            "stage": stage,
            "image_size": [int(v) for v in gen.image_size],
            "dataset_fingerprint": plan.dataset_fingerprint,
            "poses_per_id": opts.poses_per_id,
            "strategy": opts.strategy,
            "seed": opts.seed,
            "n_clusters": plan.n_clusters if opts.strategy == "diverse" else None,
            "max_identities": opts.max_identities,
            "jpeg_quality": opts.jpeg_quality,
            "plan_sha256": plan.sha256,
            "n_images": int(len(plan.table)),
            "n_identities": len(plan.identities),
        },
        "layout": {"block_identities": int(block_identities)},
        "info": {
            "generator": str(getattr(gen, "path", opts.generator)),
            "dataset": opts.dataset,
            "dataset_root": str(dataset_root),
            "skipped_identities": [int(p) for p in plan.skipped],
            "partial_pose_identities": [int(p) for p in plan.partial_pose_identities],
        },
    }


def read_descriptor(out_dir: str | Path) -> dict | None:
    path = Path(out_dir) / DESCRIPTOR
    if not path.is_file():
        return None
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise SynthesisError(f"{path} is not a readable synthesis descriptor ({e}); the folder was not written by "
                             f"`reid-aug synthesize`: choose another --out") from None
    if not isinstance(desc, dict) or desc.get("kind") != KIND or "run" not in desc:
        raise SynthesisError(f"{path} is not a reid-aug synthesis descriptor; choose another --out")
    return desc


def _create_exclusive(path: Path, text: str) -> bool:
    """Write ``path`` atomically only if it does not exist yet (first of several shards wins). True if written."""
    import tempfile

    fd, staged = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(staged, path)               # atomic create-if-absent
            return True
        except FileExistsError:
            return False
        except OSError:                         # a file system without hard links
            if path.exists():
                return False
            os.replace(staged, path)
            return True
    finally:
        if os.path.exists(staged):
            os.unlink(staged)


_DERIVED_KEYS = ("plan_sha256", "n_images", "n_identities", "n_clusters")


def _check_same_run(out_dir: Path, old: dict, desc: dict) -> dict:
    diffs = [k for k in sorted(set(old["run"]) | set(desc["run"])) if old["run"].get(k) != desc["run"].get(k)]
    primary = [k for k in diffs if k not in _DERIVED_KEYS]
    diffs = primary or diffs                    # name the cause (K, seed, ...), not its consequences
    if diffs:
        detail = "; ".join(f"{k}: {old['run'].get(k)!r} there, {desc['run'].get(k)!r} now" for k in diffs)
        raise SynthesisError(f"{out_dir} holds a different synthesis run ({detail}); choose another --out, or "
                             f"delete {out_dir} to start over")
    return old


def _prepare_out_dir(out_dir: Path, desc: dict) -> dict:
    """Check that ``out_dir`` is empty or holds this same run; write the descriptor. Returns the one in force
    (an existing descriptor's ``layout`` wins, so restarts and shards cut the plan the same way)."""
    old = read_descriptor(out_dir)
    if old is not None:
        return _check_same_run(out_dir, old, desc)
    img_dir = out_dir / IMAGE_DIR
    stray = []
    if img_dir.is_dir():
        stray = [e.name for e in os.scandir(img_dir) if not e.name.startswith(".")][:3]
    stray += [p.name for p in out_dir.glob("manifest*.csv")][:3] if out_dir.is_dir() else []
    if stray:
        old = read_descriptor(out_dir)          # another shard may have just started this very run
        if old is not None:
            return _check_same_run(out_dir, old, desc)
        raise SynthesisError(f"{out_dir} holds files of an unknown run ({', '.join(stray)}, ...) but no "
                             f"{DESCRIPTOR}; choose another --out, or delete those files")
    out_dir.mkdir(parents=True, exist_ok=True)
    if _create_exclusive(out_dir / DESCRIPTOR, json.dumps(desc, indent=2) + "\n"):
        return desc
    return _check_same_run(out_dir, read_descriptor(out_dir), desc)


# --------------------------------------------------------------------------- helpers
def _resolve_device(device: str | None) -> str:
    import torch

    if device:
        return device
    if torch.cuda.is_available():
        local = os.environ.get("LOCAL_RANK")
        return f"cuda:{int(local)}" if local is not None else "cuda"
    return "cpu"


def _native_size(path) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except Exception as e:  # noqa: BLE001
        raise DatasetError(f"cannot read image {path} ({type(e).__name__}: {e}); replace it or run "
                           f"`reid-aug prepare DATASET --check-images`") from None


def _hash_files(paths: list[Path], workers: int = 4) -> list[tuple[str, int]]:
    def one(p):
        return sha256_file(p), os.path.getsize(p)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, paths))


def _remove_stale_temps(img_dir: Path, names: set) -> int:
    """Remove ``.NAME.*.tmp`` left by a killed writer, for this shard's names only (other shards may be writing)."""
    n = 0
    if not img_dir.is_dir():
        return 0
    for e in os.scandir(img_dir):
        if e.name.startswith(".") and e.name.endswith(".tmp"):
            target = e.name[1:].rsplit(".", 2)[0]
            if target in names:
                try:
                    os.unlink(e.path)
                    n += 1
                except FileNotFoundError:
                    pass
    return n


def _manifest_frame(rows: pd.DataFrame, opts_like: dict, hashes: list[tuple[str, int]]) -> pd.DataFrame:
    df = rows[["file", "pid", "camid", "k", "source", "target_pose", "target_pid", "cluster"]].copy()
    df["strategy"] = opts_like["strategy"]
    df["seed"] = opts_like["seed"]
    df["stage"] = opts_like["stage"]
    df["generator_sha256"] = opts_like["generator_sha256"]
    df["sha256"] = [h for h, _ in hashes]
    df["bytes"] = [int(b) for _, b in hashes]
    return df[list(MANIFEST_COLUMNS)].reset_index(drop=True)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    atomic_write_text(path, df.to_csv(index=False))


def shard_manifest_name(i: int, n: int) -> str:
    return f"manifest.shard-{i}-of-{n}.csv"


def read_manifest(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"file": str, "source": str, "target_pose": str, "sha256": str,
                                    "generator_sha256": str, "strategy": str, "stage": str})


def _try_merge(out_dir: Path, n: int, plan: SynthesisPlan) -> pd.DataFrame | None:
    """Merge ``n`` shard manifests into ``manifest.csv`` once all are present and match the plan."""
    parts = [out_dir / shard_manifest_name(i, n) for i in range(n)]
    present = [p for p in parts if p.is_file()]
    if len(present) < n:
        log.info("%d of %d shard manifests present; manifest.csv will be written by the last shard to finish",
                 len(present), n)
        return None
    merged = pd.concat([read_manifest(p) for p in parts], ignore_index=True)
    order = {f: i for i, f in enumerate(plan.table["file"])}
    if set(merged["file"]) != set(order) or len(merged) != len(order):
        log.warning("the %d shard manifests in %s do not cover the plan (%d rows vs %d planned); run "
                    "`reid-aug synthesize` without --shard to complete it", n, out_dir, len(merged), len(order))
        return None
    img_dir = out_dir / IMAGE_DIR
    missing = [f for f in merged["file"] if not (img_dir / f).is_file()]
    if missing:
        log.warning("%d image(s) listed by shard manifests are missing (e.g. %s); run `reid-aug synthesize` "
                    "again to rewrite them", len(missing), missing[0])
        return None
    merged = merged.iloc[np.argsort(merged["file"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)
    _write_csv(merged, out_dir / MANIFEST)
    return merged


def contact_sheet(out_dir: str | Path, manifest: pd.DataFrame, source_paths: dict, n_ids: int = 12,
                  max_cols: int = 16) -> Path:
    """PNG with one row per identity (first ``n_ids``): a source image, a gap, then its generated images."""
    from PIL import Image

    out_dir = Path(out_dir)
    pids = list(dict.fromkeys(manifest["pid"].tolist()))[:n_ids]
    first = out_dir / IMAGE_DIR / manifest["file"].iloc[0]
    with Image.open(first) as im:
        w, h = im.size
    k = min(int(manifest.groupby("pid").size().max()), max_cols)
    pad, gap = 2, 8
    sheet = Image.new("RGB", (pad + (w + pad) * (k + 1) + gap, pad + (h + pad) * len(pids)), (255, 255, 255))
    for r, pid in enumerate(pids):
        rows = manifest[manifest["pid"] == pid].head(k)
        y = pad + r * (h + pad)
        src = source_paths.get(rows["source"].iloc[0])
        if src is not None and Path(src).is_file():
            with Image.open(src) as im:
                sheet.paste(im.convert("RGB").resize((w, h)), (pad, y))
        for c, f in enumerate(rows["file"]):
            with Image.open(out_dir / IMAGE_DIR / f) as im:
                sheet.paste(im.convert("RGB"), (pad + (c + 1) * (w + pad) + gap, y))
    path = out_dir / CONTACT_SHEET
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


# --------------------------------------------------------------------------- the run
def synthesize(opts: SynthesisOptions, on_batch=None) -> dict:
    """Write this shard's missing images, its manifest, and the merged manifest + contact sheet when complete.

    ``on_batch(batch_number, images_written_so_far)`` is called after each batch has been queued
    (tests use it to interrupt a run). Returns a summary: ``written``, ``skipped_existing``,
    ``out_dir``, ``manifest`` (path or None), ``contact_sheet``, ``n_planned`` (this shard),
    ``n_images`` (whole run), ``identities``, ``skipped_identities``, ``shard``, ``device``,
    ``timings`` (seconds: ``wall``; ``loop`` = the generation loop until the last file is written;
    ``load``, ``generate``, ``encode_write`` = summed thread time of each stage; ``load_wait``,
    ``write_wait`` = time the generator loop waited for them) and ``images_per_s`` (written / wall).
    """
    import torch
    from tqdm import tqdm

    from reid_aug.dataset.market import load_dataset, resolve_dataset_root
    from reid_aug.generator.inference import load_generator
    from reid_aug.pairs import load_image
    from reid_aug.synthesis.writer import JpegWriterPool, tensor_to_uint8

    t_start = time.perf_counter()
    shard = opts.shard or shard_from_env()
    device = _resolve_device(opts.device)
    gen = load_generator(opts.generator, device=device)       # CheckpointError for the wrong kind of file
    stage = opts.stage or gen.stages[-1]
    if stage not in gen.stages:
        raise CheckpointError(f"{opts.generator} has no trained {stage.upper()} (trained: {', '.join(gen.stages)}); "
                              f"pass --stage {gen.stages[-1]}")
    root = resolve_dataset_root(opts.dataset)
    index = load_dataset(root)
    plan = build_plan(index, opts.poses_per_id, opts.strategy, opts.seed, opts.n_clusters, opts.max_identities)
    h, w = (int(v) for v in gen.image_size)
    first_src = plan.source_paths[plan.table["source"].iloc[0]]
    native = _native_size(first_src)
    if native != (h, w):
        raise CheckpointError(f"generator {opts.generator} was trained at {h}x{w} but the images of {root} are "
                              f"{native[0]}x{native[1]} (e.g. {first_src}); use a generator trained on this "
                              f"dataset's resolution")

    out_dir = Path(opts.out_dir)
    # Blocks of identities: as many as fit a batch, but at least ~32 blocks so shards stay balanced.
    block_ids = max(1, min(opts.batch_size // opts.poses_per_id, -(-len(plan.identities) // 32)))
    desc = _prepare_out_dir(out_dir, _descriptor(opts, plan, gen, stage, root, block_ids))
    block_ids = int(desc["layout"]["block_identities"])
    img_dir = out_dir / IMAGE_DIR
    img_dir.mkdir(parents=True, exist_ok=True)

    table = plan.table
    batches = plan_batches(table, block_ids, opts.batch_size, shard)
    shard_rows = np.concatenate(batches) if batches else np.zeros(0, dtype=np.int64)
    shard_rows.sort()
    shard_names = set(table["file"].iloc[shard_rows])
    removed = _remove_stale_temps(img_dir, shard_names)
    on_disk = {e.name for e in os.scandir(img_dir) if not e.name.startswith(".")}
    extra = on_disk - set(table["file"])
    if extra:
        log.warning("%s holds %d file(s) that are not part of this run (e.g. %s); they stay, and --verify "
                    "reports them", img_dir, len(extra), sorted(extra)[0])
    todo = np.array([f not in on_disk for f in table["file"]])
    work = [b for b in batches if todo[b].any()]
    n_todo = int(todo[shard_rows].sum())
    skipped_existing = len(shard_rows) - n_todo
    label = f" shard {shard[0]}/{shard[1]}" if shard else ""
    log.info("synthesis%s: %d images planned for %d identities (%d skipped), %d already on disk, %d to write, "
             "%d stale temp file(s) removed; device %s, stage %s", label, len(shard_rows), len(plan.identities),
             len(plan.skipped), skipped_existing, n_todo, removed, device, stage)

    on_cuda = str(device).startswith("cuda")
    size = (h, w)
    timing = collections.Counter()
    timing_lock = threading.Lock()

    def load_batch(rows: np.ndarray):
        """Source images (B,3,H,W) in [-1,1] and target keypoints/maps; runs in a loader thread."""
        t0 = time.perf_counter()
        names = table["source"].iloc[rows].tolist()
        cache = {}
        for name in names:
            if name not in cache:
                cache[name] = load_image(plan.source_paths[name], size)
        src = torch.stack([cache[n] for n in names])
        kps = torch.from_numpy(plan.target_kps[rows].astype(np.int64))
        if on_cuda:
            src = src.pin_memory()
            pose = kps                                  # maps are drawn on the GPU (cheaper than copying them)
        else:
            pose = gen.pose_maps(kps)                   # drawn here, overlapped with the generator
        with timing_lock:
            timing["load"] += time.perf_counter() - t0
        return src, pose

    written = 0
    loader = ThreadPoolExecutor(max_workers=opts.loader_threads, thread_name_prefix="synth-loader")
    prefetch = collections.deque()
    depth = opts.loader_threads + 1                     # bounded read-ahead
    work_iter = iter(work)

    def refill():
        while len(prefetch) < depth:
            rows = next(work_iter, None)
            if rows is None:
                return
            prefetch.append((rows, loader.submit(load_batch, rows)))

    writer = JpegWriterPool(workers=opts.workers, quality=opts.jpeg_quality,
                            max_pending=max(2 * opts.batch_size, 64))
    try:
        with writer, torch.inference_mode(), tqdm(total=n_todo, unit="img", desc=f"synthesizing{label}",
                                                  disable=None) as bar:
            t_loop = time.perf_counter()
            refill()
            batch_no = 0
            while prefetch:
                rows, fut = prefetch.popleft()
                t0 = time.perf_counter()
                src, pose = fut.result()
                timing["load_wait"] += time.perf_counter() - t0
                refill()
                t0 = time.perf_counter()
                src = src.to(device, non_blocking=True)
                pose = gen.pose_maps(pose.to(device, non_blocking=True)) if on_cuda else pose.to(device)
                images = tensor_to_uint8(gen.generate(src, pose, stage))   # (B,H,W,3) uint8 on the CPU (syncs)
                timing["generate"] += time.perf_counter() - t0
                n_new = 0
                for j, r in enumerate(rows):
                    if todo[r]:
                        writer.submit(img_dir / table["file"].iat[r], images[j])
                        n_new += 1
                written += n_new
                bar.update(n_new)
                batch_no += 1
                if on_batch is not None:
                    on_batch(batch_no, written)
            records = writer.close()
            timing["loop"] = time.perf_counter() - t_loop
    finally:
        loader.shutdown(wait=True, cancel_futures=True)
    timing["encode_write"] = writer.busy_seconds
    timing["write_wait"] = writer.wait_seconds

    # This shard's manifest: hashes of the bytes written now, or of the files found on disk.
    shard_table = table.iloc[shard_rows]
    need_hash = [img_dir / f for f in shard_table["file"] if f not in records]
    disk = dict(zip((p.name for p in need_hash), _hash_files(need_hash, opts.workers)))
    hashes = [(records[f].sha256, records[f].bytes) if f in records else disk[f] for f in shard_table["file"]]
    meta = {"strategy": opts.strategy, "seed": opts.seed, "stage": stage, "generator_sha256": gen.sha256}
    manifest_df = _manifest_frame(shard_table, meta, hashes)
    manifest_path, sheet = None, None
    if shard is not None and shard[1] > 1:
        _write_csv(manifest_df, out_dir / shard_manifest_name(*shard))
        merged = _try_merge(out_dir, shard[1], plan)
    else:
        _write_csv(manifest_df, out_dir / MANIFEST)
        merged = manifest_df
    if merged is not None:
        manifest_path = out_dir / MANIFEST
        sheet = contact_sheet(out_dir, merged, plan.source_paths, opts.contact_sheet_ids)
    wall = time.perf_counter() - t_start
    timing["wall"] = wall
    summary = {
        "written": written,
        "skipped_existing": skipped_existing,
        "out_dir": str(out_dir),
        "manifest": str(manifest_path) if manifest_path else None,
        "contact_sheet": str(sheet) if sheet else None,
        "n_planned": int(len(shard_rows)),
        "n_images": int(len(table)),
        "identities": len(plan.identities),
        "skipped_identities": [int(p) for p in plan.skipped],
        "partial_pose_identities": [int(p) for p in plan.partial_pose_identities],
        "shard": list(shard) if shard else None,
        "device": str(device),
        "stage": stage,
        "timings": {k: round(float(v), 4) for k, v in timing.items()},
        "images_per_s": round(written / wall, 2) if wall > 0 else None,
    }
    log.info("synthesis%s done: %d written, %d already there, %.1f images/s; manifest %s", label, written,
             skipped_existing, summary["images_per_s"] or 0.0, manifest_path or "(waiting for other shards)")
    return summary


# --------------------------------------------------------------------------- verify
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


def verify_synthesis(out_dir: str | Path, workers: int = 4) -> VerifyReport:
    """Check ``out_dir``'s manifest against its files and descriptor (hashes every image).

    Reports files listed but absent (``missing``), files present but not listed (``extra``, including
    a killed writer's ``.*.tmp``), files whose bytes or name disagree with their row (``mismatched``),
    and folder-level problems (no descriptor, no merged manifest, row count or plan hash differing
    from the descriptor, duplicate rows).
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise SynthesisError(f"{out_dir} is not a folder; pass the --out folder of `reid-aug synthesize`")
    rep = VerifyReport(out_dir)
    try:
        desc = read_descriptor(out_dir)
    except SynthesisError as e:
        desc = None
        rep.problems.append(str(e))
    else:
        if desc is None:
            rep.problems.append(f"no {DESCRIPTOR}: not a synthesis folder, or the run never started")
    mpath = out_dir / MANIFEST
    if mpath.is_file():
        manifest = read_manifest(mpath)
    else:
        shards = sorted(p for p in out_dir.glob("manifest.shard-*-of-*.csv") if _SHARD_MANIFEST.match(p.name))
        rep.problems.append(f"no {MANIFEST} (run not finished or shards not merged; shard manifests present: "
                            f"{', '.join(p.name for p in shards) or 'none'})")
        manifest = (pd.concat([read_manifest(p) for p in shards], ignore_index=True) if shards
                    else pd.DataFrame(columns=list(MANIFEST_COLUMNS)))
    rep.n_manifest = len(manifest)
    dups = manifest["file"][manifest["file"].duplicated()].tolist()
    if dups:
        rep.problems.append(f"{len(dups)} duplicate manifest row(s), e.g. {dups[0]}")
    if desc is not None and mpath.is_file():
        run = desc["run"]
        if len(manifest) != run.get("n_images"):
            rep.problems.append(f"manifest has {len(manifest)} rows, the run plans {run.get('n_images')}")
        elif plan_sha256(manifest) != run.get("plan_sha256"):
            rep.problems.append("manifest rows (file, source, target_pose) differ from the run's plan "
                                f"(plan hash {run.get('plan_sha256', '')[:12]}...)")
        gens = set(manifest["generator_sha256"].astype(str))
        if gens - {run.get("generator_sha256")}:
            rep.problems.append("manifest rows name another generator checkpoint than the descriptor")
    img_dir = out_dir / IMAGE_DIR
    on_disk = sorted(e.name for e in os.scandir(img_dir) if e.is_file()) if img_dir.is_dir() else []
    rep.n_files = sum(not n.startswith(".") for n in on_disk)
    listed = set(manifest["file"])
    rep.extra = [n for n in on_disk if n not in listed]
    present = [f for f in manifest["file"] if f in set(on_disk)]
    rep.missing = [f for f in manifest["file"] if f not in set(on_disk)]
    hashes = dict(zip(present, _hash_files([img_dir / f for f in present], workers)))
    for row in manifest.itertuples(index=False):
        f = row.file
        try:
            pid, cam, k, _ = parse_synthetic_name(f)
            if (pid, cam, k) != (int(row.pid), int(row.camid), int(row.k)):
                rep.mismatched.append((f, f"name says pid {pid} cam {cam} k {k}, row says pid {row.pid} cam "
                                          f"{row.camid} k {row.k}"))
                continue
        except ValueError as e:
            rep.mismatched.append((f, str(e)))
            continue
        if f in hashes:
            sha, size = hashes[f]
            if sha != row.sha256:
                rep.mismatched.append((f, f"sha256 {sha[:12]}... on disk ({size} bytes), {str(row.sha256)[:12]}... "
                                          f"in the manifest ({row.bytes} bytes)"))
    return rep


__all__ = [
    "SynthesisOptions", "SynthesisPlan", "SynthesisError", "VerifyReport", "build_plan", "contact_sheet",
    "parse_synthetic_name", "plan_batches", "synthesize", "synthetic_name", "verify_synthesis",
    "SYNTH_NAME", "MARKET_NAME", "TORCHREID_MARKET_PATTERN",
]
