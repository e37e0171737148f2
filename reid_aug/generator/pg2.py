"""PG² as a generator family: its networks, stages, train step and the G1 + G2 composition.

Stage I ("g1") trains G1 with the pose-mask L1 (or plain L1). Stage II ("g2") freezes G1 and
trains G2 + D: ``G loss = BCE(D(G2), real) + lambda * posemask_L1(G2, I_B)``; the D loss is the
paper's or the official code's variant (``loss.d_variant``, see :mod:`reid_aug.generator.losses`).
The one-stage ablation "g1+d" trains G1 adversarially. The networks are one file each
(:mod:`~reid_aug.generator.g1`, :mod:`~reid_aug.generator.g2`,
:mod:`~reid_aug.generator.discriminator`); this module only wires them.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from reid_aug.generator.config import IDENTITY_FIELDS, PG2Config
from reid_aug.generator.family import GeneratorFamily, Stage, StepModules, register_family
from reid_aug.generator.identity import ID_TERMS, identity_terms
from reid_aug.generator.losses import bce_real, discriminator_loss, recon_loss, d_input_channels

STAGES = {
    "g1": Stage("g1", g=("g1",)),
    "g2": Stage("g2", g=("g2",), d=("d",), frozen=("g1",)),
    "g1+d": Stage("g1+d", g=("g1",), d=("d",)),
}


def compose(g1: Callable, g2: Callable | None, src_img: torch.Tensor, tgt_pose: torch.Tensor,
            g1_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """PG²'s generator: ``g1_img = G1(src, pose)``, ``g2_img = g1_img + G2(g1_img, src)``.

    ``src_img`` (B,3,H,W) in [-1, 1], ``tgt_pose`` (B,18,H,W) -> ``(g1_img, g2_img)``, both
    (B,3,H,W); ``g2_img`` is None without ``g2``. ``g1_grad=False`` runs G1 without gradients
    (stage II trains G2 on a frozen G1). The one place where G1 and G2 are put together.
    """
    with contextlib.nullcontext() if g1_grad else torch.no_grad():
        g1_img = g1(src_img, tgt_pose)
    if g2 is None:
        return g1_img, None
    return g1_img, g1_img + g2(g1_img, src_img)


class PG2Family(GeneratorFamily):
    name = "pg2"
    config_class = PG2Config
    stage_names = tuple(STAGES)
    network_names = ("g1", "g2", "d")
    base_networks = ("g1",)
    log_terms = ("loss", "l1", "mask_l1", "posemask_l1", "adv", "d_loss", "d_real", "d_fake", "d_cond", *ID_TERMS)
    progress_terms = ("loss", "posemask_l1", "d_loss")
    identity_fields = IDENTITY_FIELDS

    def build_networks(self, cfg: PG2Config, which=("g1", "g2", "d")) -> dict[str, torch.nn.Module]:
        from reid_aug.generator.discriminator import Discriminator
        from reid_aug.generator.g2 import G2

        m = cfg.model
        size = tuple(m.image_size)
        nets: dict[str, torch.nn.Module] = {}
        if "g1" in which:
            nets["g1"] = _build_g1(m)
        if "g2" in which:
            nets["g2"] = G2(size, width=m.g2_width, levels=m.resolved_g2_levels(), zero_init=m.g2_zero_init)
        if "d" in which:
            nets["d"] = Discriminator(size, width=m.d_width, img_channels=d_input_channels(cfg.loss.d_variant),
                                      norm=m.d_norm)
        return nets

    def stage(self, name: str) -> Stage:
        return STAGES[name]

    def make_optimizer(self, cfg: PG2Config, stage: str, group: str, params) -> torch.optim.Optimizer:
        t = cfg.train
        lr = t.gen_lr(stage) if group == "g" else t.d_lr
        return torch.optim.Adam(params, lr=lr, betas=tuple(t.betas))

    def train_step(self, stage: str, batch: dict, cfg: PG2Config, mods: StepModules) -> dict[str, float]:
        """One step of ``stage``; the batch needs ``src_img``, ``tgt_pose``, ``tgt_img``, ``tgt_mask``."""
        src, pose, tgt, mask = batch["src_img"], batch["tgt_pose"], batch["tgt_img"], batch["tgt_mask"]
        if stage == "g1":
            with mods.autocast():
                fake, _ = compose(mods.run["g1"], None, src, pose)
            loss, terms = recon_loss(cfg.loss.g1, fake, tgt, mask)
            ident, id_terms = identity_terms(cfg, fake, tgt, batch.get("src_name", ()))
            loss = loss + ident
            values = mods.check({"loss": loss, **terms, **id_terms})
            _update(mods.opt_g, loss)
            return values
        with mods.autocast():
            if stage == "g2":
                _, fake = compose(mods.run["g1"], mods.run["g2"], src, pose, g1_grad=False)
            else:  # "g1+d": one-stage adversarial G1
                fake, _ = compose(mods.run["g1"], None, src, pose)
        return _adversarial_step(fake, batch, cfg, mods, cfg.loss.g2 if stage == "g2" else cfg.loss.g1)

    def output_stages(self, trained) -> tuple[str, ...]:
        trained = list(trained)
        out = tuple(s for s in ("g1", "g2") if s in trained)
        if "g1+d" in trained and "g1" not in out:
            out = ("g1",) + out
        return out

    def inference_networks(self, stages) -> tuple[str, ...]:
        return ("g1", "g2") if "g2" in stages else ("g1",)

    def generate(self, nets, batch: dict, stage: str) -> torch.Tensor:
        g1_img, g2_img = compose(nets["g1"], nets["g2"] if stage == "g2" else None, batch["src_img"],
                                 batch["tgt_pose"])
        return g1_img if stage == "g1" else g2_img

    def sample_images(self, nets, batch: dict, trained) -> list[torch.Tensor | None]:
        """``[G1, G2]``; G2 only once stage II has trained (grey before)."""
        g2 = nets.get("g2") if "g2" in list(trained) else None
        g1_img, g2_img = compose(nets["g1"], g2, batch["src_img"], batch["tgt_pose"])
        return [g1_img, g2_img]

    def describe(self, cfg: PG2Config) -> str:
        lo = cfg.loss
        lam = f"{lo.lambda_l1:g}" if lo.lambda_start <= 0 else (
            f"{lo.lambda_start:g} -> {lo.lambda_l1:g} over {lo.lambda_ramp:g} of the stage")
        extra = "".join([f", D norm {cfg.model.d_norm!r}" if cfg.model.d_norm != "batch" else "",
                         f", D every {cfg.train.d_every} steps" if cfg.train.d_every > 1 else ""])
        return (f"reconstruction {lo.g1}/{lo.g2} with the {cfg.pose.mask_style!r} pose mask, lambda {lam}, "
                f"D variant {lo.d_variant!r}{extra}, pose maps {cfg.model.pose_mode!r}")


def _build_g1(m) -> torch.nn.Module:
    """G1 with the configured pose embedding (``model.pose_embedding``; PG² Fig. 4)."""
    from reid_aug.generator.g1 import G1
    from reid_aug.generator.g1_embed import G1CoordinateEmbedding, G1HeatmapEmbedding

    size, levels = tuple(m.image_size), m.resolved_g1_levels()
    if m.pose_embedding == "concat":
        return G1(size, width=m.g1_width, levels=levels, bottleneck=m.bottleneck)
    cls = {"ce": G1CoordinateEmbedding, "hme": G1HeatmapEmbedding}[m.pose_embedding]
    return cls(size, width=m.g1_width, levels=levels, bottleneck=m.bottleneck, pose_dim=m.pose_code,
               pose_mode=m.pose_mode)


def _with_condition(src: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) condition and image -> (B, 6, H, W): what the pair discriminator judges."""
    return torch.cat([src, img], dim=1)


