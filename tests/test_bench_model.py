"""``tfseg bench model``: Keras on JAX without TensorFlow, its numbers, its training step,
the rounds and the report. Tiny shapes; speed itself is never asserted.

The benchmark runs in subprocesses: Keras picks its backend once per process, and this
one's may be TensorFlow.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

from tfseg.bench import model_report
from tfseg.bench.model_step import summarize_row, use_jax_backend
from tfseg.bench.rounds import round_ratios, run_rounds
from tfseg.errors import UserError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_UNET = {"depth": 1, "base_filters": 4}
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")

# Runs the command line with every import of tensorflow refused and recorded.
NO_TENSORFLOW = textwrap.dedent("""
    import importlib.abc, json, sys, traceback

    attempts = []

    class RefuseTensorFlow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorflow":
                attempts.append("".join(traceback.format_stack()))
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, RefuseTensorFlow())
    from tfseg.cli import main

    status = main(sys.argv[1:])
    print("CHECK " + json.dumps({"status": status, "attempts": attempts,
                                 "loaded": [m for m in sys.modules if m.split(".")[0] == "tensorflow"]}))
""")


def _python(code: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
    env.pop("KERAS_BACKEND", None)  # the benchmark must choose JAX itself
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _last_json(stdout: str, prefix: str) -> dict:
    return json.loads([line for line in stdout.splitlines() if line.startswith(prefix)][-1][len(prefix):])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``tfseg bench model`` on a one-level U-Net, 16x16x1, tensorflow refused."""
    out = tmp_path_factory.mktemp("bench_model")
    done = _python(NO_TENSORFLOW, "bench", "model", "--models", "unet", "--height", "16",
                   "--width", "16", "--channels", "1", "--classes", "3", "--batch", "2",
                   "--inference-batch", "3", "--steps", "2", "--rounds", "2", "--warmup", "1",
                   "--options", json.dumps({"unet": TINY_UNET}), "--peak-size", "64",
                   "--json", str(out / "r.json"), "--markdown", str(out / "r.md"))
    assert done.returncode == 0, done.stderr[-3000:]
    return _last_json(done.stdout, "CHECK "), json.loads((out / "r.json").read_text()), out


@pytest.mark.slow
@needs_jax
def test_no_tensorflow_is_imported(tiny_run):
    check, _, _ = tiny_run
    assert check["status"] == 0
    assert check["attempts"] == [], check["attempts"][0]
    assert check["loaded"] == []


@needs_jax
def test_tiny_unet_numbers_are_sane(tiny_run):
    _, result, out = tiny_run
    env, settings = result["environment"], result["settings"]
    assert env["backend"] == "jax" and env["xla"] is True and env["jax"] and env["keras"]
    assert settings["precision"] == "mixed_bfloat16" and settings["model_options"]["unet"]["input_channels"] == 1
    peak = result["peak"]
    assert peak["size"] == 64 and peak["tflops"] > 0
    assert [(c["task"], c["batch"]) for c in result["cases"]] == [("train", 2), ("inference", 3)]
    for case in result["cases"]:
        assert case["input"] == [16, 16, 1] and case["params"] > 0 and case["gflops_forward"] > 0
        factor = 3 if case["task"] == "train" else 1
        assert math.isclose(case["tflop_per_step"], case["gflops_forward"] * case["batch"] * factor / 1000)
        (row,) = case["rows"]
        assert row["candidate"] == "keras_jax" and row["status"] == "ok" and row["error"] is None
        assert row["steps"] == 4 and all(t > 0 for t in row["step_times"])
        assert 0 < row["min_ms"] <= row["p50_ms"] <= row["p90_ms"]
        assert math.isclose(row["images_per_s"], case["batch"] / (row["p50_ms"] / 1000))
        assert math.isclose(row["tflops"], case["tflop_per_step"] / (row["p50_ms"] / 1000))
        assert math.isclose(row["fraction_of_peak"], row["tflops"] / peak["tflops"])
        assert row["first_step_s"] > 0 and row["keras_over_this"] is None
    table = (out / "r.md").read_text()
    assert table.count("| keras_jax |") == 2 and "XLA on" in table


