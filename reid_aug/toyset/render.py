"""The embedded default dataset: procedurally drawn pedestrians in the Market-1501 layout.

``make_toy(out)`` writes exactly what a Market-1501 download plus the pose-transfer
annotations look like, so every later command runs on it through the same code path as on
real data::

    out/
      bounding_box_train/  PPPP_cCsS_FFFFFF_NN.jpg      train identities
      bounding_box_test/   gallery: test identities + junk (-1_...) + distractors (0000_...)
      query/               one image per test identity per camera, for a random subset of
                           the cameras that identity's gallery images come from (as in Market)
      annotations/toy-annotation-train.csv   18 keypoints per image, (y, x), -1 = missing
      annotations/toy-annotation-test.csv    bounding_box_test + query images
      annotations/toy-pairs-test.csv         ``from,to`` same-identity gallery pairs whose
                                                   two poses both have shoulders and hips
      contact_sheet.png    samples with their keypoints and skeleton drawn
      toy.json       the parameters (a folder with it is complete: it is renamed into
                           place only once everything is written)

What is drawn
-------------
- **Identities** (fixed per person id): skin tone, hair colour and style (cropped, short,
  long, optional cap), upper garment (colour, second colour, solid / horizontal stripes /
  checks, long or short sleeves, optional chest print seen only from the front), lower
  garment (trousers, knee shorts or skirt; solid / stripes / checks), shoes, an optional bag
  (backpack: box on the back, straps on the chest; or shoulder bag on one hip). Colours come
  from a palette weighted towards black, grey, white and navy with a small jitter per person,
  so many identities look alike and differ only in a few details, as in a real street.
- **Bodies** are built from a 3-D stick skeleton (body proportions fitted to the Market-1501
  annotation statistics: neck-hip 37 px, hip-ankle 49 px, shoulders 24 px apart) rotated about
  the vertical axis and projected orthographically. Limbs are capsules, torso/skirt/bags are
  polygons, drawn far-to-near (painter's algorithm on the projected depth) into a part-label
  map at 2x resolution, coloured (garment patterns are anchored at the neck / hips so they move
  with the body), outlined, composited on the background and averaged down to 128x64 (anti-aliased).
  Garments therefore follow the limbs: pose transfer has a clean, learnable target.
- **Poses**: walking phase (legs and counter-swinging arms, knee bend in the swing phase),
  stride from almost standing to a long step, viewpoint front / back (35 % each, +-25 deg) or
  right / left side (15 % each, +-15 deg; "right" = the person's right side faces the camera,
  i.e. walking towards the image's right edge), scale, position. Keypoints are the projected
  joints in the 18-joint COCO/OpenPose order of :mod:`reid_aug.keypoints.skeleton`, so in a
  front view the person's right shoulder is on the image's left, in a back view on its right.
  Face joints follow the head's orientation: a back view has no nose and eyes, a side view
  has no far-side eye and ear. Like a pose estimator, each joint is also dropped at random
  (wrists 10 %, ankles 6 %, shoulders/hips 2 %, ...; 1 % of poses are lost completely).
- **Six cameras** with their own scene (street with windows, shaded arcade with pillars,
  lawn with trees, glass front over bricks, overcast plaza, dim low-resolution corner),
  clutter (poles, bins, signs, bushes, bikes, cars) and illumination (gain, colour cast,
  contrast, vertical light gradient, sensor noise, camera 6 at half resolution). Each
  identity is seen by 2-4 of them.
- **Junk** (``-1``) images are badly cropped strangers (keypoints outside the crop are -1)
  and **distractors** (``0000``) are empty background crops (all keypoints -1) or cropped
  strangers, each 10 % of the gallery, as in Market's gallery.

Defaults (chosen for ``reid-aug demo``: generator + Re-ID baseline and augmented within 10
minutes on 2 CPU cores)
---------------------------------------------------------------------------------------------
- 150 train identities x 4 images (600 train images, 1,800 same-identity ordered pairs
  before the shoulder/hip filter): few real images per identity, so pose-transferred
  augmentation has room to help, yet enough pairs for a small PG² generator to learn the
  transfer in a few minutes at 128x64.
- 150 test identities x 6 gallery images + ~2 queries each, + 10 % junk and 10 % distractors
  (about 2,000 images in all), 1,000 test pairs.
- Generation takes a few seconds: under 3 ms of CPU per image (vectorised numpy + PIL
  polygons at 2x, no per-pixel Python), ~5 s for the default ~2,000 images on one busy core.
- A fair re-identification problem: a mean-colour nearest-neighbour matcher (4 horizontal
  bands of the image centre, Market protocol) ranks the right identity first for about
  10-15 % of the queries across cameras (chance: 0.7 %); on the same colours measured on the
  person's pixels only it reaches ~70 %, so the identities are distinguishable, but
  backgrounds, camera lighting, viewpoints and look-alike clothes get in the way (see
  ``tests/test_toyset.py``). For comparison the same matcher gets 6 % on Market-1501
  with 750 gallery identities.

Person ids lie in 1..n_train_ids+n_test_ids, shuffled between the splits (as in Market, train
and test ids interleave); up to 1501 ids keep torchreid's own ``Market1501`` class happy.
Everything is a function of the seed: the same seed gives byte-identical JPEGs and CSVs.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from reid_aug.errors import DatasetError, StaleToyError
from reid_aug.keypoints.annotations import write_annotations
from reid_aug.keypoints.skeleton import KP, LIMBS, MISSING, NUM_KEYPOINTS, TORSO_JOINTS
from reid_aug.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
# Bumped whenever the drawing code changes what a seed produces: a folder drawn by another
# revision is never reused as if it were this one (ensure_toy rebuilds its cache).
DRAWING_REVISION = 2
DEFAULT_N_TRAIN_IDS = 150
DEFAULT_N_TEST_IDS = 150
DEFAULT_IMAGES_PER_ID = 4
DEFAULT_GALLERY_PER_ID = 6
DEFAULT_N_TEST_PAIRS = 1000
NUM_CAMERAS = 6
VIEWS = ("front", "back", "right", "left")
MARKER_FILE = "toy.json"

# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class ToyParams:
    """Everything that determines the dataset; stored in ``toy.json``."""

    seed: int = 0
    n_train_ids: int = DEFAULT_N_TRAIN_IDS
    n_test_ids: int = DEFAULT_N_TEST_IDS
    images_per_id: int = DEFAULT_IMAGES_PER_ID        # train images per identity
    gallery_per_id: int = DEFAULT_GALLERY_PER_ID      # gallery images per test identity
    height: int = 128
    width: int = 64
    junk_frac: float = 0.1                             # junk images per normal gallery image
    distractor_frac: float = 0.1                       # distractor images per normal gallery image
    n_test_pairs: int = DEFAULT_N_TEST_PAIRS
    jpeg_quality: int = 90
    version: int = FORMAT_VERSION

    def validate(self) -> None:
        def bad(msg: str) -> DatasetError:
            return DatasetError(f"toy dataset parameters: {msg}")

        if self.n_train_ids < 1 or self.n_test_ids < 1:
            raise bad(f"need at least 1 train and 1 test identity (got {self.n_train_ids}, {self.n_test_ids})")
        if self.n_train_ids + self.n_test_ids > 9998:
            raise bad("at most 9998 identities fit the 4-digit Market names")
        if self.images_per_id < 2 or self.gallery_per_id < 2:
            raise bad(f"images_per_id and gallery_per_id must be >= 2 (each identity is seen by >= 2 cameras); "
                      f"got {self.images_per_id}, {self.gallery_per_id}")
        if self.height < 32 or self.width < 16:
            raise bad(f"image size {self.height}x{self.width} is too small (>= 32x16)")
        if not (0 <= self.junk_frac <= 1 and 0 <= self.distractor_frac <= 1):
            raise bad("junk_frac and distractor_frac must lie in [0, 1]")
        if self.n_test_pairs < 0 or not (1 <= self.jpeg_quality <= 100):
            raise bad("n_test_pairs must be >= 0 and jpeg_quality in 1..100")


# ----------------------------------------------------------------------------- appearance

Colour = tuple[int, int, int]

# (name, RGB, weight as an upper garment, weight as a lower garment)
_GARMENT_PALETTE: tuple[tuple[str, Colour, float, float], ...] = (
    ("black", (28, 28, 32), 0.15, 0.24),
    ("charcoal", (62, 62, 68), 0.08, 0.10),
    ("grey", (128, 128, 130), 0.09, 0.09),
    ("white", (228, 228, 222), 0.12, 0.03),
    ("navy", (34, 44, 92), 0.08, 0.12),
    ("denim", (62, 92, 150), 0.04, 0.16),
    ("blue", (45, 95, 185), 0.05, 0.03),
    ("light blue", (135, 175, 220), 0.05, 0.02),
    ("red", (185, 35, 40), 0.06, 0.01),
    ("maroon", (112, 30, 48), 0.03, 0.02),
    ("green", (45, 125, 62), 0.04, 0.02),
    ("olive", (102, 106, 56), 0.03, 0.04),
    ("yellow", (225, 198, 58), 0.03, 0.00),
    ("beige", (205, 184, 142), 0.05, 0.08),
    ("brown", (112, 76, 50), 0.04, 0.04),
    ("pink", (228, 140, 172), 0.03, 0.01),
    ("purple", (102, 62, 144), 0.02, 0.00),
    ("orange", (232, 122, 40), 0.02, 0.00),
)
_SKIN_TONES: tuple[Colour, ...] = ((246, 210, 180), (232, 188, 150), (214, 164, 122), (180, 128, 90), (140, 96, 64),
                             (100, 68, 46))
_HAIR_COLOURS: tuple[tuple[Colour, float], ...] = (((22, 18, 16), 0.40), ((58, 38, 26), 0.25), ((110, 72, 40), 0.12),
                                          ((200, 168, 100), 0.10), ((150, 150, 150), 0.08), ((150, 60, 30), 0.05))
_SHOE_COLOURS: tuple[tuple[Colour, float], ...] = (((25, 25, 25), 0.40), ((235, 235, 235), 0.25), ((96, 62, 40), 0.15),
                                           ((110, 110, 115), 0.12), ((40, 60, 140), 0.05), ((190, 40, 40), 0.03))


@dataclass(frozen=True)
class Person:
    """Appearance of one identity (fixed across all its images)."""

    skin: Colour
    hair: Colour
    hair_style: str           # cropped | short | long
    hat: Colour | None
    upper: Colour
    upper2: Colour
    upper_pattern: str        # solid | stripes | checks
    upper_period: float       # pattern period in pixels at scale 1
    sleeves: str              # long | short
    chest_print: Colour | None
    lower: Colour
    lower2: Colour
    lower_pattern: str
    lower_period: float
    lower_kind: str           # trousers | shorts | skirt
    shoes: Colour
    bag: str                  # none | backpack | shoulder
    bag_colour: Colour
    bag_side: int             # shoulder bag on the person's left (+1) or right (-1) hip
    height: float             # body size factor
    build: float              # width factor


def _jitter(rng: np.random.Generator, c, amount: float) -> Colour:
    """``c`` plus uniform noise in [-amount, amount] per channel, clipped to 0..255."""
    d = rng.uniform(-amount, amount, 3).tolist()
    return tuple(int(min(255.0, max(0.0, float(v) + e))) for v, e in zip(c, d))


def _pick(rng: np.random.Generator, items, weights) -> int:
    """Index into ``items`` drawn with probability proportional to ``weights``."""
    assert len(items) == len(weights)
    u = rng.random() * sum(weights)
    acc = 0.0
    for i, w in enumerate(weights):
        acc += w
        if u < acc:
            return i
    return max(i for i, w in enumerate(weights) if w > 0)


def sample_person(rng: np.random.Generator) -> Person:
    """Draw one identity's appearance."""
    up_w = [p[2] for p in _GARMENT_PALETTE]
    lo_w = [p[3] for p in _GARMENT_PALETTE]
    iu = _pick(rng, _GARMENT_PALETTE, up_w)
    iu2 = _pick(rng, _GARMENT_PALETTE, [w if i != iu else 0 for i, w in enumerate(up_w)])
    il = _pick(rng, _GARMENT_PALETTE, lo_w)
    il2 = _pick(rng, _GARMENT_PALETTE, [w if i != il else 0 for i, w in enumerate(up_w)])
    hair_i = _pick(rng, _HAIR_COLOURS, [h[1] for h in _HAIR_COLOURS])
    shoe_i = _pick(rng, _SHOE_COLOURS, [s[1] for s in _SHOE_COLOURS])
    lower_kind = ("trousers", "shorts", "skirt")[_pick(rng, range(3), [0.62, 0.20, 0.18])]
    hair_style = ("cropped", "short", "long")[_pick(rng, range(3), [0.25, 0.45, 0.30])]
    bag = ("none", "backpack", "shoulder")[_pick(rng, range(3), [0.55, 0.25, 0.20])]
    return Person(
        skin=_jitter(rng, _SKIN_TONES[int(rng.integers(len(_SKIN_TONES)))], 10),
        hair=_jitter(rng, _HAIR_COLOURS[hair_i][0], 10),
        hair_style=hair_style,
        hat=_jitter(rng, _GARMENT_PALETTE[_pick(rng, _GARMENT_PALETTE, up_w)][1], 15) if rng.random() < 0.1 else None,
        upper=_jitter(rng, _GARMENT_PALETTE[iu][1], 16),
        upper2=_jitter(rng, _GARMENT_PALETTE[iu2][1], 16),
        upper_pattern=("solid", "stripes", "checks")[_pick(rng, range(3), [0.55, 0.25, 0.20])],
        upper_period=float(rng.uniform(3.5, 6.5)),
        sleeves="long" if rng.random() < 0.55 else "short",
        chest_print=_jitter(rng, _GARMENT_PALETTE[iu2][1], 20) if rng.random() < 0.2 else None,
        lower=_jitter(rng, _GARMENT_PALETTE[il][1], 14),
        lower2=_jitter(rng, _GARMENT_PALETTE[il2][1], 14),
        lower_pattern=("solid", "stripes", "checks")[_pick(rng, range(3), [0.75, 0.10, 0.15])],
        lower_period=float(rng.uniform(4.0, 7.0)),
        lower_kind=lower_kind,
        shoes=_jitter(rng, _SHOE_COLOURS[shoe_i][0], 10),
        bag=bag,
        bag_colour=_jitter(rng, _GARMENT_PALETTE[_pick(rng, _GARMENT_PALETTE, up_w)][1], 16),
        bag_side=1 if rng.random() < 0.5 else -1,
        height=float(rng.uniform(0.94, 1.05)),
        build=float(rng.uniform(0.88, 1.12)),
    )


