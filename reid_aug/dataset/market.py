"""Read a dataset in the Market-1501 layout into one index table.

Layout (the official Market-1501 zip, also DukeMTMC-reID and CUHK03-NP)::

    ROOT/Market-1501-v15.09.15/bounding_box_train/0002_c1s1_000451_03.jpg
                              /bounding_box_test/...
                              /query/...
    ROOT/annotations/market-annotation-train.csv   (optional; keypoints, see reid_aug.keypoints.annotations)
                    /market-annotation-test.csv
                    /market-pairs-test.csv          (optional; header ``from,to``)

The split folders may also lie directly under ``ROOT`` or inside any single subfolder of
``ROOT``. Identity ``-1`` marks junk images and ``0000`` distractors (Market protocol): they
are kept in the table with ``kind`` = ``junk`` / ``distractor`` so that evaluation code can
treat them as the protocol says.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from reid_aug.errors import DatasetError
from reid_aug.keypoints.annotations import read_annotations, stack_keypoints
from reid_aug.keypoints.skeleton import MISSING, TORSO_JOINTS

log = logging.getLogger(__name__)

MARKET_SUBDIR = "Market-1501-v15.09.15"
# split name in the index -> folder name on disk
SPLIT_DIRS: dict[str, str] = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
SPLITS: tuple[str, ...] = ("train", "query", "gallery")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEFAULT_MARKET_ROOT = Path("..") / "shared" / "datasets" / "market1501"

# pid (-1 = junk, 0000 = distractor), camera, then anything (Market: s<seq>_<frame>_<box>;
# Duke: _f<frame>; CUHK03-NP: _<n>) and an image extension, possibly doubled as in the
# official ``1488_c5s3_071737_01.jpg.jpg`` names.
_NAME = re.compile(r"^(?P<pid>-1|\d+)_c(?P<cam>\d+)(?:s\d+)?_[^/\\]*?(?:\.(?:jpe?g|png))+$", re.IGNORECASE)


def parse_market_name(name: str) -> tuple[int, int]:
    """``(pid, camid)`` from a Market-style file name.

    ``0002_c1s1_000451_03.jpg -> (2, 1)``, ``-1_c3s2_...jpg -> (-1, 3)`` (junk),
    ``0000_c1s6_...jpg.jpg -> (0, 1)`` (distractor). Camera ids stay 1-based as written.
    Raises :class:`DatasetError` for a name that does not parse.
    """
    m = _NAME.match(Path(name).name)
    if m is None:
        raise DatasetError(f"cannot parse identity and camera from file name {name!r}; "
                           f"expected PID_cCAM..., e.g. 0002_c1s1_000451_03.jpg")
    camid = int(m.group("cam"))
    if camid < 1:
        raise DatasetError(f"file name {name!r} has camera {camid}; cameras are numbered from 1")
    return int(m.group("pid")), camid


def name_kind(pid: int) -> str:
    """``junk`` for pid -1, ``distractor`` for pid 0, else ``normal``."""
    return "junk" if pid == -1 else "distractor" if pid == 0 else "normal"


TOY_SPECS = ("toy", "synthetic")   # "synthetic" is the toy dataset's name before 0.2 (old run records use it)


def is_toy_spec(spec) -> bool:
    """True for the dataset spec that names the built-in toy dataset."""
    return isinstance(spec, str) and spec in TOY_SPECS


def resolve_dataset_root(spec: str | os.PathLike) -> Path:
    """Turn a dataset spec into a folder.

    - ``"market"``: ``$REID_AUG_MARKET_ROOT``, else ``../shared/datasets/market1501`` (relative to the cwd).
    - ``"toy"`` (also ``"synthetic"``, its old name): the toy dataset under ``$REID_AUG_CACHE`` (built on first use).
    - anything else: a path, which must exist.
    """
    if isinstance(spec, str) and spec == "market":
        env = os.environ.get("REID_AUG_MARKET_ROOT")
        if env:
            root = Path(env).expanduser()
            if not root.is_dir():
                raise DatasetError(f"REID_AUG_MARKET_ROOT={env} is not a folder; point it at the folder holding "
                                   f"{MARKET_SUBDIR}/ (and annotations/)")
            return root
        if DEFAULT_MARKET_ROOT.is_dir():
            return DEFAULT_MARKET_ROOT.resolve()
        raise DatasetError(f"Market-1501 not found: set REID_AUG_MARKET_ROOT to the folder holding {MARKET_SUBDIR}/ "
                           f"(and annotations/), or pass the dataset folder as a path")
    if is_toy_spec(spec):
        from reid_aug.toyset.render import ensure_toy

        return Path(ensure_toy())
    root = Path(spec).expanduser()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist; pass 'market', 'toy' or a folder in the "
                           f"Market-1501 layout")
    return root


def find_image_root(root: Path) -> Path:
    """The folder that holds ``bounding_box_train``/``bounding_box_test``/``query``."""
    candidates = [root, root / MARKET_SUBDIR]
    if root.is_dir():
        subs = sorted(p for p in root.iterdir() if p.is_dir() and (p / SPLIT_DIRS["train"]).is_dir())
        if len(subs) == 1:
            candidates.append(subs[0])
        elif len(subs) > 1 and not (root / SPLIT_DIRS["train"]).is_dir():
            raise DatasetError(f"{root} holds several datasets ({', '.join(p.name for p in subs)}); "
                               f"pass one of these folders instead")
    for cand in candidates:
        if (cand / SPLIT_DIRS["train"]).is_dir():
            missing = [d for d in SPLIT_DIRS.values() if not (cand / d).is_dir()]
            if missing:
                raise DatasetError(f"{cand} lacks the folder(s) {', '.join(missing)}; a dataset in the Market-1501 "
                                   f"layout needs bounding_box_train/, bounding_box_test/ and query/")
            return cand
    raise DatasetError(f"no Market-1501 layout under {root}: expected {root}/{MARKET_SUBDIR}/ or {root}/ (or one "
                       f"subfolder) holding bounding_box_train/, bounding_box_test/ and query/")


def _find_one(folder: Path | None, pattern: str) -> Path | None:
    if folder is None:
        return None
    found = sorted(folder.glob(pattern))
    if len(found) > 1:
        raise DatasetError(f"{folder} holds several files matching {pattern}: "
                           f"{', '.join(p.name for p in found)}; keep one")
    return found[0] if found else None


@dataclass
class DatasetIndex:
    """Everything known about a dataset folder.

    ``table`` has one row per image: ``split`` (train|query|gallery), ``name``, ``path``,
    ``pid``, ``camid`` (1-based), ``kind`` (normal|junk|distractor), ``has_pose``
    (an annotation row exists), ``pose_ok`` (both shoulders and both hips present).
    ``keypoints`` maps a file name to an int16 ``(18, 2)`` array of ``(y, x)``.
    """

    root: Path
    image_root: Path
    annotations_dir: Path | None
    table: pd.DataFrame
    keypoints: dict[str, np.ndarray] = field(repr=False)
    test_pairs_csv: Path | None = None
    annotation_files: tuple[Path, ...] = ()

    def split(self, name: str) -> pd.DataFrame:
        """Rows of one split (``train``, ``query`` or ``gallery``)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return self.table[self.table["split"] == name]

    def keypoints_for(self, names: Sequence[str]) -> np.ndarray:
        """int16 ``(N, 18, 2)``; an image without annotation gets all ``MISSING``."""
        return stack_keypoints(self.keypoints, list(names))

    def path_of(self, name: str) -> Path:
        """The file of an image name (names are unique across splits in Market-style datasets)."""
        lookup = self.__dict__.get("_paths")
        if lookup is None:
            lookup = dict(zip(self.table["name"], self.table["path"]))
            self.__dict__["_paths"] = lookup
        try:
            return Path(lookup[name])
        except KeyError:
            raise DatasetError(f"image {name!r} is not in the dataset at {self.image_root}") from None

    @property
    def missing_pose(self) -> pd.DataFrame:
        """Rows of images that have no annotation row (reported by ``prepare``, never dropped silently)."""
        return self.table[~self.table["has_pose"]]


