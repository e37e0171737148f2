"""Issue 13: Deformable GAN's background conditioning (TPAMI ``use_bg``) from training to synthesis.

Re-ID crops have no separate background, so a background is an image with its person cut out
(:mod:`reid_aug.generator.defgan.background`): the target's own in training and evaluation, another source image
of the output's camera in synthesis."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from reid_aug.generator.defgan.background import BackgroundPicker, background, person_mask
from reid_aug.generator.train import resolve_training, train_generator

TINY = ["model.width=2", "model.d_width=2", "train.batch_size=4", "train.num_workers=0", "train.tensorboard=false",
        "train.log_every=1", "train.sample_every=1000", "train.n_samples=2", "runtime.threads=0"]


def _skeleton():
    kp = -np.ones((18, 2), np.int64)
    kp[[1, 2, 5, 8, 11]] = [[30, 32], [32, 24], [32, 40], [70, 26], [70, 38]]     # neck, shoulders, hips
    return torch.from_numpy(kp)


def test_the_person_is_cut_out_and_nothing_else():
    img = torch.rand(2, 3, 128, 64) * 2 - 1
    kps = torch.stack([_skeleton(), -torch.ones(18, 2, dtype=torch.int64)])      # the second has no person
    bg = background(img, kps, grow=4)
    assert torch.equal(bg[1], img[1])                       # no keypoints: nothing cut out
    assert bg[0, :, 50, 32].abs().sum() == 0                # inside the torso
    assert bg[0, :, 30, 32].abs().sum() == 0                # on the neck joint
    assert torch.equal(bg[0, :, 120:, :], img[0, :, 120:, :]) and torch.equal(bg[0, :, :10], img[0, :, :10])
    # growing the mask only adds pixels: grow 0 is the pose mask itself
    masks = [person_mask(kps[:1], (128, 64), g) for g in (0, 2, 6)]
    assert masks[0].sum() < masks[1].sum() < masks[2].sum()
    assert torch.all(masks[2] >= masks[1]) and torch.all(masks[1] >= masks[0])


def test_the_picker_takes_the_same_camera_and_another_identity_deterministically():
    names = [f"{p:04d}_c{c}s1_0000{i}_00.jpg" for p, c, i in [(1, 1, 0), (1, 2, 1), (2, 1, 2), (3, 1, 3), (3, 2, 4)]]
    table = pd.DataFrame({"name": names, "path": names, "pid": [1, 1, 2, 3, 3], "camid": [1, 2, 1, 1, 2],
                          "pose_ok": [True, True, True, False, True]})
    kps = {n: _skeleton().numpy() for n in names}
    picker = BackgroundPicker(table, kps, seed=0)
    picks = {picker.pick(f"0001_c1s1_{k:06d}_00.jpg", 1, 1) for k in range(20)}
    assert picks == {names[2]}                              # camera 1, not identity 1, torso annotated
    assert {picker.pick(f"0001_c2s1_{k:06d}_00.jpg", 1, 2) for k in range(20)} == {names[4]}
    # a camera with only the identity's own images: another identity of any camera
    assert picker.pick("0003_c2s1_000009_00.jpg", 3, 2) in (names[0], names[1], names[2])
    assert picker.pick("x.jpg", 2, 1) == BackgroundPicker(table, kps, seed=0).pick("x.jpg", 2, 1)
    several = {BackgroundPicker(table, kps, seed=s).pick(f"f{s}.jpg", 2, 2) for s in range(30)}
    assert several == {names[1], names[4]}                  # the seed changes the choice among the candidates


@pytest.fixture(scope="module")
def bg_run(tiny_toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("bg") / "run"
    cfg, out = resolve_training(str(tiny_toy), "defgan_toy", TINY + ["train.steps=3", "model.use_bg=true"], out)
    return train_generator(cfg, str(tiny_toy), out)


def test_a_background_generator_trains_and_uses_its_background(bg_run, tiny_toy):
    from reid_aug.generator.data import load_training_data
    from reid_aug.generator.inference import load_generator

    gen = load_generator(bg_run)
    assert gen.background_grow == 6 and gen.nets["g"].use_bg
    batch = load_training_data(str(tiny_toy), (128, 64), "gaussian", 2, 0).sample_batch
    cond = {k: batch[k] for k in ("src_pose", "src_kp", "tgt_kp")}
    with pytest.raises(ValueError, match="bg"):
        gen.generate(batch["src_img"], batch["tgt_pose"], **cond)
    own = gen.generate(batch["src_img"], batch["tgt_pose"], bg=background(batch["tgt_img"], batch["tgt_kp"]), **cond)
    other = gen.generate(batch["src_img"], batch["tgt_pose"], bg=torch.zeros_like(batch["tgt_img"]), **cond)
    assert own.shape == (2, 3, 128, 64) and not torch.allclose(own, other)


def test_evaluation_and_synthesis_give_it_a_background(bg_run, tmp_path):
    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.synthesis.config import load_synthesis_config
    from reid_aug.synthesis.synthesize import synthesize

    recs = evaluate_generator(bg_run, limit=8, workers=0)
    assert "target image" in recs[0]["background"]
    outs = []
    for name in ("a", "b"):
        scfg = load_synthesis_config(overrides=[f"generator={bg_run}", "poses_per_id=2", f"out={tmp_path / name}",
                                                "max_identities=3", "workers=1"])
        assert synthesize(scfg)["written"] == 6
        outs.append(tmp_path / name)
    desc = json.loads((outs[0] / "synthesis.json").read_text())
    assert "camera" in desc["info"]["background"]
    files = sorted(p.name for p in (outs[0] / "bounding_box_train").glob("*.jpg"))
    assert files and all((outs[1] / "bounding_box_train" / f).read_bytes() ==
                         (outs[0] / "bounding_box_train" / f).read_bytes() for f in files)   # deterministic