# ----------------------------------------------------------------------------- poses

# Probability that a pose estimator misses a joint that is there (COCO order).
_P_MISSING = np.array([0.05, 0.01, 0.02, 0.05, 0.10, 0.02, 0.05, 0.10, 0.02, 0.03, 0.06, 0.02, 0.03, 0.06,
                       0.08, 0.08, 0.12, 0.12])
_P_POSE_LOST = 0.01


@dataclass(frozen=True)
class Pose:
    """One image's body configuration and placement."""

    view: str                 # front | back | right | left (which side of the person faces the camera)
    yaw: float                # radians; 0 = facing the camera, pi = back to it, +pi/2 = right side visible
    phase: float              # walking phase, radians
    stride: float             # thigh swing amplitude, radians
    arm_abduction: float      # radians
    elbow_bend: float         # radians
    scale: float              # pixels per body unit (1.0 = 128-pixel-high image, average person)
    cx: float                 # pelvis position in the image (x)
    cy: float                 # pelvis position in the image (y)
    dropped: tuple[int, ...]  # joints the "pose estimator" misses


def sample_pose(rng: np.random.Generator, height: int, width: int, person: Person, crop: str = "normal") -> Pose:
    """Draw a pose; ``crop='bad'`` gives a junk-like crop (too large and/or off-centre)."""
    view = VIEWS[_pick(rng, VIEWS, [0.35, 0.35, 0.15, 0.15])]
    base = {"front": 0.0, "back": math.pi, "right": math.pi / 2, "left": -math.pi / 2}[view]
    jit = math.radians(25 if view in ("front", "back") else 15)
    yaw = base + float(rng.uniform(-jit, jit))
    k = height / 128.0
    if crop == "normal":
        scale = float(rng.uniform(0.86, 1.04)) * person.height * k
        # Keep the head top (-60 units) and the soles (+55) inside the image.
        lo, hi = 1 + 60 * scale, height - 2 - 55 * scale
        mid = height / 2 + 1.5 * k
        cy = float(rng.uniform(max(lo, mid - 5 * k), max(lo, min(hi, mid + 5 * k))))
        cx = width / 2 + float(rng.uniform(-4, 4)) * k
    else:
        scale = float(rng.uniform(1.25, 1.9)) * k
        mode = int(rng.integers(3))
        if mode == 0:     # upper body only
            cy = height / 2 + float(rng.uniform(10, 40)) * scale
            cx = width / 2 + float(rng.uniform(-6, 6)) * k
        elif mode == 1:   # legs only
            cy = height / 2 - float(rng.uniform(0, 25)) * scale
            cx = width / 2 + float(rng.uniform(-6, 6)) * k
        else:             # half outside the crop sideways
            cy = height / 2 + float(rng.uniform(-5, 5)) * k
            cx = width / 2 + float(rng.choice([-1, 1]) * rng.uniform(0.35, 0.6)) * width
    if rng.random() < _P_POSE_LOST:
        dropped = tuple(range(NUM_KEYPOINTS))
    else:
        dropped = tuple(int(j) for j in np.flatnonzero(rng.random(NUM_KEYPOINTS) < _P_MISSING))
    return Pose(view=view, yaw=yaw, phase=float(rng.uniform(0, 2 * math.pi)),
                stride=math.radians(float(rng.uniform(4, 30))), arm_abduction=math.radians(float(rng.uniform(5, 13))),
                elbow_bend=math.radians(float(rng.uniform(8, 35))), scale=scale, cx=cx, cy=cy, dropped=dropped)


