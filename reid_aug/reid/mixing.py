"""How synthesized images enter Re-ID training (``train.mix``), and their loss.

- ``pool``: the synthesized images are items of the one training list (:func:`reid_aug.reid.data.build_splits`).
- ``batch`` (CamStyle, Zhong et al. CVPR 2018): the training list is the baseline's (real images only), so
  the augmented run draws exactly the baseline's real batches; :class:`SyntheticStream` appends
  ``round(synthetic_ratio * batch_size)`` synthesized images to every batch from its own shuffled stream
  (its own ``torch.Generator``: the real batches' random draws are untouched).

:func:`mixed_cross_entropy` is the same-id loss with the synthesized images' own smoothing ``eps`` and weight:
per sample ``l = (1 - eps) * (-log p_y) + eps * mean_k(-log p_k)`` (torchreid's label-smoothed CE), then
``batch``: ``mean(l_real) + w * mean(l_synth)`` (CamStyle sums the two losses); ``pool``: the weighted mean
``(sum l_real + w sum l_synth) / (n_real + w n_synth)``, which is torchreid's mean when ``w = 1`` and the
smoothing is equal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mixed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, synthesized: torch.Tensor, eps_real: float,
                        eps_synth: float, weight: float, mix: str) -> torch.Tensor:
    """``logits`` (B, K), ``targets`` (B,) labels, ``synthesized`` (B,) bool -> scalar (module docstring)."""
    logp = F.log_softmax(logits.float(), dim=1)
    nll = -logp.gather(1, targets.view(-1, 1)).squeeze(1)
    uniform = -logp.mean(dim=1)
    synthesized = synthesized.to(logits.device)
    eps = torch.where(synthesized, torch.full_like(nll, eps_synth), torch.full_like(nll, eps_real))
    per = (1 - eps) * nll + eps * uniform
    real, synth = per[~synthesized], per[synthesized]
    if mix == "batch":
        loss = real.mean() if len(real) else per.new_zeros(())
        return loss + weight * synth.mean() if len(synth) else loss
    w = torch.where(synthesized, torch.full_like(per, weight), torch.ones_like(per))
    return (w * per).sum() / w.sum().clamp_min(1e-12)


class _Items(torch.utils.data.Dataset):
    """Train-transformed synthesized images: ``{"img", "pid", "camid", "dsetid", "impath"}`` as torchreid's."""

    def __init__(self, items, transform):
        self.items, self.transform = list(items), transform

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        from reid_aug.reid.data import read_image_checked

        path, label, cam, dsetid = self.items[i]
        return {"img": self.transform(read_image_checked(path)), "pid": label, "camid": cam, "dsetid": dsetid,
                "impath": path}


class SyntheticStream:
    """An endless iterator of batches of ``n`` synthesized images (reshuffled after each pass, seeded)."""

    def __init__(self, items, n: int, transform, seed: int, workers: int = 0):
        if n < 1:
            raise ValueError("a batch needs at least one synthesized image (raise train.synthetic_ratio)")
        if len(items) < n:
            raise ValueError(f"{len(items)} synthesized images cannot fill a batch share of {n}")
        self.generator = torch.Generator().manual_seed(int(seed) + 7919)
        self.loader = torch.utils.data.DataLoader(_Items(items, transform), batch_size=n, shuffle=True,
                                                  drop_last=True, num_workers=workers, generator=self.generator)
        self.n = n
        # The stream's own random states (its shuffles and, without workers, its random transforms): the
        # global ones must advance exactly as in the baseline run, or its later real batches would differ.
        self._states = _fresh_states(int(seed) + 7919)
        self._it = self._own_rng(lambda: iter(self.loader))

    def __iter__(self):
        return self

    def _own_rng(self, fn):
        import random

        import numpy as np

        saved = (torch.random.get_rng_state(), random.getstate(), np.random.get_state())
        torch.random.set_rng_state(self._states[0])
        random.setstate(self._states[1])
        np.random.set_state(self._states[2])
        try:
            return fn()
        finally:
            self._states = (torch.random.get_rng_state(), random.getstate(), np.random.get_state())
            torch.random.set_rng_state(saved[0])
            random.setstate(saved[1])
            np.random.set_state(saved[2])

    def _next(self) -> dict:
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def __next__(self) -> dict:
        return self._own_rng(self._next)


def _fresh_states(seed: int) -> tuple:
    """(torch, random, numpy) RNG states seeded with ``seed``, without touching the global ones."""
    import random

    import numpy as np

    g = torch.Generator().manual_seed(seed)
    return g.get_state(), random.Random(seed).getstate(), np.random.RandomState(seed % 2 ** 32).get_state()


def join_batches(real: dict, synth: dict) -> dict:
    """One training batch: the real batch's tensors followed by the synthesized ones (``dsetid`` marks them)."""
    out = dict(real)
    for key in ("img", "pid", "camid", "dsetid"):
        out[key] = torch.cat([torch.as_tensor(real[key]), torch.as_tensor(synth[key])])
    out["impath"] = list(real.get("impath", [])) + list(synth.get("impath", []))
    return out
