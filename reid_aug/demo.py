"""``reid-aug demo``: the whole pipeline on the built-in toy dataset, one report.

    toy data -> train PG² (stage I + II) -> evaluate the generator on the test pairs
    -> synthesize K poses per training identity -> torchreid baseline vs augmented -> report

Every step writes into its own sub-folder of ``out`` and is skipped or resumed when its output
is already there, so an interrupted demo started again finishes the missing steps only.
The default finishes within about 10 minutes on 2 CPU cores; ``quick`` is a smaller version
for tests (about a minute or two).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from reid_aug.config import load_config, save_config, to_dict
from reid_aug.utils.io import atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of each step. ``*_overrides`` are dotted ``--set`` strings for the step's recipe."""

    seed: int = 0
    # Few real images per training identity, so that pose-transferred images have room to help.
    n_train_ids: int = 150
    n_test_ids: int = 150
    images_per_id: int = 4
    generator_recipe: str = "pg2_toy"
    generator_overrides: tuple[str, ...] = ()
    eval_limit: int = 0                 # 0 = every test pair
    poses_per_id: int = 6
    strategy: str = "diverse"
    reid_recipe: str = "reid_toy"
    reid_overrides: tuple[str, ...] = ()
    seeds: tuple[int, ...] = (0,)


QUICK_OVERRIDES = (
    "n_train_ids=24", "n_test_ids=24", "images_per_id=4", "eval_limit=64", "poses_per_id=3",
    "generator_overrides=[train.g1_iters=60, train.g2_iters=20, train.log_every=5, train.sample_every=40,"
    " train.checkpoint_every=40]",
    "reid_overrides=[train.epochs=2, data.height=64, data.width=32]",
)


def demo_config(quick: bool = False, overrides=()) -> DemoConfig:
    """The default demo (or the ``quick`` one) with extra dotted overrides."""
    return load_config(DemoConfig, None, list(QUICK_OVERRIDES if quick else ()) + list(overrides))


def _step(name: str, timings: dict, fn):
    log.info("demo: %s ...", name)
    t0 = time.perf_counter()
    out = fn()
    timings[name] = round(time.perf_counter() - t0, 1)
    log.info("demo: %s done in %.1f s", name, timings[name])
    return out


def run_demo(out_dir: str | Path = "reid-aug-demo", quick: bool = False, overrides=()) -> Path:
    """Run every step into ``out_dir`` and return the path of ``report.html``."""
    from reid_aug.toyset import make_toy
    from reid_aug.generator.train import resolve_training, train_generator
    from reid_aug.metrics.evaluate_generator import evaluate_generator
    from reid_aug.reid.benchmark import resolve_benchmark, run_benchmark
    from reid_aug.report.demo_report import write_demo_report
    from reid_aug.synthesis.synthesize import SynthesisConfig, synthesize

    cfg = demo_config(quick, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    timings: dict[str, float] = {}

    data_dir = _step("toy dataset", timings, lambda: make_toy(
        out / "data", seed=cfg.seed, n_train_ids=cfg.n_train_ids, n_test_ids=cfg.n_test_ids,
        images_per_id=cfg.images_per_id))
    dataset = str(data_dir)

    gen_cfg, _ = resolve_training(dataset, cfg.generator_recipe, cfg.generator_overrides)
    run_dir = out / "generator"
    # A finished or interrupted run folder is continued, never started over.
    resume = (run_dir / "checkpoint.pt").is_file()
    _step("generator training", timings, lambda: train_generator(gen_cfg, dataset, run_dir, resume=resume))

    _step("generator evaluation", timings, lambda: evaluate_generator(
        run_dir, dataset=dataset, limit=cfg.eval_limit or None))

    synth_dir = out / "synthesized"
    opts = SynthesisConfig(generator=str(run_dir), out=str(synth_dir), dataset=dataset, poses_per_id=cfg.poses_per_id,
                           strategy=cfg.strategy, seed=cfg.seed)
    synth_summary = _step("synthesis", timings, lambda: synthesize(opts))

    reid_cfg = resolve_benchmark(recipe=cfg.reid_recipe, overrides=cfg.reid_overrides)
    bench_dir = _step("re-id benchmark", timings, lambda: run_benchmark(
        reid_cfg, dataset=dataset, augmented_dir=synth_dir, seeds=list(cfg.seeds),
        generator_eval=run_dir / "eval" / "metrics.json", out_dir=out / "benchmark"))

    atomic_write_text(out / "demo.json", json.dumps({
        "config": to_dict(cfg), "timings_s": timings, "quick": quick,
        "synthesis": {k: v for k, v in synth_summary.items() if isinstance(v, (int, float, str))},
    }, indent=2, default=str) + "\n")
    report = write_demo_report(out, data_dir=data_dir, run_dir=run_dir, synth_dir=synth_dir, bench_dir=bench_dir,
                               timings=timings)
    log.info("demo report: %s", report)
    return report