def body_points(person: Person, pose: Pose) -> dict[str, np.ndarray]:
    """3-D points of the body in body units: x = the person's left, y = down, z = forward.

    Origin at the pelvis centre. Proportions follow the Market-1501 annotation statistics at
    scale 1 (a 128-pixel-high image).
    """
    b = person.build
    p: dict[str, np.ndarray] = {}
    v = lambda x, y, z: np.array([x, y, z], dtype=np.float64)  # noqa: E731
    p["pelvis"] = v(0, 0, 0)
    p["neck"] = v(0, -37, 0)
    p["neck_top"] = v(0, -43, 0)
    head = v(0, -50, 0.3)
    p["head"] = head
    p["nose"] = head + v(0, 1.6, 6.6)
    p["r_eye"], p["l_eye"] = head + v(-2.7, -1.2, 6.0), head + v(2.7, -1.2, 6.0)
    p["r_ear"], p["l_ear"] = head + v(-6.2, -0.4, -0.4), head + v(6.2, -0.4, -0.4)
    swing = pose.stride * math.sin(pose.phase)
    for side, sgn in (("r", -1.0), ("l", 1.0)):
        # Arms swing against the leg of the same side.
        arm = (-0.8 if side == "r" else 0.8) * swing
        ab = pose.arm_abduction
        sh = v(sgn * 12 * b, -36.5, 0)
        ua = v(sgn * math.sin(ab), math.cos(ab) * math.cos(arm), math.cos(ab) * math.sin(arm))
        elbow = sh + 17.0 * ua
        fa_ang = arm + pose.elbow_bend * (0.6 + 0.4 * max(0.0, math.sin(arm) / max(pose.stride, 1e-3)))
        fa = v(sgn * math.sin(ab * 0.5), math.cos(fa_ang), math.sin(fa_ang))
        fa /= np.linalg.norm(fa)
        wrist = elbow + 14.0 * fa
        p[f"{side}_shoulder"], p[f"{side}_elbow"], p[f"{side}_wrist"] = sh, elbow, wrist
        p[f"{side}_hand"] = wrist + 2.6 * fa
        # Legs: thigh swing; the knee bends while the leg swings forward.
        ph = pose.phase if side == "r" else pose.phase + math.pi
        psi = pose.stride * math.sin(ph)
        bend = math.radians(4) + (0.4 + 1.2 * pose.stride) * max(0.0, math.cos(ph)) ** 1.5
        hip = v(sgn * 8 * b, 0, 0)
        knee = hip + 25.0 * v(0, math.cos(psi), math.sin(psi))
        shin = psi - bend
        ankle = knee + 24.0 * v(0, math.cos(shin), math.sin(shin))
        p[f"{side}_hip"], p[f"{side}_knee"], p[f"{side}_ankle"] = hip, knee, ankle
        p[f"{side}_toe"] = ankle + 6.0 * v(0, 0.35 - math.sin(shin) * 0.5, math.cos(shin))
    return p


# Outward normals of the face joints in body coordinates, and how far towards the camera
# they must point for the joint to be annotated.
_FACE_NORMALS = {
    "nose": ((0.0, 0.0, 1.0), -0.25),
    "r_eye": ((-0.35, 0.0, 0.94), 0.05),
    "l_eye": ((0.35, 0.0, 0.94), 0.05),
    "r_ear": ((-0.99, 0.0, -0.1), -0.35),
    "l_ear": ((0.99, 0.0, -0.1), -0.35),
}


class _Projector:
    """Orthographic projection after a rotation by ``yaw`` about the vertical axis."""

    def __init__(self, pose: Pose):
        self.c, self.s = math.cos(pose.yaw), math.sin(pose.yaw)
        self.scale, self.cx, self.cy = pose.scale, pose.cx, pose.cy

    def uv(self, pt) -> tuple[float, float]:
        """Image (x, y) in pixel coordinates (pixel centres at integers)."""
        x, y, z = pt
        return self.cx + self.scale * (self.c * x + self.s * z), self.cy + self.scale * y

    def depth(self, pt) -> float:
        """Distance towards the camera (larger = nearer), in body units."""
        x, _, z = pt
        return -self.s * x + self.c * z

    def facing(self, normal) -> float:
        return -self.s * normal[0] + self.c * normal[2]

    def half_width(self, lateral: float, depth: float) -> float:
        """Projected half-width (pixels) of an elliptic cross-section."""
        return self.scale * math.hypot(lateral * self.c, depth * self.s)

    def box_extent(self, x0: float, x1: float, z0: float, z1: float) -> tuple[float, float]:
        """Projected x-range (pixels) of an axis-aligned box's vertical edges."""
        us = [self.c * x + self.s * z for x in (x0, x1) for z in (z0, z1)]
        return self.cx + self.scale * min(us), self.cx + self.scale * max(us)


