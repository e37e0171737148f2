import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def market_root() -> Path:
    """The real Market-1501 (``REID_AUG_MARKET_ROOT``); tests using it skip where it is absent."""
    env = os.environ.get("REID_AUG_MARKET_ROOT")
    if not env:
        pytest.skip("real Market-1501 not available: set REID_AUG_MARKET_ROOT (as .ci/run does) to run this test")
    root = Path(env)
    if not (root / "Market-1501-v15.09.15").is_dir() and not (root / "bounding_box_train").is_dir():
        pytest.skip(f"real Market-1501 not found at REID_AUG_MARKET_ROOT={env}")
    return root


@pytest.fixture(scope="session")
def tiny_toy(tmp_path_factory) -> Path:
    """A tiny toy dataset in the Market layout (a few ids, a few images each), built once per session."""
    from reid_aug.toyset import make_toy

    out = tmp_path_factory.mktemp("toy") / "tiny"
    make_toy(out, seed=0, n_train_ids=8, n_test_ids=8, images_per_id=6)
    return out
