"""``reid-aug demo``: the whole pipeline on the built-in toy dataset, one report.

    toy data -> train PG² (stage I + II) -> evaluate the generator on the test pairs
    -> synthesize K poses per training identity -> torchreid baseline vs augmented -> report

Every step writes into its own sub-folder of ``out`` and is skipped or resumed when its output
is already there, so an interrupted demo started again finishes the missing steps only.
The default finishes in about 8 minutes on 2 idle CPU cores; ``quick`` is a smaller version
for tests (about a minute or two).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reid_aug.config import load_config, save_config, to_dict
from reid_aug.errors import ConfigError
from reid_aug.utils.io import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of each step. ``generator_set`` / ``reid_set`` are partial recipes (nested mappings) merged
    over the step's recipe, e.g. ``--set generator_set.train.g1_iters=100``."""

    seed: int = 0
    # Few real images per training identity, so that pose-transferred images have room to help.
    n_train_ids: int = 150
    n_test_ids: int = 150
    images_per_id: int = 4
    generator: str = "pg2"              # the generator family; its toy recipe is <generator>_toy
    generator_recipe: str = ""          # another recipe instead of <generator>_toy
    generator_set: dict = field(default_factory=dict)
    # per generator family, merged under generator_set (demo_quick sizes each family's toy run)
    generator_sets: dict = field(default_factory=dict)
    eval_limit: int = 0                 # 0 = every test pair
    poses_per_id: int = 6
    strategy: str = "diverse"
    reid_recipe: str = "reid_toy"
    reid_set: dict = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        checks = [("n_train_ids", self.n_train_ids >= 2, "must be >= 2 (training identities)"),
                  ("n_test_ids", self.n_test_ids >= 2, "must be >= 2 (test identities)"),
                  ("images_per_id", self.images_per_id >= 2, "must be >= 2 (a pair needs two images)"),
                  ("poses_per_id", self.poses_per_id >= 1, "must be >= 1 (synthesized images per identity)"),
                  ("eval_limit", self.eval_limit >= 0, "must be >= 0 (0 = every test pair)"),
                  ("seeds", len(self.seeds) >= 1, "must name at least one seed, e.g. --seeds 0,1,2")]
        for name, ok, what in checks:
            if not ok:
                value = getattr(self, name)
                value = list(value) if isinstance(value, tuple) else value
                raise ConfigError(f"--set {name}={value}: {what}")
        for name in ("generator_set", "reid_set", "generator_sets"):
            if not isinstance(getattr(self, name), dict):
                raise ConfigError(f"demo option {name} must be a mapping of recipe keys, e.g. "
                                  f"--set {name}.train.epochs=2")

    @property
    def generator_recipe_name(self) -> str:
        return self.generator_recipe or f"{self.generator}_toy"

    @property
    def generator_overrides(self) -> list[str]:
        """``generator_sets[generator]`` with ``generator_set`` over it, as dotted overrides."""
        return as_overrides(_merged(self.generator_sets.get(self.generator) or {}, self.generator_set))


