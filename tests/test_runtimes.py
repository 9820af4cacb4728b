"""tfseg on runtimes other than TensorFlow: TFLite (LiteRT) and ONNX (onnxruntime)."""

import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

from data_fixtures import KITTI_SAMPLE  # noqa: E402
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

# The kitti_unet_clahe preset (CLAHE, its augmentation) on the real KITTI sample, made small.
SMALL_KITTI_UNET = [
    f"data.data_dir={KITTI_SAMPLE}", "data.resize=[96, 320]", "data.augment.crop_size=[96, 320]",
    "model.options={depth: 2, base_filters: 8, batch_norm: true}", "train.epochs=12", "train.learning_rate=0.003",
    # The agreement bounds below are measured on the model these settings give, its best
    # epoch picked by val mIoU (the preset's val MaxF picks another epoch on 2 images).
    "train.mixed_precision=float32", "train.best_metric=val_miou",
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

    if not KITTI_SAMPLE.is_dir():
        pytest.skip(f"the KITTI sample is not at {KITTI_SAMPLE}")
    run_dir = tmp_path_factory.mktemp("runtimes") / "run"
    train(load_config("kitti_unet_clahe", SMALL_KITTI_UNET + [f"run_dir={run_dir}"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir), "--tflite", "--onnx"]) == 0
    version = run_dir / "export" / "1"
    return version, json.loads((version / "assets.extra" / "runtimes.json").read_text())


def odd_images(count=3, seed=5):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (41 + 7 * i, 67 + 5 * i, 3), dtype=np.uint8) for i in range(count)]


@pytest.mark.slow
def test_a_clahe_model_exports_to_every_runtime_and_each_agrees(converted):
    version, report = converted
    assert report["checked_on"].startswith("2 images of kitti_road's val split at their original size")
    assert report["saved_model"]["max_f"] > 0.5
    for name in FILES:
        check = report[name]
        assert check["checked"], check
        assert (version / "assets.extra" / name).stat().st_size == check["bytes"]
        assert check["max_f"] == pytest.approx(report["saved_model"]["max_f"], abs=0.01 if "int8" in name else 1e-3)
        if name == "model_int8.tflite":
            assert check["class_agreement"] >= 0.98, check
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


# --- Converted files in predict and evaluate, and without TensorFlow --------------------

