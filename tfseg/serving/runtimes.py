"""The exported model for other runtimes: TFLite (float32, float16, int8) and ONNX.

Each converts the SavedModel's ``serving_default``: uint8 images of any size in,
``classes`` and ``probabilities`` out, the whole inference path included (resize, CLAHE,
normalisation, the network, the way back to the image's size), using only operations the
runtimes have built in. The files go to the version folder's ``assets.extra/``, beside
``tfseg.json``, which is all a runtime needs besides the file::

    model_float32.tflite   model_float16.tflite (float16 weights)
    model_int8.tflite      weights and activations int8 where the converter can, float
                           where it cannot; calibrated on images of the run's training split
    model.onnx             opset 17 (needs tf2onnx)
    runtimes.json          the checks below

Each file is run by its runtime (LiteRT, onnxruntime: :mod:`tfseg.serving.lite`) on the
run's validation images at their original size and compared with the SavedModel: the
share of pixels whose class agrees, the largest probability difference, and for
two-class models MaxF and road IoU beside the SavedModel's. A float file that agrees on
less than 99.9 % of the pixels is not kept; the int8 file is kept with its change stated.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfseg.errors import UserError
from tfseg.fileio import atomic_path, write_text
from tfseg.serving.graph import NETWORK_SCOPE
from tfseg.serving.layout import METADATA_FILE
from tfseg.serving.lite import LiteModel, ModelFileError

TFLITE_TYPES = ("float32", "float16", "int8")
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
REPORT_FILE = "runtimes.json"
# A float conversion whose classes agree with the SavedModel's on less of the check images'
# pixels than this is not kept.
MIN_CLASS_AGREEMENT = 0.999
CHECK_IMAGES = 48  # validation images the files are checked on (evenly spread over the split)
CALIBRATION_IMAGES = 16  # training images int8's activation ranges are measured on


def tflite_file(dtype: str) -> str:
    return f"model_{dtype}.tflite"


@dataclass
class CheckImages:
    """What the conversions are checked and calibrated on: uint8 ``[H, W, C]`` images at
    their original size, their labels (uint8 ``[H, W]``, for the two-class scores; or
    None), and calibration images."""

    images: list[np.ndarray]
    labels: list[np.ndarray] | None
    calibration: list[np.ndarray]
    description: str


def synthetic_check_images(seed: int = 0) -> CheckImages:
    """Two images of two sizes (one odd): smooth shapes plus noise, for a run whose data is
    not at hand."""
    rng = np.random.default_rng(seed)
    images = []
    for height, width in ((96, 160), (77, 131)):
        y, x = np.mgrid[:height, :width]
        base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 64 * 4], -1)
        images.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    return CheckImages(images, None, images, f"{len(images)} synthetic images")


def run_check_images(run, check: int = CHECK_IMAGES, calibration: int = CALIBRATION_IMAGES) -> CheckImages:
    """The run's own validation images (labels with them) and training images, evenly
    spread over each split; synthetic images, said so, where the run's data is not here."""
    from tfseg.data.sources import make_source
    from tfseg.evaluate import examples, split_names

    try:
        source = make_source(run.config.data)
        val, train = split_names(source, "val"), split_names(source, "train")
    except UserError as err:
        fallback = synthetic_check_images()
        fallback.description += f" (the run's data is not at hand: {err})"
        return fallback

    def spread(split: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        total = sum(source.num_examples(name) for name in split_names(source, split))
        keep = set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist())
        kept = []
        for index, (_, image, label, _) in enumerate(examples(source, split)):
            if index in keep:
                kept.append((image, label))
            if len(kept) == len(keep):
                break
        return kept

    # A run that held no validation images out is checked on training images.
    checked_split = "val" if sum(source.num_examples(name) for name in val) else "train"
    checked, calibrating = spread(checked_split, check), spread("train", calibration)
    return CheckImages([image for image, _ in checked], [label for _, label in checked],
                       [image for image, _ in calibrating],
                       f"{len(checked)} images of {source.name}'s {'+'.join(split_names(source, checked_split))} "
                       "split at their original size "
                       f"(int8 calibrated on {len(calibrating)} of {'+'.join(train)})")