def pose_keypoints(person: Person, pose: Pose, height: int, width: int,
                   pts: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """int16 ``(18, 2)`` (y, x) keypoints of the drawn body; -1 where missing or outside the image."""
    pts = body_points(person, pose) if pts is None else pts
    proj = _Projector(pose)
    kp = np.full((NUM_KEYPOINTS, 2), MISSING, dtype=np.int16)
    for name, j in KP.items():
        if j in pose.dropped:
            continue
        if name in _FACE_NORMALS:
            normal, thresh = _FACE_NORMALS[name]
            if proj.facing(normal) <= thresh:
                continue
        u, v = proj.uv(pts[name])
        x, y = math.floor(u + 0.5), math.floor(v + 0.5)
        if 0 <= y < height and 0 <= x < width:
            kp[j] = (y, x)
    return kp


# ----------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class CameraLook:
    name: str
    wall: Colour
    wall2: Colour
    ground: Colour
    ground2: Colour
    horizon: float          # fraction of the height where the ground starts
    feature: str            # windows | pillars | trees | panels | doors | fence
    ground_kind: str        # tiles | plain | bricks | stripes
    gain: float
    cast: tuple[float, float, float]
    contrast: float
    gradient: float         # brightness change from top to bottom (fraction)
    low_res: float          # 1 = sharp; 0.5 = captured at half resolution
    noise: float            # sensor noise sigma (grey levels)


CAMERAS: tuple[CameraLook, ...] = (
    CameraLook("sunny street", (188, 176, 160), (96, 90, 92), (160, 156, 148), (134, 130, 124), 0.58, "windows",
               "tiles", 1.04, (1.04, 1.0, 0.94), 1.05, -0.12, 1.0, 2.0),
    CameraLook("shaded arcade", (112, 106, 100), (150, 142, 132), (118, 114, 108), (92, 88, 86), 0.55, "pillars",
               "tiles", 0.9, (0.96, 0.99, 1.05), 0.95, 0.10, 1.0, 3.0),
    CameraLook("campus lawn", (104, 128, 96), (68, 94, 62), (170, 164, 150), (146, 140, 126), 0.62, "trees",
               "plain", 1.0, (0.98, 1.02, 0.97), 1.0, -0.08, 1.0, 2.0),
    CameraLook("glass front", (130, 142, 158), (82, 94, 112), (150, 112, 98), (122, 88, 76), 0.60, "panels",
               "bricks", 0.96, (1.0, 1.0, 1.02), 1.0, 0.0, 1.0, 2.0),
    CameraLook("overcast plaza", (180, 180, 184), (152, 152, 158), (166, 166, 168), (142, 142, 146), 0.50, "doors",
               "stripes", 1.04, (1.0, 1.0, 1.02), 0.85, -0.05, 1.0, 2.5),
    CameraLook("dim corner", (90, 88, 94), (116, 110, 96), (96, 94, 90), (74, 72, 70), 0.60, "fence",
               "plain", 0.86, (1.05, 1.0, 0.9), 0.9, 0.15, 0.5, 3.5),
)
_CLUTTER_COLOURS: tuple[Colour, ...] = ((60, 60, 64), (150, 40, 36), (40, 90, 50), (200, 190, 60), (30, 60, 130),
                                        (170, 170, 170), (110, 80, 50), (230, 230, 230))


def _draw_background(rng: np.random.Generator, cam: CameraLook, H2: int, W2: int, k: float,
                     feet: tuple[float, float, float] | None) -> Image.Image:
    """The camera's scene at 2x resolution (``k`` = 2x pixels per 128-image pixel)."""
    # Per-image brightness and tint of the scene: the camera's view changes with the crop.
    tone = rng.uniform(0.8, 1.2) * rng.uniform(0.92, 1.08, 3)
    tint = lambda c, a=8: _jitter(rng, (np.asarray(c) * tone).tolist(), a)  # noqa: E731
    img = Image.new("RGB", (W2, H2), tint(cam.wall))
    d = ImageDraw.Draw(img)
    hz = int(H2 * (cam.horizon + rng.uniform(-0.05, 0.05)))
    off = rng.uniform(0, 200) * k
    w2 = tint(cam.wall2)
    # Scene structure above the horizon.
    if cam.feature == "windows":
        for row in range(3):
            for col in range(-1, 5):
                x0 = col * 22 * k - off % (22 * k) + 3 * k
                y0 = (6 + row * 22) * k
                if y0 + 14 * k < hz:
                    d.rectangle([x0, y0, x0 + 12 * k, y0 + 14 * k], fill=w2)
    elif cam.feature == "pillars":
        for col in range(-1, 4):
            x0 = col * 34 * k - off % (34 * k)
            d.rectangle([x0, 0, x0 + 9 * k, hz], fill=w2)
    elif cam.feature == "trees":
        for _ in range(int(rng.integers(2, 4))):
            tx, ty, r = rng.uniform(0, W2), hz - rng.uniform(18, 40) * k, rng.uniform(10, 18) * k
            d.rectangle([tx - 2 * k, ty, tx + 2 * k, hz], fill=(70, 52, 36))
            d.ellipse([tx - r, ty - r, tx + r, ty + r], fill=_jitter(rng, cam.wall2, 12))
    elif cam.feature == "panels":
        for col in range(-1, 6):
            x0 = col * 16 * k - off % (16 * k)
            d.line([(x0, 0), (x0, hz)], fill=w2, width=int(2 * k))
        for y0 in range(0, hz, int(24 * k)):
            d.line([(0, y0), (W2, y0)], fill=w2, width=int(2 * k))
    elif cam.feature == "doors":
        x0 = rng.uniform(-10, 40) * k
        d.rectangle([x0, hz - 50 * k, x0 + 24 * k, hz], fill=w2)
        d.rectangle([x0 + 3 * k, hz - 46 * k, x0 + 21 * k, hz], fill=_jitter(rng, (120, 120, 126), 6))
    elif cam.feature == "fence":
        y0 = hz - 22 * k
        d.rectangle([0, y0, W2, y0 + 3 * k], fill=w2)
        for col in range(-1, 12):
            x0 = col * 7 * k - off % (7 * k)
            d.rectangle([x0, y0, x0 + 2 * k, hz], fill=w2)
    # Ground.
    g1, g2 = tint(cam.ground), tint(cam.ground2)
    d.rectangle([0, hz, W2, H2], fill=g1)
    if cam.ground_kind == "tiles":
        for i, y0 in enumerate(range(hz, H2, int(10 * k))):
            d.line([(0, y0), (W2, y0)], fill=g2, width=int(k))
            for col in range(-1, 5):
                x0 = col * 18 * k - off % (18 * k) + (i % 2) * 9 * k
                d.line([(x0, y0), (x0, y0 + 10 * k)], fill=g2, width=int(k))
    elif cam.ground_kind == "bricks":
        for i, y0 in enumerate(range(hz, H2, int(6 * k))):
            d.line([(0, y0), (W2, y0)], fill=g2, width=int(k))
            for col in range(-1, 9):
                x0 = col * 12 * k - off % (12 * k) + (i % 2) * 6 * k
                d.line([(x0, y0), (x0, y0 + 6 * k)], fill=g2, width=int(k))
    elif cam.ground_kind == "stripes":
        y0 = hz + rng.uniform(5, 40) * k
        d.rectangle([0, y0, W2, y0 + 7 * k], fill=(226, 226, 222))
    # Clutter: poles, bins, signs, bushes, bikes, parked cars.
    for _ in range(int(rng.poisson(1.6))):
        kind = int(rng.integers(6))
        x = rng.uniform(-8, 72) * k
        col = _jitter(rng, _CLUTTER_COLOURS[int(rng.integers(len(_CLUTTER_COLOURS)))], 20)
        if kind == 0:
            d.rectangle([x, 0, x + rng.uniform(2, 4) * k, hz + rng.uniform(5, 30) * k], fill=col)
        elif kind == 1:
            y1 = hz + rng.uniform(5, 50) * k
            d.rectangle([x, y1 - rng.uniform(14, 24) * k, x + rng.uniform(9, 14) * k, y1], fill=col)
        elif kind == 2:
            y0 = rng.uniform(4, max(5.0, hz / k - 20)) * k
            d.rectangle([x, y0, x + rng.uniform(10, 18) * k, y0 + rng.uniform(6, 12) * k], fill=col)
        elif kind == 3:
            r = rng.uniform(7, 14) * k
            d.ellipse([x - r, hz - r * 0.8, x + r, hz + r * 0.6], fill=_jitter(rng, (60, 110, 50), 25))
        elif kind == 4:
            y1 = hz + rng.uniform(10, 45) * k
            r = 6 * k
            for cxw in (x, x + 17 * k):
                d.ellipse([cxw - r, y1 - 2 * r, cxw + r, y1], outline=(30, 30, 30), width=int(k))
            d.line([(x, y1 - r), (x + 8 * k, y1 - 2.2 * r), (x + 17 * k, y1 - r)], fill=col, width=int(1.5 * k))
        else:
            y1 = hz + rng.uniform(20, 60) * k
            x = rng.choice([-34.0, 46.0]) * k
            d.rounded_rectangle([x, y1 - 26 * k, x + 52 * k, y1], radius=int(6 * k), fill=col)
            d.rectangle([x + 8 * k, y1 - 24 * k, x + 44 * k, y1 - 16 * k], fill=(40, 50, 60))
    if feet is not None:  # the person's shadow on the ground
        fx, fy, r = feet
        shade = tuple(int(c * 0.62) for c in g1)
        d.ellipse([fx - r, fy - r * 0.22, fx + r, fy + r * 0.22], fill=shade)
    return img


# ----------------------------------------------------------------------------- body drawing

# Part labels in the 2x label map (outline pixels carry label + 128).
(_TORSO, _R_UARM, _L_UARM, _R_FARM, _L_FARM, _R_HAND, _L_HAND, _R_THIGH, _L_THIGH, _R_SHIN, _L_SHIN, _R_SHOE,
 _L_SHOE, _NECK, _HEAD, _HAIR_BACK, _SKIRT, _PELVIS, _BAG, _STRAP, _PRINT, _EYE, _NOSE, _HAIR, _HAT) = range(1, 26)
_SECOND = 32       # label bit: the garment pattern's second colour
_OUTLINE = 128     # label bit: outline pixel (darkened colour)
_OUTLINE_GAIN = 0.55


def _capsule(d: ImageDraw.ImageDraw, p0, p1, r0: float, r1: float, fill: int) -> None:
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy)
    if n > 1e-6:
        nx, ny = -dy / n, dx / n
        d.polygon([(x0 + nx * r0, y0 + ny * r0), (x1 + nx * r1, y1 + ny * r1),
                   (x1 - nx * r1, y1 - ny * r1), (x0 - nx * r0, y0 - ny * r0)], fill=fill)
    d.ellipse([x0 - r0, y0 - r0, x0 + r0, y0 + r0], fill=fill)
    d.ellipse([x1 - r1, y1 - r1, x1 + r1, y1 + r1], fill=fill)


