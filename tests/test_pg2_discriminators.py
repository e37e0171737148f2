"""Issue 12: PG²'s discriminator variants named for what they are (pair / official / unconditional)."""
from pathlib import Path

import pytest
import torch

from reid_aug.config import load_config
from reid_aug.generator.config import PG2Config
from reid_aug.generator.train import resolve_training, train_generator

from test_generator_train import TINY

OLD_RUN = Path(__file__).parent / "data" / "v0.1" / "pg2_run"


def test_pair_is_the_default_of_the_paper_recipes_and_cpu_recipes_keep_their_recorded_variant():
    for recipe in ("pg2_market", "pg2_ablation_g1_d", "pg2_ablation_g1_g2_d"):
        assert load_config(PG2Config, recipe).loss.d_variant == "pair", recipe
    for recipe in ("pg2_market_cpu", "pg2_toy"):
        assert load_config(PG2Config, recipe).loss.d_variant == "unconditional", recipe


def test_the_old_name_paper_is_read_as_unconditional(caplog):
    with caplog.at_level("INFO", logger="reid_aug.generator.config"):
        cfg = load_config(PG2Config, "pg2_market", ["loss.d_variant=paper"])
    assert cfg.loss.d_variant == "unconditional"
    assert any("'paper' is the unconditional D" in r.getMessage() for r in caplog.records)


def test_a_0_1_checkpoint_that_stored_paper_loads_labelled_unconditional():
    from reid_aug.generator.inference import load_generator

    raw = torch.load(OLD_RUN / "checkpoint.pt", weights_only=True)
    assert raw["config"]["loss"]["d_variant"] == "paper"
    gen = load_generator(OLD_RUN)
    assert gen.config.loss.d_variant == "unconditional"


def _run(tiny_toy, tmp_path, name, *extra):
    cfg, out = resolve_training(str(tiny_toy), "pg2_toy", TINY + ["train.g1_iters=2", "train.g2_iters=3", *extra],
                                tmp_path / name)
    return train_generator(cfg, str(tiny_toy), out)


def test_pair_discriminator_sees_the_condition_image_on_the_channel_axis(tiny_toy, tmp_path, monkeypatch):
    from reid_aug.generator.discriminator import Discriminator

    seen = []
    real_forward = Discriminator.forward

    def spy(self, img):
        seen.append(img.shape)
        return real_forward(self, img)

    monkeypatch.setattr(Discriminator, "forward", spy)
    run = _run(tiny_toy, tmp_path, "pair", "loss.d_variant=pair")
    assert seen and all(shape[1] == 6 for shape in seen)
    # each D call judges real pairs and generated pairs of one batch together: (I_A, I_B) and (I_A, G2)
    assert all(shape[0] == 2 * 4 for shape in seen)
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["models"]["d"]["features.0.weight"].shape[1] == 6
    seen.clear()
    _run(tiny_toy, tmp_path, "uncond", "loss.d_variant=unconditional")
    assert seen and all(shape[1] == 3 and shape[0] == 4 * 2 for shape in seen)


def test_unconditional_reproduces_what_paper_trained_bit_for_bit(tiny_toy, tmp_path):
    a = torch.load(_run(tiny_toy, tmp_path, "a", "loss.d_variant=unconditional") / "checkpoint.pt", weights_only=True)
    b = torch.load(_run(tiny_toy, tmp_path, "b", "loss.d_variant=paper") / "checkpoint.pt", weights_only=True)
    for net in ("g1", "g2", "d"):
        for k, v in a["models"][net].items():
            assert torch.equal(v, b["models"][net][k]), (net, k)


def test_dry_run_shows_the_d_variant(tiny_toy, tmp_path, caplog):
    cfg, out = resolve_training(str(tiny_toy), "pg2_market", TINY, tmp_path / "dry")
    with caplog.at_level("INFO"):
        train_generator(cfg, str(tiny_toy), out, dry_run=True)
    assert any("D variant 'pair'" in r.getMessage() and "the 'pg2' pose mask" in r.getMessage()
               for r in caplog.records)
    assert not out.exists()


def test_mask_style_reaches_the_training_batches(tiny_toy):
    from reid_aug.generator.data import load_training_data
    from reid_aug.pose.maps import pose_masks

    for style in ("pg2", "defgan"):
        data = load_training_data(str(tiny_toy), (128, 64), "pg2", 2, 0, mask_style=style)
        item = data.train_set[0]
        assert torch.equal(item["tgt_mask"], pose_masks(item["tgt_kp"], (128, 64), style=style))
    assert load_config(PG2Config, "pg2_market").pose.mask_style == "pg2"
    assert load_config(PG2Config, "pg2_market_cpu").pose.mask_style == "defgan"
