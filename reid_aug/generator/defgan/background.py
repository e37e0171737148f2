"""The background image of Deformable GAN's TPAMI conditioning (``model.use_bg``), for crops without one.

The official code reads a precomputed background per target image (``<to>_BG.jpg``: PRW's video frames give one
from the frames around the crop). Re-ID crops come without it, so here a background is an image with its person
cut out: the pixels outside Deformable GAN's pose mask of its own skeleton, grown by ``grow`` pixels so that the
person's outline does not leak through, and 0 (mid grey in [-1, 1]) inside.

- Training and evaluation: the target image's own background (as the official training and the PRW protocol).
- Synthesis: another source image of the run (so a low-data subset stays closed) from the synthesized image's
  camera, of another identity, torso annotated, chosen deterministically per synthesized file
  (:class:`BackgroundPicker`).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_GROW = 6


def person_mask(kps: torch.Tensor, size, grow: int = DEFAULT_GROW) -> torch.Tensor:
    """``(B, 18, 2)`` (y, x) keypoints -> ``(B, 1, H, W)`` float {0, 1}: Deformable GAN's pose mask grown by
    ``grow`` pixels (a square max-filter of side 2 * grow + 1). An image without keypoints masks nothing."""
    from reid_aug.pose.maps import pose_masks

    mask = pose_masks(kps.cpu(), tuple(size), style="defgan").to(kps.device)
    if grow > 0:
        mask = F.max_pool2d(mask, 2 * grow + 1, stride=1, padding=grow)
    return mask


def background(img: torch.Tensor, kps: torch.Tensor, grow: int = DEFAULT_GROW) -> torch.Tensor:
    """``img (B, 3, H, W)`` in [-1, 1] and its own ``kps (B, 18, 2)`` -> ``(B, 3, H, W)``: the image with its
    person (grown pose mask) set to 0."""
    return img * (1 - person_mask(kps, img.shape[-2:], grow).to(img.dtype))


def with_target_background(batch: dict, grow: int) -> dict:
    """``batch`` with ``bg``: the target image's own background (``tgt_img``, ``tgt_kp``), unless it has one."""
    if "bg" in batch:
        return batch
    return {**batch, "bg": background(batch["tgt_img"], batch["tgt_kp"], grow)}


class BackgroundPicker:
    """For synthesis: the background image of each synthesized file, from the training images of its camera.

    ``table``: the candidate images' rows (``name``, ``path``, ``pid``, ``camid``, ``pose_ok``); ``keypoints``:
    name -> (18, 2) in the image's own frame. A synthesized file of identity ``pid`` and camera ``camid`` gets
    the image at ``sha256(seed, file) mod n`` among that camera's annotated images of other identities (all
    cameras' when its camera has none), so the choice does not depend on batching, shards or resumes.
    """

    def __init__(self, table, keypoints: dict, seed: int, grow: int = DEFAULT_GROW):
        rows = table[table["pose_ok"].astype(bool)].sort_values("name")
        if rows.empty:
            raise ValueError("no training image with shoulders and hips annotated to take a background from")
        self.seed, self.grow = int(seed), int(grow)
        self.names = rows["name"].to_numpy(object)
        self.paths = dict(zip(rows["name"], rows["path"]))
        self.pids = rows["pid"].to_numpy(np.int64)
        self.cams = rows["camid"].to_numpy(np.int64)
        self.keypoints = {n: np.asarray(keypoints[n]) for n in self.names}

    def pick(self, file: str, pid: int, camid: int) -> str:
        """The name of the training image whose background goes with synthesized ``file``."""
        ok = (self.cams == camid) & (self.pids != pid)
        if not ok.any():
            ok = self.pids != pid
        if not ok.any():
            ok = np.ones(len(self.names), bool)
        choices = self.names[ok]
        h = int.from_bytes(hashlib.sha256(f"{self.seed}:{file}".encode()).digest()[:8], "big")
        return str(choices[h % len(choices)])

    def load(self, names, size) -> torch.Tensor:
        """``names`` -> ``(B, 3, H, W)`` backgrounds at the generator's ``size``, keypoints following the resize."""
        from reid_aug.pairs.torch_dataset import load_image_and_size, scale_keypoints

        imgs, kps = [], []
        for n in names:
            img, orig = load_image_and_size(Path(self.paths[n]), tuple(size))
            imgs.append(img)
            kps.append(scale_keypoints(self.keypoints[n].astype(np.int64), orig, tuple(size)))
        return background(torch.stack(imgs), torch.from_numpy(np.stack(kps)), self.grow)
