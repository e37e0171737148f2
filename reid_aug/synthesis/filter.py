"""Keep the generated images a Re-ID model places near their own identity (``--filter``, ``reid-aug filter``).

    summary = filter_set("runs/pg2-market/synthesized-10", FilterConfig(model="OUT/models/baseline_seed0.pt"))

Scores (:func:`identity_scores`)
    Features of the Re-ID model (torchreid test transform, :func:`reid_aug.reid.models.extract_features`)
    are L2-normalised. Each training identity's centroid is the normalised mean of its real (kept)
    images' features. A generated image's ``cosine`` is its cosine similarity to its own identity's
    centroid; its ``rank`` is 1 + the number of identity centroids strictly more similar to it
    (1 = its own identity is the nearest).

Rules
    ``top-k``: keep the images with ``rank <= k``; ``threshold``: keep those with ``cosine >= threshold``.

Records (the set stays whole: nothing is deleted)
    ``SET/scores.csv``: ``file, pid, rank, cosine`` for every image; ``SET/manifest.csv`` gets a
    ``kept`` column (1/0); the descriptor's ``info.filter`` holds the rule, its parameter, the model
    (path, sha256, training subset), the counts and the kept fraction. A reader takes the rows with
    ``kept == 1`` as the augmented set. Scores are reused when the model (sha256) and the images are
    the same, so trying another rule costs no feature extraction.

Leak check
    The model must have been trained only on real images the set's regime keeps (the benchmark saves
    ``data.train_per_id`` and ``data.subsample_seed`` with the model), and on this dataset's
    identities (its ``pid2label``): otherwise one :class:`~reid_aug.errors.SynthesisError` line.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from reid_aug.errors import SynthesisError
from reid_aug.records import SynthesisDescriptor, read_csv
from reid_aug.rundir import SynthesizedSet
from reid_aug.synthesis.config import FILTER_RULES, FilterConfig

log = logging.getLogger(__name__)

SCORE_COLUMNS = ("file", "pid", "rank", "cosine")


def identity_scores(gen_feats, gen_pids, real_feats, real_pids) -> tuple[np.ndarray, np.ndarray]:
    """``(rank, cosine)`` of every generated image (see the module docstring).

    gen_feats: (N, D), gen_pids: (N,), real_feats: (M, D), real_pids: (M,). Returns (N,) int64 ranks
    (1 = own identity nearest) and (N,) float64 cosines to the own centroid. Raises ``SynthesisError``
    for a generated identity without real images."""
    g = _normalize(np.asarray(gen_feats, dtype=np.float64))
    r = _normalize(np.asarray(real_feats, dtype=np.float64))
    real_pids, gen_pids = np.asarray(real_pids, dtype=np.int64), np.asarray(gen_pids, dtype=np.int64)
    pids, inverse = np.unique(real_pids, return_inverse=True)
    centroids = np.zeros((len(pids), r.shape[1]))
    np.add.at(centroids, inverse, r)
    centroids = _normalize(centroids)
    col = np.searchsorted(pids, gen_pids)
    missing = (col >= len(pids)) | (pids[np.minimum(col, len(pids) - 1)] != gen_pids)
    if missing.any():
        raise SynthesisError(f"identity {int(gen_pids[missing][0])} of the generated images has no real training "
                             f"image to compare with")
    sims = g @ centroids.T                                               # (N, P)
    own = sims[np.arange(len(g)), col]
    rank = 1 + (sims > own[:, None]).sum(axis=1)
    return rank.astype(np.int64), own


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def keep_mask(scores: pd.DataFrame, rule: str, k: int = 1, threshold: float = 0.5) -> np.ndarray:
    """(N,) bool: the images ``rule`` keeps (``top-k``: rank <= k; ``threshold``: cosine >= threshold)."""
    if rule == "top-k":
        return scores["rank"].to_numpy() <= int(k)
    if rule == "threshold":
        return scores["cosine"].to_numpy() >= float(threshold)
    raise SynthesisError(f"filter rule {rule!r}: expected one of {', '.join(FILTER_RULES)}")


def _rule_record(cfg: FilterConfig) -> dict:
    return {"rule": cfg.rule, **({"k": int(cfg.k)} if cfg.rule == "top-k" else {"threshold": float(cfg.threshold)})}


def check_model_regime(meta: dict, model_cfg, index, subset) -> dict:
    """The Re-ID model's training subset and identities against the set's regime; its record.

    ``meta``: the model file's extra fields (``pid2label``, ``variant``); ``subset``: ``(per_id, seed)``
    of the set or None. Raises :class:`SynthesisError` for a model that saw dropped images or other
    identities."""
    from reid_aug.dataset.regime import kept_train, saw_only
    from reid_aug.synthesis.lineage import describe_subset

    d = model_cfg.data
    theirs = (int(d.train_per_id or 0), int(d.subsample_seed or 0))
    leaked = saw_only(index, theirs, subset or (0, 0))
    if leaked:
        raise SynthesisError(f"the Re-ID model was trained on {describe_subset(theirs)}, but the set's real images "
                             f"are {describe_subset(subset)}: it saw {len(leaked)} image(s) the regime drops (e.g. "
                             f"{leaked[0]}); filter with a model trained with --set data.train_per_id="
                             f"{(subset or (0, 0))[0]} --set data.subsample_seed={(subset or (0, 0))[1]}")
    pids = {str(int(p)) for p in kept_train(index, *theirs)["pid"].unique()}
    model_pids = set((meta.get("pid2label") or {}).keys())
    if model_pids and model_pids != pids:
        raise SynthesisError(f"the Re-ID model was trained on {len(model_pids)} identities that are not the "
                             f"{len(pids)} training identities of {index.image_root} (another dataset?)")
    if meta.get("variant") not in (None, "baseline"):
        log.warning("the filter's Re-ID model is a %r run: it was trained on generated images too, not only on "
                    "the real ones", meta.get("variant"))
    return {"train_per_id": theirs[0], "seed": theirs[1], "variant": meta.get("variant")}


def _load_model(path: Path, device):
    """``(model, cfg, meta)`` of a benchmark Re-ID model file."""
    from reid_aug.reid.models import load_reid_model
    from reid_aug.runtime import load_torch_file

    model, mcfg = load_reid_model(path, device)
    ck = load_torch_file(path, "a Re-ID model", "it is written by `reid-aug benchmark` as OUT/models/*.pt")
    meta = {k: ck.get(k) for k in ("pid2label", "variant", "seed")} if isinstance(ck, dict) else {}
    return model, mcfg, meta


def check_filter_model(path: str | Path, index, subset) -> dict:
    """Before any image is generated: refuse a ``--filter`` model that saw dropped images or other identities."""
    _, mcfg, meta = _load_model(Path(path), "cpu")
    return check_model_regime(meta, mcfg, index, subset)


def _score(sset: SynthesizedSet, manifest: pd.DataFrame, real: pd.DataFrame, model, mcfg, cfg: FilterConfig,
           device) -> pd.DataFrame:
    """Extract features of the real (kept) and the generated images; their scores in manifest order."""
    from reid_aug.reid.models import extract_features

    h, w = mcfg.data.height, mcfg.data.width
    rf = extract_features(model, real["path"].tolist(), h, w, cfg.batch_size, desc="real features", device=device)
    gf = extract_features(model, [sset.images / f for f in manifest["file"]], h, w, cfg.batch_size,
                          desc="generated features", device=device)
    rank, cos = identity_scores(gf.numpy(), manifest["pid"].to_numpy(), rf.numpy(), real["pid"].to_numpy())
    return pd.DataFrame({"file": manifest["file"].to_numpy(), "pid": manifest["pid"].to_numpy(), "rank": rank,
                         "cosine": np.round(cos, 6)})


def read_scores(sset: SynthesizedSet) -> pd.DataFrame:
    return read_csv(sset.scores, "filter scores (scores.csv)", required=SCORE_COLUMNS, dtype={"file": str})


def _reusable_scores(sset: SynthesizedSet, desc: SynthesisDescriptor, sha: str, manifest: pd.DataFrame):
    """The scores on disk when they are this model's for exactly these images, else None."""
    old = desc.info.get("filter") or {}
    if old.get("model_sha256") != sha or not sset.scores.is_file():
        return None
    scores = read_scores(sset)
    if scores["file"].tolist() != manifest["file"].tolist():
        return None
    log.info("reusing %s (same Re-ID model, same images)", sset.scores)
    return scores


