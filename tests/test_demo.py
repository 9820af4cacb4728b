"""The README's main job, `tfseg demo`, run exactly as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

# Trains through train.mixed_precision=auto: CI runs these under float32 and mixed_bfloat16.
pytestmark = pytest.mark.auto_precision


@pytest.mark.slow
def test_demo_trains_exports_and_predicts(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "tfseg", "demo", "--output", str(out)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_images"] == 200
    assert metrics["miou"] >= 0.90
    assert metrics["pixel_accuracy"] >= 0.97
    for name in ("gallery.png", "curves.png", "model.keras", "export/1/saved_model.pb",
                 "export/1/assets.extra/tfseg.json", "history.csv", "config.yaml"):
        assert (out / name).exists(), name
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    assert len(masks) == 12 and len(list((out / "predictions" / "overlays").glob("*.png"))) == 12
    assert np.asarray(Image.open(masks[0])).shape == (96, 96)
    # It ends with what the README shows, numbers apart.
    from test_readme import normalised, readme_demo_output

    shown = readme_demo_output()
    assert normalised(result.stdout.splitlines()[-len(shown):]) == normalised(shown)


# preset -> the settings that shrink its generated data and model to seconds.
SCENES = "height: 32, width: 48, num_train: 8, num_val: 4, num_test: 4"
FEW_STEPS = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=4", "train.stages=[]",
             "model.options.depth=2", "model.options.base_filters=4"]
DEMO_PRESETS = {
    "demo_unet": [f"data.synthetic={{{SCENES}}}"],
    "fgbg_unet": [f"data.fgbg={{{SCENES}, foreground_size: 16}}", "data.resize=[32, 48]"],
    "fgbg_unet_depth": [f"data.fgbg={{{SCENES}, foreground_size: 16}}", "data.resize=[32, 48]"],
}


def test_demo_presets_are_those_on_generated_data():
    from tfseg.config import GENERATED_SOURCE_NAMES, load_config, preset_names

    assert sorted(DEMO_PRESETS) == sorted(name for name in preset_names()
                                          if load_config(name).data.source in GENERATED_SOURCE_NAMES)


@pytest.mark.parametrize("preset", sorted(DEMO_PRESETS))
def test_demo_runs_each_generated_data_preset_and_serves_what_it_trained(preset, tmp_path, capsys):
    """Samples written the way the model takes them (one folder per stacked image), predicted
    by the SavedModel, equal to the run's float32 network on the same network input."""
    import tensorflow as tf

    from tfseg.cli import main
    from tfseg.heads import LOGITS, named_outputs
    from tfseg.runs import load_run
    from tfseg.serving.client import SegmentationModel

    out = tmp_path / "demo"
    overrides = [arg for setting in DEMO_PRESETS[preset] + FEW_STEPS for arg in ("--set", setting)]
    assert main(["demo", "--config", preset, "--output", str(out), *overrides]) == 0
    run = load_run(out)
    channels = 3 * len(run.input_groups)
    assert channels == (6 if preset == "fgbg_unet_depth" else 3)
    served = SegmentationModel(out / "export" / "1")
    assert served.inputs == list(run.input_groups)
    signature = served._loaded.signatures["serving_default"].structured_input_signature[1]
    assert signature["images"].shape[-1] == channels
    metadata = json.loads((out / "export" / "1" / "assets.extra" / "tfseg.json").read_text())
    assert metadata["scores"]["test"]["miou"] == json.loads((out / "metrics.json").read_text())["miou"]

    # The samples the demo wrote, read back as a user's files, through the network by hand.
    folders = [out / "samples" / group for group in run.input_groups]
    names = sorted(path.name for path in folders[0].glob("*.png"))
    assert len(names) == 4 and all(sorted(p.name for p in f.glob("*.png")) == names for f in folders)
    images = np.stack([np.concatenate([np.asarray(Image.open(f / name)) for f in folders], -1) for name in names])
    outputs = served.predict(images)
    network_input = served._loaded.network_input(tf.constant(images)).numpy()
    logits = named_outputs(run.network()(network_input, training=False))[LOGITS]
    assert served.has_depth == (preset == "fgbg_unet_depth")
    assert logits.shape[1:3] == images.shape[1:3]  # the scenes are the network's size: no resize
    np.testing.assert_allclose(outputs["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    for name, classes in zip(names, outputs["classes"], strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(out / "predictions" / "masks" / name)), classes)


@pytest.mark.parametrize("preset", ["kitti_unet", "voc_fcn8"])
def test_demo_refuses_presets_whose_data_must_be_downloaded(preset, tmp_path, capsys):
    from tfseg.cli import main

    assert main(["demo", "--config", preset, "--output", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"demo --config {preset}" in err and "data.data_dir" in err
    assert not (tmp_path / "demo").exists()