def _update(opt: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def _adversarial_step(fake: torch.Tensor, batch: dict, cfg: PG2Config, mods: StepModules,
                      recon_kind: str) -> dict[str, float]:
    """G and D losses on one forward of the generator, then the G update and the D update.

    Like the official code, D sees real, (condition,) and fake images in one batch, so that its
    BatchNorm statistics mix them. Both losses are computed before either update (D's loss on the
    detached fake, G's through the D of this step). G's update goes first because its backward
    pass runs through D's weights, which D's update changes in place.
    """
    src, tgt, mask = batch["src_img"], batch["tgt_img"], batch["tgt_mask"]
    variant = cfg.loss.d_variant
    official = variant == "official"
    if variant == "pair":      # D judges pairs: the condition image on the channel axis of real and fake
        real_parts, fake = [torch.cat([src, tgt], dim=1)], _with_condition(src, fake)
    else:
        real_parts = [tgt, src] if official else [tgt]
    b = tgt.shape[0]
    # G loss: through the raw D with frozen weights (no DDP hooks, no wasted weight gradients).
    d = mods.nets["d"]
    d.requires_grad_(False)
    with mods.autocast():
        g_logits = d(torch.cat(real_parts + [fake], dim=0))
    d.requires_grad_(True)
    adv = bce_real(g_logits[-b:])
    recon, terms = recon_loss(recon_kind, fake[:, -tgt.shape[1]:], tgt, mask)
    step, total = mods.position()
    ident, id_terms = identity_terms(cfg, fake[:, -tgt.shape[1]:], tgt, batch.get("src_name", ()))
    g_loss = adv + lambda_at(cfg.loss, step, total) * recon + ident
    # D loss: real (and the condition image for "official") against the detached fake.
    with mods.autocast():
        d_logits = mods.run["d"](torch.cat(real_parts + [fake.detach()], dim=0))
    d_loss, d_terms = discriminator_loss(d_logits[:b], d_logits[-b:], d_logits[b:2 * b] if official else None,
                                         cfg.loss.d_variant)
    values = mods.check({"loss": g_loss, **terms, "adv": adv, "d_loss": d_loss, **d_terms, **id_terms})
    _update(mods.opt_g, g_loss)
    if step % cfg.train.d_every == 0:
        _update(mods.opt_d, d_loss)
    return values


def lambda_at(loss_cfg, step: int, total: int) -> float:
    """The reconstruction weight at ``step`` of ``total``: ``loss.lambda_l1``, or with ``loss.lambda_start`` > 0
    a linear ramp from lambda_start to lambda_l1 over the first ``lambda_ramp`` of the stage."""
    if loss_cfg.lambda_start <= 0:
        return loss_cfg.lambda_l1
    t = min(1.0, step / max(1.0, loss_cfg.lambda_ramp * total))
    return loss_cfg.lambda_start + t * (loss_cfg.lambda_l1 - loss_cfg.lambda_start)


FAMILY = register_family(PG2Family())
