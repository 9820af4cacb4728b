"""tfseg bench accuracy: folds, the table, and a whole (tiny) measurement that resumes."""

import json
from collections import Counter

import numpy as np
import pytest
from data_fixtures import KITTI_SAMPLE

from tfseg.bench import accuracy
from tfseg.errors import UserError


def category(image_id):
    return image_id.rsplit("_", 1)[0]


def test_folds_partition_the_images_and_keep_the_categories_in_proportion():
    ids = [f"um_{i:06d}" for i in range(31)] + [f"umm_{i:06d}" for i in range(40)] + [f"uu_{i:06d}" for i in range(7)]
    parts = accuracy.folds(ids, 3, seed=0)
    vals = [set(p["val"]) for p in parts]
    assert sum(len(v) for v in vals) == len(ids) and set().union(*vals) == set(ids)  # a partition
    for part in parts:
        assert set(part["train"]) == set(ids) - set(part["val"])
    for name, total in (("um", 31), ("umm", 40), ("uu", 7)):
        counts = [Counter(map(category, p["val"]))[name] for p in parts]
        assert max(counts) - min(counts) <= 1 and sum(counts) == total, (name, counts)
    assert accuracy.folds(ids, 3, seed=0) == parts and accuracy.folds(ids, 3, seed=1) != parts
    with pytest.raises(UserError, match="--folds 1"):
        accuracy.folds(ids, 1)


def test_the_table_gives_mean_spread_and_ratio_to_plain():
    cells = [{"recipe": r, "budget": 5.0, "fold": f, "max_f": m, "average_precision": 0.9, "road_iou": i,
              "bev_max_f": None} for r, f, m, i in (("a", 0, 0.90, 0.80), ("a", 1, 0.94, 0.84),
                                                     ("plain", 0, 0.92, 0.85), ("plain", 1, 0.92, 0.85))]
    rows = {r["recipe"]: r for r in accuracy.table(cells)}
    assert rows["a"]["max_f"] == pytest.approx(0.92) and rows["a"]["max_f_spread"] == pytest.approx(0.02)
    assert rows["a"]["max_f_vs_plain"] == pytest.approx(1.0) and rows["a"]["road_iou_vs_plain"] == pytest.approx(0.82 / 0.85)
    assert "bev_max_f" not in rows["a"] and "max_f_vs_plain" not in rows["plain"]


@pytest.mark.slow
def test_a_tiny_measurement_is_written_and_a_rerun_skips_what_is_done(tmp_path, capsys):
    tiny = ["--set", "data.resize=[64, 192]", "--set", "data.augment.crop_size=[64, 192]",
            "--set", "model.options={depth: 2, base_filters: 4}", "--set", "train.mixed_precision=float32"]
    argv = ["--data-dir", str(KITTI_SAMPLE), "--recipes", "kitti_unet", "plain", "--budgets", "0.05", "--folds", "2",
            "--output", str(tmp_path), *tiny]
    assert accuracy.main(argv + ["--tta-flip"]) == 0
    cells = {(c["recipe"], c["fold"]): c for c in
             (json.loads(p.read_text()) for p in sorted((tmp_path / "cells").glob("*.json")))}
    assert sorted(cells) == [("kitti_unet", 0), ("kitti_unet", 1), ("plain", 0), ("plain", 1)]
    folds = [json.loads((tmp_path / f"fold{i}.json").read_text()) for i in range(2)]
    assert sorted(folds[0]["val"] + folds[1]["val"]) == sorted(folds[0]["train"] + folds[0]["val"])
    for (recipe, fold), cell in cells.items():
        folder = tmp_path / "runs" / f"{recipe}_0.05min_fold{fold}"
        metrics = json.loads((folder / "scores.json").read_text())
        assert metrics["num_images"] == len(folds[fold]["val"]) == cell["num_images"]
        assert cell["max_f"] == metrics["max_f"] and cell["bev_max_f"] is not None  # the sample has calib/
        assert cell["max_f_um"] == metrics["perspective"]["UM"]["max_f"]
        assert cell["bev_max_f_umm"] == metrics["bev"]["UMM"]["max_f"]
        if recipe == "plain":
            assert "tta_max_f" not in cell
            continue
        # The preset saw only the fold's training images, and held out its own split of them.
        run_split = json.loads((folder / "run" / "split.json").read_text())
        assert sorted(run_split["train"] + run_split["val"]) == folds[fold]["train"]
        tta = json.loads((folder / "scores_tta.json").read_text())
        assert cell["tta_max_f"] == tta["max_f"] and tta["test_time_augmentation"] == {"flip": True, "scales": [1.0]}
        cost = json.loads((folder / "tta_cost.json").read_text())  # both served side by side in one process
        assert cell["tta_ms_per_image"] == cost["added_ms_per_image"] == cost["tta_ms_median"] - cost["plain_ms_median"]
        assert cell["tta_time_ratio"] == cost["tta_time_over_plain"]["median"] > 0
    rows = json.loads((tmp_path / "table.json").read_text())
    unet = next(r for r in rows if r["recipe"] == "kitti_unet")
    assert unet["max_f"] == pytest.approx(np.mean([cells[("kitti_unet", f)]["max_f"] for f in (0, 1)]))
    assert unet["bev_max_f_um"] == pytest.approx(np.mean([cells[("kitti_unet", f)]["bev_max_f_um"] for f in (0, 1)]))
    assert unet["max_f_vs_plain"] == pytest.approx(
        unet["max_f"] / np.mean([cells[("plain", f)]["max_f"] for f in (0, 1)]))
    assert (tmp_path / "accuracy.png").stat().st_size > 10_000
    capsys.readouterr()
    # A rerun trains nothing again but a cell whose scores were lost, its old folder kept aside.
    (tmp_path / "cells" / "plain_0.05min_fold1.json").unlink()
    assert accuracy.main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("done before") == 3 and "plain_0.05min_fold1: training" in out
    assert len(list((tmp_path / "runs").glob("plain_0.05min_fold1.interrupted-*"))) == 1


def test_a_cell_written_before_per_category_scores_gets_them_from_its_scores(tmp_path):
    (tmp_path / "run").mkdir()
    metrics = {"perspective": {"UM": {"max_f": 0.91}, "URBAN": {"max_f": 0.9}},
               "bev": {"UM": {"max_f": 0.81}, "UMM": {"max_f": 0.85}, "URBAN": {"max_f": 0.8}}}
    (tmp_path / "run" / "scores.json").write_text(json.dumps(metrics))
    (tmp_path / "cell.json").write_text(json.dumps({"recipe": "a", "max_f": 0.9, "bev_max_f_um": 0.5}))
    cell = accuracy.done_cell(tmp_path / "cell.json", tmp_path / "run")
    assert cell == {"recipe": "a", "max_f": 0.9, "max_f_um": 0.91, "bev_max_f_um": 0.5, "bev_max_f_umm": 0.85}
    assert accuracy.done_cell(tmp_path / "cell.json", tmp_path / "elsewhere")["bev_max_f_um"] == 0.5
