"""PG² losses.

- Pose-mask L1 (paper eq. 1, official ``L1Loss2``):
  ``mean|G - I_B| + mean(|G - I_B| * M_B)``, the means taken over all ``B*3*H*W`` elements,
  ``M_B`` (B,1,H,W) in {0, 1} broadcast over the colour channels.
- Adversarial terms are binary cross-entropy on logits (DCGAN). Three discriminators (``loss.d_variant``):
  ``pair`` (the paper's: D is conditioned on the pair, the condition image concatenated on the channel
  axis: ``BCE(D(I_A, I_B), 1) + BCE(D(I_A, G2), 0)``, so G2 cannot win by copying I_A or by drawing any
  plausible person); ``official`` (the official code's: an unconditional D that also sees I_A as fake,
  ``0.5 BCE(D(I_B), 1) + 0.25 BCE(D(I_A), 0) + 0.25 BCE(D(G2), 0)``); ``unconditional``
  (``BCE(D(I_B), 1) + BCE(D(G2), 0)``; neither publication's; it was called ``paper`` before 0.2 and every
  stage-II result recorded before then used it).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

RECON_LOSSES = ("posemask", "l1")
D_VARIANTS = ("pair", "official", "unconditional")
# Names of earlier releases -> what the variant really is.
D_VARIANT_ALIASES = {"paper": "unconditional"}


def d_input_channels(variant: str, img_channels: int = 3) -> int:
    """Input channels of the discriminator: the pair D sees (I_A, image) stacked on the channel axis."""
    return 2 * img_channels if variant == "pair" else img_channels


def l1_terms(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean|pred - target|, mean(|pred - target| * mask))`` for (B,3,H,W) images and a (B,1,H,W) mask."""
    err = (pred.float() - target.float()).abs()
    return err.mean(), (err * mask.float()).mean()


def pose_mask_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PG²'s pose-mask L1: ``mean|pred - target| + mean(|pred - target| * mask)``."""
    l1, masked = l1_terms(pred, target, mask)
    return l1 + masked


def recon_loss(kind: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The reconstruction objective ``kind`` ("posemask" | "l1") and all its terms for logging.

    Returns ``(loss, {"l1", "mask_l1", "posemask_l1"})`` (scalars, detached in the dict).
    """
    l1, masked = l1_terms(pred, target, mask)
    posemask = l1 + masked
    if kind == "posemask":
        loss = posemask
    elif kind == "l1":
        loss = l1
    else:
        raise ValueError(f"unknown reconstruction loss {kind!r}; expected one of {RECON_LOSSES}")
    return loss, {"l1": l1.detach(), "mask_l1": masked.detach(), "posemask_l1": posemask.detach()}


def bce_real(logits: torch.Tensor) -> torch.Tensor:
    """``BCE(sigmoid(logits), 1)`` averaged."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def bce_fake(logits: torch.Tensor) -> torch.Tensor:
    """``BCE(sigmoid(logits), 0)`` averaged."""
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, cond_logits: torch.Tensor | None = None,
                       variant: str = "pair") -> tuple[torch.Tensor, dict]:
    """D's objective; ``cond_logits`` (D on the condition image I_A) is needed for ``official`` only.

    Returns ``(loss, {"d_real", "d_fake", "d_cond"?})`` with the unweighted BCE terms for logging.
    """
    real, fake = bce_real(real_logits), bce_fake(fake_logits)
    terms = {"d_real": real.detach(), "d_fake": fake.detach()}
    if variant in ("pair", "unconditional"):
        loss = real + fake
    elif variant == "official":
        if cond_logits is None:
            raise ValueError("the official D loss needs the logits of the condition image")
        cond = bce_fake(cond_logits)
        terms["d_cond"] = cond.detach()
        loss = 0.5 * real + 0.25 * cond + 0.25 * fake
    else:
        raise ValueError(f"unknown discriminator loss variant {variant!r}; expected one of {D_VARIANTS}")
    return loss, terms
