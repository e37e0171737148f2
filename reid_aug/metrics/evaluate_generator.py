"""``reid-aug evaluate-generator``: SSIM, mask-SSIM, IS, mask-IS, L1 (and identity retrieval) on the test pairs.

For every test pair ``(from, to)`` the generator turns the source image and the target's pose maps into an image,
which is scored against the real target. Three rows, computed the same way in the same pass:

- ``model``: the generated image;
- ``real_vs_real``: the real target scored against itself (SSIM 1; its IS is the real-image IS);
- ``copy_source``: the source image used as the output, the floor every model must beat
  (on Market-1501 with the ``defgan`` protocol its SSIM is about 0.15).

uint8 conversion, as the published evaluation code: generated ``clip((x + 1) / 2 * 255, 0, 255)`` then truncated
(``astype(np.uint8)``, Deformable GAN's ``deprocess_image`` / PATN's ``tensor2im``; the clip as PG²'s
``denorm_img``, since G1's output is linear). Real images keep their exact decoded JPEG values.
SSIM: :mod:`reid_aug.metrics.ssim` (both protocols are recorded; ``ssim`` / ``mask_ssim`` hold the chosen one).
mask-SSIM: both images multiplied by a pose mask, as each publication did it. ``defgan`` / ``defgan-2018``: the
TARGET's Deformable GAN mask (:func:`reid_aug.pose.pose_masks`). ``pg2``: the SOURCE's PG² mask
(``pose_masks(style="pg2")``): PG²'s ``score_mask.py`` reads ``<test dir>/mask/``, and its ``trainer.py`` test step
writes ``mask_fixed`` there -- the mask of the condition image (``pose_mask_r4_0``) -- while ``mask_target_fixed``
goes to ``mask_target/``, which the score never reads (official repository, HEAD: ``score_mask.py`` lines 39/122,
``trainer.py`` lines 361-405). mask-IS: the target's Deformable GAN mask.
L1: PATN's ``l1_score``, mean ``|a - b|`` on the [-1, 1] scale of the uint8 images.
Identity retrieval (with ``reid_model``): the share of queries whose nearest real gallery image, by that Re-ID
model's features, has the source identity; the pair's own two images are left out of the gallery so that copying
the source does not win trivially.

Outputs in ``RUN/eval/``: ``metrics.json`` (records of every evaluated stage/protocol; the default stage's
``defgan`` evaluation first), ``metrics.csv`` (one row per record), ``per_pair.csv`` (model row, last evaluation),
``samples.png`` (source | target pose | generated | target for 8 pairs). A killed evaluation resumes from
``eval/partial-*.pt`` (written every ``RESUME_EVERY`` batches). A finished evaluation of the same checkpoint,
stage, pairs, protocol and scorers is read back from ``metrics.json`` instead of recomputed (``force=True`` redoes it).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from reid_aug.errors import ConfigError, RecordError
from reid_aug.metrics import MetricsError
from reid_aug.metrics.inception_score import InceptionScorer
from reid_aug.metrics.ssim import PROTOCOLS, get_protocol, l1_pm1, real_to_uint8, ssim, to_uint8
from reid_aug.pose.maps import pose_maps_to_rgb, pose_masks
from reid_aug.records import EvaluationRecord
from reid_aug.rundir import EvalDir
from reid_aug.runtime import resolve_device
from reid_aug.utils.images import image_grid, save_png
from reid_aug.utils.io import atomic_path, atomic_torch_save, atomic_write_text, sha256_lines

log = logging.getLogger(__name__)

ROWS = ("model", "real_vs_real", "copy_source")
ROW_DESCRIPTIONS = {
    "model": "generated image vs real target",
    "real_vs_real": "real target vs itself (SSIM ceiling; IS of real targets)",
    "copy_source": "source image used as the output (floor)",
}
UINT8_CONVERSION = ("generated: clip((x+1)/2*255, 0, 255) then truncate (astype uint8), as Deformable GAN / PATN "
                    "(clip as PG2); real: exact decoded JPEG values")
N_SAMPLES = 8
RESUME_EVERY = 10  # batches between partial-state saves ...
RESUME_MIN_SECONDS = 60.0  # ... and at least this long apart (the state holds the Inception logits so far)
CSV_COLUMNS = ("row", "stage", "protocol", "ssim", "mask_ssim", "ssim_defgan", "ssim_pg2", "mask_ssim_defgan",
               "mask_ssim_pg2", "is_mean", "is_std", "mask_is_mean", "mask_is_std", "l1", "id_retrieval", "n_pairs",
               "pairs_source", "pairs_sha256", "checkpoint_sha256", "checkpoint_step", "notes")


# --------------------------------------------------------------------------- inputs
def _dataset_spec_of_run(run_dir: Path, gen) -> str:
    """The dataset the run trained on: ``config.yaml`` (a ``dataset`` key), the checkpoint, or ``run.json``."""
    from reid_aug.records import read_json_object
    from reid_aug.rundir import GeneratorRun

    # run.json (written by train-generator) names the dataset; the checkpoint's record is the fallback
    candidates: list[str] = []
    run_json = GeneratorRun(run_dir).run_json
    if run_json.is_file():
        try:
            data = read_json_object(run_json, "a generator run record (run.json)")
            candidates += [str(v) for v in (data.get("dataset"), (data.get("data") or {}).get("root")) if v]
        except RecordError as e:
            log.warning("%s", e)
    info = getattr(gen, "dataset", None) or {}
    candidates += [str(info[k]) for k in ("spec", "root") if info.get(k)]
    for c in candidates:
        if c in ("market", "toy", "synthetic") or Path(c).is_dir():
            return c
    raise MetricsError(f"cannot tell which dataset {run_dir} was trained on (tried {candidates or 'nothing'}); "
                       f"pass --dataset market|toy|PATH")


def _pose_image(pose: torch.Tensor, mode: str) -> torch.Tensor:
    """(B, 18, H, W) pose maps -> uint8 (B, 3, H, W) picture."""
    return (pose_maps_to_rgb(pose, mode) * 255 + 0.5).to(torch.uint8)


# --------------------------------------------------------------------------- identity retrieval
class _IdentityRetrieval:
    """Nearest real gallery image by a Re-ID model's features; correct if it has the source identity."""

    def __init__(self, reid_model: Path, index, device: torch.device, batch_size: int):
        from reid_aug.reid.models import extract_features, load_reid_model
        from reid_aug.reid.data import test_transform

        self.model, self.cfg = load_reid_model(reid_model, device)
        self.device = device
        self.height, self.width = self.cfg.data.height, self.cfg.data.width
        self.transform = test_transform(self.height, self.width)
        gallery = index.split("gallery")
        gallery = gallery[gallery["kind"] != "junk"]
        self.g_names = gallery["name"].tolist()
        self.g_pids = torch.tensor(gallery["pid"].to_numpy(dtype=np.int64))
        self.g_pos = {n: i for i, n in enumerate(self.g_names)}
        self.g_feats = extract_features(self.model, gallery["path"].tolist(), self.height, self.width,
                                        batch_size=batch_size, desc="gallery features", device=device)
        from reid_aug.utils.io import sha256_file

        self.sha256 = sha256_file(reid_model)
        self.path = str(reid_model)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, H, W) -> (B, D) through torchreid's test transform (PIL resize, ImageNet normalisation)."""
        from PIL import Image

        batch = torch.stack([self.transform(Image.fromarray(im.permute(1, 2, 0).numpy())) for im in images.cpu()])
        return self.model(batch.to(self.device)).float().cpu()

    def correct(self, feats: torch.Tensor, src_names, tgt_names, src_pids: torch.Tensor) -> torch.Tensor:
        """(B,) bool: nearest gallery image (the pair's own two images excluded) has the source pid."""
        e = self.cfg.eval
        q, g = feats, self.g_feats
        if e.normalize_feature or e.dist_metric == "cosine":
            q, g = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(g, dim=1)
        dist = -q @ g.T if e.dist_metric == "cosine" else torch.cdist(q, g)
        for i, (s, t) in enumerate(zip(src_names, tgt_names)):
            for name in (s, t):
                j = self.g_pos.get(name)
                if j is not None:
                    dist[i, j] = math.inf
        return self.g_pids[dist.argmin(1)] == src_pids


