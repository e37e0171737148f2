"""Benchmark results: ``results.json`` through the typed record, and baseline reuse (``--baseline-from``)."""
from __future__ import annotations

import logging
from pathlib import Path

from reid_aug.config import config_differences, from_dict, to_dict
from reid_aug.errors import ReidAugError
from reid_aug.records import BenchmarkResults
from reid_aug.reid.config import BenchmarkConfig
from reid_aug.reid.budget import same_training
from reid_aug.rundir import BenchmarkDir
from reid_aug.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def load_results(path: Path) -> dict:
    """``results.json`` as a plain dict (through the typed record: a binary or damaged file is one clear
    line naming it; 0.1 files are upgraded), or ``{}`` where there is none."""
    if not path.is_file():
        return {}
    rec = BenchmarkResults.read(path)
    return {"setup": rec.setup, "seeds": rec.seeds, "runs": rec.runs}


def write_results(path: Path, results: dict) -> None:
    BenchmarkResults(setup=results["setup"], seeds=list(results["seeds"]), runs=results["runs"]).write(path)


def comparable_setup(setup):
    """A stored setup as two setups are compared: its config re-read through ``BenchmarkConfig`` (keys added
    since, with their defaults, e.g. ``train.budget: epochs``, do not make an older folder "different") and its
    learning-rate schedule by what it does (:func:`reid_aug.reid.budget.effective_schedule`: a recipe moved from
    ``stepsize`` to ``lr_decay_at`` with the same decay epochs is the same benchmark)."""
    from reid_aug.reid.budget import effective_schedule

    if not isinstance(setup, dict) or not isinstance(setup.get("config"), dict):
        return setup
    try:
        cfg = to_dict(from_dict(BenchmarkConfig, setup["config"]))
    except ReidAugError:
        return setup
    return {**setup, "config": {**cfg, "train": effective_schedule(cfg["train"])}}


def check_same_setup(results: dict, setup: dict, out_dir: Path) -> None:
    """Refuse to add runs to a folder that holds another benchmark's results (naming what differs)."""
    if not results:
        return
    mine, theirs = comparable_setup(setup), comparable_setup(results.get("setup"))
    if mine == theirs:
        return
    diff = config_differences(mine, theirs or {})
    raise ReidAugError(f"{out_dir} holds results of a different benchmark ({', '.join(diff)} differ; see "
                       f"{BenchmarkDir(out_dir).results_json}); pass another --out NEW_FOLDER or delete that folder")


def run_seeds(runs: dict) -> list[int]:
    """Seeds with at least one finished run (union over the folder's history)."""
    return sorted({int(r["seed"]) for r in runs.values()})


# train keys that act on synthesized images only: two benchmarks that differ only in them train the same baseline
SYNTHESIZED_ONLY_KEYS = ("labels", "mix", "synthetic_ratio", "synthetic_weight", "synthetic_label_smooth", "teacher",
                         "teacher_temperature", "teacher_weight", "teacher_ramp", "augmented_images")


def reuse_shared_baselines(results: dict, setup: dict, plan: dict, seeds, candidates, out_dir: Path) -> int:
    """:func:`reuse_baselines` from every one of ``candidates`` (benchmark folders, e.g. a sweep's earlier cells, or
    ``--baseline-from`` given several times) whose baselines are comparable, in order: a seed is taken from the first
    that has it; incomparable folders are passed over. Returns how many runs were taken over."""
    total = 0
    for source in candidates:
        if not BenchmarkDir(source).results_json.is_file() or Path(source).resolve() == Path(out_dir).resolve():
            continue
        before = dict(results["runs"])
        try:
            n = reuse_baselines(results, setup, plan, seeds, Path(source), out_dir)
        except ReidAugError as e:
            results["runs"] = before
            log.debug("baselines of %s not shared: %s", source, e)
            continue
        total += n
    return total


def reuse_baselines(results: dict, setup: dict, plan: dict, seeds, source: Path, out_dir: Path) -> int:
    """Copy comparable baseline runs of the benchmark in ``source`` into ``results``; returns how many."""
    src_file = BenchmarkDir(source).results_json if source.is_dir() else source
    if not src_file.is_file():
        raise ReidAugError(f"--baseline-from {source}: no results.json there")
    other = load_results(src_file)
    if not other:
        raise ReidAugError(f"--baseline-from {source}: no results.json there")
    skip = {"augmented_dir", "augmented_manifest_sha256", "teacher_sha256"}

    def baseline_view(s: dict) -> dict:
        # keys that act on synthesized images only do not tell baselines apart (a baseline has none; where they
        # change its length, e.g. train.mix under the iterations budget, the training plans below differ)
        out = {k: v for k, v in s.items() if k not in skip}
        if isinstance(out.get("config"), dict):
            out["config"] = {**out["config"], "train": {k: v for k, v in out["config"].get("train", {}).items()
                                                        if k not in SYNTHESIZED_ONLY_KEYS}}
        return out

    mine, theirs = baseline_view(comparable_setup(setup)), baseline_view(comparable_setup(other.get("setup")) or {})
    if mine != theirs:
        diff = config_differences(mine, theirs)
        raise ReidAugError(f"--baseline-from {source}: its baselines are not comparable ({', '.join(diff)} differ)")
    n = 0
    for seed in seeds:
        key = f"baseline_seed{seed}"
        rec = other.get("runs", {}).get(key)
        if key in results["runs"] or rec is None:
            continue
        if not same_training(rec.get("training_plan"), plan["baseline"]):
            raise ReidAugError(f"--baseline-from {source}: {key} trained for {rec.get('training_plan')}, this "
                               f"benchmark's baseline needs {plan['baseline']} (train.budget: iterations ties the "
                               f"baseline to the augmented set's size)")
        rec = dict(rec, reused_from=str(src_file))
        model = Path(rec.get("model_path", ""))
        if model.is_file():
            dst = BenchmarkDir(out_dir).model_file(model.stem)
            dst.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(dst, model.read_bytes())
            rec["model_path"] = str(dst)
        results["runs"][key] = rec
        n += 1
    log.info("--baseline-from %s: %d baseline run(s) taken over", source, n)
    return n
