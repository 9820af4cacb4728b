"""``tfseg bench pipeline`` on a handful of tiny generated images: the result has the
promised structure and every measurement is a positive number. Speed itself is never
asserted: it depends on the machine and on whatever else it is running."""

from __future__ import annotations

import json
import math

import pytest

from tfseg.bench import pipeline as bench
from tfseg.bench.report import print_report
from tfseg.bench.staging import stage_kitti_tree, staged_pairs

ROWS = ("first_epoch", "uncached_steady", "cached")


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _assert_summary(summary: dict, rounds: int) -> None:
    assert set(summary) >= {"median", "min", "max", "rounds"}
    assert len(summary["rounds"]) == rounds
    assert all(_positive(v) for v in summary["rounds"])
    assert summary["min"] <= summary["median"] <= summary["max"]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    out = bench.bench_pipeline(None, str(path), num_images=6, epochs=2, rounds=1, batch_size=2,
                               image_size=(40, 132), resize=(24, 64), synthetic=True,
                               clahe_rounds=1, clahe_repeats=2, clahe_image_size=(40, 132))
    return out, path


@pytest.mark.slow
def test_json_file_holds_the_returned_result(result):
    out, path = result
    assert json.loads(path.read_text()) == json.loads(json.dumps(out))


def test_structure_and_all_numbers_positive(result):
    out, _ = result
    assert out["benchmark"] == "tfseg pipeline"
    assert out["device"]["usable_cpus"] >= 1 and out["device"]["cpu_model"] is not None
    assert out["versions"]["tensorflow"] and out["versions"]["opencv"]
    settings = out["settings"]
    assert settings["num_images"] == 6 and settings["resize"] == [24, 64]
    assert settings["image_sizes"] == [[40, 132]]
    backends = settings["clahe_backends"]
    assert backends[0] == "tensorflow"

    expected = [f"{'tfseg' if b == 'tensorflow' else 'tfseg_clahe_' + b}_{row}"
                for b in backends for row in ROWS] + ["opencv_loop"]
    for key in ("images_per_s", "cpu_ms_per_image", "cores_busy"):
        assert sorted(out[key]) == sorted(expected)
        for summary in out[key].values():
            _assert_summary(summary, rounds=1)
    _assert_summary(out["tfseg_iterator_setup_s"], rounds=len(backends))  # one per backend and round

    assert sorted(out["ratios_vs_opencv"]) == sorted(r for r in expected if r != "opencv_loop")
    for ratio in out["ratios_vs_opencv"].values():
        assert _positive(ratio["median"]) and all(_positive(v) for v in ratio["rounds"])
        assert _positive(ratio["cpu_time_ratio"]) and _positive(ratio["bound_on_idle_cores"])


def test_candidates_compute_the_same_thing(result):
    # Labels equal exactly; images differ only by the resize rounding amplified by CLAHE
    # (large on images this small, where a CLAHE tile is a few pixels).
    out, _ = result
    for backend in out["settings"]["clahe_backends"]:
        assert out["equivalence"][backend]["labels_identical"]
    assert out["equivalence"]["backends_identical"]


def test_clahe_one_core_section(result):
    clahe = result[0]["clahe_one_core"]
    assert clahe["image_size"] == [40, 132]
    assert {"tensorflow", "opencv"} <= set(clahe["images_per_s"])
    for summary in clahe["images_per_s"].values():
        _assert_summary(summary, rounds=1)
    assert clahe["equals_opencv"]["tensorflow"] is True
    assert _positive(clahe["ratio_tf_vs_opencv"]["median"])


def test_report_prints_every_row(result, capsys):
    out, _ = result
    print_report(out)
    text = capsys.readouterr().out
    assert "OpenCV loop" in text and "first epoch" in text and "CLAHE on one core" in text


def test_staged_tree_is_a_kitti_layout_of_the_requested_size(tmp_path):
    root, origin = stage_kitti_tree(tmp_path / "d", 3, synthetic=True, image_size=(20, 30))
    assert "synthetic" in origin
    pairs = staged_pairs(root)
    assert len(pairs) == 3


def test_rejects_a_single_epoch():
    with pytest.raises(ValueError):
        bench.bench_pipeline(None, None, epochs=1)
