"""PyTorch datasets over a :class:`~reid_aug.dataset.market.DatasetIndex`.

Pose maps and masks are computed on the fly from the keypoints (:mod:`reid_aug.pose.maps`);
nothing is cached on disk.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from reid_aug.errors import AnnotationError, DatasetError
from reid_aug.keypoints.skeleton import MISSING
from reid_aug.pose.maps import flip_images, flip_keypoints, pose_heatmaps, pose_masks

log = logging.getLogger(__name__)


def _read_rgb(path: str | Path):
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.convert("RGB")  # convert() fully decodes: truncated files fail here
    except FileNotFoundError:
        raise DatasetError(f"image {path} not found; re-run `reid-aug prepare` if the dataset moved") from None
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
        raise DatasetError(f"cannot decode image {path} ({type(e).__name__}: {e}); it is corrupt or truncated: "
                           f"replace it from the original download (`reid-aug prepare DATASET --check-images` "
                           f"lists all such files)") from None


def _to_tensor(im, size: Sequence[int]) -> torch.Tensor:
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    if im.size != (w, h):
        im = im.resize((w, h), Image.BILINEAR)
    arr = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy())  # (H, W, 3)
    return arr.permute(2, 0, 1).to(torch.float32).div_(127.5).sub_(1.0)


def load_image(path: str | Path, size: Sequence[int] = (128, 64)) -> torch.Tensor:
    """Read an image as float32 ``(3, H, W)`` in [-1, 1], resized (bilinear) to ``size = (H, W)`` if it differs.

    Raises :class:`DatasetError` naming the file for a missing, corrupt or truncated image.
    """
    return _to_tensor(_read_rgb(path), size)


def load_image_and_size(path: str | Path, size: Sequence[int] = (128, 64)) -> tuple[torch.Tensor, tuple[int, int]]:
    """:func:`load_image` plus the file's own ``(H, W)`` (to rescale its keypoints)."""
    im = _read_rgb(path)
    return _to_tensor(im, size), (im.size[1], im.size[0])


def scale_keypoints(kp: np.ndarray, from_size: Sequence[int], to_size: Sequence[int]) -> np.ndarray:
    """Rescale ``(..., 18, 2)`` (y, x) keypoints from an ``(H0, W0)`` image to ``(H, W)``; -1 stays -1."""
    kp = np.asarray(kp)
    if tuple(from_size) == tuple(to_size):
        return kp
    scale = np.array([to_size[0] / from_size[0], to_size[1] / from_size[1]])
    limit = np.array([to_size[0] - 1, to_size[1] - 1])
    present = np.all(kp != MISSING, axis=-1, keepdims=True)
    # pixel k covers [k, k+1) in continuous coordinates: its centre k + 0.5 maps to (k + 0.5) * scale
    scaled = np.clip(np.floor((kp + 0.5) * scale), 0, limit)
    return np.where(present, scaled, MISSING).astype(kp.dtype)


class _IndexedImages:
    """Shared look-ups: name -> path and name -> keypoints."""

    def __init__(self, index, size: Sequence[int], pose_mode: str):
        if pose_mode not in ("pg2", "gaussian"):
            raise ValueError(f"unknown pose_mode {pose_mode!r}; expected 'pg2' or 'gaussian'")
        self.index = index
        self.size = (int(size[0]), int(size[1]))
        self.pose_mode = pose_mode

    def load(self, name: str) -> tuple[torch.Tensor, np.ndarray]:
        """``img (3,H,W)`` and int64 keypoints ``(18, 2)`` in the frame of ``size``."""
        img, own_size = load_image_and_size(self.index.path_of(name), self.size)
        kp = self.index.keypoints_for([name])[0].astype(np.int64)
        outside = (kp[:, 0] >= own_size[0]) | (kp[:, 1] >= own_size[1])
        if outside.any():
            j = int(np.flatnonzero(outside)[0])
            raise AnnotationError(f"keypoint {j} of {name} at (y={kp[j, 0]}, x={kp[j, 1]}) lies outside its "
                                  f"{own_size[0]}x{own_size[1]} image; fix its annotation row")
        return img, scale_keypoints(kp, own_size, self.size)


