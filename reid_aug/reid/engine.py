"""Training: torchreid's softmax engine with our ``forward_backward``, and an explicit epoch loop.

``AugmentedSoftmaxEngine`` trains with label-smoothed cross-entropy on identity labels
(``same-id``: synthesized images carry their source identity) or LSRO (synthesized images get a
uniform target). We do not use ``Engine.run``: it prints, evaluates with torchreid's slow
evaluator, and saves through ``save_checkpoint`` (which breaks with ``scheduler=None``); the
loop below is explicit, shows a progress bar and checkpoints every epoch atomically.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

import torch

from reid_aug.reid.data import SYNTHESIZED_DSETID, import_torchreid
from reid_aug.runtime import get_rng_state, load_torch_file, set_rng_state
from reid_aug.utils.io import atomic_torch_save

log = logging.getLogger(__name__)


def make_engine_class():
    """``AugmentedSoftmaxEngine`` (a subclass of torchreid's ``ImageSoftmaxEngine``), built on first use."""
    reid = import_torchreid()
    from reid_aug.reid.lsro import LSROLoss

    class AugmentedSoftmaxEngine(reid.engine.ImageSoftmaxEngine):
        """``labels``: ``same-id`` (torchreid CrossEntropyLoss with label smoothing on every sample)
        or ``lsro`` (uniform target for samples whose ``dsetid`` is the synthesized one)."""

        def __init__(self, datamanager, model, optimizer, scheduler, use_gpu=False, label_smooth=True,
                     labels="same-id", mixing=None, synthetic=None):
            super().__init__(datamanager, model, optimizer, scheduler=scheduler, use_gpu=use_gpu,
                             label_smooth=label_smooth)
            self.labels = labels
            self.lsro = LSROLoss(datamanager.num_train_pids, label_smooth=label_smooth, use_gpu=self.use_gpu)
            self.mixing = mixing            # (mix, eps_real, eps_synth, weight) or None: torchreid's criterion
            self.synthetic = synthetic      # reid_aug.reid.mixing.SyntheticStream for train.mix = batch
            self.teacher = None             # labels=teacher: (reid_aug.reid.teacher.Teacher, eps, T, weight, ramp)
            self.iteration, self.total_iters = 0, 0   # set by train_epochs (the teacher weight's ramp)

        def forward_backward(self, data):
            from reid_aug.reid.mixing import join_batches, mixed_cross_entropy

            if self.synthetic is not None:
                data = join_batches(data, next(self.synthetic))
            imgs, pids = self.parse_data_for_train(data)
            synthesized = torch.as_tensor(data["dsetid"]) == SYNTHESIZED_DSETID
            if self.use_gpu:
                imgs, pids = imgs.cuda(non_blocking=True), pids.cuda(non_blocking=True)
            outputs = self.model(imgs)
            if self.labels == "lsro":
                loss = self.lsro(outputs, pids, synthesized)
            elif self.labels == "teacher" and self.teacher is not None:   # the baseline has no synthesized images
                loss = self._teacher_loss(imgs, outputs, pids, synthesized)
            elif self.mixing is not None:
                mix, eps_real, eps_synth, weight = self.mixing
                loss = mixed_cross_entropy(outputs, pids, synthesized, eps_real, eps_synth, weight, mix)
            else:
                loss = self.compute_loss(self.criterion, outputs, pids)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            real = ~synthesized.to(outputs.device)
            acc = (outputs.argmax(1) == pids)[real].float().mean().item() if bool(real.any()) else float("nan")
            return {"loss": loss.item(), "acc": acc, "n_synthesized": int(synthesized.sum())}

        def _teacher_loss(self, imgs, outputs, pids, synthesized):
            from reid_aug.reid.teacher import ramp_weight, teacher_loss

            teacher, eps, temperature, weight, ramp = self.teacher
            mask = synthesized.to(imgs.device)
            t_logits = teacher.logits(imgs[mask]) if bool(mask.any()) else None
            w = ramp_weight(weight, ramp, self.iteration, self.total_iters)
            return teacher_loss(outputs, pids, synthesized, t_logits, eps, temperature, w)

    return AugmentedSoftmaxEngine


def train_epochs(engine, epochs: int, checkpoint_path: Path, max_iters_per_epoch: int = 0, desc: str = "train",
                 on_epoch_end: Callable[[int, dict], None] | None = None, total_iters: int = 0,
                 lr_step_iters: int = 0, evaluate_epoch: Callable[[int, dict], dict] | None = None) -> dict:
    """Run ``epochs`` epochs of ``engine.forward_backward``, resuming from ``checkpoint_path``.

    ``max_iters_per_epoch > 0`` cuts every epoch after that many iterations. ``total_iters > 0``
    stops after that many iterations in all (the last epoch is cut; ``epochs`` must reach it).
    ``lr_step_iters > 0`` steps the LR scheduler every ``lr_step_iters`` iterations (counted over
    the whole run) instead of at every epoch end: the scheduler then counts epochs of another
    length, e.g. the augmented run's, so an iteration-matched baseline sees the augmented run's
    learning rate at every step. ``evaluate_epoch(epoch, record)`` (optional) returns metrics that join the
    epoch's history record before its checkpoint is written (the training curve survives a resume).

    The checkpoint (model, optimizer, scheduler, RNG states, epoch, elapsed seconds, loss
    history) is written atomically after every epoch, so a killed run loses at most one epoch.

    Returns ``{"epochs": n, "iterations": n, "train_s": seconds,
    "history": [{"epoch", "iterations", "loss", "acc", "lr", "lr_end", "seconds"}, ...]}``
    (``lr``: the learning rate of the epoch's first iteration, ``lr_end``: after the epoch).
    """
    per_epoch = len(engine.train_loader)
    if max_iters_per_epoch > 0:
        per_epoch = min(per_epoch, max_iters_per_epoch)
    if total_iters > 0 and epochs * per_epoch < total_iters:
        raise ValueError(f"{epochs} epoch(s) of {per_epoch} iterations cannot reach total_iters={total_iters}")
    start_epoch, elapsed, history = _resume(engine, checkpoint_path, desc, epochs)
    done = sum(h["iterations"] for h in history)   # iterations over the whole run (drives lr_step_iters)
    engine.max_epoch = epochs
    for epoch in range(start_epoch, epochs):
        n_batches = per_epoch if total_iters <= 0 else min(per_epoch, total_iters - done)
        if n_batches <= 0:
            break
        t0 = time.time()
        engine.epoch = epoch
        lr = engine.get_current_lr()
        sums = _train_one_epoch(engine, n_batches, done, lr_step_iters, f"{desc} epoch {epoch + 1}/{epochs}")
        done += n_batches
        if lr_step_iters <= 0:
            engine.update_lr()
        elapsed += time.time() - t0
        rec = {"epoch": epoch + 1, "iterations": n_batches, "loss": sums["loss"] / max(1, n_batches),
               "acc": sums["acc"] / max(1, sums["n_acc"]), "lr": lr, "lr_end": engine.get_current_lr(),
               "seconds": time.time() - t0}
        if evaluate_epoch is not None:
            rec.update(evaluate_epoch(epoch + 1, rec))
        history.append(rec)
        log.info("%s epoch %d/%d: %d it, loss %.4f acc %.3f lr %.2e (%.1fs)", desc, epoch + 1, epochs, n_batches,
                 rec["loss"], rec["acc"], lr, rec["seconds"])
        atomic_torch_save({"model": engine.model.state_dict(), "optimizer": engine.optimizer.state_dict(),
                           "scheduler": engine.scheduler.state_dict(), "rng": get_rng_state(), "epoch": epoch + 1,
                           "elapsed": elapsed, "history": history}, checkpoint_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, rec)
    return {"epochs": len(history), "iterations": sum(h["iterations"] for h in history), "train_s": elapsed,
            "history": history}


def _resume(engine, checkpoint_path: Path, desc: str, epochs: int) -> tuple[int, float, list]:
    """Load the epoch checkpoint into ``engine`` (weights_only: its RNG state is tensors and numbers);
    ``(epochs done, elapsed seconds, history)``, or a fresh start where there is none."""
    if not checkpoint_path.is_file():
        return 0, 0.0, []
    ck = load_torch_file(checkpoint_path, "a benchmark epoch checkpoint", "Delete it to train this run again.")
    engine.model.load_state_dict(ck["model"])
    engine.optimizer.load_state_dict(ck["optimizer"])
    engine.scheduler.load_state_dict(ck["scheduler"])
    set_rng_state(ck["rng"])
    log.info("%s: resuming after epoch %d of %d (%s)", desc, ck["epoch"], epochs, checkpoint_path)
    return ck["epoch"], ck["elapsed"], ck["history"]


def _train_one_epoch(engine, n_batches: int, done: int, lr_step_iters: int, desc: str) -> dict:
    """``n_batches`` steps of ``engine.forward_backward``; ``done`` = iterations before this epoch (the LR
    steps every ``lr_step_iters`` of the whole run when > 0). Returns the sums ``{"loss", "acc", "n_acc"}``."""
    from tqdm import tqdm

    engine.set_model_mode("train")
    sums = {"loss": 0.0, "acc": 0.0, "n_acc": 0}
    bar = tqdm(total=n_batches, desc=desc, unit="it", leave=False, disable=None)
    for i, data in enumerate(engine.train_loader):
        engine.iteration = done           # iterations before this one, over the whole run
        out = engine.forward_backward(data)
        done += 1
        if lr_step_iters > 0 and done % lr_step_iters == 0:
            engine.update_lr()
        sums["loss"] += out["loss"]
        if out["acc"] == out["acc"]:   # not NaN (batch of only synthesized images under LSRO)
            sums["acc"] += out["acc"]
            sums["n_acc"] += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sums['loss'] / (i + 1):.3f}")
        if i + 1 >= n_batches:     # stop before the loader reads (and augments) one batch too many
            break
    bar.close()
    return sums
