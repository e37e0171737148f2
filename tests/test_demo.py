"""`reid-aug demo --quick` end to end: a report whose numbers are in range and whose pictures exist."""
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli import main


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    return out


def test_report_pictures_exist_and_are_images(demo_dir):
    html = (demo_dir / "report.html").read_text()
    md = (demo_dir / "report.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(pictures) == 4, md
    for rel in pictures:
        assert f'src="{rel}"' in html
        with Image.open(demo_dir / rel) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))
        assert arr.shape[0] > 50 and arr.shape[1] > 50
        assert arr.std() > 5, f"{rel} is blank"
    # The result comes first (issue 18): the first sentence, then the tables, then the pictures.
    first = md.splitlines()[2]
    assert first.startswith("Augmentation changed rank-1 by ") and "one seed: an anecdote" in first
    assert "SSIM" in first and "copying the source" in first
    assert md.index("| delta |") < md.index("figures/") and "± –" not in md


def test_report_numbers_lie_in_valid_ranges(demo_dir):
    results = json.loads((demo_dir / "benchmark" / "results.json").read_text())
    runs = results["runs"]
    assert {"baseline_seed0", "augmented_seed0"} <= set(runs)
    for run in runs.values():
        for key in ("rank1", "rank5", "mAP"):
            assert 0.0 <= run[key] <= 1.0
        assert run["rank1"] <= run["rank5"]
    assert runs["augmented_seed0"]["n_train_synthesized"] > 0
    assert runs["baseline_seed0"]["n_train_synthesized"] == 0

    records = {r["row"]: r for r in json.loads((demo_dir / "generator" / "eval" / "metrics.json").read_text())["records"]
               if r["protocol"] == "defgan"}
    assert records["real_vs_real"]["ssim"] == pytest.approx(1.0)
    for row in ("model", "copy_source"):
        assert -1.0 <= records[row]["ssim"] <= 1.0
        assert 0.0 <= records[row]["mask_ssim"] <= 1.0
    # Without Inception weights IS is null with its reason, never a made-up number.
    assert records["model"]["is"]["mean"] is None and "inception" in records["model"]["is"]["reason"].lower()

    md = (demo_dir / "report.md").read_text()
    assert "| baseline |" in md and "| augmented |" in md and "| delta |" in md
    assert f"{100 * runs['baseline_seed0']['rank1']:.1f}" in md
    # the demo mixes per batch with the own baseline as teacher; the report must say so and give the step count
    # both took, and the augmented run must have learned from that baseline's file
    steps = runs["augmented_seed0"]["training_plan"]["total_iters"]
    assert runs["baseline_seed0"]["training_plan"]["total_iters"] == steps
    assert f"batch mixing: both variants take the same {steps} optimizer steps over the same real batches" in md
    assert runs["augmented_seed0"]["teacher"] == runs["baseline_seed0"]["model_path"]


def test_synthesized_set_matches_manifest(demo_dir):
    from reid_aug.synthesis.synthesize import verify_synthesis

    report = verify_synthesis(demo_dir / "synthesized")
    assert report.ok, report.summary()


def test_demo_rerun_resumes_without_retraining(demo_dir):
    ckpt = demo_dir / "generator" / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    first = json.loads((demo_dir / "demo.json").read_text())["timings_s"]
    # the steps with a record of their own are timed by it: the log's wall time, the evaluation's seconds,
    # the Re-ID runs' train + eval time
    results = json.loads((demo_dir / "benchmark" / "results.json").read_text())["runs"].values()
    assert first["re-id benchmark"] == {"seconds": round(sum(r["train_s"] + r["eval_s"] for r in results), 1),
                                        "source": "benchmark/results.json"}
    assert first["generator training"]["source"] == "generator/log.csv"
    assert first["synthesis"]["source"] == "this run"
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(demo_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert ckpt.stat().st_mtime_ns == before
    timings = json.loads((demo_dir / "demo.json").read_text())["timings_s"]
    # a re-run skips the finished steps and keeps their times (not "Total 0.0 min")
    for name in ("generator training", "generator evaluation", "re-id benchmark"):
        assert timings[name] == first[name]
    assert timings["synthesis"] == {**first["synthesis"], "source": "earlier run"}
    assert timings["generator training"]["seconds"] > 1
    md = (demo_dir / "report.md").read_text()
    assert "(earlier run)" in md and "(from generator/log.csv)" in md and "total 0.0 min" not in md


def test_bad_demo_option_stops_before_any_work_in_the_users_words(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path / "d"), "--set", "poses_per_id=0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error: --set poses_per_id=0: must be >= 1" in result.output
    assert not (tmp_path / "d").exists()
    result = CliRunner().invoke(main, ["demo", "--quick", "--out", str(tmp_path / "d"),
                                       "--set", "reid_set.train.epochs=0"])
    assert result.exit_code == 2 and "train.epochs" in result.output and not (tmp_path / "d").exists()


def test_report_says_one_seed_is_not_a_result(demo_dir):
    from reid_aug.report.demo_report import seeds_note

    md = (demo_dir / "report.md").read_text()
    assert "One Re-ID seed" in md and "--seeds 0,1,2" in md
    assert seeds_note([0, 1, 2]).startswith("3 Re-ID seeds (0, 1, 2); mean ± std")


def test_demo_cli_passes_seeds_and_overrides(monkeypatch, tmp_path):
    import reid_aug.demo

    seen = {}

    def fake_run_demo(out_dir, quick=False, overrides=()):
        seen.update(out=out_dir, quick=quick, overrides=list(overrides))
        return tmp_path / "report.html"

    monkeypatch.setattr(reid_aug.demo, "run_demo", fake_run_demo)
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--seeds", "0, 2", "--set", "poses_per_id=4"])
    assert result.exit_code == 0, result.output
    assert seen["overrides"] == ["poses_per_id=4", "seeds=[0, 2]"] and seen["quick"] is False
    from reid_aug.demo import demo_config

    assert demo_config(False, seen["overrides"]).seeds == (0, 2)