PREDICT_LITE = Path(__file__).resolve().parents[1] / "scripts" / "predict_lite.py"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two KITTI Road test images as they come, and crops of them at odd sizes."""
    folder = tmp_path_factory.mktemp("photos")
    for i, source in enumerate(sorted((KITTI_SAMPLE / "testing" / "image_2").glob("*.png"))[:2]):
        (folder / source.name).write_bytes(source.read_bytes())
        crop = np.asarray(Image.open(source))[40 * i:40 * i + 211, 100:100 + 377]
        Image.fromarray(crop).save(folder / f"photo_{i + 1}.png")
    return folder


def read_outputs(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): np.asarray(Image.open(p))
            for p in sorted(folder.rglob("*.png")) if p.parent.name in ("masks", "probabilities")}


@pytest.mark.slow
@pytest.mark.parametrize("name", FILES)
def test_predict_with_a_converted_file_matches_the_saved_model(converted, photos, tmp_path, name):
    from tfseg.cli import main

    version, _ = converted
    for model, out in ((version, tmp_path / "saved"), (version / "assets.extra" / name, tmp_path / "lite")):
        assert main(["predict", "--model", str(model), "--input", str(photos), "--output", str(out),
                     "--probabilities"]) == 0
    saved, lite = read_outputs(tmp_path / "saved"), read_outputs(tmp_path / "lite")
    assert sorted(lite) == sorted(saved) and "probabilities/um_road_000000.png" in lite
    for key in saved:
        if key.startswith("masks/"):
            assert np.mean(lite[key] == saved[key]) >= (0.98 if "int8" in name else 0.999), key
    palette = Image.open(tmp_path / "lite" / "masks" / "photo_1.png").getpalette()[:6]
    assert palette == Image.open(tmp_path / "saved" / "masks" / "photo_1.png").getpalette()[:6]


@pytest.mark.slow
def test_evaluate_a_converted_file_scores_like_the_saved_model(converted, tmp_path):
    from tfseg.cli import main

    version, _ = converted
    config = version.parents[1] / "config.yaml"
    scores = {}
    for model in (version, version / "assets.extra" / "model_float32.tflite", version / "assets.extra" / "model.onnx"):
        json_path = tmp_path / f"{model.name}.json"
        assert main(["evaluate", "--model", str(model), "--config", str(config), "--split", "val",
                     "--json", str(json_path)]) == 0
        scores[model.name] = json.loads(json_path.read_text())
    for name in ("model_float32.tflite", "model.onnx"):
        assert scores[name]["miou"] == pytest.approx(scores["1"]["miou"], abs=1e-3)
        assert scores[name]["num_images"] == scores["1"]["num_images"]


@pytest.mark.slow
def test_predict_lite_writes_what_tfseg_predict_writes_without_tensorflow(converted, photos, tmp_path):
    """scripts/predict_lite.py, in TFSEG_LITE_PYTHON's environment (CI: one without
    TensorFlow), against `tfseg predict --model FILE` for each of the four files."""
    from tfseg.cli import main

    python = os.environ.get("TFSEG_LITE_PYTHON", sys.executable)
    if "TFSEG_LITE_PYTHON" in os.environ:
        probe = subprocess.run([python, "-c", "import tensorflow"], capture_output=True)
        assert probe.returncode != 0, "TFSEG_LITE_PYTHON's environment has TensorFlow"
    version, _ = converted
    for name in FILES:
        model = version / "assets.extra" / name
        assert main(["predict", "--model", str(model), "--input", str(photos), "--output", str(tmp_path / name),
                     "--probabilities"]) == 0
        lite = tmp_path / f"{name}_lite"
        done = subprocess.run([python, str(PREDICT_LITE), "--model", str(model), "--input", str(photos),
                               "--output", str(lite), "--probabilities"], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        expected, got = read_outputs(tmp_path / name), read_outputs(lite)
        assert sorted(got) == sorted(expected)
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=f"{name} {key}")


def test_predict_lite_imports_no_tensorflow():
    code = ("import runpy, sys; runpy.run_path(sys.argv[1]); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(PREDICT_LITE)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_bad_model_files_are_one_line(converted, photos, tmp_path, capsys, monkeypatch):
    from tfseg.cli import main

    version, _ = converted
    good = version / "assets.extra" / "model_float32.tflite"
    alone = tmp_path / "alone" / "model.tflite"  # not beside a tfseg.json: not a tfseg export
    alone.parent.mkdir()
    alone.write_bytes(good.read_bytes())
    truncated = tmp_path / "truncated" / "model.tflite"
    truncated.parent.mkdir()
    truncated.write_bytes(good.read_bytes()[:5000])
    (truncated.parent / "tfseg.json").write_text((version / "assets.extra" / "tfseg.json").read_text())
    cases = [(alone, "no tfseg.json beside it"), (truncated, "is not a readable TFLite model"),
             (tmp_path / "missing.onnx", "does not exist")]
    for model, reason in cases:
        assert main(["predict", "--model", str(model), "--input", str(photos), "--output", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert reason in err and str(model) in err and err.count("\n") == 1, err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    assert main(["predict", "--model", str(version / "assets.extra" / "model.onnx"), "--input", str(photos),
                 "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pip install onnxruntime" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    # The script says the same in one line, and exits 2.
    done = subprocess.run([sys.executable, str(PREDICT_LITE), "--model", str(alone), "--input", str(photos),
                           "--output", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "no tfseg.json beside it" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.slow
def test_predict_lite_names_a_bad_image_and_exits_1(converted, photos, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in photos.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    version, _ = converted
    done = subprocess.run([sys.executable, str(PREDICT_LITE), "--model",
                           str(version / "assets.extra" / "model_float32.tflite"), "--input", str(folder),
                           "--output", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.startswith(f"skipped {folder / 'broken.png'}: cannot be read")
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == [
        "photo_1.png", "photo_2.png", "um_000000.png", "um_000001.png"]


@pytest.mark.slow
def test_bench_predict_runtimes_measures_every_file_side_by_side(converted, tmp_path, capsys):
    from tfseg.bench.predict import main as bench_main

    version, report = converted
    json_path = tmp_path / "runtimes.json"
    assert bench_main(["--runtimes", "--model", str(version), "--synthetic", "--num-images", "2", "--rounds", "2",
                       "--threads", "1", "--json", str(json_path)]) == 0
    result = json.loads(json_path.read_text())
    assert list(result["runtimes"]) == ["SavedModel"] + FILES and result["threads"] == 1
    for name in FILES:
        figures = result["runtimes"][name]
        assert figures["bytes"] == report[name]["bytes"]
        assert len(figures["images_per_s"]["rounds"]) == 2 and figures["latency_ms_median"] > 0
        assert figures["over_saved_model"]["median"] > 0
    assert result["runtimes"]["SavedModel"]["over_saved_model"]["median"] == 1.0
    out = capsys.readouterr().out
    assert "model_int8.tflite" in out and "x SavedModel" in out
    assert sorted(p.name for p in (version / "assets.extra").iterdir()) == sorted(
        FILES + ["model.keras", "runtimes.json", "tfseg.json"])  # the bench wrote nothing into the export


def test_predict_lite_keeps_tfseg_predicts_conventions():
    """scripts/predict_lite.py is self-contained, so it repeats a few of tfseg's own
    pieces; they must stay the same as the originals."""
    from tfseg.data.labels import voc_palette
    from tfseg.images import IMAGE_SUFFIXES
    from tfseg.predict import output_names
    from tfseg.predictions import kitti_submission_stem
    from tfseg.serving import lite

    np.testing.assert_array_equal(lite.voc_palette(), voc_palette())
    assert lite.IMAGE_SUFFIXES == IMAGE_SUFFIXES
    for stem in ("um_000012", "umm_000000", "uu_000099", "um_12", "photo_1", "um_0000123", "xx_000012"):
        assert lite.probability_name(stem) == kitti_submission_stem(stem), stem
    folder = Path("in")
    images = [folder / name for name in ("a.png", "a.jpg", "b.png", "c.JPEG", "c.tif", "d.bmp")]
    assert lite.output_names(images, folder) == output_names(images, folder)