def _merged(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def demo_config(quick: bool = False, overrides=()) -> DemoConfig:
    """``recipes/demo.yaml`` (``recipes/demo_quick.yaml`` for ``quick``) with extra dotted overrides."""
    return load_config(DemoConfig, "demo_quick" if quick else "demo", list(overrides))


def as_overrides(partial: dict, prefix: str = "") -> list[str]:
    """``{"train": {"epochs": 2}}`` -> ``["train.epochs=2"]`` (values as JSON, which YAML reads back)."""
    out = []
    for key, value in partial.items():
        if isinstance(value, dict):
            out += as_overrides(value, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}={json.dumps(value)}")
    return out


def _resolve_steps(cfg: DemoConfig, out: Path):
    """Every step's config, resolved before any work: a bad option stops the demo at once, in the
    user's words (``--set ...``), not after generator training."""
    from reid_aug.generator.train import resolve_training
    from reid_aug.reid.experiment import resolve_benchmark
    from reid_aug.synthesis.config import SynthesisConfig, check_config

    data = out / "data"
    gen_cfg, _ = resolve_training(str(data), cfg.generator_recipe_name, cfg.generator_overrides)
    synth = SynthesisConfig(generator=None, out=str(out / "synthesized"), dataset=str(data),
                            poses_per_id=cfg.poses_per_id, strategy=cfg.strategy, seed=cfg.seed)
    # checked before the generator exists; it is filled in below
    check_config(synth, {"poses_per_id": "--set poses_per_id", "strategy": "--set strategy", "seed": "--set seed"})
    synth = dataclasses.replace(synth, generator=str(out / "generator"))
    reid_cfg = resolve_benchmark(recipe=cfg.reid_recipe, overrides=as_overrides(cfg.reid_set))
    return gen_cfg, synth, reid_cfg


def _step(name: str, took: dict, fn):
    """Run one step and note how long this run spent in it."""
    log.info("demo: %s ...", name)
    t0 = time.perf_counter()
    out = fn()
    took[name] = round(time.perf_counter() - t0, 1)
    log.info("demo: %s done in %.1f s", name, took[name])
    return out


def _generator_seconds(run) -> float | None:
    """Training wall time from the run's ``log.csv``: its ``wall_s`` counts from each process start, so a
    resumed run is the sum of the segments (a drop in ``wall_s`` starts a new one)."""
    from reid_aug.errors import RecordError
    from reid_aug.records import read_csv

    try:
        wall = read_csv(run.log_csv, "a generator training log", required=("wall_s",))["wall_s"].dropna().tolist()
    except RecordError:
        return None
    total, prev = 0.0, 0.0
    for w in map(float, wall):
        if w < prev:
            total += prev
        prev = w
    return total + prev if wall else None


def recorded_seconds(out: Path, seeds) -> dict[str, tuple[float, str]]:
    """``{step: (seconds, record)}`` from the records of the steps that did the work: the generator's log,
    the evaluation record's ``seconds``, the benchmark runs' ``train_s + eval_s``. A step without such a
    record (the toy dataset, synthesis) is timed by the demo itself."""
    from reid_aug.errors import RecordError
    from reid_aug.records import BenchmarkResults, EvaluationRecord
    from reid_aug.rundir import BenchmarkDir, GeneratorRun

    run, bench, found = GeneratorRun(out / "generator"), BenchmarkDir(out / "benchmark"), {}
    gen = _generator_seconds(run) if run.log_csv.is_file() else None
    if gen is not None:
        found["generator training"] = (gen, "generator/log.csv")
    metrics = run.eval_dir().metrics_json
    try:
        rows = EvaluationRecord.read(metrics).records if metrics.is_file() else []
        runs = BenchmarkResults.read(bench.results_json).runs if bench.results_json.is_file() else {}
    except RecordError:
        rows, runs = [], {}
    sec = next((r["seconds"] for r in rows if isinstance(r.get("seconds"), (int, float))), None)
    if sec is not None:
        found["generator evaluation"] = (float(sec), "generator/eval/metrics.json")
    mine = [runs.get(f"{v}_seed{s}") for s in seeds for v in ("baseline", "augmented")]
    if mine and all(mine):
        found["re-id benchmark"] = (sum(r["train_s"] + r["eval_s"] for r in mine), "benchmark/results.json")
    return found


def step_timings(took: dict, done_before: dict, earlier: dict, recorded: dict) -> dict:
    """Each step's seconds and where they come from: its own record; else this run's time where the step
    did its work now; else the run that did it (``demo.json``). A re-run that skips finished steps does
    not report them as 0 s."""
    out = {}
    for name, seconds in took.items():
        if name in recorded:
            out[name] = {"seconds": round(recorded[name][0], 1), "source": recorded[name][1]}
        elif not done_before.get(name) or name not in earlier:
            out[name] = {"seconds": seconds, "source": "this run"}
        else:
            out[name] = {**earlier[name], "source": "earlier run"}
    return out


def _done_before(out: Path, cfg: DemoConfig) -> dict[str, bool]:
    """Which steps' outputs are complete before this run (from their own records)."""
    from reid_aug.records import BenchmarkResults, read_json_object
    from reid_aug.rundir import BenchmarkDir, GeneratorRun, SynthesizedSet

    run = GeneratorRun(out / "generator")
    run_info = read_json_object(run.run_json) if run.run_json.is_file() else {}
    bench = BenchmarkDir(out / "benchmark")
    runs = BenchmarkResults.read(bench.results_json).runs if bench.results_json.is_file() else {}
    return {"toy dataset": (out / "data" / "toy.json").is_file(),
            "generator training": bool(run_info.get("complete")),
            "generator evaluation": run.eval_dir().metrics_json.is_file(),
            "synthesis": SynthesizedSet(out / "synthesized").complete(),
            "re-id benchmark": all(f"{v}_seed{s}" in runs for s in cfg.seeds for v in ("baseline", "augmented"))}


def _earlier_timings(out: Path) -> dict:
    from reid_aug.errors import RecordError
    from reid_aug.records import read_json_object

    try:
        old = read_json_object(out / "demo.json").get("timings_s", {}) if (out / "demo.json").is_file() else {}
    except RecordError:
        return {}
    # 0.1 wrote plain seconds per step
    return {k: (v if isinstance(v, dict) else {"seconds": v}) for k, v in old.items()}


def run_demo(out_dir: str | Path = "reid-aug-demo", quick: bool = False, overrides=()) -> Path:
    """Run every step into ``out_dir`` and return the path of ``report.html``."""
    from reid_aug.generator.train import train_generator
    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.reid.experiment import run_benchmark
    from reid_aug.report.demo_report import write_demo_report
    from reid_aug.rundir import GeneratorRun
    from reid_aug.synthesis.synthesize import synthesize
    from reid_aug.toyset import make_toy

    cfg = demo_config(quick, overrides)
    out = Path(out_dir)
    gen_cfg, synth_cfg, reid_cfg = _resolve_steps(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    done, earlier, took = _done_before(out, cfg), _earlier_timings(out), {}

    def step(name, fn):
        return _step(name, took, fn)

    data_dir = step("toy dataset", lambda: make_toy(out / "data", seed=cfg.seed, n_train_ids=cfg.n_train_ids,
                                                     n_test_ids=cfg.n_test_ids, images_per_id=cfg.images_per_id))
    dataset, run_dir = str(data_dir), out / "generator"
    # A finished or interrupted run folder is continued, never started over.
    resume = GeneratorRun(run_dir).exists()
    step("generator training", lambda: train_generator(gen_cfg, dataset, run_dir, resume=resume))
    step("generator evaluation", lambda: evaluate_generator(run_dir, dataset=dataset, limit=cfg.eval_limit or None))
    synth_summary = step("synthesis", lambda: synthesize(synth_cfg))
    synth_dir = Path(synth_cfg.out)
    bench_dir = step("re-id benchmark", lambda: run_benchmark(
        reid_cfg, dataset=dataset, augmented_dir=synth_dir, seeds=list(cfg.seeds),
        generator_eval=GeneratorRun(run_dir).eval_dir().metrics_json, out_dir=out / "benchmark"))

    timings = step_timings(took, done, earlier, recorded_seconds(out, cfg.seeds))
    atomic_write_text(out / "demo.json", json.dumps({
        "config": to_dict(cfg), "timings_s": timings, "quick": quick,
        "synthesis": {k: v for k, v in synth_summary.items() if isinstance(v, (int, float, str))},
    }, indent=2, default=str) + "\n")
    report = write_demo_report(out, data_dir=data_dir, run_dir=run_dir, synth_dir=synth_dir, bench_dir=bench_dir,
                               timings=timings)
    log.info("demo report: %s", report)
    return report