# --------------------------------------------------------------------------- the configuration
@dataclass(frozen=True)
class EvaluationConfig:
    """``reid-aug evaluate-generator``'s options (``recipes/evaluate.yaml``; ``--set key=value``).

    dataset: market | toy | PATH (None: the one the run trained on). pairs: a ``from,to`` file (None: the
    dataset's ``*pairs-test.csv``, else seeded sampling). inception_weights: the TF-2015 Inception file (None: the
    torch hub cache; absent -> IS fields null with the reason). protocol: the SSIM protocol shown as ``ssim``
    (every protocol is recorded). stage: g1 | g2 (None: the last trained). reid_model: a ``benchmark`` Re-ID model
    for the identity-retrieval score. limit: the first N pairs. force: recompute a finished identical evaluation.
    annotations: the keypoints of the test pairs (target poses, masks): None = the ones the run trained with,
    ``dataset`` = the dataset's own, or a folder of annotation files (e.g. ``reid-aug annotate --out``). Keypoints
    other than the run's go to ``eval[-<stage>]-kp-<name>/``.
    """

    dataset: str | None = None
    pairs: str | None = None
    inception_weights: str | None = None
    protocol: str = "defgan"
    stage: str | None = None
    reid_model: str | None = None
    batch_size: int = 64
    limit: int | None = None
    device: str | None = None
    workers: int = 2
    force: bool = False
    annotations: str | None = None

    def __post_init__(self):
        problems = [("protocol", self.protocol in PROTOCOLS, f"expected one of {', '.join(PROTOCOLS)}"),
                    ("stage", self.stage in (None, "g1", "g2"), "expected g1 or g2"),
                    ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 1, "must be >= 1"),
                    ("limit", self.limit is None or (isinstance(self.limit, int) and self.limit >= 1),
                     "must be >= 1 (or left out: every pair)"),
                    ("workers", isinstance(self.workers, int) and self.workers >= 0, "must be >= 0")]
        for name, ok, what in problems:
            if not ok:
                raise ConfigError(f"evaluate-generator {name}={getattr(self, name)!r}: {what}")


