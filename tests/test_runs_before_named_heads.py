"""Runs and exports written before model outputs were named (a depth model returned
``[logits, depth]``) still load, resume, evaluate, export and predict, giving what they gave
then. The fixtures were written by that tfseg (see their ``make.py``); ``expected.npz``
holds its outputs."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfseg.cli import main
from tfseg.data.fgbg import generate_scene
from tfseg.heads import named_outputs
from tfseg.runs import load_run, load_trained_model
from tfseg.serving.client import SegmentationModel

FIXTURES = Path(__file__).parent / "fixtures" / "runs_before_named_heads"
HEAD_NAMES = {"depth": ["logits", "depth"], "plain": ["logits"]}


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURES / "expected.npz") as saved:
        return dict(saved)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    """The fixture runs, copied; their configs name them relative to the working directory."""
    for name in ("depth_unfinished", "depth_finished", "plain_finished"):
        shutil.copytree(FIXTURES / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def keras_outputs(model_path: Path, images: np.ndarray) -> dict:
    """The model's named outputs on the top-left 24x32 of ``images``, scaled as make.py did."""
    return named_outputs(load_trained_model(model_path)((images[:, :24, :32] / 255.0).astype("float32"),
                                                        training=False))


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_a_model_keras_gives_its_outputs_by_name_as_before(head, expected):
    outputs = keras_outputs(FIXTURES / f"{head}_finished" / "model.keras", expected[f"{head}_input"])
    assert list(outputs) == HEAD_NAMES[head]
    for index, name in enumerate(HEAD_NAMES[head]):
        np.testing.assert_allclose(np.asarray(outputs[name]), expected[f"{head}_keras_{index}"], rtol=1e-6, atol=1e-6)


def assert_served_as_before(model: SegmentationModel, head: str, expected: dict) -> None:
    served = model.predict(expected[f"{head}_input"])
    names = sorted(key.removeprefix(f"{head}_served_") for key in expected if key.startswith(f"{head}_served_"))
    assert sorted(served) == names
    for name in names:
        np.testing.assert_allclose(served[name], expected[f"{head}_served_{name}"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("head", HEAD_NAMES)
def test_an_old_export_and_a_new_export_of_an_old_run_serve_as_before(head, expected, runs):
    assert_served_as_before(SegmentationModel(runs / f"{head}_finished" / "export" / "1"), head, expected)
    assert main(["export", "--run-dir", f"{head}_finished"]) == 0
    assert_served_as_before(SegmentationModel(runs / f"{head}_finished" / "export" / "2"), head, expected)


@pytest.mark.slow
def test_an_old_unfinished_run_resumes_to_the_model_it_gave_before(expected, runs):
    assert not (runs / "depth_unfinished" / "model.keras").exists()
    assert main(["train", "--config", "depth_unfinished/config.yaml"]) == 0
    outputs = keras_outputs(runs / "depth_unfinished" / "model.keras", expected["depth_input"])
    np.testing.assert_allclose(np.asarray(outputs["logits"]), expected["depth_keras_0"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(outputs["depth"]), expected["depth_keras_1"], rtol=1e-5, atol=1e-5)
    with open(runs / "depth_unfinished" / "history.csv") as f:
        header = f.readline().strip().split(",")
    assert header == (FIXTURES / "depth_finished" / "history.csv").read_text().splitlines()[0].split(",")


def test_an_old_run_evaluates_its_depth_as_its_old_export_predicts(runs, tmp_path):
    assert main(["evaluate", "--run-dir", "depth_finished", "--split", "test", "--json", "m.json"]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    fgbg = load_run(runs / "depth_finished").config.data.fgbg
    scenes = [generate_scene(fgbg.seed, "test", i, fgbg.height, fgbg.width, fgbg.foreground_size,
                             fgbg.backgrounds, fgbg.foregrounds) for i in range(fgbg.num_test)]
    served = SegmentationModel(runs / "depth_finished" / "export" / "1").predict(
        np.stack([np.concatenate([s.background, s.composite], -1) for s in scenes]))
    truth = np.stack([s.depth for s in scenes]).astype(np.float64)
    assert report["depth_rmse"] == pytest.approx(np.sqrt(np.mean((served["depth"] - truth) ** 2)), rel=1e-4)
    masks = np.stack([s.mask for s in scenes])
    assert report["pixel_accuracy"] == pytest.approx(np.mean(served["classes"] == masks), abs=1e-6)
