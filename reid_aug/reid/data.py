"""The Re-ID training/evaluation data as ONE torchreid ``ImageDataset``.

- train: the real train images (optionally at most ``train_per_id`` per identity) plus, for the
  augmented run, the synthesized images under their SOURCE pid. They must not be a second
  torchreid source: ``Dataset.__add__`` shifts the pids of a second source, which would turn
  every synthesized image into a new identity. Labels are the real train pids relabelled
  ``0..P-1`` (sorted by pid); cameras are 0-based; ``dsetid`` marks real (0) / synthesized (1)
  so that the LSRO engine can tell them apart.
- query / gallery: untouched Market protocol: junk (pid -1) left out as torchreid's Market
  loader does, distractors (0000) kept in the gallery.

Images are read with our own loader: torchreid's ``read_image`` retries forever on a file
PIL cannot open, so a corrupt image would hang training; ours raises :class:`DatasetError`.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reid_aug.dataset.regime import keep_per_identity
from reid_aug.errors import DatasetError
from reid_aug.records import read_csv
from reid_aug.rundir import SynthesizedSet

log = logging.getLogger(__name__)

REAL_DSETID = 0
SYNTHESIZED_DSETID = 1
# torchreid's Market1501 pattern: what any Re-ID code will read from a synthesized file name
TORCHREID_MARKET_PATTERN = re.compile(r"([-\d]+)_c(\d)")


@dataclass
class ReidSplits:
    """Lists in torchreid's format: train ``(path, label, camid0, dsetid)``, query/gallery
    ``(path, pid, camid0)``."""

    train: list[tuple[str, int, int, int]]
    query: list[tuple[str, int, int]]
    gallery: list[tuple[str, int, int]]
    pid2label: dict[int, int]
    n_real: int
    n_synthesized: int
    train_per_id: int = 0
    info: dict = field(default_factory=dict)

    @property
    def num_train_pids(self) -> int:
        return len(self.pid2label)

    def key(self) -> str:
        """Content hash (registry name of the torchreid dataset built from these lists)."""
        h = hashlib.sha1()
        for part in (self.train, self.query, self.gallery):
            for item in part:
                h.update(repr(item).encode())
            h.update(b"|")
        return h.hexdigest()[:16]


# --------------------------------------------------------------------------- augmented folder
def read_augmented(augmented_dir: str | Path) -> pd.DataFrame:
    """The synthesized images of a ``synthesize`` output folder.

    Returns a DataFrame ``name, path, pid, camid`` (camid 1-based, as in the file name).
    The pid and camera come from the file name with torchreid's Market pattern
    ``([-\\d]+)_c(\\d)`` (what any Re-ID code reads); the manifest, when present, must agree
    with the names and with the files on disk. A filtered set (``reid-aug filter`` / ``synthesize
    --filter``: a ``kept`` column in the manifest) gives only its kept images.
    """
    d = Path(augmented_dir)
    img_dir = d / "bounding_box_train"
    if not img_dir.is_dir():
        raise DatasetError(f"{d} is not a `reid-aug synthesize` output: {img_dir} is missing "
                           f"(run `reid-aug synthesize --out {d}` first)")
    files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png")
                   and not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{img_dir} holds no images; run `reid-aug synthesize --out {d}`")
    rows = []
    for p in files:
        m = TORCHREID_MARKET_PATTERN.search(p.name)
        if m is None:
            raise DatasetError(f"synthesized image name {p.name} in {img_dir} does not match torchreid's "
                               f"Market pattern ([-\\d]+)_c(\\d); it cannot be given its source identity")
        rows.append(dict(name=p.name, path=str(p), pid=int(m.group(1)), camid=int(m.group(2))))
    table = pd.DataFrame(rows, columns=["name", "path", "pid", "camid"])
    manifest = SynthesizedSet(d).manifest
    if manifest.is_file():
        man = read_csv(manifest, "a synthesis manifest (manifest.csv)", required=("file", "pid", "camid"))
        man_names = man["file"].map(lambda f: Path(str(f)).name)
        on_disk = set(table["name"])
        listed = set(man_names)
        if on_disk != listed:
            only_disk = sorted(on_disk - listed)[:3]
            only_man = sorted(listed - on_disk)[:3]
            raise DatasetError(f"{manifest} does not match the files in {img_dir} (only on disk: {only_disk}, "
                               f"only in the manifest: {only_man}); run `reid-aug synthesize --verify {d}` and "
                               f"finish or redo the synthesis")
        by_name = dict(zip(man_names, zip(man["pid"].astype(int), man["camid"].astype(int))))
        wrong = [n for n, pid, cam in zip(table["name"], table["pid"], table["camid"]) if by_name[n] != (pid, cam)]
        if wrong:
            raise DatasetError(f"{len(wrong)} synthesized file name(s) in {img_dir} disagree with {manifest} on the "
                               f"pid/camera, e.g. {wrong[0]}")
        if "kept" in man.columns:
            table = _kept_only(table, dict(zip(man_names, man["kept"])), manifest)
    else:
        log.warning("%s has no manifest.csv: identities taken from the file names alone", d)
    return table


def _kept_only(table: pd.DataFrame, kept: dict, manifest: Path) -> pd.DataFrame:
    """The rows of ``table`` whose manifest ``kept`` flag (file name -> 1/0) is 1; none kept is an error."""
    flags = table["name"].map(kept)
    if not flags.isin([0, 1]).all():
        raise DatasetError(f"{manifest}: the kept column holds values other than 1/0; filter the set again "
                           f"(`reid-aug filter`)")
    out = table[flags == 1].reset_index(drop=True)
    if out.empty:
        raise DatasetError(f"{manifest}: the filter kept none of the {len(table)} images; filter with a looser rule "
                           f"(`reid-aug filter --rule top-k --k K` with a larger K, or --rule threshold)")
    log.info("%s: filtered set, %d of %d images kept (%d identities)", manifest.parent, len(out), len(table),
             out["pid"].nunique())
    return out


def source_images_of(table: pd.DataFrame, augmented_dir: str | Path, index) -> pd.DataFrame:
    """``train.augmented_images: sources``: :func:`read_augmented`'s table with every ``path`` replaced by the real
    image the synthesized one was made from (the manifest's ``source``, found in ``index``); names, identities and
    cameras unchanged, so the run draws the same stream with the same labels."""
    manifest = SynthesizedSet(augmented_dir).manifest
    if not manifest.is_file():
        raise DatasetError(f"train.augmented_images=sources needs {manifest} (its source column names each "
                           f"synthesized image's source); the folder has none")
    man = read_csv(manifest, "a synthesis manifest (manifest.csv)", required=("file", "source"))
    source = dict(zip(man["file"].map(lambda f: Path(str(f)).name), man["source"].astype(str)))
    return table.assign(path=[str(index.path_of(source[n])) for n in table["name"]])


# --------------------------------------------------------------------------- splits
def validation_split(train: pd.DataFrame, val_ids: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame,
                                                                                 pd.DataFrame]:
    """``(train without them, query, gallery)``: ``val_ids`` training identities drawn with ``seed``, each giving
    its first image (by name) of every camera to the query and its other images to the gallery."""
    import numpy as np

    pids = sorted(int(p) for p in train["pid"].unique())
    if val_ids >= len(pids):
        raise DatasetError(f"data.val_ids={val_ids} leaves no training identity ({len(pids)} in all)")
    held = set(np.random.default_rng(seed).choice(pids, size=val_ids, replace=False).tolist())
    val = train[train["pid"].isin(held)].sort_values("name", kind="stable")
    first = val.groupby(["pid", "camid"], sort=False).head(1)
    gallery = val.drop(first.index)
    return train[~train["pid"].isin(held)], first, gallery


def build_splits(index, augmented: pd.DataFrame | None = None, train_per_id: int = 0,
                 subsample_seed: int = 0, test_ids: int = 0, val_ids: int = 0, val_seed: int = 0,
                 split: str = "test") -> ReidSplits:
    """Real train (+ synthesized) / query / gallery lists for torchreid.

    Args:
        index: a :class:`reid_aug.dataset.market.DatasetIndex`.
        augmented: :func:`read_augmented` table, or None for the baseline.
        train_per_id: > 0 keeps at most that many real train images per identity.
        test_ids: > 0 keeps only the first ``test_ids`` test identities in query and gallery (a smoke
            setting for quick end-to-end checks; distractors are left out too). Its numbers are not
            comparable with the full protocol's.
        val_ids / val_seed / split: :func:`validation_split` of the training identities (before the
            ``train_per_id`` subsample); ``split="val"`` makes them the query/gallery.
    """
    table = index.table
    train = table[(table["split"] == "train") & (table["pid"] > 0)]
    if len(train) == 0:
        raise DatasetError(f"{index.image_root}: the train split holds no labelled images")
    dropped = int(((table["split"] == "train") & (table["pid"] <= 0)).sum())
    if dropped:
        log.info("train split: %d junk/distractor image(s) left out", dropped)
    val = None
    if val_ids and val_ids > 0:
        train, vq, vg = validation_split(train, val_ids, val_seed)
        val = (vq, vg)
        log.info("validation split: %d training identities held out (%d query, %d gallery images)", val_ids,
                 len(vq), len(vg))
    if train_per_id and train_per_id > 0:
        before = len(train)
        train = keep_per_identity(train, train_per_id, subsample_seed)
        log.info("train subsample: at most %d image(s) per identity -> %d of %d real images",
                 train_per_id, len(train), before)
    pids = sorted(int(p) for p in train["pid"].unique())
    pid2label = {pid: i for i, pid in enumerate(pids)}
    items = [(str(p), pid2label[int(pid)], int(cam) - 1, REAL_DSETID)
             for p, pid, cam in zip(train["path"], train["pid"], train["camid"])]
    n_synth = 0
    if augmented is not None and len(augmented) and val is not None:
        held = set(int(p) for p in val[0]["pid"])
        n_before = len(augmented)
        augmented = augmented[~augmented["pid"].isin(held)]
        log.info("validation split: %d synthesized image(s) of held-out identities left out", n_before - len(augmented))
    if augmented is not None and len(augmented):
        unknown = sorted(set(int(p) for p in augmented["pid"]) - set(pid2label))
        if unknown:
            raise DatasetError(f"{len(unknown)} synthesized identit(ies) are not training identities of "
                               f"{index.image_root} (e.g. pid {unknown[0]}); the augmented folder was made from "
                               f"another dataset -- synthesize it from this one")
        items += [(str(p), pid2label[int(pid)], int(cam) - 1, SYNTHESIZED_DSETID)
                  for p, pid, cam in zip(augmented["path"], augmented["pid"], augmented["camid"])]
        n_synth = len(augmented)

    keep_ids = None
    if test_ids and test_ids > 0:
        keep_ids = sorted(int(p) for p in table.loc[(table["split"] == "query") & (table["pid"] > 0), "pid"].unique())
        keep_ids = set(keep_ids[:test_ids])

    def test_list(split):
        rows = table[(table["split"] == split) & (table["pid"] != -1)]   # junk out, distractors in
        if keep_ids is not None:
            rows = rows[rows["pid"].isin(keep_ids)]
        return [(str(p), int(pid), int(cam) - 1) for p, pid, cam in zip(rows["path"], rows["pid"], rows["camid"])]

    if split == "val":
        if val is None:
            raise DatasetError("eval.split=val needs data.val_ids >= 1")
        query, gallery = [[(str(p), int(pid), int(cam) - 1) for p, pid, cam in zip(t["path"], t["pid"], t["camid"])]
                          for t in val]
    else:
        query, gallery = test_list("query"), test_list("gallery")
    if not query or not gallery:
        raise DatasetError(f"{index.image_root}: query ({len(query)}) or gallery ({len(gallery)}) is empty")
    return ReidSplits(train=items, query=query, gallery=gallery, pid2label=pid2label, n_real=len(items) - n_synth,
                      n_synthesized=n_synth, train_per_id=int(train_per_id or 0),
                      info=dict(dataset=str(index.image_root), n_query=len(query), n_gallery=len(gallery),
                                test_ids=int(test_ids or 0), val_ids=int(val_ids or 0), split=split))


# --------------------------------------------------------------------------- images
def read_image_checked(path: str):
    """PIL RGB image; :class:`DatasetError` (not torchreid's endless retry) when it cannot be decoded."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"image {path} does not exist (dataset changed since it was indexed?)") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure
        raise DatasetError(f"image {path} cannot be decoded ({type(e).__name__}: {e}); replace or delete it") from None


def validate_images(splits: ReidSplits, workers: int = 2) -> int:
    """Decode every image of the splits once; raise :class:`DatasetError` naming the corrupt ones."""
    from reid_aug.dataset.market import check_images

    paths = sorted({p for p, *_ in splits.train} | {p for p, *_ in splits.query} | {p for p, *_ in splits.gallery})
    return check_images(paths, workers=workers)


# --------------------------------------------------------------------------- torchreid
def import_torchreid():
    """``torchreid.reid`` without its 'Cython evaluation is unavailable' warning (we use our own evaluator)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cython evaluation", category=UserWarning)
        import torchreid.reid  # noqa: F401
        import torchreid.reid.metrics.rank  # noqa: F401
    import torchreid

    return torchreid.reid


@contextlib.contextmanager
def quiet_stdout(level: int = logging.DEBUG):
    """torchreid prints its summaries; route them to our log instead of the terminal."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield
    text = buf.getvalue().strip()
    if text:
        log.log(level, "torchreid: %s", text)


def _base_dataset_class():
    """Module-level torchreid ``ImageDataset`` subclass (created on first use: torchreid is a heavy import)."""
    global _ReidAugImageDataset
    if _ReidAugImageDataset is None:
        reid = import_torchreid()

        class ReidAugImageDataset(reid.data.datasets.dataset.ImageDataset):
            """Real (+ synthesized) train, Market query/gallery; the lists live on the class (``_splits``)
            because torchreid's registry instantiates datasets by name with fixed arguments."""

            _splits: ReidSplits | None = None

            def __init__(self, root="", **kwargs):
                s = type(self)._splits
                # dataset-specific options torchreid's data manager passes to every dataset
                for k in ("split_id", "cuhk03_labeled", "cuhk03_classic_split", "market1501_500k"):
                    kwargs.pop(k, None)
                super().__init__(list(s.train), list(s.query), list(s.gallery), **kwargs)

            def __getitem__(self, index):
                img_path, pid, camid, dsetid = self.data[index]
                img = read_image_checked(img_path)
                if self.transform is not None:
                    img = self._transform_image(self.transform, self.k_tfm, img)
                return {"img": img, "pid": pid, "camid": camid, "impath": img_path, "dsetid": dsetid}

        _ReidAugImageDataset = ReidAugImageDataset
    return _ReidAugImageDataset


_ReidAugImageDataset = None


def _dataset_class(splits: ReidSplits):
    """A subclass of the base dataset holding ``splits``, reachable as a module attribute."""
    name = f"ReidAugImageDataset_{splits.key()}"
    cls = globals().get(name)
    if cls is None:
        cls = type(name, (_base_dataset_class(),), {"_splits": splits, "__module__": __name__})
        globals()[name] = cls
    return cls


def register_dataset(splits: ReidSplits) -> str:
    """Register the splits as a torchreid image dataset; returns its registry name."""
    reid = import_torchreid()
    name = f"reid_aug_{splits.key()}"
    try:
        reid.data.register_image_dataset(name, _dataset_class(splits))
    except ValueError:
        pass  # same content registered earlier in this process (the name is a content hash)
    return name


def build_datamanager(splits: ReidSplits, height: int, width: int, transforms, batch_size: int,
                      batch_size_test: int = 128, workers: int = 2, use_gpu: bool = False):
    """torchreid ``ImageDataManager`` over the registered dataset (one source, no pid shifting)."""
    reid = import_torchreid()
    name = register_dataset(splits)
    with quiet_stdout():
        dm = reid.data.ImageDataManager(root="", sources=name, height=height, width=width,
                                        transforms=list(transforms), batch_size_train=batch_size,
                                        batch_size_test=batch_size_test, workers=workers, use_gpu=use_gpu,
                                        train_sampler="RandomSampler")
    if dm.num_train_pids != splits.num_train_pids:
        raise AssertionError(f"torchreid counts {dm.num_train_pids} train ids, we relabelled {splits.num_train_pids}")
    if len(dm.train_loader) == 0:
        raise DatasetError(f"{len(splits.train)} training images give no full batch of {batch_size} "
                           f"(torchreid drops the last incomplete batch); lower train.batch_size")
    return dm


def test_transform(height: int, width: int):
    """torchreid's test transform: resize, to tensor, ImageNet normalisation."""
    reid = import_torchreid()
    with quiet_stdout():
        _, transform_te = reid.data.transforms.build_transforms(height, width, transforms=None)
    return transform_te


class ImageListDataset:
    """``(3, H, W)`` test-transformed images of a path list (for feature extraction)."""

    def __init__(self, paths, height: int, width: int):
        self.paths = [str(p) for p in paths]
        self.transform = test_transform(height, width)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.transform(read_image_checked(self.paths[i]))
