"""Issue 20: identity-preserving generator losses from a frozen Re-ID network trained on the real images."""
import csv
import json

import pytest
import torch

from reid_aug.config import ConfigError, load_config
from reid_aug.errors import CheckpointError
from reid_aug.generator.checkpoint import load_checkpoint
from reid_aug.generator.config import PG2Config
from reid_aug.generator.train import resolve_training, train_generator

from test_generator_train import TINY, _log

ID_ON = ["loss.identity.feature_weight=1", "loss.identity.id_weight=0.5", "loss.identity.perceptual_weight=0.5"]


def _reid_file(tmp_path, dataset, *overrides, decisive=False):
    """A benchmark-format Re-ID model (random init: the losses' plumbing does not need a trained one).
    ``decisive``: batch-norm statistics measured on noise and a scaled classifier, so that its features and logits
    depend on the image (a fresh OSNet in eval mode maps every image to nearly the same logits)."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.reid.data import build_splits
    from reid_aug.reid.experiment import resolve_benchmark
    from reid_aug.reid.models import build_model, save_reid_model

    cfg = resolve_benchmark(model="osnet_x0_25", recipe="reid_toy", pretrained=False,
                            overrides=["data.height=64", "data.width=32", *overrides])
    splits = build_splits(load_dataset(dataset), None, cfg.data.train_per_id, cfg.data.subsample_seed)
    torch.manual_seed(0)
    model = build_model("osnet_x0_25", splits.num_train_pids)
    if decisive:
        _make_decisive(model, [p for p, *_ in splits.train][:48])
    path = tmp_path / "reid.pt"
    save_reid_model(model, cfg, path, {"num_classes": splits.num_train_pids, "variant": "baseline", "seed": 0,
                                       "pid2label": {str(k): v for k, v in splits.pid2label.items()}})
    return path


def _make_decisive(model, paths, scale=5.0):
    """Batch-norm statistics of ``model`` measured on these images (normalised as the identity loss feeds them)
    and its classifier scaled by ``scale``."""
    import numpy as np
    from PIL import Image

    x = torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((32, 64)), dtype=np.float32))
                     .permute(2, 0, 1) / 255 for p in paths])
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None                      # a plain average over the calibration batches
    model.train()
    with torch.no_grad():
        for chunk in x.split(16):
            model(chunk)
        model.classifier.weight.mul_(scale)
    model.eval()


def _run(tiny_toy, out, *extra, recipe="pg2_toy", base=TINY):
    cfg, out = resolve_training(str(tiny_toy), recipe, base + list(extra), out)
    return train_generator(cfg, str(tiny_toy), out)


def test_identity_losses_train_g1_through_a_frozen_network(tiny_toy, tmp_path):
    from reid_aug.generator import identity

    reid = _reid_file(tmp_path, tiny_toy)
    before = {k: v.clone() for k, v in torch.load(reid, weights_only=True)["state_dict"].items()}
    stage1 = ["train.stages=[g1]", "train.g1_iters=3"]
    with_id = _run(tiny_toy, tmp_path / "with", *stage1, *ID_ON, f"loss.identity.model={reid}")
    without = _run(tiny_toy, tmp_path / "without", *stage1)
    rows = _log(with_id)
    assert all(float(r["id_feature"]) > 0 and float(r["id_ce"]) > 0 and float(r["id_perceptual"]) > 0 for r in rows)
    assert all(r["id_feature"] == "" for r in _log(without))
    a, b = load_checkpoint(with_id)["models"]["g1"], load_checkpoint(without)["models"]["g1"]
    assert any(not torch.equal(a[k], b[k]) for k in a)          # the identity gradient reached G1
    # the network never changed: weights and batch-norm statistics as in its file, still in eval mode
    # the run records which network it was, by hash, and which images that network saw
    from reid_aug.utils.io import sha256_file

    rec = json.loads((with_id / "run.json").read_text())["identity_model"]
    assert rec["sha256"] == sha256_file(reid) and rec["model"] == str(reid)
    assert rec["trained_on"]["train_per_id"] == 0 and rec["trained_on"]["identities"] > 0
    assert "identity_model" not in json.loads((without / "run.json").read_text())
    (mod,) = [m for k, m in identity._CACHE.items() if k[0] == str(reid)]
    assert not mod.net.training
    for k, v in mod.net.state_dict().items():
        assert torch.equal(v.cpu(), before[k]), k


def test_defgan_and_stage_two_take_the_identity_losses(tiny_toy, tmp_path):
    reid = _reid_file(tmp_path, tiny_toy)
    run = _run(tiny_toy, tmp_path / "pg2", "train.stages=[g1, g2]", "train.g1_iters=1", "train.g2_iters=2", *ID_ON,
               f"loss.identity.model={reid}")
    assert [r["stage"] for r in _log(run)] == ["g1", "g2", "g2"] and float(_log(run)[-1]["id_ce"]) > 0
    dg = _run(tiny_toy, tmp_path / "dg", "train.steps=2", *ID_ON, f"loss.identity.model={reid}", recipe="defgan_toy",
              base=["model.width=2", "model.d_width=2", "train.batch_size=4", "train.num_workers=0",
                    "train.tensorboard=false", "train.log_every=1", "train.n_samples=2"])
    assert float(_log(dg)[-1]["id_feature"]) > 0


def test_the_network_must_have_seen_only_the_generators_images(tiny_toy, tmp_path):
    reid_all = _reid_file(tmp_path, tiny_toy)
    with pytest.raises(CheckpointError, match="every image.s. per identity .seed 0., the generator on 2 .seed 0.: it must see only"):
        _run(tiny_toy, tmp_path / "bad", "train.stages=[g1]", "train.g1_iters=1", "data.train_per_id=2", *ID_ON,
             f"loss.identity.model={reid_all}")
    with pytest.raises(ConfigError, match="model=PATH"):
        load_config(PG2Config, "pg2_toy", ["loss.identity.feature_weight=1"])
    with pytest.raises(ConfigError, match=">= 0"):
        load_config(PG2Config, "pg2_toy", ["loss.identity.id_weight=-1", "loss.identity.model=x.pt"])


def test_a_log_of_an_earlier_version_keeps_its_rows_by_column_name(tmp_path):
    from reid_aug.generator.runfiles import CsvLog

    path = tmp_path / "log.csv"
    path.write_text("stage,step,loss,wall_s\ng1,1,0.5,1.0\ng1,2,0.4,2.0\ng1,3,0.3\n")     # a torn last line
    log = CsvLog(path, ("stage", "step", "loss", "id_ce", "wall_s"), keep_rows=5)
    log.close()
    rows = list(csv.DictReader(path.open()))
    assert [(r["step"], r["loss"], r["id_ce"], r["wall_s"]) for r in rows] == [("1", "0.5", "", "1.0"),
                                                                                ("2", "0.4", "", "2.0")]


def test_nn_loss_on_the_identity_networks_stem(tiny_toy, tmp_path):
    """loss.nn_features=reid: the NN loss on the frozen network's stem (known answer: its conv1 on the
    torchreid-normalised input); zero for identical images; gradient to G's output, none to the network;
    refused without loss.identity.model; a Deformable GAN run trains with it and logs the NN term."""
    from reid_aug.generator.defgan.config import DefGANConfig
    from reid_aug.generator.defgan.nn_loss import nearest_neighbour_loss
    from reid_aug.generator.family import get_family

    reid = _reid_file(tmp_path, tiny_toy)
    cfg = load_config(DefGANConfig, "defgan_toy", ["loss.nn_features=reid", f"loss.identity.model={reid}"])
    loss = get_family("defgan").nn_loss(cfg, torch.device("cpu"))
    torch.manual_seed(1)
    a = torch.rand(2, 3, 64, 32) * 2 - 1
    b = torch.rand(2, 3, 64, 32) * 2 - 1
    net = loss.features.identity.net
    x = (((a + 1) / 2) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / \
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert loss.features.identity.size == (64, 32)     # the network's input size: no resize here
    ref = net.conv1(x)
    assert torch.allclose(loss.features(a), ref, atol=1e-5) and ref.shape[1] == 16     # OSNet x0.25 stem
    assert float(loss(a, a)) == 0.0
    g = a.clone().requires_grad_(True)
    value = loss(g, b)
    value.backward()
    assert value > 0 and g.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters()) and not net.training
    want = nearest_neighbour_loss(loss.features(a), loss.features(b), cfg.loss.nn_k)
    assert float(loss(a, b)) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ConfigError, match="nn_features=reid"):
        load_config(DefGANConfig, "defgan_toy", ["loss.nn_features=reid"])
    run = _run(tiny_toy, tmp_path / "dg", "train.steps=2", "loss.nn_features=reid", f"loss.identity.model={reid}",
               recipe="defgan_toy", base=["model.width=2", "model.d_width=2", "train.batch_size=4",
                                          "train.num_workers=0", "train.tensorboard=false", "train.log_every=1",
                                          "train.n_samples=2"])
    assert float(_log(run)[-1]["nn"]) > 0


def test_the_distance_terms_are_zero_for_identical_images(tiny_toy, tmp_path):
    """feature (1 - cos) and perceptual (feature-map L1) vanish when the generated image is the target; they do
    not for another image; the CE term is a classification, the source's identity decides it."""
    from reid_aug.generator.identity import IdentityLoss, IdentityLossConfig

    reid = _reid_file(tmp_path, tiny_toy)
    loss = IdentityLoss(IdentityLossConfig(str(reid), 1.0, 1.0, 1.0))
    torch.manual_seed(0)
    a, b = torch.rand(3, 3, 64, 32) * 2 - 1, torch.rand(3, 3, 64, 32) * 2 - 1
    names = [f"{pid:04d}_c1s1_000000_00.jpg" for pid in sorted(loss.pid2label)[:3]]
    _, same = loss(a, a, names)
    _, other = loss(a, b, names)
    assert abs(float(same["id_feature"])) < 1e-6 and float(same["id_perceptual"]) == 0.0
    assert float(other["id_feature"]) > 1e-4 and float(other["id_perceptual"]) > 1e-4
    assert float(same["id_ce"]) > 0


