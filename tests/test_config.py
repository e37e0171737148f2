import dataclasses

import pytest
import yaml

from reid_aug.config import ConfigError, apply_overrides, from_dict, load_config, load_recipe, save_config, to_dict


@dataclasses.dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    widths: tuple = (8, 16)


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    steps: int = 10
    inner: Inner = Inner()


def test_base_chain_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nsteps: 5\ninner: {lr: 0.1, widths: [1, 2]}\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nsteps: 7\ninner: {lr: 0.5}\n")
    data = load_recipe(tmp_path / "child.yaml")
    assert data == {"name": "base", "steps": 7, "inner": {"lr": 0.5, "widths": [1, 2]}}
    cfg = load_config(Outer, tmp_path / "child.yaml", ["inner.lr=2e-5", "inner.widths=[3,4,5]", "name=run"])
    assert cfg == Outer(name="run", steps=7, inner=Inner(lr=2e-5, widths=(3, 4, 5)))
    assert isinstance(cfg.inner.lr, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.steps = 1  # type: ignore[misc]


def test_int_is_promoted_to_float_and_unknown_keys_fail():
    assert from_dict(Inner, {"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match="inner.lrr"):
        from_dict(Outer, {"inner": {"lrr": 1}})
    with pytest.raises(ConfigError, match="key.sub=value"):
        apply_overrides({}, ["no_equals_sign"])


def test_self_including_recipe_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: a.yaml\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_recipe(tmp_path / "a.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = Outer(name="r", inner=Inner(lr=0.25, widths=(1,)))
    save_config(cfg, tmp_path / "config.yaml")
    assert from_dict(Outer, yaml.safe_load((tmp_path / "config.yaml").read_text())) == cfg
    assert to_dict(cfg)["inner"]["widths"] == [1]


def test_old_recipe_names_resolve_to_the_toy_recipes():
    from reid_aug.config import resolve_recipe

    assert resolve_recipe("pg2_synthetic").name == "pg2_toy.yaml"
    assert resolve_recipe("reid_synthetic.yaml").name == "reid_toy.yaml"
    with pytest.raises(ConfigError, match="not found"):
        resolve_recipe("pg2_nonexistent")