def load_evaluation_config(recipe=None, overrides=(), flags: dict | None = None) -> EvaluationConfig:
    """``recipes/evaluate.yaml`` (or ``recipe``) + ``--set`` overrides + the CLI's flags (they win)."""
    from reid_aug.config import load_config

    extra = [f"{k}={json.dumps(str(v) if isinstance(v, Path) else v)}" for k, v in (flags or {}).items()
             if v is not None and v is not False]
    return load_config(EvaluationConfig, recipe or "evaluate", list(overrides) + extra)


# --------------------------------------------------------------------------- the evaluation
@dataclass
class _Job:
    """Everything one evaluation needs, resolved (and checked) before any work."""

    cfg: EvaluationConfig
    proto: object
    device: torch.device
    scorer: InceptionScorer
    gen: object
    stage: str
    index: object
    pairs: object
    pinfo: dict
    n_total: int
    pairs_sha: str
    retrieval: "_IdentityRetrieval | None"
    eval_dir: Path
    keypoints: dict


def _prepare(run_dir: Path, cfg: EvaluationConfig) -> _Job:
    from reid_aug.dataset.market import annotation_record, load_dataset
    from reid_aug.generator.inference import load_generator
    from reid_aug.pairs import test_pairs
    from reid_aug.rundir import GeneratorRun

    dev = resolve_device(cfg.device)
    # Fail on bad inputs before any work: weights file, generator, stage, dataset, pairs.
    scorer = InceptionScorer(cfg.inception_weights, device=dev, batch_size=cfg.batch_size)
    gen = load_generator(run_dir, device=dev)
    stage = cfg.stage or gen.stages[-1]
    if stage not in gen.stages:
        raise MetricsError(f"{gen.path} has no trained {stage!r} stage (trained: {', '.join(gen.stages)})")
    annotations, kp_tag = _annotations_of(cfg, gen)
    index = load_dataset(cfg.dataset if cfg.dataset is not None else _dataset_spec_of_run(run_dir, gen),
                         annotations_dir=annotations)
    pairs, pinfo = test_pairs(index, pairs_csv=cfg.pairs)
    n_total = len(pairs)
    if cfg.limit is not None:
        pairs = pairs.iloc[: int(cfg.limit)].reset_index(drop=True)
    if len(pairs) == 0:
        raise MetricsError(f"no test pairs to evaluate ({pinfo['source']})")
    retrieval = (_IdentityRetrieval(Path(cfg.reid_model), index, dev, cfg.batch_size)
                 if cfg.reid_model is not None else None)
    return _Job(cfg=cfg, proto=get_protocol(cfg.protocol), device=dev, scorer=scorer, gen=gen, stage=stage,
                index=index, pairs=pairs, pinfo=pinfo, n_total=n_total,
                pairs_sha=sha256_lines(f"{a},{b}" for a, b in zip(pairs["from"], pairs["to"])), retrieval=retrieval,
                eval_dir=GeneratorRun(run_dir).eval_dir(stage, gen.stages[-1], kp_tag).path,
                keypoints=annotation_record(index, annotations) or {"annotations": None})