@pytest.mark.slow
@needs_jax
def test_stateless_step_equals_keras_train_on_batch():
    # The benchmark's step and Keras' own compiled training step, from the same weights on
    # the same batch: the same loss and the same updated weights.
    code = textwrap.dedent("""
        import json, os
        os.environ["KERAS_BACKEND"] = "jax"
        import jax, keras, numpy as np
        from tfseg.bench.batches import random_batch
        from tfseg.bench.jax_steps import (build_under_policy, initial_state, make_optimizer,
                                           train_step_function)
        from tfseg.losses import MaskedSparseCrossEntropy

        options = {"depth": 1, "base_filters": 4, "batch_norm": True, "input_channels": 2}
        x, y = random_batch(2, 8, 8, 2, 3, seed=1)
        theirs = build_under_policy("unet", 3, options, "float32")
        ours = build_under_policy("unet", 3, options, "float32")
        initial = theirs.get_weights()
        ours.set_weights(initial)
        theirs.compile(optimizer=keras.optimizers.Adam(1e-2), loss=MaskedSparseCrossEntropy(),
                       jit_compile=True)
        their_loss = float(theirs.train_on_batch(x, y))
        optimizer = make_optimizer("float32", 1e-2)
        state = initial_state(ours, optimizer)
        step = train_step_function(ours, optimizer, MaskedSparseCrossEntropy())
        loss, (trainable, non_trainable, _) = step(state, x, y)
        ours_by_path = {v.path: np.asarray(a) for v, a in zip(ours.trainable_variables, trainable)}
        ours_by_path.update({v.path: np.asarray(a) for v, a in zip(ours.non_trainable_variables, non_trainable)})
        gaps = [float(np.max(np.abs(ours_by_path[v.path] - np.asarray(v.value)))) for v in theirs.weights]
        moved = max(float(np.max(np.abs(np.asarray(v.value) - w))) for v, w in zip(theirs.weights, initial))
        print("RESULT " + json.dumps({"ours": float(loss), "theirs": their_loss,
                                      "max_gap": max(gaps), "count": len(gaps), "moved": moved}))
    """)
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    r = _last_json(done.stdout, "RESULT ")
    assert r["count"] > 0
    assert math.isclose(r["ours"], r["theirs"], rel_tol=1e-5)
    assert r["max_gap"] < 1e-5 and r["moved"] > 1e-3  # the same, non-trivial update


class FakeCandidate:
    """Steps of a fixed length; records the order in which it was run."""

    def __init__(self, name, seconds, calls, fail_in_round=None):
        self.name, self.seconds, self.calls, self.fail_in_round = name, seconds, calls, fail_in_round

    def prepare(self, warmup):
        return {"params": 10, "first_step_s": 1.0, "warmup": warmup}

    def run(self, steps):
        self.calls.append(self.name)
        if self.fail_in_round == sum(c == self.name for c in self.calls):
            raise RuntimeError("out of memory")
        return [self.seconds] * steps


class BrokenCandidate(FakeCandidate):
    def prepare(self, warmup):
        raise RuntimeError("no kernel\nfor this")


def test_rounds_alternate_and_ratios_compare_within_rounds():
    calls = []
    candidates = [FakeCandidate("keras", 0.01, calls), FakeCandidate("fast", 0.005, calls),
                  FakeCandidate("flaky", 0.02, calls, fail_in_round=2),
                  BrokenCandidate("broken", 1, calls)]
    rows = run_rounds(candidates, rounds=3, steps=4, warmup=2)
    assert calls == ["keras", "fast", "flaky", "flaky", "fast", "keras", "keras", "fast"]
    keras_row, fast, flaky, broken = rows
    assert keras_row["status"] == fast["status"] == "ok" and keras_row["info"]["warmup"] == 2
    assert [len(r) for r in keras_row["round_times"]] == [4, 4, 4]
    assert flaky["status"] == "error" and "out of memory" in flaky["error"] and len(flaky["round_times"]) == 1
    assert broken["status"] == "error" and broken["error"] == "RuntimeError: no kernel for this"
    assert broken["round_times"] == []

    ratio = round_ratios(keras_row["round_times"], fast["round_times"])
    assert ratio["rounds"] == pytest.approx([0.5] * 3) and ratio["median"] == pytest.approx(0.5)
    assert round_ratios(keras_row["round_times"], flaky["round_times"])["rounds"] == pytest.approx([2.0])
    assert round_ratios(keras_row["round_times"], broken["round_times"]) is None

    row = summarize_row("fast", fast, images=8, tflop_per_step=0.1, peak_tflops=40.0,
               keras_rounds=keras_row["round_times"])
    assert row["images_per_s"] == pytest.approx(1600) and row["p50_ms"] == pytest.approx(5)
    assert row["tflops"] == pytest.approx(20) and row["fraction_of_peak"] == pytest.approx(0.5)
    assert row["keras_over_this"]["median"] == pytest.approx(0.5) and row["steps"] == 12
    failed = summarize_row("broken", broken, 8, 0.1, 40.0, keras_row["round_times"])
    assert failed["images_per_s"] is None and failed["keras_over_this"] is None


def _fake_result(device: str) -> dict:
    rows = [{"candidate": name, "status": "ok", "error": None, "params": 31031810,
             "first_step_s": 50.0, "images_per_s": ips, "p50_ms": 8000 / ips, "p90_ms": 9000 / ips,
             "tflops": 100.0, "fraction_of_peak": 0.125, "keras_over_this": ratio}
            for name, ips, ratio in (("keras_jax", 200.0, None),
                                     ("torch_compile", 400.0, {"median": 0.5, "rounds": [0.5]}))]
    rows.append({**rows[1], "candidate": "torch_eager", "status": "error", "error": "boom",
                 "images_per_s": None, "p50_ms": None, "p90_ms": None, "tflops": None,
                 "fraction_of_peak": None, "keras_over_this": None})
    return {"benchmark": "tfseg model",
            "environment": {"device": device, "platform": "gpu", "keras": "3.15.1", "jax": "0.10.2",
                            "torch_error": None,
                            "jaxlib": "0.10.2", "torch": {"torch": "2.13.0", "device": device,
                                                          "cuda": "12.8", "cudnn": 91000}},
            "settings": {"precision": "mixed_bfloat16", "rounds": 3, "steps": 10, "warmup": 3},
            "peak": {"dtype": "bfloat16", "size": 8192, "tflops": 800.0},
            "cases": [{"model": "unet", "task": "train", "batch": 8, "input": [576, 576, 1],
                       "note": None, "rows": rows}]}


