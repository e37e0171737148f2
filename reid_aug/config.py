"""Frozen-dataclass configs loaded from YAML recipes.

A recipe is a YAML mapping. ``_BASE_: other.yaml`` (a path relative to the recipe, or a
recipe name) is loaded first and then deep-merged with the recipe's own keys, as in
fast-reid. Command-line overrides are dotted ``key.sub=value`` strings whose value is
parsed as YAML (so ``train.lr=2e-5`` is a float and ``model.widths=[32,64]`` a list).

Every run folder gets the fully resolved config as ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Iterable, TypeVar

import yaml

from reid_aug.errors import ConfigError  # noqa: F401 - re-exported
from reid_aug.utils.io import atomic_write_text

T = TypeVar("T")

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"
# Recipe names before the toy dataset got its own name (old run folders and scripts use them).
RECIPE_ALIASES = {"pg2_synthetic": "pg2_toy", "reid_synthetic": "reid_toy"}



def resolve_recipe(name_or_path: str | Path) -> Path:
    """``pg2_market`` or ``pg2_market.yaml`` -> ``recipes/pg2_market.yaml``; a path is kept."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    p = Path(RECIPE_ALIASES.get(p.stem, str(p))) if p.suffix in ("", ".yaml") and p.parent == Path(".") else p
    for cand in (RECIPES_DIR / p.name, RECIPES_DIR / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(x.stem for x in RECIPES_DIR.glob("*.yaml"))
    raise ConfigError(f"recipe {name_or_path!r} not found (neither a file nor one of: {', '.join(known)})")


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_recipe(name_or_path: str | Path, _seen: tuple = ()) -> dict:
    """Load a recipe and its ``_BASE_`` chain into one plain dict."""
    path = resolve_recipe(name_or_path).resolve()
    if path in _seen:
        raise ConfigError(f"recipe {path} includes itself through _BASE_")
    from reid_aug.records import read_yaml

    data = read_yaml(path, "a recipe (YAML)") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a YAML mapping")
    base = data.pop("_BASE_", None)
    if base:
        base_path = path.parent / base
        base_dict = load_recipe(base_path if base_path.is_file() else base, _seen + (path,))
        data = _deep_merge(base_dict, data)
    return data


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Apply ``a.b.c=value`` overrides (value parsed as YAML) to a nested dict."""
    data = _deep_merge({}, data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node[part] = dict(node[part])
            node = node[part]
        node[parts[-1]] = value
    return data


def from_dict(cls: type[T], data: dict | None, _where: str = "") -> T:
    """Build a (nested) frozen dataclass from a dict; unknown keys are an error."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = _where or cls.__name__
        raise ConfigError(f"unknown key(s) {', '.join(_where + k for k in unknown)} in {where}; "
                          f"known: {', '.join(sorted(names))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        v = _coerce(data[f.name], hints[f.name], f"{_where}{f.name}")
        kwargs[f.name] = v
    return cls(**kwargs)


def _coerce(v: Any, tp: Any, where: str) -> Any:
    """Match a YAML value to the field type: nested dataclasses, tuples from lists, and
    numbers from strings (YAML 1.1 reads ``2e-5`` as a string)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if v is None:
            return None
        return _coerce(v, args[0], where) if len(args) == 1 else v
    if dataclasses.is_dataclass(tp) and isinstance(v, dict):
        return from_dict(tp, v, f"{where}.")
    if (tp is tuple or origin is tuple) and isinstance(v, list):
        return tuple(v)
    if tp is float and not isinstance(v, bool) and isinstance(v, (int, str)):
        try:
            return float(v)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {v!r}") from None
    if tp is int and isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {v!r}") from None
    return v


def to_dict(cfg: Any) -> dict:
    """A dataclass config as a plain dict (tuples become lists) for YAML/JSON."""
    def conv(x):
        if dataclasses.is_dataclass(x):
            return {f.name: conv(getattr(x, f.name)) for f in dataclasses.fields(x)}
        if isinstance(x, (list, tuple)):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        if isinstance(x, Path):
            return str(x)
        return x
    return conv(cfg)


def config_differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two ``to_dict`` configs."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def load_config(cls: type[T], recipe: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Recipe (+ ``_BASE_``) + dotted overrides -> frozen dataclass ``cls``."""
    data = load_recipe(recipe) if recipe is not None else {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
