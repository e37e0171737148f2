"""The file names of synthesized images, and the real Market-1501 names they never collide with.

``PPPP_cC_gKK_<source stem>.jpg``, e.g. ``0002_c1_g03_0002_c1s1_000451_03.jpg``: identity ``PPPP``
(the source's, at least 4 digits) and camera ``C`` (the source image's) first, so that torchreid's
``re.compile(r'([-\\d]+)_c(\\d)').search`` and reid-aug's own ``parse_market_name`` read the source
identity and camera; then ``_g`` + the 2-digit (or wider) index ``KK`` of the image among the
identity's K; then the stem of the source image, for traceability. Real Market-1501 names are
``PPPP_cCsS_FFFFFF_NN.jpg``: the camera digit is always followed by ``s``, never by ``_g``, so a
real name can never match :data:`SYNTHESIZED_NAME` and a synthesized name never matches
:data:`MARKET_NAME` (DukeMTMC-reID's ``_cC_fFFFFFFF`` and CUHK03-NP's ``_cC_N`` do not start with
``_g`` either). Names are unique within a run because ``(PPPP, KK)`` is.
"""
from __future__ import annotations

import re
from pathlib import Path

# A synthesized name (see the module docstring).
SYNTHESIZED_NAME = re.compile(r"^(?P<pid>\d+)_c(?P<cam>\d+)_g(?P<k>\d+)_(?P<source>[^/\\]+)\.jpg$")
# A real Market-1501 name, including junk (-1), distractors (0000) and the official *.jpg.jpg names.
MARKET_NAME = re.compile(r"^(?P<pid>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d)_(?P<frame>\d{6})_(?P<box>\d{2})\.jpg(\.jpg)?$")
# torchreid.reid.data.datasets.image.market1501.Market1501.process_dir
TORCHREID_MARKET_PATTERN = re.compile(r"([-\d]+)_c(\d)")
_IMAGE_EXT = re.compile(r"(\.(jpe?g|png))+$", re.IGNORECASE)


def source_stem(name: str) -> str:
    """``0002_c1s1_000451_03.jpg`` -> ``0002_c1s1_000451_03`` (also strips a doubled ``.jpg.jpg``)."""
    return _IMAGE_EXT.sub("", Path(name).name)


def synthesized_name(pid: int, camid: int, k: int, source: str) -> str:
    """The file name of the ``k``-th synthesized image of identity ``pid`` from ``source`` (camera ``camid``)."""
    if pid < 1 or camid < 0 or k < 0:
        raise ValueError(f"bad synthesized name fields pid={pid} camid={camid} k={k}")
    return f"{int(pid):04d}_c{int(camid)}_g{int(k):02d}_{source_stem(source)}.jpg"


def parse_synthesized_name(name: str) -> tuple[int, int, int, str]:
    """``(pid, camid, k, source stem)`` of a synthesized name; ``ValueError`` for any other name."""
    m = SYNTHESIZED_NAME.match(Path(name).name)
    if m is None:
        raise ValueError(f"{name!r} is not a reid-aug synthesized image name (PPPP_cC_gKK_SOURCE.jpg)")
    return int(m["pid"]), int(m["cam"]), int(m["k"]), m["source"]