def _draw_part(d: ImageDraw.ImageDraw, label: int, prims: list, outline: float) -> None:
    """Draw one part: its outline (grown by ``outline`` 2x pixels) and then its fill."""
    for grow, fill in (((outline, label + _OUTLINE),) if outline > 0 else ()) + ((0.0, label),):
        for prim in prims:
            kind = prim[0]
            if kind == "capsule":
                _capsule(d, prim[1], prim[2], prim[3] + grow, prim[4] + grow, fill)
            elif kind == "poly":
                if grow > 0:
                    pts = list(prim[1])
                    d.line(pts + [pts[0]], fill=fill, width=max(1, int(round(2 * grow))), joint="curve")
                d.polygon(prim[1], fill=fill)
            elif kind == "ellipse":
                (x, y), rx, ry = prim[1], prim[2] + grow, prim[3] + grow
                d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)


@dataclass
class _Layout:
    """The projected drawing of one body at 2x: parts in drawing order + pattern anchors."""

    parts: list            # (sort key, label, primitives)
    head: tuple            # (x2, y2, rx2, ry2) of the head ellipse
    neck_xy: tuple         # (x, y) 1x pixel position of the neck, pattern anchor
    hip_xy: tuple
    feet: tuple            # (x2, y2, r2) shadow ellipse


