"""``SynthesisConfig``: one recipe of defaults, --set and flags, every option checked before any work,
errors in the user's own words."""
from __future__ import annotations

import dataclasses

import pytest


def test_the_recipe_holds_the_defaults():
    from reid_aug.config import load_config
    from reid_aug.synthesis.config import SynthesisConfig

    assert load_config(SynthesisConfig, "synthesize") == SynthesisConfig()


def test_set_overrides_and_flags_reach_the_config():
    from reid_aug.synthesis.config import load_synthesis_config

    cfg = load_synthesis_config(None, ["poses_per_id=4", "strategy=diverse", "n_clusters=6", "seed=3"],
                                {"seed": 7, "out": "a: b/[set]", "dataset": None, "cross_dataset": True})
    assert (cfg.poses_per_id, cfg.strategy, cfg.n_clusters) == (4, "diverse", 6)
    assert cfg.seed == 7                                 # a typed flag wins over --set
    assert cfg.out == "a: b/[set]"                       # a path reaches the config as typed
    assert cfg.dataset is None and cfg.cross_dataset is True
    assert load_synthesis_config(None, ["shard=1/3"]).shard_spec == (1, 3)


@pytest.mark.parametrize("overrides, flags, message", [
    ([], {"poses_per_id": 0}, "--poses-per-id must be a whole number >= 1, got 0"),
    (["poses_per_id=0"], {}, "--set poses_per_id must be a whole number >= 1, got 0"),
    ([], {"shard": "4/4"}, "--shard 4/4: expected i/n with 0 <= i < n"),
    (["shard=x"], {}, "--set shard 'x': expected i/n"),
    ([], {"strategy": "rotatee"}, "--strategy 'rotatee' is not a strategy; choose one of random, diverse, rotate, views"),
    (["strategy=diverse", "n_clusters=2"], {"poses_per_id": 5}, "--set n_clusters = 2 must be >= poses_per_id = 5"),
    (["n_clusters=12"], {}, "--set n_clusters applies only to a strategy with clusters (diverse"),
    ([], {"jpeg_quality": 101}, "--jpeg-quality must be in 1..100, got 101"),
    ([], {"stage": "g3"}, "--stage 'g3': expected defgan or g1 or g2"),
    ([], {"generator": "no/such/run"}, "--run/--checkpoint no/such/run: no such run folder or checkpoint file"),
    (["cross_dataset=maybe"], {}, "--set cross_dataset must be true or false"),
    # the levers of issue 14
    ([], {"per_image": 2, "poses_per_id": 3}, "--per-image K writes K images per source image; --poses-per-id"),
    ([], {"per_image": 0}, "--per-image must be a whole number >= 1 (or null), got 0"),
    (["strategy=diverse", "n_clusters=2"], {"per_image": 3}, "--set n_clusters = 2 must be >= per_image = 3"),
    (["train_per_id=-1"], {}, "--set train_per_id must be a whole number >= 1 (0 or null: every image)"),
    ([], {"subset_seed": -2}, "--subset-seed must be a whole number >= 0"),
    (["filter.rule=best"], {}, "--set filter.rule 'best': expected one of top-k, threshold"),
    ([], {"filter.k": 0}, "--filter-k must be a whole number >= 1"),
    ([], {"filter.threshold": 2.0}, "--filter-threshold must be a cosine in [-1, 1]"),
    ([], {"filter.model": "no/such.pt"}, "--filter no/such.pt: no such Re-ID model file"),
    (["allow_leak=sure"], {}, "--set allow_leak must be true or false"),
])
def test_bad_options_are_one_line_naming_what_the_user_typed(overrides, flags, message):
    from reid_aug.errors import SynthesisError
    from reid_aug.synthesis.config import load_synthesis_config

    with pytest.raises(SynthesisError) as e:
        load_synthesis_config(None, overrides, flags)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_a_bad_recipe_value_names_the_recipe(tmp_path):
    from reid_aug.errors import ConfigError, SynthesisError
    from reid_aug.synthesis.config import load_synthesis_config

    recipe = tmp_path / "mine.yaml"
    recipe.write_text("_BASE_: synthesize\nbatch_size: 0\n")
    with pytest.raises(SynthesisError, match=r"^batch_size \(recipe mine.yaml\) must be a whole number >= 1"):
        load_synthesis_config(recipe)
    with pytest.raises(ConfigError, match="unknown key.*poses_per_idd"):
        load_synthesis_config(None, ["poses_per_idd=3"])
    with pytest.raises(ConfigError, match="poses_per_id: expected an integer"):
        load_synthesis_config(None, ["poses_per_id=ten"])


def test_direct_calls_are_checked_before_any_work(tmp_path, monkeypatch):
    """``synthesize`` checks a config built in code (demo, benchmarks) before it loads anything."""
    from reid_aug.errors import SynthesisError
    from reid_aug.synthesis import job
    from reid_aug.synthesis.config import SynthesisConfig
    from reid_aug.synthesis.synthesize import synthesize

    monkeypatch.setattr(job, "resolve_inputs", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SynthesisError, match="^poses_per_id must be"):
        synthesize(SynthesisConfig(poses_per_id=0, out=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, said", [(["--poses-per-id", "0"], "error: --poses-per-id must be"),
                                        (["--set", "poses_per_id=0"], "error: --set poses_per_id must be"),
                                        (["--strategy", "nope"], "error: --strategy 'nope' is not a strategy"),
                                        (["--run", "a", "--checkpoint", "b"], "error: pass one of --run")])
def test_cli_refuses_bad_options_at_once_in_one_line(tmp_path, monkeypatch, args, said):
    """No run folder is needed to be told: the options are checked before the generator is looked for."""
    from click.testing import CliRunner

    import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.main, ["synthesize", *args])
    assert result.exit_code == 2
    assert result.output.startswith(said) and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_every_field_has_a_recipe_line():
    from reid_aug.config import load_recipe
    from reid_aug.synthesis.config import SynthesisConfig

    assert set(load_recipe("synthesize")) == {f.name for f in dataclasses.fields(SynthesisConfig)}
