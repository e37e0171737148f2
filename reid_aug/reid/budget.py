"""The Re-ID training budget: how many optimizer steps (and epochs) each variant trains, and at
which learning rate.

``train.budget: epochs`` trains both variants for the recipe's epochs; ``iterations`` gives the
baseline exactly the augmented run's number of steps and learning-rate schedule.

Learning-rate schedules: ``train.lr_decay_at`` gives the decay points as fractions of the
training length, so that ``--set train.epochs=N`` keeps the schedule's shape; the older
``lr_scheduler`` + ``stepsize`` keys (fixed epochs) are still read. :func:`schedule_warning` says
when a schedule no longer fits the epochs it is given, and :func:`effective_schedule` is what two
configs are compared by (a recipe rewritten from ``stepsize`` to ``lr_decay_at`` with the same
decay epochs is the same schedule).
"""
from __future__ import annotations

from reid_aug.errors import DatasetError
from reid_aug.reid.config import BenchmarkConfig, TrainConfig

# More decays than this, or an LR that ends below this fraction of train.lr, is "does not fit".
MAX_DECAYS = 3
MIN_FINAL_LR_RATIO = 1e-6


# --------------------------------------------------------------------------- steps
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


def same_training(a: dict | None, b: dict | None) -> bool:
    """Two :func:`training_plan` entries train the same steps with the same schedule. The ``budget`` name is a
    label: a ``--baseline-only`` run's "epochs" plan and the baseline of a batch-mixing benchmark's "iterations"
    plan (the real batches do not depend on the synthesized set) are one training when their numbers agree."""
    def steps(p):
        return {k: v for k, v in (p or {}).items() if k != "budget"}
    return a is not None and b is not None and steps(a) == steps(b)


def describe_plan(variant: str, p: dict) -> str:
    """``augmented: iterations budget, 3 epoch(s) x 638 it = 1914 iterations`` (one log line)."""
    cut = " (last epoch cut)" if p["total_iters"] % p["iters_per_epoch"] else ""
    return (f"{variant}: {p['budget']} budget, {p['epochs']} epoch(s) x {p['iters_per_epoch']} it{cut} = "
            f"{p['total_iters']} iterations")


# --------------------------------------------------------------------------- learning rate
def lr_schedule(t: TrainConfig) -> tuple[str, int | list[int]]:
    """``(torchreid lr_scheduler name, stepsize)`` for ``t``: ``train.lr_decay_at`` fractions become a
    multi_step schedule at ``round(f * epochs)`` (at least epoch 1); otherwise the recipe's own."""
    if t.lr_decay_at:
        return "multi_step", sorted({max(1, round(f * t.epochs)) for f in t.lr_decay_at})
    return t.lr_scheduler, (t.stepsize[0] if t.lr_scheduler == "single_step" else list(t.stepsize))


def decay_epochs(t: TrainConfig) -> list[int] | None:
    """The epochs (1-based ends) after which a step schedule multiplies the LR by ``gamma`` within
    ``train.epochs``; None for a cosine schedule."""
    name, step = lr_schedule(t)
    if name == "single_step":
        return list(range(int(step), t.epochs, int(step)))
    if name == "multi_step":
        return sorted(m for m in set(step) if m <= t.epochs - 1)
    return None


def lr_decays(t: TrainConfig) -> int:
    """How many times the schedule multiplies the LR by ``gamma`` within ``train.epochs`` epochs."""
    return len(decay_epochs(t) or [])


def effective_schedule(train: dict) -> dict:
    """A config's ``train`` section (a dict) with its LR schedule keys (``lr_scheduler``, ``stepsize``,
    ``lr_decay_at``) replaced by what they do: ``{"decay_epochs": [...]}`` (or ``"cosine"``).

    Two runs are comparable when these agree, whichever keys the recipe used: a folder written before
    ``lr_decay_at`` existed (single_step, stepsize 6, 7 epochs) has the same schedule as today's recipe
    (``lr_decay_at: [0.86]``)."""
    from reid_aug.config import from_dict

    t = from_dict(TrainConfig, train)
    epochs = decay_epochs(t)
    rest = {k: v for k, v in train.items() if k not in ("lr_scheduler", "stepsize", "lr_decay_at")}
    return {**rest, "lr_schedule": {"decay_epochs": epochs} if epochs is not None else "cosine"}


def schedule_warning(t: TrainConfig) -> str | None:
    """A sentence when the LR schedule no longer fits the epochs it is given (more than
    :data:`MAX_DECAYS` decays, or an LR that ends below :data:`MIN_FINAL_LR_RATIO` of its start), else None."""
    n = lr_decays(t)
    final = t.gamma ** n
    if n <= MAX_DECAYS and final >= MIN_FINAL_LR_RATIO:
        return None
    name, step = lr_schedule(t)
    return (f"the learning-rate schedule does not fit {t.epochs} epochs: {name} with stepsize {step} decays it "
            f"{n} times, to {t.lr * final:.2g} ({final:.0e} of train.lr); express it relative to the training "
            f"length, e.g. --set train.lr_decay_at=[0.5,0.75], or set train.stepsize for these epochs")


def build_optimizer(model, t: TrainConfig):
    """``(optimizer, scheduler)`` of torchreid for ``t``. Always a scheduler: torchreid's checkpoint code
    breaks on ``scheduler=None``. It counts the recipe's epochs; an iteration-matched baseline steps it
    once per augmented epoch length (the plan's ``lr_step_iters``)."""
    from reid_aug.reid.data import import_torchreid

    reid = import_torchreid()
    optimizer = reid.optim.build_optimizer(model, optim=t.optimizer, lr=t.lr, weight_decay=t.weight_decay)
    name, stepsize = lr_schedule(t)
    scheduler = reid.optim.build_lr_scheduler(optimizer, lr_scheduler=name, stepsize=stepsize, gamma=t.gamma,
                                              max_epoch=t.epochs)
    return optimizer, scheduler