def test_report_merges_runs_and_shows_the_ratio(tmp_path, capsys):
    from tfseg.cli import main

    paths = []
    for i, device in enumerate(("GPU A", "GPU B")):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(_fake_result(device)))
    assert main(["bench", "model", "--report", *map(str, paths), "--json", str(tmp_path / "all.json"),
                 "--markdown", str(tmp_path / "all.md")]) == 0
    printed = capsys.readouterr().out
    table = (tmp_path / "all.md").read_text()
    assert table in printed
    merged = json.loads((tmp_path / "all.json").read_text())
    assert [r["environment"]["device"] for r in merged["runs"]] == ["GPU A", "GPU B"]
    assert model_report.merge([merged, _fake_result("GPU C")])["runs"][2]["environment"]["device"] == "GPU C"
    assert "Run 1: GPU A (gpu)" in table and "Run 2: GPU B (gpu)" in table
    assert "800 TFLOP/s" in table and "CUDA 12.8" in table
    assert "| 1 | unet | 576x576x1 | train | 8 | torch_compile | 400.0 | 20.00 | 22.50 | 100 | 12.5% | 0.50x |" in table
    assert "| keras_jax | 200.0 |" in table and "| torch_eager | - |" in table
    assert "- run 2, unet train, torch_eager: boom" in table


def test_refuses_keras_on_another_backend():
    import keras

    if keras.backend.backend() == "jax":
        pytest.skip("Keras runs on JAX in this process")
    with pytest.raises(UserError, match="fresh process"):
        use_jax_backend()


def test_torch_unet_has_the_keras_parameter_count():
    pytest.importorskip("torch")
    from tfseg.bench.torch_reference import count_params, unet_from_options
    from tfseg.models import build_model

    cases = [(2, {}), (2, {"input_channels": 1}),
             (5, {"depth": 2, "base_filters": 4, "batch_norm": True, "input_channels": 2, "dropout": 0.5})]
    for num_classes, options in cases:
        expected = build_model("unet", num_classes, **options).count_params()
        assert count_params(unet_from_options(num_classes, options)) == expected, options
    assert count_params(unet_from_options(2, {})) == 31_031_810  # the README's number
    with pytest.raises(ValueError, match="residual"):
        unet_from_options(2, {"residual": True})


def test_torch_reference_trains_and_infers_in_its_worker():
    pytest.importorskip("torch")
    from tfseg.bench.remote import RemoteCandidate, Worker

    worker = Worker("tfseg.bench.torch_reference")
    try:
        assert worker.call("describe")["torch"]
        spec = {"num_classes": 3, "options": {**TINY_UNET, "input_channels": 1},
                "precision": "mixed_bfloat16", "batch": 2, "height": 16, "width": 16,
                "compiled": False, "learning_rate": 1e-3, "seed": 0}
        for task in ("train", "inference"):
            candidate = RemoteCandidate(worker, f"torch_eager_{task}", {**spec, "task": task})
            assert candidate.prepare(1)["params"] > 0
            times = candidate.run(3)
            assert len(times) == 3 and all(t > 0 for t in times)
            candidate.release()
        bad = RemoteCandidate(worker, "bad", {**spec, "task": "train", "options": {"residual": True}})
        with pytest.raises(RuntimeError, match="residual"):
            bad.prepare(0)
    finally:
        worker.close()


@pytest.mark.slow
@needs_jax
def test_gpu_script_quick_smoke_run(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(["bash", os.path.join(REPO, "scripts", "bench_gpu.sh"), "--quick", "--out",
                           str(tmp_path)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    merged = json.loads((tmp_path / "bench_model.json").read_text())
    cases = [case for run in merged["runs"] for case in run["cases"]]
    assert [(c["model"], c["task"]) for c in cases] == [("unet", "train"), ("unet", "inference"),
                                                        ("fcn8_vgg16", "train")]
    expected = ["keras_jax"] + (["torch_compile", "torch_eager"]
                                if importlib.util.find_spec("torch") else [])
    for case in cases[:2]:
        assert [row["candidate"] for row in case["rows"]] == expected
    for case in cases:
        assert all(row["status"] == "ok" and row["images_per_s"] > 0 for row in case["rows"])
    table = (tmp_path / "bench_model.md").read_text()
    assert "| 2 | fcn8_vgg16 | 32x64x3 | train | 2 | keras_jax |" in table
