"""tfseg on runtimes other than TensorFlow: TFLite (LiteRT) and ONNX (onnxruntime)."""

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
