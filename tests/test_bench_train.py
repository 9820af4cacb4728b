"""Quick structural test of bench_train_step on tiny sizes (never asserts speed)."""

import math
import time

import keras
import pytest

from tfseg.bench.train_step import CONFIGS, bench_train_step, format_results

TINY_UNET = {"depth": 2, "base_filters": 4}


@pytest.mark.slow
def test_tiny_unet_structure():
    before = keras.mixed_precision.global_policy().name
    start = time.perf_counter()
    result = bench_train_step(("unet",), height=32, width=32, batch=2, steps=2, rounds=1,
                              warmup=0, model_options={"unet": TINY_UNET})
    elapsed = time.perf_counter() - start
    assert keras.mixed_precision.global_policy().name == before  # the policy is restored
    assert set(result) == {"settings", "environment", "models", "rows"}
    assert result["settings"]["model_options"] == {"unet": TINY_UNET}
    info = result["models"]["unet"]
    assert info["params"] > 0 and info["gflops_forward"] > 0
    assert math.isclose(info["gflops_per_step"], info["gflops_forward"] * 2 * 3)
    rows = result["rows"]
    assert [(r["model"], r["precision"], r["xla"]) for r in rows] == [("unet", p, x) for p, x in CONFIGS]
    for row in rows:
        assert row["status"] in ("ok", "error")
        if row["status"] == "error":
            assert isinstance(row["error"], str) and row["error"]
            continue
        assert len(row["step_times"]) == 2 and all(t > 0 for t in row["step_times"])
        assert row["min_s"] <= row["median_s"]
        assert math.isclose(row["images_per_s"], 2 / row["median_s"])
        assert math.isclose(row["gflops_per_s"], info["gflops_per_step"] / row["median_s"])
        assert row["speedup"] > 0 and row["first_step_s"] > 0
    baseline = rows[0]
    assert baseline["status"] == "ok" and math.isclose(baseline["speedup"], 1.0)
    table = format_results(result)
    assert table.count("| unet |") == 4
    print(f"\n{table}\n({elapsed:.1f} s)")


def test_failure_is_recorded():
    # An unknown option makes build_model fail in every configuration: recorded, not raised.
    result = bench_train_step(("unet",), height=32, width=32, batch=1, steps=1, rounds=1,
                              warmup=0, configs=[("float32", False)],
                              model_options={"unet": {"no_such_option": 1}})
    (row,) = result["rows"]
    assert row["status"] == "error" and "no_such_option" in row["error"]
    assert row["median_s"] is None and row["speedup"] is None
    assert "FAILED" in format_results(result)