def apply_filter(manifest: pd.DataFrame, scores: pd.DataFrame, record: dict) -> pd.DataFrame:
    """The manifest with its ``kept`` column (1/0) from ``scores`` and the recorded rule."""
    if scores["file"].tolist() != manifest["file"].tolist():
        raise SynthesisError("scores.csv does not list the manifest's images in order; run the filter again")
    out = manifest.drop(columns=["kept"], errors="ignore").copy()
    out["kept"] = keep_mask(scores, record["rule"], record.get("k", 1), record.get("threshold", 0.5)).astype(int)
    return out


def filter_set(set_dir: str | Path, cfg: FilterConfig, device=None) -> dict:
    """Score every image of a complete synthesized set, mark the kept ones; returns the ``info.filter`` record."""
    from reid_aug.dataset.market import load_dataset
    from reid_aug.dataset.regime import kept_train
    from reid_aug.runtime import resolve_device
    from reid_aug.synthesis.folder import read_descriptor, read_manifest, write_manifest
    from reid_aug.utils.io import atomic_write_text, sha256_file

    sset = SynthesizedSet(set_dir)
    desc = read_descriptor(sset.path)
    if desc is None or not sset.manifest.is_file():
        raise SynthesisError(f"{sset.path} is not a finished synthesized set (no {sset.descriptor.name} or "
                             f"{sset.manifest.name}); finish `reid-aug synthesize` first")
    if cfg.model is None:
        raise SynthesisError("no Re-ID model to filter with: pass --reid-model MODEL (or synthesize --filter MODEL)")
    device = resolve_device(device)
    manifest = read_manifest(sset.manifest)
    index = load_dataset(desc.info.get("dataset_root") or desc.dataset)
    sub = desc.run.get("subset")
    subset = (int(sub["train_per_id"]), int(sub["seed"])) if sub else None
    model, mcfg, meta = _load_model(Path(cfg.model), device)
    model_record = check_model_regime(meta, mcfg, index, subset)
    sha = sha256_file(cfg.model)
    scores = _reusable_scores(sset, desc, sha, manifest)
    if scores is None:
        scores = _score(sset, manifest, kept_train(index, *(subset or (0, 0))), model, mcfg, cfg, device)
        atomic_write_text(sset.scores, scores.to_csv(index=False))
    record = {**_rule_record(cfg), "model": str(cfg.model), "model_sha256": sha, "model_subset": model_record,
              "scores_sha256": sha256_file(sset.scores)}
    filtered = apply_filter(manifest, scores, record)
    n_kept = int(filtered["kept"].sum())
    # identities that keep at least one image: a strict rule can leave most identities without generated images
    record.update(n_images=int(len(filtered)), n_kept=n_kept,
                  kept_fraction=round(n_kept / max(1, len(filtered)), 6),
                  n_identities=int(filtered["pid"].nunique()),
                  n_identities_kept=int(filtered.loc[filtered["kept"] == 1, "pid"].nunique()))
    write_manifest(filtered, sset.manifest)
    SynthesisDescriptor(run=desc.run, layout=desc.layout, info={**desc.info, "filter": record}).write(sset.descriptor)
    log.info("filter (%s): %s -> %s", ", ".join(f"{k}={v}" for k, v in _rule_record(cfg).items()),
             describe_filter(record), sset.manifest)
    return record


def describe_filter(record: dict) -> str:
    """``"1514 of 7470 images kept (20.3 %), 416 of 747 identities keep at least one"`` of a filter record (the
    identity counts are left out for a record written before they were)."""
    text = f"{record['n_kept']} of {record['n_images']} images kept ({100 * record['kept_fraction']:.1f} %)"
    if "n_identities" in record:
        text += f", {record['n_identities_kept']} of {record['n_identities']} identities keep at least one"
    return text


def reapply_recorded_filter(sset: SynthesizedSet, manifest: pd.DataFrame, desc: SynthesisDescriptor | None):
    """After a manifest was rewritten (a resumed run): put back the ``kept`` column of a recorded filter."""
    from reid_aug.synthesis.folder import write_manifest

    record = (desc.info.get("filter") if desc is not None else None) or None
    if record is None or not sset.scores.is_file():
        return manifest
    filtered = apply_filter(manifest, read_scores(sset), record)
    write_manifest(filtered, sset.manifest)
    return filtered