class PosePairDataset(Dataset):
    """Pose-transfer pairs as dicts of tensors.

    Item ``i`` of ``pairs`` (DataFrame with ``from``, ``to`` columns):

    - ``src_img``, ``tgt_img``: float32 ``(3, H, W)`` in [-1, 1]
    - ``src_pose``, ``tgt_pose``: float32 ``(18, H, W)`` (:func:`pose_heatmaps` in ``pose_mode``)
    - ``tgt_mask``: float32 ``(1, H, W)`` in {0, 1} (:func:`pose_masks`)
    - ``src_kp``, ``tgt_kp``: int64 ``(18, 2)`` (y, x), -1 missing
    - ``src_name``, ``tgt_name``: file names; ``flipped``: bool

    With ``flip=True`` each item is mirrored with probability 0.5 (``torch.rand``, so DataLoader
    worker seeding applies), consistently for both images, both poses and the mask.
    Images of another size are resized to ``size`` and their keypoints rescaled.

    ``with_maps=False`` leaves out ``src_pose``, ``tgt_pose`` and ``tgt_mask``: a training loop then
    calls :func:`add_pose_maps` on the collated batch (on its device), which computes them for the
    whole batch at once -- several times cheaper than per item (see benchmarks/results/posemaps.md).
    """

    def __init__(self, index, pairs: pd.DataFrame, flip: bool = False, pose_mode: str = "pg2",
                 size: Sequence[int] = (128, 64), with_maps: bool = True, mask_style: str = "defgan"):
        self._images = _IndexedImages(index, size, pose_mode)
        if not {"from", "to"} <= set(pairs.columns):
            raise ValueError(f"pairs must have columns 'from' and 'to', got {list(pairs.columns)}")
        self.src_names = pairs["from"].astype(str).tolist()
        self.tgt_names = pairs["to"].astype(str).tolist()
        self.flip = flip
        self.pose_mode = pose_mode
        self.size = self._images.size
        self.with_maps = with_maps
        self.mask_style = mask_style      # tgt_mask: Deformable GAN's or PG²'s construction (pose_masks)

    def __len__(self) -> int:
        return len(self.src_names)

    def __getitem__(self, i: int) -> dict:
        src_img, src_kp = self._images.load(self.src_names[i])
        tgt_img, tgt_kp = self._images.load(self.tgt_names[i])
        flipped = bool(self.flip and torch.rand(()) < 0.5)
        if flipped:
            src_img, tgt_img = flip_images(src_img), flip_images(tgt_img)
            src_kp, tgt_kp = flip_keypoints(src_kp, self.size[1]), flip_keypoints(tgt_kp, self.size[1])
        kps = torch.from_numpy(np.stack([src_kp, tgt_kp]))
        item = {"src_img": src_img, "src_kp": kps[0], "tgt_img": tgt_img, "tgt_kp": kps[1],
                "src_name": self.src_names[i], "tgt_name": self.tgt_names[i], "flipped": flipped}
        if self.with_maps:
            poses = pose_heatmaps(kps, self.size, mode=self.pose_mode)
            item.update(src_pose=poses[0], tgt_pose=poses[1], tgt_mask=pose_masks(kps[1], self.size, style=self.mask_style))
        return item


def add_pose_maps(batch: dict, pose_mode: str = "pg2", size: Sequence[int] | None = None,
                  mask_style: str = "defgan") -> dict:
    """Fill ``src_pose``, ``tgt_pose`` ``(B,18,H,W)`` and ``tgt_mask`` ``(B,1,H,W)`` of a collated batch
    from its ``src_kp``/``tgt_kp`` ``(B,18,2)``, batched, on the keypoints' device. Returns ``batch``.

    ``size`` defaults to the size of ``batch["src_img"]``. Gives exactly what a ``with_maps=True``
    dataset would have returned.
    """
    if size is None:
        size = tuple(batch["src_img"].shape[-2:])
    kps = torch.stack([batch["src_kp"], batch["tgt_kp"]])                # (2, B, 18, 2)
    poses = pose_heatmaps(kps, size, mode=pose_mode)
    batch["src_pose"], batch["tgt_pose"] = poses[0], poses[1]
    batch["tgt_mask"] = pose_masks(batch["tgt_kp"], size, style=mask_style)
    return batch


class PoseImageDataset(Dataset):
    """Single images with their pose: ``img (3,H,W)``, ``pose (18,H,W)``, ``mask (1,H,W)``,
    ``kp`` int64 ``(18, 2)``, ``name`` (used by synthesis and evaluation)."""

    def __init__(self, index, names: Sequence[str], size: Sequence[int] = (128, 64), pose_mode: str = "pg2"):
        self._images = _IndexedImages(index, size, pose_mode)
        self.names = [str(n) for n in names]
        self.pose_mode = pose_mode
        self.size = self._images.size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        img, kp = self._images.load(self.names[i])
        kp = torch.from_numpy(kp)
        return {"img": img, "pose": pose_heatmaps(kp, self.size, mode=self.pose_mode),
                "mask": pose_masks(kp, self.size), "kp": kp, "name": self.names[i]}
