"""The Re-ID training budget: how many optimizer steps (and epochs) each variant trains.

``train.budget: epochs`` trains both variants for the recipe's epochs; ``iterations`` gives the
baseline exactly the augmented run's number of steps and learning-rate schedule.
"""
from __future__ import annotations

from reid_aug.errors import DatasetError
from reid_aug.reid.config import BenchmarkConfig


def iters_per_epoch(n_train: int, batch_size: int, max_iters_per_epoch: int = 0) -> int:
    """Optimizer steps of one epoch: torchreid's train loader drops the last incomplete batch."""
    n = n_train // batch_size
    return min(n, max_iters_per_epoch) if max_iters_per_epoch > 0 else n


def training_plan(cfg: BenchmarkConfig, n_train: dict[str, int]) -> dict[str, dict]:
    """How long each variant trains under ``cfg.train.budget``.

    ``n_train``: training images per variant, ``{"baseline": n_real[, "augmented": n_real + n_synthesized]}``.
    Returns per variant ``{"budget", "epochs", "iters_per_epoch", "total_iters", "lr_step_iters",
    "epochs_equivalent"}``: train ``epochs`` epochs (the last cut so that exactly ``total_iters``
    steps are taken), stepping the LR scheduler every ``lr_step_iters`` iterations (0: at each epoch
    end). ``budget="epochs"``: every variant trains ``train.epochs`` whole epochs. ``"iterations"``
    (with an augmented variant): the augmented run as under "epochs"; the baseline takes the same
    ``epochs * iters_per_epoch(augmented)`` steps, i.e. ``ceil`` of the scaled epoch count with the last
    epoch cut, and its scheduler (built for ``train.epochs`` epochs) steps once per augmented epoch
    length, so the step-decay epochs scale by the same ratio and both variants see the same learning
    rate at every step.
    """
    t = cfg.train
    ipe = {v: iters_per_epoch(n, t.batch_size, t.max_iters_per_epoch) for v, n in n_train.items()}
    plan = {}
    for variant, per_epoch in ipe.items():
        if per_epoch < 1:
            raise DatasetError(f"{variant}: {n_train[variant]} training images give no full batch of "
                               f"{t.batch_size} (torchreid drops the last incomplete batch); lower train.batch_size")
        plan[variant] = {"budget": "epochs", "epochs": t.epochs, "iters_per_epoch": per_epoch,
                         "total_iters": t.epochs * per_epoch, "lr_step_iters": 0,
                         "epochs_equivalent": float(t.epochs)}
    if t.budget == "iterations" and "augmented" in plan:
        ref = plan["augmented"]
        for variant, p in plan.items():
            p["budget"] = "iterations"
            if variant == "augmented" or p["iters_per_epoch"] == ref["iters_per_epoch"]:
                continue
            total = ref["total_iters"]
            p.update(epochs=-(-total // p["iters_per_epoch"]), total_iters=total,
                     lr_step_iters=ref["iters_per_epoch"], epochs_equivalent=total / p["iters_per_epoch"])
    return plan