def checked_metadata(version_dir: Path) -> dict:
    """The export's metadata, if its model can be converted; else a one-line refusal."""
    metadata = json.loads((version_dir / METADATA_FILE).read_text())
    if "probabilities" not in metadata.get("outputs", ["probabilities"]):
        raise UserError(f"model {version_dir}: was exported without probabilities; export it with them to convert it")
    inputs = metadata.get("inputs", ["image"])
    if len(inputs) != 1 or "depth" in metadata.get("outputs", []):
        raise UserError(f"model {version_dir}: takes {' + '.join(inputs)} and returns {', '.join(metadata['outputs'])}; "
                        "the TFLite and ONNX conversions are checked for one-image segmentation models only: "
                        "serve it with TensorFlow or TF Serving")
    return metadata


def convert_tflite(version_dir: Path, dtype: str, calibration: list[np.ndarray]) -> bytes:
    """``serving_default`` as TFLite with builtin operations only.

    float16: weights stored as float16 (computed in float32). int8: the network's weights
    and activations int8 (activation ranges measured on ``calibration``, uint8 ``[H, W, C]``
    images of any sizes) wherever the converter can; everything outside the network stays
    as it is, because CLAHE's float steps hold exact integers up to 2**23 and the resizing
    and softmax are cheap next to the network. The input stays uint8 and the outputs float32
    and uint8, as in the SavedModel.
    """
    import tensorflow as tf

    def converter():
        converter = tf.lite.TFLiteConverter.from_saved_model(str(version_dir), signature_keys=["serving_default"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return converter

    try:
        if dtype == "float32":
            return converter().convert()
        if dtype == "float16":
            half = converter()
            half.optimizations = [tf.lite.Optimize.DEFAULT]
            half.target_spec.supported_types = [tf.float16]
            return half.convert()
        return _network_in_int8(converter, calibration)
    except Exception as err:  # the converter's ConverterError and friends
        reason = " ".join(str(err).split())[:300]
        raise UserError(f"model {version_dir}: cannot be converted to TFLite {dtype} ({reason})") from None


def _network_in_int8(converter, calibration: list[np.ndarray]) -> bytes:
    """Full-integer quantization of the operations under ``NETWORK_SCOPE`` only.

    The converter's selective quantization, in its two steps: calibrate (a float model
    carrying each tensor's measured range), then quantize with every float tensor outside
    the network denylisted. (``tf.lite.experimental.QuantizationDebugger`` does the same
    through these steps, but also builds an instrumented copy of the model, which for
    FCN-8s' 145 M parameters at KITTI size does not fit in 24 GB.)
    """
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.python import convert as lite_convert

    calibrating = converter()
    calibrating.optimizations = [tf.lite.Optimize.DEFAULT]
    calibrating.representative_dataset = lambda: ({"images": image[np.newaxis]} for image in calibration)
    calibrating._experimental_calibrate_only = True  # noqa: SLF001 (the debugger's own route)
    calibrated = calibrating.convert()
    # Each network pass of test-time augmentation has its own scope: network, network_1...
    in_network = re.compile(rf"{NETWORK_SCOPE}(_\d+)?/")
    outside = [t["name"] for t in Interpreter(model_content=calibrated).get_tensor_details()
               if t["dtype"] == np.float32 and not in_network.match(t["name"])]
    return lite_convert.mlir_quantize(calibrated, fully_quantize=False, enable_numeric_verify=False,
                                      denylisted_nodes=outside)


def convert_onnx(loaded) -> bytes:
    """ONNX of ``loaded``'s ``serving_default`` (``loaded``: the SavedModel, loaded, which
    owns the variables and must stay referenced)."""
    try:
        import tf2onnx
    except ImportError:
        raise UserError("--onnx needs tf2onnx: pip install tf2onnx onnxruntime") from None
    import tensorflow as tf

    spec = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")
    with _garbage_collected_every(seconds=0.5):
        proto, _ = tf2onnx.convert.from_function(
            tf.function(lambda images: loaded.signatures["serving_default"](images=images)),
            input_signature=[spec], opset=ONNX_OPSET)
    return proto.SerializeToString()


@contextlib.contextmanager
def _garbage_collected_every(seconds: float):
    """Full garbage collections every ``seconds`` while the block runs.

    tf2onnx deep-copies its whole graph, weights included, before each of its optimizer
    passes, and the copies it drops sit in reference cycles that only a full collection
    frees. CPython starts those by object counts, blind to the megabytes of weights each
    copy holds, so FCN-8s (145 M parameters, 580 MB) went past 24 GB and was killed;
    collected every half second it peaks at 14.7 GB (measured on a 2-core machine).
    """
    done = threading.Event()

    def collect():
        while not done.wait(seconds):
            gc.collect()

    collector = threading.Thread(target=collect, name="tfseg-onnx-gc", daemon=True)
    collector.start()
    try:
        yield
    finally:
        done.set()
        collector.join()


def outputs_of(predict, images: list[np.ndarray]) -> list[dict]:
    """``predict`` (``uint8 [1, H, W, C]`` -> outputs) on each image, as NumPy, batch axis off."""
    return [{name: np.asarray(value)[0] for name, value in predict(image[np.newaxis]).items()} for image in images]


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


def road_scores(outputs: list[dict], labels: list[np.ndarray], class_names) -> dict:
    """MaxF, AP and road (class 1) IoU of a two-class model's outputs at the labels' size."""
    from tfseg.evaluate import Scorer
    from tfseg.predictions import quantize_probability

    scorer = Scorer(class_names)
    for output, label in zip(outputs, labels):
        scorer.add(label, output["classes"], quantize_probability(output["probabilities"][..., 1]))
    result = scorer.result()
    return {"max_f": result["max_f"], "average_precision": result["average_precision"],
            "road_iou": result["iou_per_class"][1]}


def export_runtimes(version_dir: Path, tflite: bool, onnx: bool, check: CheckImages,
                    written: Callable[[str, dict], None] = lambda name, report: None) -> dict:
    """Writes the requested conversions beside the SavedModel and checks each against it on
    ``check``; calls ``written(file name, the report so far)`` as each is done, and returns
    (and writes to ``assets.extra/runtimes.json``) the report: the figures by file name, the
    SavedModel's own scores (two-class models) under ``"saved_model"``."""
    import tensorflow as tf

    metadata = checked_metadata(version_dir)
    two_class = len(metadata["class_names"]) == 2 and check.labels is not None
    loaded = tf.saved_model.load(str(version_dir))  # kept referenced: it owns the variables
    references = outputs_of(lambda x: loaded.signatures["serving_default"](images=tf.constant(x)), check.images)
    report = {"checked_on": check.description}
    if two_class:
        report["saved_model"] = road_scores(references, check.labels, metadata["class_names"])
    conversions = [(tflite_file(dtype), lambda d=dtype: convert_tflite(version_dir, d, check.calibration))
                   for dtype in (TFLITE_TYPES if tflite else ())]
    if onnx:
        conversions.append((ONNX_FILE, lambda: convert_onnx(loaded)))
    for name, convert in conversions:
        path = version_dir / "assets.extra" / name
        with atomic_path(path) as tmp:
            tmp.write_bytes(convert())
        report[name] = {"bytes": path.stat().st_size, **_check_file(path, check, references, metadata if two_class
                                                                      else None)}
        if (report[name]["checked"] and name != tflite_file("int8")
                and report[name]["class_agreement"] < MIN_CLASS_AGREEMENT):
            path.unlink()  # our own file, and it is wrong
            raise UserError(f"{name}: disagrees with the SavedModel on {check.description} ({report[name]}); "
                            "not kept")
        written(name, report)
    write_text(version_dir / "assets.extra" / REPORT_FILE, json.dumps(report, indent=1))
    return report


def _check_file(path: Path, check: CheckImages, references: list[dict], two_class_metadata: dict | None) -> dict:
    """The file, run by its runtime on the check images, against the SavedModel's outputs."""
    import gc

    try:
        runtime = LiteModel(path)
    except ModelFileError as err:  # onnxruntime or LiteRT missing: kept, unchecked
        return {"checked": False, "why": str(err)}
    outputs = outputs_of(runtime.predict, check.images)
    # The runtime's buffers (gigabytes for a big network at KITTI size) go before the next
    # conversion starts.
    del runtime
    gc.collect()
    figures = {"checked": True, **agreement(outputs, references)}
    if two_class_metadata is not None:
        figures.update(road_scores(outputs, check.labels, two_class_metadata["class_names"]))
    return figures