def test_the_classification_loss_falls_when_the_generator_trains_on_it(tiny_toy, tmp_path):
    """A tiny problem: G1 trained by plain gradient descent on the identity classification term alone, on one fixed
    batch of training pairs: the identity network's cross-entropy on the generated images with the sources'
    identities falls at every step (the gradient reaches G1 through the frozen network with the right sign)."""
    from reid_aug.generator.identity import IdentityLoss, IdentityLossConfig
    from reid_aug.generator.pg2 import FAMILY as PG2

    from test_generator_train import _fixed_batch

    reid = _reid_file(tmp_path, tiny_toy, decisive=True)
    cfg = load_config(PG2Config, "pg2_toy", TINY + ["model.g1_width=8", "model.bottleneck=64"])
    batch = _fixed_batch(tiny_toy, cfg, every=80)
    judge = IdentityLoss(IdentityLossConfig(str(reid), id_weight=1.0))
    torch.manual_seed(0)
    g1 = PG2.build_networks(cfg, ("g1",))["g1"]
    opt = torch.optim.SGD(g1.parameters(), lr=1e-5)     # small: the CE's gradient through the network is large
    ces = []
    for _ in range(6):
        ce, terms = judge(g1(batch["src_img"], batch["tgt_pose"]), batch["tgt_img"], batch["src_name"])
        opt.zero_grad()
        ce.backward()                                    # id_weight 1 and no other term: the total is the CE
        opt.step()
        ces.append(float(terms["id_ce"]))
    assert all(b < a for a, b in zip(ces, ces[1:])) and ces[-1] < 0.9 * ces[0], ces
    assert all(p.grad is None for p in judge.net.parameters())
