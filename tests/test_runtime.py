"""reid_aug.runtime: device choice, RNG states, worker counts, safe torch loading."""
import pickle
import random

import numpy as np
import pytest
import torch

from reid_aug.errors import CheckpointError, ConfigError
from reid_aug.runtime import (get_rng_state, load_torch_file, loader_workers, machine_cpus, resolve_device,
                              set_rng_state)


def test_resolve_device():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="not a device name"):
        resolve_device("gpu0")


def test_rng_state_round_trip_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()                    # leaves a cached gaussian in numpy's state
    state = get_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    expected = (random.random(), np.random.normal(), torch.rand(3))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (random.random(), np.random.normal(), torch.rand(3))
    assert again[0] == expected[0] and again[1] == expected[1]
    assert torch.equal(again[2], expected[2])


def test_loader_workers_follow_the_machine():
    cpus = machine_cpus()
    assert loader_workers(64) == max(0, cpus - 1)
    assert loader_workers(0) == 0


def test_load_torch_file_gives_one_line_without_torch_text(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"a": torch.ones(2)}, good)
    assert torch.equal(load_torch_file(good, "a thing", "Pass X.")["a"], torch.ones(2))
    (tmp_path / "noise.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "pickled.pt").write_bytes(pickle.dumps(object()))
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:100])
    for name in ("noise.pt", "pickled.pt", "cut.pt", "missing.pt"):
        with pytest.raises(CheckpointError) as err:
            load_torch_file(tmp_path / name, "a PG² generator checkpoint", "Pass RUN/checkpoint.pt.")
        msg = str(err.value)
        assert "\n" not in msg and "weights_only" not in msg and "arbitrary code" not in msg, msg
        assert name in msg and "Pass RUN/checkpoint.pt." in msg
