"""Issue 16: the view strategies (rotate, views) of synthesis: the source's own pose from another viewpoint."""
import numpy as np
import pytest

from reid_aug.dataset.market import load_dataset
from reid_aug.synthesis.plan import build_plan
from reid_aug.synthesis.view_strategies import choose_rotate, choose_views
from reid_aug.views.rotate import rotate_poses
from reid_aug.views.viewpoint import VIEWS, view_labels, wrap_degrees


def test_rotate_cycles_the_angles_and_keeps_each_source():
    units = [((7,), 5, [(f"s{k % 2}", k) for k in range(5)])]
    out = choose_rotate(units, {"s0": 0.0, "s1": 10.0}, seed=0, angles=(90, 180))
    assert out[(7,)] == [("s0", 90.0), ("s1", 180.0), ("s0", 90.0), ("s1", 180.0), ("s0", 90.0)]


def test_views_fill_the_missing_views_evenly_and_deterministically():
    yaw = {"a": 5.0, "b": -20.0, "c": 10.0}          # three front views
    units = [((3,), 6, [(n, k) for k, n in enumerate("abcabc")])]
    out = choose_views(units, yaw, seed=1)[(3,)]
    new = view_labels([yaw[s] + a for s, a in out])
    have = list(view_labels(list(yaw.values())))
    counts = {v: (have + list(new)).count(v) for v in VIEWS}
    assert counts == {"front": 3, "side": 3, "back": 3}  # 6 new images: the 3 side and 3 back views it lacked
    assert all(abs(wrap_degrees(yaw[s] + a)) > 60 for s, a in out)
    assert choose_views(units, yaw, seed=1) == {(3,): out}
    assert choose_views(units, yaw, seed=2) != {(3,): out}


@pytest.mark.market
def test_rotate_plan_on_market_turns_each_sources_own_pose(market_root):
    index = load_dataset(market_root)
    plan = build_plan(index, 4, "rotate", seed=0, max_identities=5, angles=[0, 180], image_size=(128, 64))
    t = plan.table
    assert len(t) == 20 and set(t["angle"]) == {0.0, 180.0} and (t["target_pid"] == t["pid"]).all()
    assert set(t["source_view"]) <= set(VIEWS)
    kps = index.keypoints_for(t["source"].tolist())
    expect = rotate_poses(kps, [0, 180]).keypoints
    for i, a in enumerate(t["angle"]):
        np.testing.assert_array_equal(plan.target_kps[i], expect[i, 0 if a == 0 else 1])
    # 0 degrees keeps the torso where it was; 180 swaps the image sides of the shoulders, labels stay
    zero = plan.target_kps[t["angle"].to_numpy() == 0]
    np.testing.assert_array_equal(zero[:, [2, 5, 8, 11]], kps[t["angle"].to_numpy() == 0][:, [2, 5, 8, 11]])
    back = t["angle"].to_numpy() == 180
    src_sign = np.sign(kps[back][:, 2, 1].astype(int) - kps[back][:, 5, 1])
    assert (np.sign(plan.target_kps[back][:, 2, 1].astype(int) - plan.target_kps[back][:, 5, 1]) == -src_sign).all()
    assert plan.sha256 != build_plan(index, 4, "rotate", seed=0, max_identities=5, angles=[0, 90],
                                     image_size=(128, 64)).sha256


def test_synthesis_records_the_angle_and_resumes(tiny_toy, tmp_path):
    from reid_aug.generator.train import resolve_training, train_generator
    from reid_aug.synthesis.config import load_synthesis_config
    from reid_aug.synthesis.folder import read_manifest
    from reid_aug.synthesis.synthesize import synthesize

    from test_generator_train import TINY

    cfg, out = resolve_training(str(tiny_toy), "pg2_toy", TINY + ["train.stages=[g1]", "train.g1_iters=1"],
                                tmp_path / "gen")
    run = train_generator(cfg, str(tiny_toy), out)
    opts = [f"generator={run}", "poses_per_id=3", f"out={tmp_path / 'syn'}", "max_identities=4", "workers=1",
            "strategy=views"]
    first = synthesize(load_synthesis_config(overrides=opts))
    again = synthesize(load_synthesis_config(overrides=opts))
    assert first["written"] == 12 and again["written"] == 0 and again["skipped_existing"] == 12
    m = read_manifest(tmp_path / "syn" / "manifest.csv")
    assert {"angle", "source_view"} <= set(m.columns) and (m["strategy"] == "views").all()
    assert all(t == f"{s}@{a:+g}" for s, t, a in zip(m["source"], m["target_pose"], m["angle"]))
    from reid_aug.synthesis.folder import read_descriptor

    shares = read_descriptor(tmp_path / "syn").info["identities_by_number_of_views"]
    before, after = ({int(k): v for k, v in shares[w].items()} for w in ("before", "after"))
    assert sum(before.values()) == pytest.approx(1) and sum(after.values()) == pytest.approx(1)
    # adding images never removes a view: the share with all three views can only grow
    assert after[3] >= before[3] and sum(n * v for n, v in after.items()) >= sum(n * v for n, v in before.items())


def test_bad_view_options_are_one_line_errors(tiny_toy, tmp_path):
    from click.testing import CliRunner

    import cli

    res = CliRunner().invoke(cli.main, ["synthesize", "--dataset", str(tiny_toy), "--strategy", "rotate",
                                        "--angles", "90,left"])
    assert res.exit_code == 2 and "--angles 90,left" in res.output
    res = CliRunner().invoke(cli.main, ["synthesize", "--dataset", str(tiny_toy), "--strategy", "spin"])
    assert res.exit_code == 2 and "rotate" in res.output and "views" in res.output