def _list_split(folder: Path, split: str) -> tuple[list[dict], list[str]]:
    rows, bad = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") or not entry.is_file() or not name.lower().endswith(IMAGE_EXTENSIONS):
            continue  # Thumbs.db, readme files, hidden files
        try:
            pid, camid = parse_market_name(name)
        except DatasetError:
            bad.append(f"{split}: {name}")
            continue
        rows.append(dict(split=split, name=name, path=str(folder / name), pid=pid, camid=camid, kind=name_kind(pid)))
    return rows, bad


def load_dataset(root: str | os.PathLike, check_images: bool = False,
                 annotations_dir: str | os.PathLike | None | bool = None) -> DatasetIndex:
    """Index a dataset folder in the Market-1501 layout (``root`` may also be ``market``/``toy``).

    Keypoints come from ``annotations_dir`` when given (``False``: none), else from ``ROOT/annotations``
    (or beside the images), else from the folder ``reid-aug annotate`` recorded for this dataset.

    Raises :class:`DatasetError` for missing folders, file names that do not parse, malformed
    annotation files, and (with ``check_images``) corrupt or truncated images.
    """
    root = resolve_dataset_root(root)
    image_root = find_image_root(root)
    rows: list[dict] = []
    bad: list[str] = []
    for split in SPLITS:
        r, b = _list_split(image_root / SPLIT_DIRS[split], split)
        rows += r
        bad += b
    if bad:
        raise DatasetError(f"{len(bad)} file name(s) under {image_root} do not parse as PID_cCAM...jpg, e.g. "
                           f"{'; '.join(bad[:5])}; rename or remove them")
    if not any(r["split"] == "train" for r in rows):
        raise DatasetError(f"{image_root / SPLIT_DIRS['train']} holds no images (.jpg/.jpeg/.png)")
    table = pd.DataFrame(rows, columns=["split", "name", "path", "pid", "camid", "kind"])
    table["pid"] = table["pid"].astype(np.int64)
    table["camid"] = table["camid"].astype(np.int64)

    annotations_dir_arg = annotations_dir
    annotations_dir = _annotations_dir(root, image_root, annotations_dir)
    files = [f for f in (_find_one(annotations_dir, "*annotation-train.csv"),
                         _find_one(annotations_dir, "*annotation-test.csv")) if f is not None]
    keypoints: dict[str, np.ndarray] = {}
    for f in files:
        kps = read_annotations(f, height=None, width=None)   # rows are checked against their image when loaded
        dup = keypoints.keys() & kps.keys()
        conflicting = [n for n in dup if not np.array_equal(keypoints[n], kps[n])]
        if conflicting:
            raise DatasetError(f"{f} and another annotation file give different keypoints for "
                               f"{len(conflicting)} image(s), e.g. {sorted(conflicting)[:3]}; keep one row per image")
        keypoints.update(kps)
    if annotations_dir is None and annotations_dir_arg is not False:
        log.warning("no annotations/ folder under %s: no keypoints, so no training pairs (estimate them with "
                    "`reid-aug annotate %s`)", root, root)
    elif annotations_dir is not None and not files:
        log.warning("%s holds no *annotation-train.csv / *annotation-test.csv: no keypoints", annotations_dir)

    kp = stack_keypoints(keypoints, table["name"].tolist())
    table["has_pose"] = table["name"].map(keypoints.__contains__).astype(bool)
    table["pose_ok"] = np.all(kp[:, list(TORSO_JOINTS), 0] != MISSING, axis=1) & table["has_pose"].to_numpy()
    dup_names = table["name"][table["name"].duplicated()]
    if len(dup_names):
        log.warning("%d image name(s) occur in more than one split, e.g. %s", len(dup_names), dup_names.iloc[0])

    # The standard test pairs belong to the dataset, not to one set of keypoints: a folder given in place of the
    # dataset's own (annotate's output) that has no pairs file keeps the dataset's (Market: the 12,000 pairs).
    pairs_csv = _find_one(annotations_dir, "*pairs-test.csv")
    if pairs_csv is None and annotations_dir_arg not in (None, False):
        pairs_csv = _find_one(_annotations_dir(root, image_root, None), "*pairs-test.csv")
    index = DatasetIndex(root=root, image_root=image_root, annotations_dir=annotations_dir, table=table,
                         keypoints=keypoints, test_pairs_csv=pairs_csv, annotation_files=tuple(files))
    log.info("indexed %s: %s", image_root, ", ".join(f"{s} {int((table['split'] == s).sum())}" for s in SPLITS))
    if check_images:
        _check_images(table["path"].tolist())  # the argument shadows the function name
    return index


