"""``reid-aug prepare``: index a dataset, write the index table and a summary, report what is missing."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from reid_aug.dataset.market import SPLITS, load_dataset, resolve_dataset_root
from reid_aug.utils.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

N_EXAMPLES = 5


def _split_stats(rows) -> dict:
    normal = rows[rows["kind"] == "normal"]
    n = len(rows)
    return {
        "images": int(n),
        "identities": int(normal["pid"].nunique()),
        "cameras": int(rows["camid"].nunique()),
        "camera_ids": sorted(int(c) for c in rows["camid"].unique()),
        "junk": int((rows["kind"] == "junk").sum()),
        "distractors": int((rows["kind"] == "distractor").sum()),
        "with_keypoints": int(rows["has_pose"].sum()),
        "keypoint_coverage": float(rows["has_pose"].mean()) if n else 0.0,
        "pose_ok": int(rows["pose_ok"].sum()),
        "missing_annotation": int((~rows["has_pose"]).sum()),
    }


def prepare_dataset(root_or_spec: str | os.PathLike, work_dir: str | os.PathLike,
                    check_images: bool = False) -> dict:
    """Index ``root_or_spec`` (``market``, ``toy`` or a folder) and write into ``work_dir``:

    - ``index.csv``: the :class:`DatasetIndex` table (one row per image);
    - ``summary.json``: the returned summary (per-split images/identities/cameras, keypoint
      coverage, images without an annotation row (count + examples), train/test pair counts).

    Both are written atomically. With ``check_images`` every image is decoded once first.
    """
    from reid_aug.pairs.pairs import test_pairs, train_pair_pool, train_pairs

    root = resolve_dataset_root(root_or_spec)
    index = load_dataset(root, check_images=check_images)
    table = index.table
    work_dir = Path(work_dir)

    missing = index.missing_pose
    image_names = set(table["name"])
    orphan_rows = sorted(set(index.keypoints) - image_names)
    pairs = train_pairs(index)
    pool = train_pair_pool(index)
    summary: dict = {
        "dataset": str(root_or_spec),
        "root": str(index.root),
        "image_root": str(index.image_root),
        "annotation_files": [str(p) for p in index.annotation_files],
        "checked_images": bool(check_images),
        "splits": {s: _split_stats(index.split(s)) for s in SPLITS},
        "missing_annotation": {
            "count": int(len(missing)),
            "by_split": {s: int((missing["split"] == s).sum()) for s in SPLITS},
            "examples": [f"{r.split}/{r.name}" for r in missing.head(N_EXAMPLES).itertuples()],
        },
        "annotation_rows_without_image": {"count": len(orphan_rows), "examples": orphan_rows[:N_EXAMPLES]},
        "train_pairs": {"pairs": int(len(pairs)), "images": int(len(pool)), "identities": int(pool["pid"].nunique())},
    }
    try:
        _, info = test_pairs(index)
        summary["test_pairs"] = info
    except Exception as e:  # noqa: BLE001 - a dataset without test pairs is still indexable
        from reid_aug.errors import ReidAugError

        if not isinstance(e, ReidAugError):
            raise
        summary["test_pairs"] = {"source": None, "n": 0, "reason": str(e)}

    _report_missing_annotations(table, missing)
    with atomic_path(work_dir / "index.csv") as tmp:
        table.to_csv(tmp, index=False)
    atomic_write_text(work_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    summary["work_dir"] = str(work_dir)
    return summary


def _report_missing_annotations(table, missing) -> None:
    """Warn about images without an annotation row, except the normal case: Market's pose-transfer
    annotation files cover bounding_box_train and bounding_box_test, never the query images."""
    n_query = int((table["split"] == "query").sum())
    query_missing = missing[missing["split"] == "query"]
    if n_query and len(query_missing) == n_query:
        log.info("the annotation files do not cover the %d query images (as in Market-1501's); query images are "
                 "only used for Re-ID evaluation, which needs no poses", n_query)
        missing = missing[missing["split"] != "query"]
    if len(missing):
        by = ", ".join(f"{s} {n}" for s, n in missing["split"].value_counts().sort_index().items())
        log.warning("%d image(s) have no annotation row (%s; e.g. %s): they get an all-missing pose, so they are "
                    "never a training pair or a synthesis source; annotate them with `reid-aug annotate` or check "
                    "that the annotation files belong to this dataset", len(missing), by,
                    ", ".join(f"{r.split}/{r.name}" for r in missing.head(3).itertuples()))


def format_summary(summary: dict) -> str:
    """A human-readable table of a :func:`prepare_dataset` summary."""
    lines = [f"dataset {summary['dataset']}: {summary['image_root']}"]
    head = f"{'split':<8} {'images':>7} {'ids':>5} {'cams':>4} {'junk':>5} {'distr':>5} {'keypoints':>15} {'pose ok':>8}"
    lines += [head, "-" * len(head)]
    for split, s in summary["splits"].items():
        cov = f"{s['with_keypoints']} ({100 * s['keypoint_coverage']:.1f}%)"
        lines.append(f"{split:<8} {s['images']:>7} {s['identities']:>5} {s['cameras']:>4} {s['junk']:>5} "
                     f"{s['distractors']:>5} {cov:>15} {s['pose_ok']:>8}")
    miss = summary["missing_annotation"]
    if miss["count"]:
        by = ", ".join(f"{k} {v}" for k, v in miss["by_split"].items() if v)
        lines.append(f"images without an annotation row: {miss['count']} ({by}), e.g. {', '.join(miss['examples'])}")
    else:
        lines.append("images without an annotation row: 0")
    orphan = summary["annotation_rows_without_image"]
    if orphan["count"]:
        lines.append(f"annotation rows without an image: {orphan['count']}, e.g. {', '.join(orphan['examples'])}")
    tp = summary["train_pairs"]
    lines.append(f"train pairs: {tp['pairs']} over {tp['images']} images of {tp['identities']} identities "
                 f"(both shoulders and hips annotated)")
    test = summary.get("test_pairs", {})
    if test.get("n"):
        lines.append(f"test pairs: {test['n']} from {test['source']} (seed {test['seed']}, sha256 {test['sha256'][:12]})")
    else:
        lines.append(f"test pairs: none ({test.get('reason', 'n/a')})")
    if summary.get("checked_images"):
        lines.append("all images decode")
    if summary.get("work_dir"):
        lines.append(f"index: {Path(summary['work_dir']) / 'index.csv'}, summary: {Path(summary['work_dir']) / 'summary.json'}")
    return "\n".join(lines)
