"""tfseg on runtimes other than TensorFlow: TFLite (LiteRT) and ONNX (onnxruntime)."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfseg.data.clahe import clahe  # noqa: E402

SIZES = [(375, 1242), (37, 61), (5, 3)]


def opencv_clahe_rgb(rgb: np.ndarray) -> np.ndarray:
    y, cr, cb = cv2.split(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb))
    return cv2.cvtColor(cv2.merge([cv2.createCLAHE(2.0, (8, 8)).apply(y), cr, cb]), cv2.COLOR_YCrCb2RGB)


@pytest.fixture(scope="module")
def clahe_saved_model(tmp_path_factory):
    """CLAHE alone as a SavedModel: uint8 RGB ``[N, H, W, 3]`` of any size in and out."""
    fn = tf.function(lambda images: {"equalized": clahe(images, 2.0, (8, 8))},
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    module = tf.Module()
    module.equalize = fn
    path = tmp_path_factory.mktemp("clahe") / "saved_model"
    tf.saved_model.save(module, str(path), signatures={"serving_default": fn})
    return path, fn


def random_images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for size in SIZES]


def test_clahe_converts_to_tflite_builtins_equal_to_opencv(clahe_saved_model):
    from ai_edge_litert.interpreter import Interpreter

    converter = tf.lite.TFLiteConverter.from_saved_model(str(clahe_saved_model[0]))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # no Flex ops
    runner = Interpreter(model_content=converter.convert()).get_signature_runner()
    for image in random_images():
        np.testing.assert_array_equal(runner(images=image[None])["equalized"][0], opencv_clahe_rgb(image))


def test_clahe_converts_to_onnx_equal_to_opencv(clahe_saved_model):
    onnxruntime = pytest.importorskip("onnxruntime")
    tf2onnx = pytest.importorskip("tf2onnx")

    proto, _ = tf2onnx.convert.from_function(
        clahe_saved_model[1], input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
        opset=17)
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for image in random_images():
        np.testing.assert_array_equal(session.run(None, {"images": image[None]})[0][0], opencv_clahe_rgb(image))


# --- A model trained with CLAHE, exported to every runtime ------------------------------

TINY_CLAHE = [
    "data.synthetic={height: 48, width: 64, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
    "data.preprocess.clahe=true", "model.options={depth: 2, base_filters: 4}", "train.epochs=1",
    "train.batch_size=4", "train.mixed_precision=float32",
]
FILES = ["model_float32.tflite", "model_float16.tflite", "model_int8.tflite", "model.onnx"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A CLAHE model's export with all four converted files, and its runtimes.json."""
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    from tfseg.cli import main
    from tfseg.config import load_config
    from tfseg.training.run import train

    run_dir = tmp_path_factory.mktemp("runtimes") / "run"
    train(load_config("demo_unet", TINY_CLAHE + [f"run_dir={run_dir}"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir), "--tflite", "--onnx"]) == 0
    version = run_dir / "export" / "1"
    return version, json.loads((version / "assets.extra" / "runtimes.json").read_text())


def odd_images(count=3, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (41 + 7 * i, 67 + 5 * i, 3), dtype=np.uint8) for i in range(count)]


@pytest.mark.slow
def test_a_clahe_model_exports_to_every_runtime_and_each_agrees(converted):
    version, report = converted
    assert "validation" in report["checked_on"] or "val" in report["checked_on"]
    for name in FILES:
        check = report[name]
        assert check["checked"], check
        assert (version / "assets.extra" / name).stat().st_size == check["bytes"]
        if name == "model_int8.tflite":
            assert check["class_agreement"] >= 0.9, check
        else:
            assert check["class_agreement"] >= 0.999, (name, check)
            assert check["max_probability_difference"] < 0.03, (name, check)


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_a_converted_file_serves_what_the_saved_model_serves(converted, name):
    """On fresh images of odd sizes, through tfseg's client, against the SavedModel."""
    from tfseg.serving.client import load_model

    version, _ = converted
    saved, lite = load_model(version), load_model(version / "assets.extra" / name)
    assert lite.class_names == saved.class_names and (lite.palette == saved.palette).all()
    for image in odd_images():
        expected, got = saved.predict(image[None]), lite.predict(image[None])
        assert got["classes"].shape == expected["classes"].shape == (1, *image.shape[:2])
        agree = np.mean(got["classes"] == expected["classes"])
        # Noise through a barely trained model puts many pixels near a tie: float16 weights
        # flip a few more of them than the export's check on validation images allows, and
        # int8's activation ranges, calibrated on smooth training images, clip on noise.
        assert agree >= {"model_int8.tflite": 0.75, "model_float16.tflite": 0.99}.get(name, 0.999), agree