def annotation_record(index: DatasetIndex, given: str | os.PathLike | None) -> dict:
    """``{}`` for a dataset's own keypoints; else the folder read instead and its files' sha256 (run records)."""
    if given is None:
        return {}
    from reid_aug.utils.io import sha256_file

    return {"annotations": str(Path(given).resolve()),
            "annotations_sha256": {p.name: sha256_file(p) for p in index.annotation_files}}


def _annotations_dir(root: Path, image_root: Path, given) -> Path | None:
    if given is False:
        return None
    if given is not None:
        given = Path(given)
        if not given.is_dir():
            raise DatasetError(f"annotation folder {given} does not exist")
        return given
    own = next((d for d in (root / "annotations", image_root / "annotations") if d.is_dir()), None)
    if own is not None:
        return own
    from reid_aug.keypoints.annotate import recorded_annotations

    return recorded_annotations(image_root)


def _decode_error(path: str) -> str | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # full decode: a truncated JPEG raises here ("image file is truncated")
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
        return f"{path} ({type(e).__name__}: {e})"
    return None


def check_images(paths: Iterable[str | os.PathLike] | DatasetIndex, workers: int = 2) -> int:
    """Decode every image once (PIL ``.load()``); raise :class:`DatasetError` naming corrupt ones.

    Returns the number of images checked. ``paths`` may be a :class:`DatasetIndex`.
    """
    from concurrent.futures import ThreadPoolExecutor

    from PIL import ImageFile
    from tqdm import tqdm

    if isinstance(paths, DatasetIndex):
        paths = paths.table["path"].tolist()
    paths = [str(p) for p in paths]
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is set by some other code: truncated files may pass")
    with ThreadPoolExecutor(max(1, workers)) as pool:  # PIL releases the GIL while decoding
        errors = [e for e in tqdm(pool.map(_decode_error, paths, chunksize=64), total=len(paths),
                                  desc="checking images", unit="img", disable=None) if e]
    if errors:
        raise DatasetError(f"{len(errors)} of {len(paths)} image(s) cannot be decoded (corrupt or truncated): "
                           + "; ".join(errors[:5]) + ("; ..." if len(errors) > 5 else "")
                           + ". Replace them from the original download or delete them.")
    return len(paths)


_check_images = check_images