def _annotations_of(cfg: EvaluationConfig, gen) -> tuple[str | None, str | None]:
    """``(folder to read keypoints from (None: the dataset's own), eval-folder tag (None: the run's keypoints))``."""
    trained = (getattr(gen, "dataset", None) or {}).get("annotations") if cfg.dataset is None else None
    if cfg.annotations is None:
        return trained, None
    wanted = None if cfg.annotations == "dataset" else str(Path(cfg.annotations).resolve())
    if wanted == trained:
        return wanted, None
    return wanted, "kp-dataset" if wanted is None else f"kp-{Path(wanted).name}"


def _score_batch(job: _Job, batch: dict, scorers: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """The per-pair columns of one batch (every row, both protocols, plain and masked) and its images."""
    dev = job.device
    # Families that read more than the target pose (e.g. source keypoints) find them among the conditions.
    conditions = {k: batch[k].to(dev) for k in ("src_pose", "src_kp", "tgt_kp") if k in batch}
    grow = job.gen.background_grow
    if grow is not None:    # a background-conditioned generator gets the target's own (see _background_note)
        from reid_aug.generator.defgan.background import background

        conditions["bg"] = background(batch["tgt_img"].to(dev), batch["tgt_kp"].to(dev), grow)
    fake = to_uint8(job.gen.generate(batch["src_img"].to(dev), batch["tgt_pose"].to(dev), stage=job.stage,
                                     **conditions))
    real = real_to_uint8(batch["tgt_img"].to(dev))
    src = real_to_uint8(batch["src_img"].to(dev))
    mask = batch["tgt_mask"].to(dev)
    masks = {name: mask for name in PROTOCOLS}
    # PG²'s score_mask.py masks both images with the mask its test step wrote to mask/: the SOURCE image's own
    # PG² pose mask (pose_mask_r4_0), not the target's (see the module docstring).
    masks["pg2"] = pose_masks(batch["src_kp"], tuple(real.shape[-2:]), style="pg2").to(dev)
    cols: dict[str, torch.Tensor] = {}
    for row, out in {"model": fake, "real_vs_real": real, "copy_source": src}.items():
        for name in PROTOCOLS:
            cols[f"{row}/ssim_{name}"] = ssim(out, real, name).cpu()
            cols[f"{row}/mask_ssim_{name}"] = ssim(out, real, name, mask=masks[name]).cpu()
        cols[f"{row}/l1"] = l1_pm1(out, real).cpu()
        scorers[f"{row}/plain"].add(out)
        scorers[f"{row}/mask"].add(out * mask.to(torch.uint8))
        if job.retrieval is not None:
            src_pids = torch.as_tensor([_pid(job.index, n) for n in batch["src_name"]])
            ok = job.retrieval.correct(job.retrieval.features(out), batch["src_name"], batch["tgt_name"], src_pids)
            cols[f"{row}/id_retrieval"] = ok.to(torch.float64)
    return cols, {"fake": fake, "real": real, "src": src}


def _run_pairs(job: _Job, scorers: dict, partial_file: Path) -> tuple[dict[str, torch.Tensor], dict | None, float]:
    """The batched pass over the pairs, resumable from ``partial_file``: ``(per-pair columns, samples, seconds)``."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from reid_aug.pairs import PosePairDataset

    per_pair: dict[str, list[torch.Tensor]] = {}
    done_batches, samples = 0, None
    if partial_file.is_file():
        state = torch.load(partial_file, map_location="cpu", weights_only=True)
        done_batches, samples = int(state["batches"]), state.get("samples")
        per_pair = {k: [v] for k, v in state["per_pair"].items()}
        for name, logits in state["logits"].items():
            scorers[name].load_logits(logits)
        log.info("resuming the evaluation from %s (%d batches done)", partial_file, done_batches)
    bs = job.cfg.batch_size
    data = PosePairDataset(job.index, job.pairs, flip=False, pose_mode=job.gen.pose_mode, size=job.gen.image_size)
    n_batches = math.ceil(len(data) / bs)
    subset = torch.utils.data.Subset(data, range(done_batches * bs, len(data)))
    loader = DataLoader(subset, batch_size=bs, shuffle=False, num_workers=job.cfg.workers,
                        pin_memory=job.device.type == "cuda")
    t0 = last_save = time.monotonic()
    bar = tqdm(loader, total=n_batches, initial=done_batches, desc=f"evaluate {job.stage}", unit="batch", disable=None)
    for b_idx, batch in enumerate(bar, start=done_batches):
        # Metrics run where the generator runs (float64 SSIM on CUDA, float32 + float64 re-checks on CPU).
        cols, images = _score_batch(job, batch, scorers)
        for k, v in cols.items():
            per_pair.setdefault(k, []).append(v)
        if samples is None:
            k = min(N_SAMPLES, images["fake"].shape[0])
            samples = {"src": images["src"][:k].cpu(), "pose": _pose_image(batch["tgt_pose"][:k].float(),
                                                                         job.gen.pose_mode),
                       "gen": images["fake"][:k].cpu(), "tgt": images["real"][:k].cpu()}
        bar.set_postfix(ssim=f"{torch.cat(per_pair[f'model/ssim_{job.proto.name}']).mean():.4f}")
        if ((b_idx + 1) % RESUME_EVERY == 0 and b_idx + 1 < n_batches
                and time.monotonic() - last_save >= RESUME_MIN_SECONDS):
            last_save = time.monotonic()
            atomic_torch_save({"batches": b_idx + 1, "per_pair": {k: torch.cat(v) for k, v in per_pair.items()},
                               "logits": {n: s.logits() for n, s in scorers.items()}, "samples": samples},
                              partial_file)
    bar.close()
    return {k: torch.cat(v) for k, v in per_pair.items()}, samples, time.monotonic() - t0


def _background_note(gen) -> dict:
    """For a background-conditioned generator: where its background came from (it sees the target's pixels
    outside the person, so its scores do not compare with a generator's that does not)."""
    grow = gen.background_grow
    if grow is None:
        return {}
    return {"background": f"the target image with its person cut out (pose mask grown {grow} px), as the "
                          f"official PRW protocol; not comparable with scores of generators without a background"}


def _records(job: _Job, per_pair: dict[str, torch.Tensor], scorers: dict, seconds: float) -> list[dict]:
    """One record per row: the means, IS / mask-IS, identity retrieval, and the provenance."""
    gen, proto, n = job.gen, job.proto, int(len(job.pairs))
    common = {
        "stage": job.stage, "protocol": proto.name, "ssim_reference": proto.reference, "n_pairs": n,
        "n_pairs_total": int(job.n_total), "pairs_source": job.pinfo["source"], "pairs_seed": job.pinfo.get("seed"),
        "pairs_sha256": job.pairs_sha, "pairs_file_sha256": job.pinfo["sha256"], "limit": job.cfg.limit,
        "checkpoint": str(gen.path), "checkpoint_sha256": gen.sha256, "checkpoint_step": int(gen.step),
        "dataset": str(job.index.image_root), "image_size": list(gen.image_size), "uint8_conversion": UINT8_CONVERSION,
        "inception_weights": str(job.scorer.weights_path) if job.scorer.weights_path else None,
        "reid_model": job.retrieval.path if job.retrieval else None,
        "reid_model_sha256": job.retrieval.sha256 if job.retrieval else None,
        "device": str(job.device), "seconds": round(seconds, 1), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **job.keypoints, **_background_note(gen),
    }
    records = []
    for row in ROWS:
        mean = {k.split("/", 1)[1]: float(v.mean()) for k, v in per_pair.items() if k.startswith(row + "/")}
        records.append({
            "row": row, "description": ROW_DESCRIPTIONS[row],
            "ssim": mean[f"ssim_{proto.name}"], "mask_ssim": mean[f"mask_ssim_{proto.name}"],
            "is": scorers[f"{row}/plain"].score(), "mask_is": scorers[f"{row}/mask"].score(),
            "ssim_by_protocol": {p: mean[f"ssim_{p}"] for p in PROTOCOLS},
            "mask_ssim_by_protocol": {p: mean[f"mask_ssim_{p}"] for p in PROTOCOLS},
            "l1": mean["l1"],
            "id_retrieval": ({"mean": mean["id_retrieval"], "n": n} if job.retrieval else
                             {"mean": None, "reason": "n/a (no Re-ID model: pass --reid-model)"}),
            **common,
        })
    return records


def evaluate_generator(run_dir, cfg: EvaluationConfig | None = None, **options) -> list[dict]:
    """Evaluate the generator of ``run_dir`` on the test pairs; write the records; return them.

    ``cfg``: an :class:`EvaluationConfig` (or its fields as keyword ``options``). Records go to ``run_dir/eval/``
    for the last trained stage (what ``synthesize`` uses by default, and what ``benchmark`` and the demo read) and
    to ``run_dir/eval-<stage>/`` for an earlier stage, so that evaluating G1 of a two-stage run never overwrites
    the G2 records. Returns one record per row (``model``, ``real_vs_real``, ``copy_source``).
    """
    if cfg is None:
        cfg = EvaluationConfig(**{k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()})
    elif options:
        cfg = dataclasses.replace(cfg, **options)
    run_dir = Path(run_dir)
    job = _prepare(run_dir, cfg)
    if not cfg.force:
        done = _finished_records(job.eval_dir, job.gen.sha256, job.stage, job.pairs_sha, job.proto.name,
                                 job.scorer.weights_path, job.retrieval.sha256 if job.retrieval else None,
                                 job.keypoints)
        if done is not None:
            log.info("%s already holds this evaluation (checkpoint step %d, stage %s, %d pairs, protocol %s): "
                     "reusing it; --force recomputes", job.eval_dir / "metrics.json", job.gen.step, job.stage,
                     len(job.pairs), job.proto.name)
            return done
    key = sha256_lines([job.gen.sha256, job.stage, job.pairs_sha, str(cfg.batch_size), str(job.scorer.weights_path),
                        str(cfg.reid_model), json.dumps(job.keypoints, sort_keys=True)])[:16]
    partial_file = job.eval_dir / f"partial-{key}.pt"
    scorers = {f"{row}/{kind}": job.scorer.fork() for row in ROWS for kind in ("plain", "mask")}
    per_pair, samples, seconds = _run_pairs(job, scorers, partial_file)
    records = _records(job, per_pair, scorers, seconds)
    _write_outputs(job.eval_dir, records, job.gen, per_pair, job.pairs, samples, job.proto.name, job.stage)
    if partial_file.is_file():
        partial_file.unlink()
    return records


def eval_dir_of(run_dir: str | Path, stage: str, trained_stages) -> Path:
    """``RUN/eval`` for the last trained stage, ``RUN/eval-<stage>`` for an earlier one (:mod:`reid_aug.rundir`)."""
    from reid_aug.rundir import GeneratorRun

    return GeneratorRun(run_dir).eval_dir(stage, tuple(trained_stages)[-1]).path


def _finished_records(eval_dir: Path, ckpt_sha: str, stage: str, pairs_sha: str, protocol: str,
                      inception_weights, reid_sha, keypoints: dict) -> list[dict] | None:
    """The records of a finished evaluation with exactly these inputs in ``eval_dir/metrics.json``, else None."""
    path = EvalDir(eval_dir).metrics_json
    if not path.is_file():
        return None
    try:
        records = EvaluationRecord.read(path).records
    except RecordError:
        log.warning("%s is unreadable: evaluating again", path)
        return None
    weights = str(inception_weights) if inception_weights else None
    found = [r for r in records if isinstance(r, dict)
             and r.get("checkpoint_sha256") == ckpt_sha and r.get("stage") == stage
             and r.get("pairs_sha256") == pairs_sha and r.get("protocol") == protocol
             and r.get("inception_weights") == weights and r.get("reid_model_sha256") == reid_sha
             and all(r.get(k) == v for k, v in keypoints.items())]
    if {r.get("row") for r in found} != set(ROWS):
        return None
    return sorted(found, key=lambda r: ROWS.index(r["row"]))


def _pid(index, name: str) -> int:
    lookup = index.__dict__.get("_eval_pids")
    if lookup is None:
        lookup = dict(zip(index.table["name"], index.table["pid"].astype(int)))
        index.__dict__["_eval_pids"] = lookup
    return int(lookup[name])


# --------------------------------------------------------------------------- outputs
def _csv_row(rec: dict) -> dict:
    def num(v):
        return "" if v is None else v

    notes = [r for r in (rec["is"].get("reason"), rec["id_retrieval"].get("reason")) if r]
    return {
        "row": rec["row"], "stage": rec["stage"], "protocol": rec["protocol"], "ssim": rec["ssim"],
        "mask_ssim": rec["mask_ssim"], "ssim_defgan": rec["ssim_by_protocol"]["defgan"],
        "ssim_pg2": rec["ssim_by_protocol"]["pg2"], "mask_ssim_defgan": rec["mask_ssim_by_protocol"]["defgan"],
        "mask_ssim_pg2": rec["mask_ssim_by_protocol"]["pg2"], "is_mean": num(rec["is"]["mean"]),
        "is_std": num(rec["is"].get("std")), "mask_is_mean": num(rec["mask_is"]["mean"]),
        "mask_is_std": num(rec["mask_is"].get("std")), "l1": rec["l1"], "id_retrieval": num(rec["id_retrieval"]["mean"]),
        "n_pairs": rec["n_pairs"], "pairs_source": rec["pairs_source"], "pairs_sha256": rec["pairs_sha256"],
        "checkpoint_sha256": rec["checkpoint_sha256"], "checkpoint_step": rec["checkpoint_step"],
        "notes": "; ".join(notes),
    }


def _write_outputs(eval_dir: Path, records: list[dict], gen, per_pair: dict, pairs, samples: dict | None,
                   protocol: str, stage: str) -> None:
    import pandas as pd

    eval_dir.mkdir(parents=True, exist_ok=True)
    json_file = EvalDir(eval_dir).metrics_json
    old: list[dict] = []
    if json_file.is_file():
        try:
            old = EvaluationRecord.read(json_file).records
        except RecordError:
            log.warning("%s is unreadable; it is replaced", json_file)
    # Keep earlier evaluations of other stages/protocols (ablation rows); this one replaces its own.
    kept = [r for r in old if not (r.get("stage") == stage and r.get("protocol") == protocol)]
    all_records = records + kept
    default_stage = gen.stages[-1]
    # The run's headline (default stage, defgan) comes first: readers take the first "ssim" they find.
    all_records.sort(key=lambda r: (r.get("stage") != default_stage, r.get("protocol") != "defgan"))
    doc = {"what": "reid-aug evaluate-generator records", "headline": {"stage": default_stage, "protocol": "defgan"},
           "records": all_records}
    EvaluationRecord(headline=doc["headline"], records=all_records, what=doc["what"]).write(json_file)
    table = pd.DataFrame([_csv_row(r) for r in all_records], columns=list(CSV_COLUMNS))
    atomic_write_text(eval_dir / "metrics.csv", table.to_csv(index=False))
    pp = pd.DataFrame({"from": pairs["from"], "to": pairs["to"]})
    for k, v in per_pair.items():
        if k.startswith("model/"):
            pp[k.split("/", 1)[1]] = v.numpy()
    with atomic_path(eval_dir / "per_pair.csv") as tmp:
        pp.to_csv(tmp, index=False, float_format="%.6f")
    if samples is not None:   # rows: source | target pose | generated | target
        save_png(image_grid([samples["src"], samples["pose"], samples["gen"], samples["tgt"]]), eval_dir / "samples.png")


def format_records(records: list[dict]) -> str:
    """A text table of the records (for the CLI)."""
    def f(v, digits=4):
        if v is None:
            return "n/a"
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    def is_text(d):
        return "n/a" if d["mean"] is None else f"{d['mean']:.3f}±{d['std']:.3f}"

    if not records:
        return "no records"
    r0 = records[0]
    lines = [f"stage {r0['stage']}  protocol {r0['protocol']}  {r0['n_pairs']} pairs ({r0['pairs_source']}, "
             f"sha256 {r0['pairs_sha256'][:12]})  checkpoint {r0['checkpoint_sha256'][:12]} step {r0['checkpoint_step']}",
             f"{'row':<14}{'SSIM':>8}{'mask-SSIM':>11}{'SSIM(other)':>13}{'IS':>14}{'mask-IS':>14}{'L1':>8}{'id-ret':>8}"]
    other = "pg2" if r0["protocol"] != "pg2" else "defgan"     # the other family of published calls
    for r in records:
        lines.append(f"{r['row']:<14}{f(r['ssim']):>8}{f(r['mask_ssim']):>11}"
                     f"{f(r['ssim_by_protocol'][other]):>13}{is_text(r['is']):>14}{is_text(r['mask_is']):>14}"
                     f"{f(r['l1']):>8}{f(r['id_retrieval']['mean'], 3):>8}")
    reasons = sorted({d.get("reason") for r in records for d in (r["is"], r["id_retrieval"]) if d.get("reason")})
    lines += [f"note: {x}" for x in reasons]
    lines.append(f"SSIM(other) = {other} protocol; uint8: {UINT8_CONVERSION}")
    return "\n".join(lines)
