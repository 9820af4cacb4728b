"""The exported model as TF Serving loads it: versions, signatures, encoded bytes, metadata."""

import base64
import io
import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.test_encoded import asymmetric_image, jpeg_with_exif, pillow_exif
from tfseg.cli import main
from tfseg.config import load_config
from tfseg.runs import load_trained_model
from tfseg.serving.client import SegmentationModel
from tfseg.training.run import train

# Trains through train.mixed_precision=auto: CI runs these under float32 and mixed_bfloat16.
pytestmark = pytest.mark.auto_precision

TINY = [
    "data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
    "model.options={depth: 2, base_filters: 4}", "train.epochs=1", "train.batch_size=4",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("serving") / "run"
    train(load_config("demo_unet", TINY + [f"run_dir={run_dir}"]), verbose=0)
    return run_dir


@pytest.fixture(scope="module")
def base(run_dir):
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    return run_dir / "export"


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_tf_serving_layout_and_versions_never_overwritten(run_dir, base, capsys):
    assert (base / "1" / "saved_model.pb").is_file()
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    assert (base / "2" / "saved_model.pb").is_file()
    capsys.readouterr()
    assert main(["export", "--run-dir", str(run_dir), "--version", "1"]) == 2
    assert "version 1 already exists; versions are never overwritten" in capsys.readouterr().err
    # predict and evaluate take the base folder and use the highest version.
    assert SegmentationModel(base).path == base / "2"


def test_metadata_and_keras_model_travel_with_it(run_dir, base):
    metadata = json.loads((base / "1" / "assets.extra" / "tfseg.json").read_text())
    assert metadata["preset"] == "demo_unet" and metadata["dataset"] == "synthetic"
    assert metadata["version"] == 1 and metadata["tfseg_version"]
    assert metadata["outputs"] == ["classes", "probabilities"]
    assert "git_commit" in metadata and "scores" in metadata
    copied = load_trained_model(base / "1" / "assets.extra" / "model.keras")
    for a, b in zip(copied.get_weights(), load_trained_model(run_dir / "model.keras").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_serve_bytes_equals_serving_default(base):
    loaded = tf.saved_model.load(str(base / "1"))
    assert {"serving_default", "serve", "serve_bytes"} <= set(loaded.signatures)
    image = asymmetric_image(32, 48)
    by_pixels = loaded.signatures["serving_default"](images=tf.constant(image[np.newaxis]))
    by_png = loaded.signatures["serve_bytes"](image_bytes=tf.constant([png_bytes(image)]))
    np.testing.assert_array_equal(by_png["classes"].numpy(), by_pixels["classes"].numpy())
    np.testing.assert_array_equal(by_png["probabilities"].numpy(), by_pixels["probabilities"].numpy())


def test_serve_bytes_turns_a_phone_photo_upright(base):
    """A JPEG stored sideways with EXIF orientation 6: segmented as a viewer shows it."""
    stored = asymmetric_image(32, 48)
    data = jpeg_with_exif(stored, pillow_exif(6))
    upright = np.asarray(Image.open(io.BytesIO(data)).convert("RGB").transpose(Image.Transpose.ROTATE_270))
    loaded = tf.saved_model.load(str(base / "1"))
    by_bytes = loaded.signatures["serve_bytes"](image_bytes=tf.constant([data]))["classes"].numpy()
    by_pixels = loaded.signatures["serving_default"](images=tf.constant(upright[np.newaxis]))["classes"].numpy()
    assert by_bytes.shape == (1, 48, 32)
    np.testing.assert_array_equal(by_bytes, by_pixels)


def test_a_rest_request_body_as_tf_serving_reads_it(base):
    """The README's curl body: TF Serving turns {"b64": ...} into the bytes of a string input."""
    images = [asymmetric_image(32, 48), asymmetric_image(32, 48)[::-1].copy()]
    body = json.dumps({"signature_name": "serve_bytes",
                       "instances": [{"image_bytes": {"b64": base64.b64encode(png_bytes(i)).decode()}}
                                     for i in images]})
    request = json.loads(body)
    batch = [base64.b64decode(instance["image_bytes"]["b64"]) for instance in request["instances"]]
    loaded = tf.saved_model.load(str(base / "1"))
    outputs = loaded.signatures[request["signature_name"]](image_bytes=tf.constant(batch))
    expected = loaded.signatures["serving_default"](images=tf.constant(np.stack(images)))
    np.testing.assert_array_equal(outputs["classes"].numpy(), expected["classes"].numpy())


def test_export_without_probabilities(run_dir, tmp_path, capsys):
    assert main(["export", "--run-dir", str(run_dir), "--output", str(tmp_path / "small"),
                 "--no-probabilities"]) == 0
    loaded = tf.saved_model.load(str(tmp_path / "small" / "1"))
    outputs = loaded.signatures["serving_default"](images=tf.zeros([1, 8, 8, 3], tf.uint8))
    assert set(outputs) == {"classes"}
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(asymmetric_image()).save(images / "a.png")
    capsys.readouterr()
    assert main(["predict", "--model", str(tmp_path / "small"), "-i", str(images), "-o", str(tmp_path / "out")]) == 0


def test_a_corrupt_saved_model_is_one_line(base, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(base / "1", broken)
    (broken / "saved_model.pb").write_bytes(b"\x08\x01 this is not a protobuf")
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(asymmetric_image()).save(images / "a.png")
    assert main(["predict", "--model", str(broken), "-i", str(images), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tfseg: error: model {broken}: cannot be loaded as a SavedModel") and err.count("\n") == 1


@pytest.mark.slow
def test_tflite_files_agree_with_the_saved_model(run_dir, tmp_path, capsys):
    """The demo preset's run, exported with --tflite (the KITTI presets: test_runtimes)."""
    assert main(["export", "--run-dir", str(run_dir), "--output", str(tmp_path / "x"), "--tflite"]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "x" / "1" / "assets.extra" / "runtimes.json").read_text())
    assert report.pop("checked_on").startswith("4 images of synthetic's val split")
    assert set(report) == {"model_float32.tflite", "model_float16.tflite", "model_int8.tflite"}
    for name, check in report.items():
        assert check["checked"] and check["class_agreement"] >= (0.95 if "int8" in name else 0.999), (name, check)
        if "int8" not in name:
            assert check["max_probability_difference"] < (0.01 if "float32" in name else 0.03), (name, check)
        assert (tmp_path / "x" / "1" / "assets.extra" / name).stat().st_size == check["bytes"]
    assert "classes agree on" in out


def test_onnx_agrees_with_the_saved_model(run_dir, tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    assert main(["export", "--run-dir", str(run_dir), "--output", str(tmp_path / "x"), "--onnx"]) == 0
    check = json.loads((tmp_path / "x" / "1" / "assets.extra" / "runtimes.json").read_text())["model.onnx"]
    assert check["checked"] and check["class_agreement"] >= 0.999 and check["max_probability_difference"] < 0.01


def test_the_commit_is_this_checkouts_own(run_dir, base):
    import subprocess
    from pathlib import Path

    import tfseg

    checkout = Path(tfseg.__file__).resolve().parent.parent
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True)
    metadata = json.loads((base / "1" / "assets.extra" / "tfseg.json").read_text())
    assert metadata["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
