"""Deformable GAN as a generator family: one adversarial stage training G and D from the start.

Per step (official ``conditional_gan.CGAN``, training_ratio 1): the 10 part transforms and masks of
the batch (:func:`~reid_aug.generator.defgan.affine.deformation`, batched on the device), the
generator's output, then ``G loss = -log D(x_a, H_a, G, H_b) + nn_weight * NN(G, y) [+ l1_weight * L1]``
and ``D loss = -log D(x_a, H_a, y, H_b) - log(1 - D(x_a, H_a, G, H_b))`` (cross-entropy on logits,
averaged over D's output patches). G is updated first, through the D of this step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from reid_aug.generator.defgan.config import IDENTITY_FIELDS, STAGE, DefGANConfig
from reid_aug.generator.family import GeneratorFamily, Stage, StepModules, register_family
from reid_aug.generator.identity import ID_TERMS, identity_terms

STAGES = {STAGE: Stage(STAGE, g=("g",), d=("d",))}
NEEDS = ("src_pose", "src_kp", "tgt_kp")   # besides src_img and tgt_pose: the source pose and both skeletons


def generate(g, batch: dict, warp: bool) -> torch.Tensor:
    """The generator on a batch (``src_img``, ``src_pose``, ``tgt_pose`` (B,18,H,W); ``src_kp``, ``tgt_kp``
    (B,18,2) for the deformable skips; ``bg`` (B,3,H,W) for a generator with ``use_bg``) -> (B,3,H,W) in [-1, 1].
    The one place where the deformation is made."""
    from reid_aug.generator.defgan.affine import deformation

    missing = [k for k in NEEDS + (("bg",) if getattr(g, "use_bg", False) else ()) if k not in batch]
    if missing:
        raise ValueError(f"Deformable GAN needs {', '.join(missing)} besides src_img and tgt_pose")
    theta = masks = None
    if warp:
        size = batch["src_img"].shape[-2:]
        theta, masks, _ = deformation(batch["src_kp"], batch["tgt_kp"], size)
    return g(batch["src_img"], batch["src_pose"], batch["tgt_pose"], theta, masks, bg=batch.get("bg"))


class DefGANFamily(GeneratorFamily):
    name = "defgan"
    config_class = DefGANConfig
    stage_names = (STAGE,)
    network_names = ("g", "d")
    base_networks = ("g", "d")
    log_terms = ("loss", "adv", "nn", "l1", "d_loss", "d_real", "d_fake", *ID_TERMS)
    progress_terms = ("loss", "nn", "d_loss")
    identity_fields = IDENTITY_FIELDS
    conditions = NEEDS

    def __init__(self):
        self._nn_loss = {}     # (features, k, reduction, weights, device) -> NearestNeighbourLoss, built once

    def build_networks(self, cfg: DefGANConfig, which=("g", "d")) -> dict[str, torch.nn.Module]:
        from reid_aug.generator.defgan.discriminator import PatchDiscriminator
        from reid_aug.generator.defgan.generator import DeformableGenerator

        m = cfg.model
        nets: dict[str, torch.nn.Module] = {}
        if "g" in which:
            nets["g"] = DeformableGenerator(tuple(m.image_size), warp_skip=m.warp_skip, use_bg=m.use_bg,
                                            width=m.width, warped_levels=m.warped_levels,
                                            interpolation=m.interpolation, bg_grow=m.bg_grow)
        if "d" in which:
            nets["d"] = PatchDiscriminator(use_bg=m.use_bg, width=m.d_width)
        return nets

    def stage(self, name: str) -> Stage:
        return STAGES[name]

    def make_optimizer(self, cfg: DefGANConfig, stage: str, group: str, params) -> torch.optim.Optimizer:
        t = cfg.train
        return torch.optim.Adam(params, lr=t.lr if group == "g" else t.d_lr, betas=tuple(t.betas))

    def nn_loss(self, cfg: DefGANConfig, device: torch.device):
        """The nearest-neighbour loss module of ``cfg`` (VGG-19 conv1_2 loaded once, the identity network's
        stem, or 5x5 patches)."""
        from reid_aug.generator.defgan.nn_loss import NearestNeighbourLoss, PatchFeatures
        from reid_aug.generator.defgan.vgg import load_vgg19_conv12

        lo = cfg.loss
        key = (lo.nn_features, lo.nn_k, lo.nn_reduction, lo.vgg_weights, lo.identity.model, cfg.data.train_per_id,
               cfg.data.subset_seed, str(device))
        if key not in self._nn_loss:
            if lo.nn_features == "vgg19":
                feats = load_vgg19_conv12(lo.vgg_weights or None)
            elif lo.nn_features == "reid":
                from reid_aug.generator.identity import ReidEarlyFeatures, identity_network

                feats = ReidEarlyFeatures(identity_network(cfg, device))
            else:
                feats = PatchFeatures(5)
            self._nn_loss[key] = NearestNeighbourLoss(feats, lo.nn_k, lo.nn_reduction).to(device)
        return self._nn_loss[key]

    def train_step(self, stage: str, batch: dict, cfg: DefGANConfig, mods: StepModules) -> dict[str, float]:
        """One G step then one D step on ``batch`` (``src_img``, ``tgt_img``, poses and keypoints)."""
        src, tgt = batch["src_img"], batch["tgt_img"]
        h_a, h_b = batch["src_pose"], batch["tgt_pose"]
        if cfg.model.use_bg:          # the target's own background (defgan.background), as the official training
            from reid_aug.generator.defgan.background import with_target_background

            batch = with_target_background(batch, cfg.model.bg_grow)
        bg = batch.get("bg")
        with mods.autocast():
            fake = generate(mods.run["g"], batch, cfg.model.warp_skip != "none")
        d = mods.nets["d"]
        d.requires_grad_(False)       # G's loss through the raw D: no DDP hooks, no weight gradients
        with mods.autocast():
            g_logits = d(src, h_a, fake, h_b, bg)
        d.requires_grad_(True)
        adv = F.binary_cross_entropy_with_logits(g_logits.float(), torch.ones_like(g_logits, dtype=torch.float32))
        nn_term = self.nn_loss(cfg, fake.device)(fake.float(), tgt.float()) if cfg.loss.nn_weight > 0 else \
            fake.new_zeros((), dtype=torch.float32)
        l1 = (fake.float() - tgt.float()).abs().mean()
        ident, id_terms = identity_terms(cfg, fake, tgt, batch.get("src_name", ()))
        g_loss = adv + cfg.loss.nn_weight * nn_term + cfg.loss.l1_weight * l1 + ident
        with mods.autocast():
            d_logits = mods.run["d"](torch.cat([src, src]), torch.cat([h_a, h_a]), torch.cat([tgt, fake.detach()]),
                                     torch.cat([h_b, h_b]), None if bg is None else torch.cat([bg, bg]))
        b = src.shape[0]
        d_real = F.binary_cross_entropy_with_logits(d_logits[:b].float(), torch.ones_like(d_logits[:b], dtype=torch.float32))
        d_fake = F.binary_cross_entropy_with_logits(d_logits[b:].float(), torch.zeros_like(d_logits[b:], dtype=torch.float32))
        d_loss = d_real + d_fake
        values = mods.check({"loss": g_loss, "adv": adv, "nn": nn_term, "l1": l1, "d_loss": d_loss,
                             "d_real": d_real, "d_fake": d_fake, **id_terms})
        for opt, loss in ((mods.opt_g, g_loss), (mods.opt_d, d_loss)):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return values

    def output_stages(self, trained) -> tuple[str, ...]:
        return (STAGE,) if STAGE in list(trained) else ()

    def inference_networks(self, stages) -> tuple[str, ...]:
        return ("g",)

    def generate(self, nets, batch: dict, stage: str) -> torch.Tensor:
        return generate(nets["g"], batch, getattr(nets["g"], "warp_skip", "mask") != "none")

    def sample_images(self, nets, batch: dict, trained) -> list[torch.Tensor | None]:
        g = nets["g"]
        if g.use_bg:
            from reid_aug.generator.defgan.background import with_target_background

            batch = with_target_background(batch, g.bg_grow)
        return [generate(g, batch, g.warp_skip != "none")]

    def describe(self, cfg: DefGANConfig) -> str:
        m, lo = cfg.model, cfg.loss
        nn = (f"NN loss {lo.nn_weight:g} x {lo.nn_features} features, {lo.nn_k}x{lo.nn_k}" if lo.nn_weight > 0
              else "no NN loss")
        return (f"deformable skips {m.warp_skip!r} on {m.warped_levels} levels ({m.interpolation}), {nn}"
                + (f", pixel L1 x {lo.l1_weight:g}" if lo.l1_weight > 0 else "") + ", Gaussian pose maps")


FAMILY = register_family(DefGANFamily())
