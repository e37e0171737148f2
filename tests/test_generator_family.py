"""The generator family registry and the checkpoint format: families are found by name, checkpoints name
their family, load_generator builds through the registry, and 0.1 checkpoints still load and resume."""
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from reid_aug.config import load_config
from reid_aug.errors import CheckpointError, ConfigError
from reid_aug.generator.checkpoint import FORMAT_VERSION, KIND, load_checkpoint, save_checkpoint
from reid_aug.generator.config import PG2Config
from reid_aug.generator.family import (GeneratorFamily, Stage, family_of, get_family, register_family)
from reid_aug.generator.inference import load_generator
from reid_aug.generator.pg2 import FAMILY as PG2, compose
from reid_aug.generator.train import resolve_training, train_generator
from reid_aug.records import read_json_object
from reid_aug.utils.io import sha256_file

OLD_RUN = Path(__file__).resolve().parent / "data" / "v0.1" / "pg2_run"


def test_registry_finds_pg2_and_names_the_known_families():
    assert get_family("pg2") is PG2 and PG2.config_class is PG2Config
    cfg = load_config(PG2Config, "pg2_toy")
    assert cfg.family == "pg2" and family_of(cfg) is PG2
    with pytest.raises(ConfigError, match="unknown generator family 'nope'.*pg2"):
        get_family("nope")
    # a recipe naming another family is refused by the PG² config
    with pytest.raises(ConfigError, match="family"):
        load_config(PG2Config, "pg2_toy", ["family=defgan"])
    # the stages say which networks each trains, which it freezes
    assert PG2.stage("g2") == Stage("g2", g=("g2",), d=("d",), frozen=("g1",))
    assert PG2.stage("g1+d").networks == ("g1", "d") and PG2.stage("g1").d == ()
    assert PG2.output_stages(["g1+d"]) == ("g1",) and PG2.output_stages(["g1", "g2"]) == ("g1", "g2")


# --------------------------------------------------------------------------- a second family
class _ShiftConfig(PG2Config):
    """PG2Config with another family name (a family may reuse another's config sections)."""

    def __post_init__(self):
        pass


class _Shift(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, src_img, tgt_pose):
        return src_img + self.bias.view(1, 3, 1, 1) + 0 * tgt_pose[:, :1]


class _ShiftFamily(GeneratorFamily):
    name = "shift-test"
    config_class = _ShiftConfig
    stage_names = ("only",)
    network_names = ("net",)
    base_networks = ("net",)

    def build_networks(self, cfg, which=("net",)):
        return {"net": _Shift()} if "net" in which else {}

    def stage(self, name):
        return Stage("only", g=("net",))

    def output_stages(self, trained):
        return ("only",) if "only" in trained else ()

    def inference_networks(self, stages):
        return ("net",)

    def generate(self, nets, batch, stage):
        return nets["net"](batch["src_img"], batch["tgt_pose"])


def test_load_generator_builds_any_registered_family(tmp_path):
    """load_generator asks the registry for the checkpoint's family: a family that is not PG² loads too."""
    from reid_aug.config import to_dict

    register_family(_ShiftFamily())
    cfg = _ShiftConfig(family="shift-test")
    net = _Shift()
    with torch.no_grad():
        net.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    save_checkpoint({"family": "shift-test", "config": to_dict(cfg), "models": {"net": net.state_dict()},
                     "stage_index": 1, "step": 0, "global_step": 3, "trained": ["only"], "complete": True},
                    tmp_path / "checkpoint.pt")
    gen = load_generator(tmp_path)
    assert gen.family.name == "shift-test" and gen.stages == ("only",) and gen.net is gen.nets["net"]
    src = torch.zeros(2, 3, 128, 64)
    out = gen.generate(src, torch.zeros(2, 18, 128, 64))
    assert torch.equal(out[:, 1], torch.full((2, 128, 64), -1.0))
    # an unknown family is one clear line
    save_checkpoint({"family": "gone", "config": {}, "models": {}, "stage_index": 0, "step": 0},
                    tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: unknown generator family 'gone'"):
        load_generator(tmp_path / "other.pt")


# --------------------------------------------------------------------------- 0.1 checkpoints
@pytest.fixture(scope="module")
def old_run_data(tmp_path_factory) -> Path:
    """The toy dataset the 0.1 run was trained on (same pairs: the checkpoint records their sha256)."""
    from reid_aug.toyset import make_toy

    return make_toy(tmp_path_factory.mktemp("old") / "tiny", seed=0, n_train_ids=4, n_test_ids=4, images_per_id=3)


def test_v01_checkpoint_loads_for_inference():
    raw = torch.load(OLD_RUN / "checkpoint.pt", weights_only=True)
    assert raw["kind"] == "reid-aug/pg2" and raw["format_version"] == 1 and "family" not in raw
    ckpt = load_checkpoint(OLD_RUN)
    assert ckpt["family"] == "pg2"
    gen = load_generator(OLD_RUN)
    assert gen.family is PG2 and gen.stages == ("g1", "g2") and gen.complete and gen.step == 3
    assert gen.config.model.g1_width == 4 and gen.config.runtime.expects_gpu is False
    torch.manual_seed(0)
    src, pose = torch.rand(2, 3, 128, 64) * 2 - 1, -torch.ones(2, 18, 128, 64)
    g1_img, g2_img = compose(gen.g1, gen.g2, src, pose)
    torch.testing.assert_close(gen.generate(src, pose), g2_img, rtol=0, atol=0)
    torch.testing.assert_close(gen.generate(src, pose, stage="g1"), g1_img, rtol=0, atol=0)


def test_v01_run_resumes_and_seeds_a_new_stage_two(old_run_data, tmp_path):
    run = tmp_path / "old"
    shutil.copytree(OLD_RUN, run)
    cfg, _ = resolve_training(str(old_run_data), run / "config.yaml", ["runtime.device=cpu"])
    before = sha256_file(run / "checkpoint.pt")
    # same config and pairs: a finished 0.1 run resumes to a no-op and is recorded as complete
    train_generator(cfg, str(old_run_data), run, resume=True)
    assert sha256_file(run / "checkpoint.pt") == before
    info = read_json_object(run / "run.json")
    assert info["complete"] is True and info["trained"] == ["g1", "g2"] and info["family"] == "pg2"
    # a changed loss or other pairs are refused, as for a new checkpoint
    cfg2, _ = resolve_training(str(old_run_data), run / "config.yaml", ["loss.lambda_l1=1"])
    with pytest.raises(CheckpointError, match="loss.lambda_l1"):
        train_generator(cfg2, str(old_run_data), run, resume=True)
    with pytest.raises(CheckpointError, match="other pairs"):
        train_generator(cfg, str(_other_data(tmp_path)), run, resume=True)
    # its G1 starts stage II of a new run (train.init_from)
    cfg3, out = resolve_training(str(old_run_data), run / "config.yaml",
                                 ["train.g2_iters=2", f"train.init_from={run}", "train.checkpoint_every=1"],
                                 tmp_path / "new")
    train_generator(cfg3, str(old_run_data), out)
    new = load_checkpoint(out)
    assert new["kind"] == KIND and new["format_version"] == FORMAT_VERSION and new["family"] == "pg2"
    assert new["complete"] and new["global_step"] == 2 + 2
    old = load_checkpoint(run)
    assert all(torch.equal(v, new["models"]["g1"][k]) for k, v in old["models"]["g1"].items())


def _other_data(tmp_path) -> Path:
    from reid_aug.toyset import make_toy

    return make_toy(tmp_path / "other", seed=1, n_train_ids=4, n_test_ids=4, images_per_id=3)
