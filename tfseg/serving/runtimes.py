"""The exported model for other runtimes: TensorFlow Lite (float32, float16) and ONNX.

Each converts the SavedModel's ``serving_default`` (uint8 images of any size in;
``classes`` and ``probabilities`` out: the whole inference path, preprocessing included)
and is then checked against the SavedModel on sample images: the share of pixels whose
class agrees, and the largest difference of any probability. The files go to the version
folder's ``assets.extra/`` (``model_float32.tflite``, ``model_float16.tflite``,
``model.onnx``) with the check's figures in ``runtimes.json``.

Both need builtin operations for everything in the graph. tfseg's in-graph CLAHE uses
operations neither has (``UnsortedSegmentSum``, ``Bitcast``; TFLite would need its Flex
runtime, which the Python interpreter lacks), so models trained with CLAHE are refused
with a clear message rather than converted into files that cannot run. ONNX needs the
optional ``tf2onnx`` (and ``onnxruntime`` for the check).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfseg.errors import UserError
from tfseg.fileio import atomic_path, write_text
from tfseg.serving.layout import METADATA_FILE

TFLITE_TYPES = ("float32", "float16")
ONNX_OPSET = 17
# A conversion whose classes agree with the SavedModel's on less of the sample images'
# pixels than this is not kept.
MIN_CLASS_AGREEMENT = 0.999


def sample_images(seed: int = 0) -> list[np.ndarray]:
    """Images of two sizes (one odd) for the parity check: smooth shapes plus noise."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in ((96, 160), (77, 131)):
        y, x = np.mgrid[:height, :width]
        base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 64 * 4], -1)
        images.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return images


def agreement(outputs: list[dict], references: list[dict]) -> dict:
    """Pixel share of equal classes and the largest probability difference (an output of
    another shape agrees nowhere)."""
    for output, reference in zip(outputs, references):
        if output["classes"].shape != reference["classes"].shape:
            return {"class_agreement": 0.0, "max_probability_difference": 1.0,
                    "problem": f"output {output['classes'].shape} for an image of {reference['classes'].shape}"}
    equal = sum(int((o["classes"] == r["classes"]).sum()) for o, r in zip(outputs, references))
    total = sum(r["classes"].size for r in references)
    worst = max(float(np.abs(o["probabilities"] - r["probabilities"]).max()) for o, r in zip(outputs, references))
    return {"class_agreement": equal / total, "max_probability_difference": worst}


def _check_convertible(version_dir: Path) -> dict:
    metadata = json.loads((version_dir / METADATA_FILE).read_text())
    if metadata.get("preprocess", {}).get("clahe"):
        raise UserError(f"model {version_dir}: was trained with CLAHE, whose in-graph form uses operations "
                        "TFLite and ONNX lack (UnsortedSegmentSum, Bitcast); serve it with TensorFlow or TF Serving")
    if "probabilities" not in metadata.get("outputs", ["probabilities"]):
        raise UserError(f"model {version_dir}: was exported without probabilities; export it with them to convert it")
    inputs = metadata.get("inputs", ["image"])
    if len(inputs) != 1 or "depth" in metadata.get("outputs", []):
        raise UserError(f"model {version_dir}: takes {' + '.join(inputs)} and returns {', '.join(metadata['outputs'])}; "
                        "the TFLite and ONNX conversions are checked for one-image segmentation models only: "
                        "serve it with TensorFlow or TF Serving")
    return metadata


def convert_tflite(version_dir: Path, dtype: str) -> bytes:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(version_dir), signature_keys=["serving_default"])
    if dtype == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return converter.convert()


def run_tflite(model: bytes, images: list[np.ndarray]) -> list[dict]:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter announces its successor, LiteRT
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=model)
    runner = interpreter.get_signature_runner("serving_default")
    return [{k: v[0] for k, v in runner(images=image[np.newaxis]).items()} for image in images]


def convert_onnx(loaded) -> bytes:
    """ONNX of ``loaded``'s ``serving_default`` (``loaded``: the SavedModel, loaded, which
    owns the variables and must stay referenced)."""
    try:
        import tf2onnx
    except ImportError:
        raise UserError("--onnx needs tf2onnx: pip install tf2onnx onnxruntime") from None
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    proto, _ = tf2onnx.convert.from_function(
        tf.function(lambda images: loaded.signatures["serving_default"](images=images)),
        input_signature=[spec], opset=ONNX_OPSET)
    return proto.SerializeToString()


def run_onnx(model: bytes, images: list[np.ndarray]) -> list[dict] | None:
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return [{name: value[0] for name, value in zip(names, session.run(None, {"images": image[np.newaxis]}))}
            for image in images]


def export_runtimes(version_dir: Path, tflite: bool, onnx: bool) -> dict:
    """Writes the requested conversions beside the SavedModel and checks each against it;
    returns (and writes to ``assets.extra/runtimes.json``) the check's figures."""
    import tensorflow as tf

    _check_convertible(version_dir)
    images = sample_images()
    loaded = tf.saved_model.load(str(version_dir))  # kept referenced: it owns the variables
    serve = loaded.signatures["serving_default"]
    references = [{k: v.numpy()[0] for k, v in serve(images=tf.constant(image[np.newaxis])).items()}
                  for image in images]
    report = {}
    conversions = [(f"model_{dtype}.tflite", lambda d=dtype: convert_tflite(version_dir, d), run_tflite)
                   for dtype in (TFLITE_TYPES if tflite else ())]
    if onnx:
        conversions.append(("model.onnx", lambda: convert_onnx(loaded), run_onnx))
    for name, convert, run in conversions:
        model = convert()
        with atomic_path(version_dir / "assets.extra" / name) as tmp:
            tmp.write_bytes(model)
        outputs = run(model, images)
        report[name] = ({"checked": False, "why": "onnxruntime is not installed"} if outputs is None
                        else {"checked": True, **agreement(outputs, references)})
        report[name]["bytes"] = len(model)
        if report[name]["checked"] and report[name]["class_agreement"] < MIN_CLASS_AGREEMENT:
            (version_dir / "assets.extra" / name).unlink()  # our own file, and it is wrong
            raise UserError(f"{name}: disagrees with the SavedModel on the sample images ({report[name]}); "
                            "not kept")
    write_text(version_dir / "assets.extra" / "runtimes.json", json.dumps(report, indent=1))
    return report