def _layout(person: Person, pose: Pose, pts: dict[str, np.ndarray]) -> _Layout:
    P = _Projector(pose)
    S = pose.scale

    def to2(pt):
        u, v = P.uv(pt)
        return 2 * u + 0.5, 2 * v + 0.5

    b = person.build
    parts: list = []

    def add(group: int, depth: float, label: int, prims: list) -> None:
        parts.append(((group, depth), label, prims))

    def level(y: float, lateral: float, dpt: float, z: float = 0.0) -> tuple:
        """Left and right 2x points of an elliptic cross-section at height y."""
        u0, v0 = to2((0.0, y, z))
        w = 2 * P.half_width(lateral, dpt)
        return (u0 - w, v0), (u0 + w, v0)

    def box_rect(x0, x1, z0, z1, y0, y1):
        ua, ub = P.box_extent(x0, x1, z0, z1)
        return [(2 * ua + 0.5, 2 * (P.cy + S * y0) + 0.5), (2 * ub + 0.5, 2 * (P.cy + S * y0) + 0.5),
                (2 * ub + 0.5, 2 * (P.cy + S * y1) + 0.5), (2 * ua + 0.5, 2 * (P.cy + S * y1) + 0.5)]

    # --- legs group (drawn before the torso: the shirt hem covers the thighs' tops)
    garment_legs = person.lower_kind == "trousers"
    thigh_depths = []
    for side, (thigh_l, shin_l, shoe_l) in (("r", (_R_THIGH, _R_SHIN, _R_SHOE)), ("l", (_L_THIGH, _L_SHIN, _L_SHOE))):
        hip, knee, ankle, toe = (pts[f"{side}_{n}"] for n in ("hip", "knee", "ankle", "toe"))
        dth = P.depth((hip + knee) / 2)
        thigh_depths.append(dth)
        add(1, dth + 0.02, thigh_l, [("capsule", to2(hip), to2(knee), 2 * S * 6.0 * b, 2 * S * 4.8)])
        add(1, P.depth((knee + ankle) / 2), shin_l,
            [("capsule", to2(knee), to2(ankle), 2 * S * (4.6 if garment_legs else 3.4), 2 * S * (3.8 if garment_legs else 2.8))])
        add(1, P.depth((ankle + toe) / 2) + 0.05, shoe_l, [("capsule", to2(ankle), to2(toe), 2 * S * 2.7, 2 * S * 2.4)])
    (pl, pr), (ql, qr) = level(-2, 11.5 * b, 7.0), level(6, 11.0 * b, 6.5)
    crotch = to2((0.0, 10.0, 0.0))
    add(1, -1e3, _PELVIS, [("poly", [pl, pr, qr, crotch, ql])])
    if person.lower_kind == "skirt":
        (al, ar), (bl, br) = level(-3, 11.5 * b, 7.5), level(22, 15.0 * b, 11.0)
        add(1, max(thigh_depths) + 0.5, _SKIRT, [("poly", [al, ar, br, bl])])

    # --- torso, head, arms, accessories, sorted by depth
    (s_l, s_r), (t_l, t_r) = level(-36, 12.5 * b, 7.0), level(-39.5, 8.5 * b, 5.5)
    (w_l, w_r), (h_l, h_r) = level(-14, 11.0 * b, 6.5), level(4, 12.0 * b, 7.0)
    add(2, 0.0, _TORSO, [("poly", [t_l, t_r, s_r, w_r, h_r, h_l, w_l, s_l])])
    add(2, 0.01, _NECK, [("capsule", to2(pts["neck_top"]), to2(pts["neck"]), 2 * S * 3.2, 2 * S * 3.4)])
    hx, hy = to2(pts["head"])
    head = (hx, hy, 2 * S * 7.2, 2 * S * 8.3)
    add(2, 0.02, _HEAD, [("ellipse", (hx, hy), head[2], head[3])])
    if person.hair_style == "long":
        top_l, top_r = P.box_extent(-7.0, 7.0, -7.0, -1.0)
        bot_l, bot_r = P.box_extent(-7.6, 7.6, -6.0, -2.0)
        y_top, y_bot = 2 * (P.cy + S * -50) + 0.5, 2 * (P.cy + S * -29) + 0.5
        add(2, P.depth((0, 0, -4.0)) - 0.015, _HAIR_BACK,
            [("poly", [(2 * top_l + 0.5, y_top), (2 * top_r + 0.5, y_top), (2 * bot_r + 0.5, y_bot),
                       (2 * bot_l + 0.5, y_bot)])])
    # Face details on top of the head (only where they face the camera).
    for eye in ("r_eye", "l_eye"):
        if P.facing(_FACE_NORMALS[eye][0]) > 0.2:
            add(2, 0.021, _EYE, [("ellipse", to2(pts[eye]), 1.3, 1.3)])
    if abs(P.s) > 0.5 and P.facing(_FACE_NORMALS["nose"][0]) > -0.25:
        add(2, 0.022, _NOSE, [("ellipse", to2(pts["nose"]), 2 * S * 1.3, 2 * S * 1.1)])
    if person.chest_print is not None and P.c > 0.3:
        add(2, P.depth((0, 0, 6.6)), _PRINT, [("poly", box_rect(-3.6 * b, 3.6 * b, 6.6, 6.6, -31, -22))])
    if person.bag == "backpack":
        add(2, P.depth((0, 0, -9.0)), _BAG, [("poly", box_rect(-7.5 * b, 7.5 * b, -5.5, -12.0, -34, -13))])
        for sgn in (-1, 1):
            a, c = (sgn * 6.5 * b, -38.0, 6.4), (sgn * 7.5 * b, -17.0, 6.4)
            add(2, P.depth((0, 0, 6.4)) + 0.001, _STRAP, [("capsule", to2(a), to2(c), 2 * S * 1.0, 2 * S * 1.0)])
    elif person.bag == "shoulder":
        sd = person.bag_side
        x0, x1 = sorted((sd * 11.5 * b, sd * 15.0 * b))
        add(2, P.depth((sd * 13.0 * b, 0, 0)) + 0.005, _BAG, [("poly", box_rect(x0, x1, -5.0, 5.0, -7, 5))])
        for z in (6.4, -6.4):
            a, c = (-sd * 8.0 * b, -38.0, z), (sd * 12.5 * b, -7.0, z * 0.3)
            add(2, P.depth((0, 0, z)) + 0.001, _STRAP, [("capsule", to2(a), to2(c), 2 * S * 0.9, 2 * S * 0.9)])
    for side, (ua_l, fa_l, hand_l) in (("r", (_R_UARM, _R_FARM, _R_HAND)), ("l", (_L_UARM, _L_FARM, _L_HAND))):
        sh, el, wr, hd = (pts[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand"))
        dmean = P.depth((sh + wr) / 2)
        group = 0 if dmean < -5 else 2          # a far-side arm goes behind the legs as well
        fa_r = 3.6 if person.sleeves == "long" else 3.0
        add(group, P.depth((sh + el) / 2) + 0.03, ua_l, [("capsule", to2(sh), to2(el), 2 * S * 4.2, 2 * S * 3.6)])
        add(group, P.depth((el + wr) / 2) + 0.031, fa_l, [("capsule", to2(el), to2(wr), 2 * S * fa_r, 2 * S * (fa_r - 0.5))])
        add(group, P.depth(hd) + 0.032, hand_l, [("ellipse", to2(hd), 2 * S * 2.5, 2 * S * 2.5)])
    parts.sort(key=lambda t: t[0])
    sole = max(P.uv(pts["r_toe"])[1], P.uv(pts["l_toe"])[1]) + 2.5 * S
    nx, ny = P.uv(pts["neck"])
    return _Layout(parts=parts, head=head, neck_xy=(nx, ny), hip_xy=P.uv(pts["pelvis"]),
                   feet=(2 * P.cx + 0.5, 2 * sole + 0.5, 2 * S * 15))


def _grid_1d(n2: int) -> np.ndarray:
    """1x coordinates of the centres of ``n2`` 2x pixels."""
    return (np.arange(n2) - 0.5) / 2


def _pattern_bits(kind: str, period: float, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """uint8 (H2, W2) 0/1: where a garment pattern shows its second colour.

    ``ys``/``xs`` are the 1x coordinates of the 2x rows/columns relative to the pattern's
    anchor; stripes are horizontal, checks alternate in both directions.
    """
    rows = (np.floor(ys / period) % 2).astype(np.uint8)
    if kind == "stripes":
        return np.broadcast_to(rows[:, None], (ys.size, xs.size))
    cols = (np.floor(xs / period) % 2).astype(np.uint8)
    return rows[:, None] ^ cols[None, :]


def _paint_person(person: Person, pose: Pose, lay: _Layout, H2: int, W2: int) -> tuple[Image.Image, Image.Image]:
    """The person at 2x: RGB image and its 'L' mask (255 = person).

    Parts are drawn as labels (1..31, +128 for outline pixels) into one label map; the
    pattern's second colour (+32) and hair/cap pixels on the head are set on that map, and a
    256-entry palette turns it into colours in one C call.
    """
    lab_img = Image.new("L", (W2, H2), 0)
    d = ImageDraw.Draw(lab_img)
    for _, label, prims in lay.parts:
        _draw_part(d, label, prims, 0.0 if label in (_EYE, _NOSE, _PRINT, _STRAP) else 1.4)
    lab = np.array(lab_img)
    S = pose.scale
    colours = np.zeros((_SECOND, 3), dtype=np.float64)
    second = colours.copy()
    up_parts = [_TORSO, _R_UARM, _L_UARM] + ([_R_FARM, _L_FARM] if person.sleeves == "long" else [])
    lo_parts = [_PELVIS, _SKIRT] + ([_R_THIGH, _L_THIGH] if person.lower_kind != "skirt" else []) \
        + ([_R_SHIN, _L_SHIN] if person.lower_kind == "trousers" else [])
    for p_ in (_R_FARM, _L_FARM, _R_HAND, _L_HAND, _NECK, _HEAD, _NOSE, _R_THIGH, _L_THIGH, _R_SHIN, _L_SHIN):
        colours[p_] = person.skin
    colours[up_parts], second[up_parts] = person.upper, person.upper2
    colours[lo_parts], second[lo_parts] = person.lower, person.lower2
    colours[[_R_SHOE, _L_SHOE]] = person.shoes
    colours[[_HAIR_BACK, _HAIR]] = person.hair
    colours[_HAT] = person.hat if person.hat is not None else person.hair
    colours[[_BAG, _STRAP]] = person.bag_colour
    colours[_PRINT] = person.chest_print if person.chest_print is not None else person.upper
    colours[_EYE] = (35, 25, 25)
    # Garment patterns, anchored at the neck / hip so that they move with the body.
    rows1x, cols1x = _grid_1d(H2), _grid_1d(W2)
    (nx, ny), (hx, hy) = lay.neck_xy, lay.hip_xy
    for parts_, kind, period, ax, ay in ((up_parts, person.upper_pattern, person.upper_period, nx, ny),
                                         (lo_parts, person.lower_pattern, person.lower_period, hx, hy)):
        if kind == "solid":
            continue
        member = np.zeros(256, np.uint8)
        member[parts_] = 1
        member[np.asarray(parts_) + _OUTLINE] = 1
        bits = _pattern_bits(kind, period * S, rows1x - ay, cols1x - ax + 0.25 * period * S)
        lab |= (member[lab] & bits) << 5
    # Hair and cap: a sphere in body coordinates decides skin or hair per head pixel.
    cx2, cy2, rx2, ry2 = lay.head
    y0, y1 = max(0, int(cy2 - ry2) - 2), min(H2, int(cy2 + ry2) + 3)
    x0, x1 = max(0, int(cx2 - rx2) - 2), min(W2, int(cx2 + rx2) + 3)
    if y1 > y0 and x1 > x0:
        crop = lab[y0:y1, x0:x1]
        head_px = (crop & 127) == _HEAD
        nyp = np.clip((np.arange(y0, y1)[:, None] - cy2) / ry2, -1, 1)
        nxp = np.clip((np.arange(x0, x1)[None, :] - cx2) / rx2, -1, 1)
        nzp = np.sqrt(np.clip(1 - nxp ** 2 - nyp ** 2, 0, 1))
        bz = math.sin(pose.yaw) * nxp + math.cos(pose.yaw) * nzp   # forward component of the surface normal
        top, back_z, back_y = {"cropped": (-0.62, -0.55, 0.1), "short": (-0.38, -0.2, 0.55),
                               "long": (-0.32, 0.05, 1.1)}[person.hair_style]
        hair = head_px & ((nyp < top) | ((bz < back_z) & (nyp < back_y)))
        crop[hair] = (crop[hair] & _OUTLINE) | _HAIR
        if person.hat is not None:
            hat = head_px & np.broadcast_to(nyp < -0.3, head_px.shape)
            crop[hat] = (crop[hat] & _OUTLINE) | _HAT
    palette = np.zeros((256, 3), dtype=np.float64)
    palette[:_SECOND], palette[_SECOND:2 * _SECOND] = colours, second
    palette[_OUTLINE:] = palette[:_OUTLINE] * _OUTLINE_GAIN
    lab_img = Image.fromarray(lab)
    mask = lab_img.point([0] + [255] * 255)
    lab_img = lab_img.convert("P")
    lab_img.putpalette(palette.round().astype(np.uint8).tobytes())
    return lab_img.convert("RGB"), mask


# ----------------------------------------------------------------------------- rendering


@dataclass
class Rendered:
    """One drawn image and what it shows."""

    image: np.ndarray              # uint8 (H, W, 3)
    keypoints: np.ndarray          # int16 (18, 2) (y, x), -1 = missing
    mask: np.ndarray               # bool (H, W): at least half the pixel is person
    person: Person | None          # None for an empty distractor
    pose: Pose | None
    camid: int
    background: np.ndarray | None = None   # uint8 (H, W, 3): the same image without the person


def _light(pil_img: Image.Image, cam: CameraLook, light: dict, noise: np.ndarray) -> np.ndarray:
    """Camera response: gain, cast, gradient, contrast, resolution, noise -> uint8 (H, W, 3)."""
    img = np.asarray(pil_img, dtype=np.float32)
    H, W = img.shape[:2]
    grad = 1 + (cam.gradient + light["grad"]) * (np.arange(H, dtype=np.float32)[:, None, None] / H - 0.5)
    side = 1 + light["side"] * (np.arange(W, dtype=np.float32)[None, :, None] / W - 0.5)
    out = img * (cam.gain * light["gain"]) * np.asarray(cam.cast, np.float32) * np.asarray(light["cast"], np.float32)
    out = out * grad * side
    if cam.contrast != 1.0:
        out = 128 + (out - 128) * cam.contrast
    if cam.low_res < 1.0:
        small = (max(1, int(W * cam.low_res)), max(1, int(H * cam.low_res)))
        pil = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))
        out = np.asarray(pil.resize(small, Image.BILINEAR).resize((W, H), Image.BILINEAR), dtype=np.float32)
    out = out + noise
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def render(rng: np.random.Generator, height: int, width: int, camid: int, person: Person | None,
           kind: str = "normal", with_background: bool = False) -> Rendered:
    """Draw one image of ``person`` seen by camera ``camid`` (1-based).

    ``kind`` is ``normal``, ``junk`` (a badly cropped stranger) or ``distractor`` (an empty
    background crop or a cropped stranger). ``person=None`` draws a fresh stranger for junk
    and distractors.
    """
    cam = CAMERAS[camid - 1]
    H2, W2 = 2 * height, 2 * width
    k = 2 * height / 128.0
    empty = kind == "distractor" and rng.random() < 0.5
    if person is None and not empty:
        person = sample_person(rng)
    pose = None if empty else sample_pose(rng, height, width, person, crop="normal" if kind == "normal" else "bad")
    pts = None if empty else body_points(person, pose)
    lay = None if empty else _layout(person, pose, pts)
    bg = _draw_background(rng, cam, H2, W2, k, lay.feet if lay else None)
    light = {"gain": float(rng.uniform(0.9, 1.1)), "cast": tuple(rng.uniform(0.97, 1.03, 3)),
             "grad": float(rng.uniform(-0.1, 0.1)), "side": float(rng.uniform(-0.15, 0.15))}
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(cam.noise)
    if empty:
        img = _light(bg.reduce(2), cam, light, noise)
        kp = np.full((NUM_KEYPOINTS, 2), MISSING, dtype=np.int16)
        return Rendered(img, kp, np.zeros((height, width), bool), None, None, camid,
                        img.copy() if with_background else None)
    person_img, mask2 = _paint_person(person, pose, lay, H2, W2)
    # Composite at 2x, then box-average down: anti-aliased edges.
    img = _light(Image.composite(person_img, bg, mask2).reduce(2), cam, light, noise)
    mask = np.asarray(mask2.reduce(2)) >= 128
    background = _light(bg.reduce(2), cam, light, noise) if with_background else None
    return Rendered(img, pose_keypoints(person, pose, height, width, pts), mask, person, pose, camid, background)


# ----------------------------------------------------------------------------- dataset plan


@dataclass(frozen=True)
class ImageRecord:
    """One planned image of the dataset."""

    index: int          # global position: seeds this image's drawing
    split: str          # train | gallery | query
    folder: str         # bounding_box_train | bounding_box_test | query
    name: str
    pid: int            # -1 junk, 0 distractor
    camid: int
    kind: str           # normal | junk | distractor


def plan_dataset(params: ToyParams) -> tuple[list[ImageRecord], dict[int, Person]]:
    """All images (names, identities, cameras) and the identities' appearance."""
    params.validate()
    rng = np.random.default_rng(np.random.SeedSequence([params.seed, 0x5EED]))
    n_ids = params.n_train_ids + params.n_test_ids
    all_pids = np.arange(1, n_ids + 1)
    perm = rng.permutation(all_pids)
    train_pids = sorted(int(p) for p in perm[:params.n_train_ids])
    test_pids = sorted(int(p) for p in perm[params.n_train_ids:])
    persons = {int(p): sample_person(rng) for p in all_pids}

    frame_counter: dict[tuple[int, int], int] = {}
    records: list[ImageRecord] = []

    def name_for(pid: int, cam: int, seq: int, nn: int) -> str:
        key = (cam, seq)
        frame_counter[key] = frame_counter.get(key, 0) + 1
        frame = frame_counter[key] * 25 + int(rng.integers(0, 25))
        pid_s = "-1" if pid == -1 else f"{pid:04d}"
        return f"{pid_s}_c{cam}s{seq}_{frame:06d}_{nn:02d}.jpg"

    def add(split: str, folder: str, pid: int, cam: int, seq: int, kind: str, nn: int | None = None) -> None:
        nn = int(rng.integers(1, 8)) if nn is None else nn
        records.append(ImageRecord(len(records), split, folder, name_for(pid, cam, seq, nn), pid, cam, kind))

    def identity_images(pid: int, n: int, split: str, folder: str) -> tuple[list[int], dict[int, int]]:
        n_cams = int(rng.integers(2, min(4, n) + 1))
        cams = sorted(int(c) for c in rng.choice(np.arange(1, NUM_CAMERAS + 1), n_cams, replace=False))
        seqs = {c: int(rng.integers(1, 7)) for c in cams}
        per_image = cams + [int(c) for c in rng.choice(cams, n - n_cams)]
        for cam in sorted(per_image):
            add(split, folder, pid, cam, seqs[cam], "normal")
        return cams, seqs

    for pid in train_pids:
        identity_images(pid, params.images_per_id, "train", "bounding_box_train")
    test_cams = {}
    for pid in test_pids:
        test_cams[pid] = identity_images(pid, params.gallery_per_id, "gallery", "bounding_box_test")
    n_gallery = len(test_pids) * params.gallery_per_id
    for pid, kind, frac in ((-1, "junk", params.junk_frac), (0, "distractor", params.distractor_frac)):
        for _ in range(int(round(frac * n_gallery))):
            add("gallery", "bounding_box_test", pid, int(rng.integers(1, NUM_CAMERAS + 1)), int(rng.integers(1, 7)),
                kind)
    for pid in test_pids:
        # One query per camera, for a random non-empty subset of the identity's gallery cameras:
        # the gallery always holds the identity in another camera.
        cams, seqs = test_cams[pid]
        n_q = int(rng.integers(1, len(cams) + 1))
        for cam in sorted(int(c) for c in rng.choice(cams, n_q, replace=False)):
            add("query", "query", pid, cam, seqs[cam], "normal", nn=0)
    return records, persons


def iter_samples(params: ToyParams, with_background: bool = False,
                 records: list[ImageRecord] | None = None) -> Iterator[tuple[ImageRecord, Rendered]]:
    """Draw every planned image (or the given subset of the plan) in memory, in plan order."""
    plan, persons = plan_dataset(params)
    for rec in plan if records is None else records:
        rng = np.random.default_rng(np.random.SeedSequence([params.seed, 1, rec.index]))
        person = persons.get(rec.pid) if rec.kind == "normal" else None
        yield rec, render(rng, params.height, params.width, rec.camid, person, rec.kind, with_background)


# ----------------------------------------------------------------------------- outputs


def _jpeg_bytes(img: np.ndarray, quality: int) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def sample_test_pairs(gallery: list[tuple[str, int, np.ndarray]], n: int, seed: int) -> list[tuple[str, str]]:
    """Same-identity ordered gallery pairs whose two poses have both shoulders and hips."""
    by_pid: dict[int, list[str]] = {}
    for name, pid, kp in gallery:
        if pid > 0 and bool(np.all(kp[list(TORSO_JOINTS), 0] != MISSING)):
            by_pid.setdefault(pid, []).append(name)
    cands = [(a, b) for pid in sorted(by_pid) for a in sorted(by_pid[pid]) for b in sorted(by_pid[pid]) if a != b]
    if not cands or n <= 0:
        return []
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9A125]))
    idx = rng.choice(len(cands), size=min(n, len(cands)), replace=False)
    return [cands[int(i)] for i in idx]


