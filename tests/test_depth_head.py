"""A second head: the mask and a depth map from a background/composite pair, end to end."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg.cli import main
from tfseg.config import AugmentConfig, load_config
from tfseg.data import augment as aug
from tfseg.data.fgbg import generate_scene
from tfseg.data.labels import VOID
from tfseg.data.preprocess import normalize
from tfseg.errors import UserError
from tfseg.models import build_model
from tfseg.predictions import DEPTH_PNG_SCALE
from tfseg.runs import load_run, load_trained_model
from tfseg.serving.client import SegmentationModel
from tfseg.training.run import train

# Trains through train.mixed_precision=auto: CI runs these under float32 and mixed_bfloat16.
pytestmark = pytest.mark.auto_precision

GEOMETRY = dict(horizontal_flip=True, scale_range=[0.7, 1.4], crop_size=[40, 56], rotation_degrees=20)
COLOUR = dict(brightness=0.2, contrast=0.3, saturation=0.3, hue=0.05, clahe_probability=0.5)
SMALL = ["data.fgbg={height: 32, width: 48, foreground_size: 16, num_train: 16, num_val: 4, num_test: 4}",
         "train.stages=[{size: [16, 24], epochs: 1}, {size: [32, 48], epochs: 1}]", "train.epochs=2",
         "train.batch_size=4", "model.options.depth=2", "model.options.base_filters=4"]


@pytest.mark.parametrize("seed", range(4))
def test_the_depth_map_moves_with_six_channels_and_the_mask(seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (48, 64, 6)).astype(np.uint8)
    label = rng.integers(0, 2, (48, 64)).astype(np.uint8)
    depth = rng.uniform(1.0, 12.0, (48, 64)).astype(np.float32)
    key = tf.constant([seed, 5])
    out_image, out_label, out_targets = aug.augment(tf.constant(image), tf.constant(label), key,
                                                    AugmentConfig(**GEOMETRY, **COLOUR), {"depth": tf.constant(depth)})
    out_depth = out_targets["depth"]
    assert out_image.shape == (40, 56, 6) and out_depth.shape == (40, 56)
    # The same geometry on the depth map as a picture of its own: the same pixels, the same mask.
    alone, alone_label = aug.augment(tf.constant(np.repeat(depth[..., None], 3, -1)), tf.constant(label), key,
                                     AugmentConfig(**GEOMETRY))
    np.testing.assert_array_equal(out_label.numpy(), alone_label.numpy())
    labelled = out_label.numpy() != VOID
    np.testing.assert_allclose(out_depth.numpy()[labelled], alone.numpy()[..., 0][labelled], rtol=1e-5)
    assert (out_depth.numpy()[~labelled] == 0).all()  # no label, no depth
    # Colour jitter never touches the depth.
    _, _, geometric_only = aug.augment(tf.constant(image), tf.constant(label), key, AugmentConfig(**GEOMETRY),
                                       {"depth": tf.constant(depth)})
    np.testing.assert_array_equal(out_depth.numpy(), geometric_only["depth"].numpy())


def test_the_depth_head_is_bounded_float32_and_starts_mid_range(policy_bf16):
    model = build_model("unet", 2, depth=2, base_filters=4, batch_norm=True, input_channels=6,
                        depth_head=True, depth_range=15.0)
    outputs = model(np.random.default_rng(0).uniform(0, 1, (2, 16, 24, 6)).astype("float32"))
    assert sorted(outputs) == ["depth", "logits"]
    logits, depth = outputs["logits"], outputs["depth"]
    assert logits.shape == (2, 16, 24, 2) and depth.shape == (2, 16, 24, 1)
    assert depth.dtype == tf.float32 and logits.dtype == tf.float32
    assert 0 < float(tf.reduce_min(depth)) and float(tf.reduce_max(depth)) < 15.0


@pytest.fixture
def policy_bf16():
    import keras

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("overrides, message", [
    (["data.fgbg.depth=false"], r"depth_head: the fgbg data gives no depth maps \(set data.fgbg.depth: true\)"),
    (["loss.depth_terms={}"], "give its loss in loss.depth_terms"),
    (["model.options.depth_head=false"], "loss.depth_terms: the model has no depth head"),
])
def test_depth_settings_that_do_not_fit_are_refused(tmp_path, overrides, message):
    with pytest.raises(UserError, match=message):
        train(load_config("fgbg_unet_depth", SMALL + overrides + [f"run_dir={tmp_path / 'run'}"]), verbose=0)


@pytest.fixture(scope="module")
def depth_run(tmp_path_factory):
    """The preset, shrunk; trained at 24x36 (data.resize) from 32x48 scenes, so that the
    exported model resizes on the way in and back."""
    run_dir = tmp_path_factory.mktemp("depth") / "run"
    train(load_config("fgbg_unet_depth", SMALL + [
        f"run_dir={run_dir}", "data.resize=[24, 36]",
        "train.stages=[{size: [16, 24], epochs: 1}, {size: [24, 36], epochs: 1}]"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_history_and_curves_carry_both_heads(depth_run):
    with open(depth_run / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    for key in ("loss", "val_miou", "depth_loss", "depth_rmse", "val_depth_rmse", "val_depth_abs_rel",
                "val_depth_delta1"):
        assert all(np.isfinite(float(row[key])) for row in rows), key


def test_the_saved_model_returns_classes_probabilities_and_depth_like_keras(depth_run):
    model = SegmentationModel(depth_run / "export")
    assert model.has_depth and model.inputs == ["background", "composite"]
    scenes = [generate_scene(0, "test", i, height=32, width=48, foreground_size=16) for i in range(3)]
    images = np.stack([np.concatenate([s.background, s.composite], -1) for s in scenes])
    served = model.predict(images)
    assert served["depth"].shape == (3, 32, 48) and served["depth"].dtype == np.float32
    # The run's float32 network (whatever precision "auto" trained it in), by hand: resize
    # to 24x36, normalise, both heads, back to 32x48.
    keras_model = load_run(depth_run).network()
    small = tf.cast(tf.round(tf.image.resize(tf.cast(images, tf.float32), (24, 36))), tf.uint8)
    outputs = keras_model(normalize(small, "unit"), training=False)
    logits, depth = outputs["logits"], outputs["depth"]
    logits = tf.image.resize(logits, (32, 48)).numpy()
    depth = tf.image.resize(depth, (32, 48)).numpy()[..., 0]
    np.testing.assert_allclose(served["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    np.testing.assert_array_equal(served["classes"], logits.argmax(-1))
    np.testing.assert_allclose(served["depth"], depth, rtol=1e-5, atol=1e-5)


def test_predict_writes_16_bit_depth_and_a_preview_and_evaluate_scores_depth(depth_run, tmp_path):
    backgrounds, composites = tmp_path / "backgrounds", tmp_path / "composites"
    backgrounds.mkdir()
    composites.mkdir()
    scene = generate_scene(0, "test", 1, height=32, width=48, foreground_size=16)
    Image.fromarray(scene.background).save(backgrounds / "s.png")
    Image.fromarray(scene.composite).save(composites / "s.jpg", quality=100)
    assert main(["predict", "--model", str(depth_run / "export"), "-i", str(backgrounds), "-i", str(composites),
                 "-o", str(tmp_path / "out")]) == 0
    model = SegmentationModel(depth_run / "export")
    composite = np.asarray(Image.open(composites / "s.jpg").convert("RGB"))
    served = model.predict(np.concatenate([scene.background, composite], -1)[None])["depth"][0]
    stored = np.asarray(Image.open(tmp_path / "out" / "depth" / "s.png"))
    assert stored.dtype == np.uint16 or stored.dtype == np.int32  # PIL reads 16-bit grey as I;16 or I
    np.testing.assert_array_equal(stored.astype(np.int64), np.round(served * DEPTH_PNG_SCALE).astype(np.int64))
    preview = np.asarray(Image.open(tmp_path / "out" / "depth_preview" / "s.png"))
    assert preview.shape == (32, 48, 3) and len(np.unique(preview.reshape(-1, 3), axis=0)) > 1

    assert main(["evaluate", "--run-dir", str(depth_run), "--split", "test", "--json", str(tmp_path / "m.json")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    scenes = [generate_scene(0, "test", i, height=32, width=48, foreground_size=16) for i in range(4)]
    predicted = model.predict(np.stack([np.concatenate([s.background, s.composite], -1) for s in scenes]))["depth"]
    truth = np.stack([s.depth for s in scenes]).astype(np.float64)
    assert report["depth_rmse"] == pytest.approx(np.sqrt(np.mean((predicted - truth) ** 2)), rel=1e-4)
    assert report["depth_abs_rel"] == pytest.approx(np.mean(np.abs(predicted - truth) / truth), rel=1e-4)


def test_the_prediction_panels_show_both_heads(depth_run):
    from tfseg.data.pipeline import cached_examples
    from tfseg.data.sources import make_source
    from tfseg.training.history import PredictionPanels
    from tfseg.viz import depth_preview

    config = load_config(str(depth_run / "config.yaml"))
    examples = list(cached_examples(make_source(config.data), "val", config.data).take(2).as_numpy_iterator())
    panels = PredictionPanels(examples, lambda images: normalize(images, "unit"), [[0, 0, 0], [255, 200, 0]])
    rendered = panels.render(load_trained_model(depth_run / "model.keras"))
    assert rendered.shape == (2, 24, 5 * 36, 3)
    image, _, targets = examples[0]
    depth = targets["depth"]
    np.testing.assert_array_equal(rendered[0, :, :36], image[..., 3:])  # the composite
    np.testing.assert_array_equal(rendered[0, :, 3 * 36:4 * 36], depth_preview(depth, depth.min(), depth.max()))


def test_tflite_and_onnx_refuse_a_two_head_pair_model_in_one_line(depth_run, capsys):
    code = main(["export", "--run-dir", str(depth_run), "--tflite"])
    assert code == 2
    assert "takes background + composite and returns classes, probabilities, depth" in capsys.readouterr().err
