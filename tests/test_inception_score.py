"""Inception Score: the formula on known distributions, torch-fidelity's formula, the weights path, no weights."""
import math

import pytest
import torch

from reid_aug.errors import WeightsMissingError
from reid_aug.metrics import MetricsError
from reid_aug.metrics.inception_score import (NO_WEIGHTS_REASON, InceptionScorer, find_inception_weights,
                                              inception_score, inception_score_from_logits,
                                              inception_score_from_probs, load_inception)


def test_uniform_predictions_give_one():
    probs = torch.full((100, 1008), 1 / 1008)
    out = inception_score_from_probs(probs, splits=10)
    assert out["mean"] == pytest.approx(1.0, abs=1e-12) and out["std"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("n_classes", [1, 2, 7, 50])
def test_n_equally_used_one_hot_classes_give_n(n_classes):
    # every split holds each class equally often -> KL = log N per image -> IS = N exactly
    labels = torch.arange(n_classes).repeat(10)
    probs = torch.nn.functional.one_hot(labels, 1008).double()
    out = inception_score_from_probs(probs, splits=10)
    assert out["mean"] == pytest.approx(n_classes, rel=1e-12) and out["std"] == pytest.approx(0.0, abs=1e-9)


def test_known_two_split_value():
    # split 1: two confident different classes (IS 2); split 2: identical soft rows (IS 1) -> mean 1.5, std 0.5
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7], [0.3, 0.7]])
    out = inception_score_from_probs(p, splits=2)
    assert out["mean"] == pytest.approx(1.5) and out["std"] == pytest.approx(0.5)


def test_logits_formula_equals_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(103, 1008, generator=torch.Generator().manual_seed(0)) * 3
    for shuffle in (False, True):
        ref = isc_features_to_metric(logits, splits=10, shuffle=shuffle, rng_seed=2020)
        ours = inception_score_from_logits(logits, splits=10, shuffle=shuffle)
        assert ours["mean"] == pytest.approx(ref["inception_score_mean"], rel=1e-10)
        assert ours["std"] == pytest.approx(ref["inception_score_std"], rel=1e-8, abs=1e-12)
    probs = logits.double().softmax(1)
    assert inception_score_from_probs(probs)["mean"] == pytest.approx(
        inception_score_from_logits(logits)["mean"], rel=1e-10)


def test_formula_rejects_bad_input():
    with pytest.raises(MetricsError, match="splits"):
        inception_score_from_probs(torch.full((5, 3), 1 / 3), splits=10)
    with pytest.raises(MetricsError, match="sum to 1"):
        inception_score_from_probs(torch.rand(20, 3), splits=10)


def _random_inception_state_dict():
    """A randomly initialised network of the right architecture (torch-fidelity's InceptionV3)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class RandomInit(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None  # keep the random initialisation

    torch.manual_seed(0)
    import tempfile, os
    with tempfile.TemporaryDirectory() as d:
        dummy = os.path.join(d, "empty.pth")
        torch.save({}, dummy)
        net = RandomInit("random", ["logits_unbiased"], feature_extractor_weights_path=dummy)
    return net.state_dict()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(_random_inception_state_dict(), path)
    return path


def test_weights_loading_path_gives_finite_score(random_weights, monkeypatch):
    torch.set_num_threads(1)
    net = load_inception(random_weights)
    sd = torch.load(random_weights, weights_only=True)
    assert torch.equal(net.state_dict()["fc.weight"], sd["fc.weight"])  # the file's weights were loaded
    images = torch.randint(0, 256, (6, 3, 128, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    out = inception_score(images, weights=random_weights, splits=2, batch_size=3)
    # IS >= 1 by Jensen's inequality (a random network predicts almost uniformly, so allow rounding below 1)
    assert math.isfinite(out["mean"]) and 1.0 - 1e-9 <= out["mean"] <= 1008
    assert math.isfinite(out["std"]) and out["n"] == 6 and out["splits"] == 2 and len(out["weights_sha256"]) == 64
    # the batch size does not change the logits (checked at 75x75 input to keep the test short)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    monkeypatch.setattr(FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)
    s1, s2 = InceptionScorer(random_weights, batch_size=6), InceptionScorer(random_weights, batch_size=2)
    s1.net, s2.net = net, net
    s1.add(images), s2.add(images)
    logits = torch.cat(s1._logits)
    assert logits.shape == (6, 1008) and torch.isfinite(logits).all() and logits.std() > 0
    torch.testing.assert_close(logits, torch.cat(s2._logits), rtol=1e-4, atol=1e-4)


def test_pytorch_fid_key_layout_is_accepted(random_weights, tmp_path):
    # pytorch-fid's pt_inception file is torchvision's Inception3 layout: no num_batches_tracked, maybe AuxLogits
    sd = torch.load(random_weights, weights_only=True)
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    sd["AuxLogits.fc.weight"] = torch.zeros(1008, 768)
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(sd, path)
    net = load_inception(path)
    assert torch.equal(net.state_dict()["Conv2d_1a_3x3.conv.weight"], sd["Conv2d_1a_3x3.conv.weight"])


def test_wrong_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, bad)
    with pytest.raises(MetricsError, match="TF-2015 InceptionV3"):
        load_inception(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(MetricsError, match="cannot load"):
        load_inception(junk)


def test_missing_weights_give_null_and_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    assert find_inception_weights() is None
    images = torch.zeros(12, 3, 128, 64, dtype=torch.uint8)
    out = inception_score(images)
    assert out == {"mean": None, "std": None, "reason": NO_WEIGHTS_REASON}


def test_cache_path_is_found_and_explicit_missing_path_raises(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert find_inception_weights() == cached
    with pytest.raises(WeightsMissingError, match="does not exist"):
        find_inception_weights(tmp_path / "nope.pth")