_LIMB_COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                 (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255),
                 (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85), (200, 200, 200)]


def draw_contact_sheet(samples: list[tuple[str, np.ndarray, np.ndarray]], path: str | Path, cols: int = 8,
                       zoom: int = 2) -> None:
    """A grid of ``(caption, uint8 (H, W, 3) image, (18, 2) keypoints)`` with skeletons drawn."""
    if not samples:
        return
    H, W = samples[0][1].shape[:2]
    th, tw = H * zoom, W * zoom
    cap = 12
    rows = (len(samples) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * (tw + 4) + 4, rows * (th + cap + 4) + 4), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, (caption, img, kp) in enumerate(samples):
        x0 = 4 + (i % cols) * (tw + 4)
        y0 = 4 + (i // cols) * (th + cap + 4)
        d.text((x0, y0), caption[: tw // 6], fill=(0, 0, 0))
        y0 += cap
        sheet.paste(Image.fromarray(img).resize((tw, th), Image.NEAREST), (x0, y0))

        def at(j):
            return x0 + kp[j, 1] * zoom + zoom / 2, y0 + kp[j, 0] * zoom + zoom / 2

        for li, (a, b) in enumerate(LIMBS):
            if kp[a, 0] != MISSING and kp[b, 0] != MISSING:
                d.line([at(a), at(b)], fill=_LIMB_COLOURS[li % len(_LIMB_COLOURS)], width=2)
        for j in range(NUM_KEYPOINTS):
            if kp[j, 0] != MISSING:
                x, y = at(j)
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(255, 255, 255), outline=(0, 0, 0))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


def _marker_of(out: Path) -> dict | None:
    try:
        info = json.loads((out / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "params" in info else None


def _check_existing(out: Path, params: ToyParams) -> bool:
    """True if ``out`` already holds this dataset; False if it is absent or an empty folder."""
    if not out.exists():
        return False
    if not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder; choose another --out or remove it")
    if not any(out.iterdir()):
        return False
    info = _marker_of(out)
    found = info["params"] if info is not None else None
    if found == dataclasses.asdict(params):
        if info.get("revision") == DRAWING_REVISION:
            return True
        raise StaleToyError(f"{out} holds a toy dataset drawn by another revision of the generator "
                                  f"({info.get('revision', 1)}, this is {DRAWING_REVISION}); delete that folder "
                                  f"to rebuild it")
    if found is not None:
        raise DatasetError(f"{out} holds a toy dataset made with other parameters ({found}); "
                           f"choose another --out or delete that folder to rebuild it")
    raise DatasetError(f"{out} exists and is not a toy dataset made by reid-aug (no {MARKER_FILE}); "
                       f"choose another --out or empty that folder")


_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _remove_stale_partials(out: Path) -> None:
    """Delete temp folders of earlier builds of ``out`` whose process is gone."""
    if not out.parent.is_dir():
        return
    for p in out.parent.iterdir():
        m = _PARTIAL.match(p.name)
        if not m or m.group("name") != out.name or not p.is_dir():
            continue
        pid = int(m.group("pid"))
        try:
            os.kill(pid, 0)
            continue                 # still building (or the pid was reused): leave it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        log.info("removing %s left by an interrupted build", p)
        shutil.rmtree(p, ignore_errors=True)


def make_toy(out: str | Path, seed: int = 0, n_train_ids: int = DEFAULT_N_TRAIN_IDS,
                   n_test_ids: int = DEFAULT_N_TEST_IDS, images_per_id: int = DEFAULT_IMAGES_PER_ID,
                   height: int = 128, width: int = 64, gallery_per_id: int = DEFAULT_GALLERY_PER_ID,
                   junk_frac: float = 0.1, distractor_frac: float = 0.1, n_test_pairs: int = DEFAULT_N_TEST_PAIRS,
                   jpeg_quality: int = 90, contact_sheet_ids: int = 6) -> Path:
    """Write the toy dataset into ``out`` (see the module docstring) and return ``out``.

    The dataset is built in a temp folder beside ``out`` and renamed into place at the end,
    so an interrupted run leaves nothing half-made. If ``out`` already holds the dataset of
    the same parameters it is returned untouched; any other non-empty ``out`` raises
    :class:`DatasetError`. Two processes building the same ``out`` at once are safe: the one
    that renames second discards its copy.
    """
    from tqdm import tqdm

    out = Path(out)
    params = ToyParams(seed=seed, n_train_ids=n_train_ids, n_test_ids=n_test_ids, images_per_id=images_per_id,
                             gallery_per_id=gallery_per_id, height=height, width=width, junk_frac=junk_frac,
                             distractor_frac=distractor_frac, n_test_pairs=n_test_pairs, jpeg_quality=jpeg_quality)
    params.validate()
    if n_train_ids + n_test_ids > 1501:
        log.warning("%d identities: person ids above 1501 trip torchreid's own Market1501 class "
                    "(reid-aug's reader takes them)", n_train_ids + n_test_ids)
    if _check_existing(out, params):
        log.info("toy dataset already complete at %s", out)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    os.chmod(tmp, 0o755)      # mkdtemp makes it private; the dataset is not
    try:
        records, _ = plan_dataset(params)
        for folder in ("bounding_box_train", "bounding_box_test", "query", "annotations"):
            (tmp / folder).mkdir()
        ann_train: dict[str, np.ndarray] = {}
        ann_test: dict[str, np.ndarray] = {}
        gallery: list[tuple[str, int, np.ndarray]] = []
        sheet: list[tuple[str, np.ndarray, np.ndarray]] = []
        sheet_pids: list[int] = []
        extra: dict[str, list] = {"gallery": [], "query": [], "junk": [], "distractor": []}
        bar = tqdm(iter_samples(params), total=len(records), desc="toy dataset", unit="img", disable=None)
        for rec, r in bar:
            (tmp / rec.folder / rec.name).write_bytes(_jpeg_bytes(r.image, params.jpeg_quality))
            (ann_train if rec.split == "train" else ann_test)[rec.name] = r.keypoints
            if rec.split == "gallery":
                gallery.append((rec.name, rec.pid, r.keypoints))
            view = r.pose.view if r.pose is not None else "empty"
            if rec.split == "train":
                if rec.pid not in sheet_pids and len(sheet_pids) < contact_sheet_ids:
                    sheet_pids.append(rec.pid)
                if rec.pid in sheet_pids and sum(1 for s in sheet if s[0].startswith(f"{rec.pid:04d} ")) < 4:
                    sheet.append((f"{rec.pid:04d} c{rec.camid} {view}", r.image, r.keypoints))
            else:
                group = extra["query" if rec.split == "query" else "gallery" if rec.kind == "normal" else rec.kind]
                if len(group) < 2:
                    label = rec.kind if rec.kind != "normal" else rec.split
                    group.append((f"{label} c{rec.camid} {view}", r.image, r.keypoints))
        write_annotations(tmp / "annotations" / "toy-annotation-train.csv", ann_train)
        write_annotations(tmp / "annotations" / "toy-annotation-test.csv", ann_test)
        pairs = sample_test_pairs(gallery, params.n_test_pairs, params.seed)
        atomic_write_text(tmp / "annotations" / "toy-pairs-test.csv",
                          "from,to\n" + "".join(f"{a},{b}\n" for a, b in pairs))
        draw_contact_sheet(sheet + [e for g in extra.values() for e in g], tmp / "contact_sheet.png")
        counts = {f: sum(1 for r in records if r.folder == f)
                  for f in ("bounding_box_train", "bounding_box_test", "query")}
        counts["test_pairs"] = len(pairs)
        atomic_write_text(tmp / MARKER_FILE, json.dumps({"format": "reid-aug toy pedestrians",
                                                         "revision": DRAWING_REVISION,
                                                         "params": dataclasses.asdict(params),
                                                         "counts": counts}, indent=2) + "\n")
        try:
            os.rename(tmp, out)
        except OSError:
            # Someone else finished first (or put something there meanwhile).
            if _check_existing(out, params):
                log.info("another process built %s first; discarding this copy", out)
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("toy dataset written to %s: %s", out, counts)
    return out


def default_cache_dir() -> Path:
    return Path(os.environ.get("REID_AUG_CACHE") or Path.home() / ".cache" / "reid-aug")


def ensure_toy(cache_dir: str | Path | None = None, seed: int = 0) -> Path:
    """The default toy dataset under ``cache_dir`` (default ``$REID_AUG_CACHE`` or
    ``~/.cache/reid-aug``) as ``toy-v1-seed{seed}``, built on first use."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / f"toy-v{FORMAT_VERSION}-seed{seed}"
    try:
        return make_toy(out, seed=seed)
    except StaleToyError:
        # Our own cache, drawn by an older revision: move it aside, then rebuild. A process
        # racing us may have moved it already (FileNotFoundError) or rebuilt it.
        aside = out.parent / f".{out.name}.stale-{os.getpid()}"
        log.info("rebuilding %s: drawn by another revision of the generator", out)
        try:
            os.rename(out, aside)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(aside, ignore_errors=True)
        return make_toy(out, seed=seed)
