"""`tfseg evaluate` in its three forms (a run, a SavedModel, a folder of predictions) against
an independent NumPy computation at the labels' own resolution, KITTI devkit MaxF/AP
included, on data with void, odd sizes and several sizes per split."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

from tfseg.cli import main
from tfseg.config import load_config
from tfseg.data.kitti_road import decode_ground_truth
from tfseg.data.labels import VOID
from tfseg.evaluate import evaluate_predictions, evaluate_run, evaluate_saved_model, read_prediction
from tfseg.metrics import RoadCurve
from tfseg.predictions import kitti_submission_stem
from tfseg.serving.export import export_run
from tfseg.models import build_model
from tfseg.predict import predict_folder, write_mask

from data_fixtures import VOC_SAMPLE, make_kitti
from devkit_reference import devkit_table

# Trains through train.mixed_precision=auto: CI runs these under float32 and mixed_bfloat16.
pytestmark = pytest.mark.auto_precision

SIZES = {"um_000001": (21, 33), "um_000002": (20, 31), "umm_000003": (23, 35),
         "umm_000004": (21, 33), "uu_000005": (19, 30), "uu_000006": (22, 34)}
OPTIONS = {"depth": 1, "base_filters": 2}


# -- the independent reference: the devkit's own steps, in plain NumPy ---------------------

def devkit_road_scores(pairs):
    """The devkit's MaxF, its threshold and AP over (label, probability uint8) pairs."""
    table = devkit_table(pairs)
    return {key: table[key] for key in ("max_f", "max_f_threshold", "average_precision")}


def set_counting_scores(pairs, num_classes):
    labels = np.concatenate([label.ravel() for label, _ in pairs])
    predicted = np.concatenate([classes.ravel() for _, classes in pairs])
    keep = labels != VOID
    labels, predicted = labels[keep], predicted[keep]
    ious = [np.sum((labels == c) & (predicted == c)) / np.sum((labels == c) | (predicted == c))
            for c in range(num_classes) if np.sum((labels == c) | (predicted == c))]
    return {"miou": np.mean(ious), "pixel_accuracy": np.mean(labels == predicted)}


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kitti(tmp_path_factory):
    return make_kitti(tmp_path_factory.mktemp("kitti") / "data_road", SIZES, test_ids=())


@pytest.fixture(scope="module")
def run_dir(kitti, tmp_path_factory):
    """A finished run, written as `tfseg train` writes one, with a random small U-Net."""
    run_dir = tmp_path_factory.mktemp("run")
    config = load_config("kitti_unet_clahe", [f"data.data_dir={kitti}", "data.resize=[16, 24]",
                                        f"model.options={json.dumps(OPTIONS)}", f"run_dir={run_dir}",
                                        "data.preprocess.clahe_backend=tensorflow"])
    model = build_model("unet", 2, **config.model.options)
    rng = np.random.default_rng(7)
    for weight in model.weights:  # random kernels and biases; batch norm statistics stay valid
        if weight.path.endswith(("kernel", "bias")):
            weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))
    model.save(run_dir / "model.keras")
    (run_dir / "config.yaml").write_text(yaml.safe_dump(dataclass_dict(config)))
    (run_dir / "labels.json").write_text(json.dumps({"class_names": ["not_road", "road"],
                                                     "palette": [[255, 0, 0], [255, 0, 255]]}))
    return run_dir


def dataclass_dict(config):
    from tfseg import config as config_lib

    return config_lib.to_dict(config)


@pytest.fixture(scope="module")
def exported(run_dir):
    from tfseg.runs import load_run

    run = load_run(run_dir)
    return export_run(run, run_dir / "export")


def ground_truth(kitti, image_id):
    category, number = image_id.split("_")
    return decode_ground_truth(np.asarray(Image.open(kitti / "training" / "gt_image_2" /
                                                     f"{category}_road_{number}.png").convert("RGB")))


def served(exported, kitti):
    """(label, classes, road probability uint8) per image, from the SavedModel at full size."""
    loaded = tf.saved_model.load(str(exported))
    out = []
    for image_id in sorted(SIZES):
        image = np.asarray(Image.open(kitti / "training" / "image_2" / f"{image_id}.png").convert("RGB"))
        outputs = loaded.serve(image[None])
        probability = outputs["probabilities"].numpy()[0, ..., 1]
        out.append((ground_truth(kitti, image_id), outputs["classes"].numpy()[0],
                    np.round(probability * 255).astype(np.uint8)))
    return out


# -- tests ----------------------------------------------------------------------------------

def test_the_three_forms_equal_the_numpy_reference(kitti, run_dir, exported, tmp_path):
    pairs = served(exported, kitti)
    for (label, classes, _), image_id in zip(pairs, sorted(SIZES)):
        assert classes.shape == label.shape == SIZES[image_id]  # original sizes, all different
        assert (label == VOID).any()
    expected = {**set_counting_scores([(lab, cls) for lab, cls, _ in pairs], 2),
                **devkit_road_scores([(lab, prob) for lab, _, prob in pairs])}
    assert 0.0 < expected["max_f"] < 1.0  # a real curve, not a degenerate one

    data = load_config("kitti_unet_clahe", [f"data.data_dir={kitti}"]).data
    by_run = evaluate_run(run_dir, "all", progress=False)
    by_model = evaluate_saved_model(exported, data, "all", progress=False)
    predictions = tmp_path / "predictions"
    images = tmp_path / "images"
    images.mkdir()
    for image_id in SIZES:
        (images / f"{image_id}.png").write_bytes((kitti / "training" / "image_2" / f"{image_id}.png").read_bytes())
    predict_folder(exported, images, predictions, progress=False, probabilities=True)
    assert sorted(p.name for p in (predictions / "probabilities").iterdir())[0] == "um_road_000001.png"
    by_files = evaluate_predictions(predictions / "probabilities", data, "all", progress=False)
    by_masks = evaluate_predictions(predictions / "masks", data, "all", progress=False)

    for result in (by_run, by_model, by_files):
        assert result["num_images"] == len(SIZES)
        for key, value in expected.items():
            assert result[key] == pytest.approx(value, abs=1e-9), key
    assert by_masks["miou"] == pytest.approx(expected["miou"], abs=1e-12)  # hard masks: same classes
    assert by_run["confusion_matrix"] == by_model["confusion_matrix"] == by_files["confusion_matrix"]
    assert set(by_run["per_class_iou"]) == {"not_road", "road"}


def test_road_curve_threshold_semantics():
    curve = RoadCurve()
    label = np.array([[1, 1, 0, 0, VOID]], np.uint8)
    probability = np.array([[200, 100, 150, 10, 255]], np.uint8)
    curve.add(label, probability)
    scores = curve.scores()
    # At t = 101..150 / 255: the road pixel at 200 and the false one at 150 are positive.
    # At t = 151..200 / 255 only the road pixel at 200: precision 1, recall 0.5, F = 2/3.
    # At t = 11..100 / 255: both road pixels and one false: precision 2/3, recall 1, F = 0.8.
    assert scores["max_f"] == pytest.approx(0.8)
    assert scores["max_f_threshold"] == pytest.approx(11 / 255)


def test_saved_model_equals_an_independent_geometry(exported, kitti):
    """resize -> CLAHE (OpenCV's, on Y of YCrCb) -> normalise -> network -> logits resized
    back: the preset's path recomputed outside the model."""
    import cv2

    from tfseg.runs import load_run

    model = load_run(exported.parent.parent).model()
    image = np.asarray(Image.open(kitti / "training" / "image_2" / "umm_000003.png").convert("RGB"))
    small = tf.cast(tf.round(tf.image.resize(image[None], (16, 24))), tf.uint8).numpy()[0]
    ycrcb = cv2.cvtColor(small, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(ycrcb[..., 0])
    equalized = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)
    logits = model.predict(equalized[None] / 255.0, verbose=0)
    logits = tf.image.resize(logits, image.shape[:2]).numpy()
    expected = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    loaded = tf.saved_model.load(str(exported))  # kept referenced: it owns the variables
    got = loaded.serve(image[None])["probabilities"].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_kitti_names():
    assert kitti_submission_stem("umm_000012") == "umm_road_000012"
    assert kitti_submission_stem("holiday") == "holiday"


def test_prediction_formats(tmp_path):
    values = np.array([[0, 255], [255, 0]], np.uint8)
    Image.fromarray(values, mode="L").save(tmp_path / "b.png")
    classes, probability = read_prediction(tmp_path / "b.png", 2, "auto", (2, 2))
    assert classes.tolist() == [[0, 1], [1, 0]] and probability is not None
    Image.fromarray(np.array([[0, 1], [1, 1]], np.uint8), mode="L").save(tmp_path / "i.png")
    classes, probability = read_prediction(tmp_path / "i.png", 2, "auto", (2, 2))
    assert classes.tolist() == [[0, 1], [1, 1]] and probability is None
    Image.fromarray(np.array([[3, 200], [127, 128]], np.uint8), mode="L").save(tmp_path / "p.png")
    classes, probability = read_prediction(tmp_path / "p.png", 2, "auto", (2, 2))
    assert classes.tolist() == [[0, 1], [0, 1]] and probability.tolist() == [[3, 200], [127, 128]]


@pytest.mark.parametrize("problem, message", [
    ("missing", "no um_000002.png for image um_000002"),
    ("extra", "holiday.png is not an image of split 'all'"),
    ("size", "um_road_000001.png: is 5x5 but its ground truth is 21x33"),
    ("values", "outside the class ids 0..1"),
])
def test_bad_prediction_folders_are_one_line(kitti, tmp_path, capsys, problem, message):
    folder = tmp_path / "p"
    folder.mkdir()
    for image_id, size in SIZES.items():
        Image.fromarray(np.zeros(size, np.uint8), mode="P").save(folder / f"{kitti_submission_stem(image_id)}.png")
    if problem == "missing":
        (folder / "um_road_000002.png").unlink()
    elif problem == "extra":
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(folder / "holiday.png")
    elif problem == "size":
        Image.fromarray(np.zeros((5, 5), np.uint8)).save(folder / "um_road_000001.png")
    else:
        write_mask(folder / "um_road_000001.png", np.full(SIZES["um_000001"], 7, np.uint8),
                   np.zeros((8, 3), np.uint8))
    code = main(["evaluate", "--predictions", str(folder), "--dataset", "kitti_road",
                 "--data-dir", str(kitti), "--split", "all"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tfseg:")]
    assert code == 2 and len(errors) == 1 and message in errors[0]


def test_cli_run_dir_json_and_bad_input(run_dir, tmp_path, capsys):
    output = tmp_path / "m.json"
    assert main(["evaluate", "--run-dir", str(run_dir), "--split", "all", "--json", str(output)]) == 0
    metrics = json.loads(output.read_text())
    assert {"miou", "pixel_accuracy", "mean_class_accuracy", "per_class_iou", "confusion_matrix",
            "precision", "recall", "f1", "max_f", "max_f_threshold", "average_precision"} <= set(metrics)
    assert (tmp_path / "m_confusion.png").stat().st_size > 0
    assert "max_f" in capsys.readouterr().out

    assert main(["evaluate", "--run-dir", str(run_dir), "--split", "nope"]) == 2
    assert "has no split 'nope'" in capsys.readouterr().err
    empty = tmp_path / "empty_run"
    empty.mkdir()
    (empty / "config.yaml").write_text((run_dir / "config.yaml").read_text())
    (empty / "labels.json").write_text((run_dir / "labels.json").read_text())
    assert main(["evaluate", "--run-dir", str(empty)]) == 2
    assert "has no model.keras" in capsys.readouterr().err


def test_float32_export_of_a_mixed_precision_model(run_dir, tmp_path):
    """A model trained under mixed_bfloat16 is served in float32: the SavedModel equals the
    float32 network with the same weights, not the bfloat16 one."""
    import shutil

    from tfseg.runs import load_run

    mixed_run = tmp_path / "mixed_run"
    for name in ("config.yaml", "labels.json"):
        (mixed_run / name).parent.mkdir(exist_ok=True)
        shutil.copyfile(run_dir / name, mixed_run / name)
    float32 = load_run(run_dir).model()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    mixed = build_model("unet", 2, **load_run(run_dir).config.model.options)
    keras.mixed_precision.set_global_policy("float32")
    mixed.set_weights(float32.get_weights())
    mixed.save(mixed_run / "model.keras")
    path = export_run(load_run(mixed_run), tmp_path / "sm")
    image = np.random.default_rng(1).integers(0, 256, (1, 16, 24, 3), dtype=np.uint8)
    loaded = tf.saved_model.load(str(path))
    served_probabilities = loaded.serve(image)["probabilities"].numpy()
    network_input = loaded.network_input(image).numpy()
    expected = tf.nn.softmax(float32.predict(network_input, verbose=0)).numpy()
    np.testing.assert_allclose(served_probabilities, expected, atol=1e-5)
    bf16 = tf.nn.softmax(mixed.predict(network_input, verbose=0)).numpy()
    assert np.abs(bf16 - expected).max() > 1e-4  # the check could tell them apart


@pytest.mark.skipif(not VOC_SAMPLE.is_dir(), reason="real sample data (shared/data) not found")
def test_voc_palette_predictions_on_the_real_sample(tmp_path):
    """21 classes, real palette PNGs and JPEG photos: predictions made from the ground truth
    with its borders filled and a block painted over, scored like the VOC protocol."""
    from tfseg.data.sources import make_source
    from tfseg.data.labels import voc_palette

    data = load_config("voc_unet", [f"data.data_dir={VOC_SAMPLE}", "data.source=voc2012"]).data
    source = make_source(data)
    pairs = []
    for split in ("train", "val"):
        for example in source.examples(split):
            label = source.read_label(example)
            predicted = np.where(label == VOID, 0, label).astype(np.uint8)
            predicted[10:60, 20:120] = 15  # "person" painted where it may not be
            write_mask(tmp_path / "pred" / f"{example.id}.png", predicted, voc_palette(21))
            pairs.append((label, predicted))
    result = evaluate_predictions(tmp_path / "pred", data, "all", progress=False)
    expected = set_counting_scores(pairs, 21)
    assert result["num_images"] == 5
    assert result["miou"] == pytest.approx(expected["miou"], abs=1e-12)
    assert result["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-12)
    assert "max_f" not in result and result["per_class_iou"]["person"] is not None


def test_undecodable_ground_truth_is_one_line(exported, tmp_path, capsys):
    from data_fixtures import save_png

    root = make_kitti(tmp_path / "data_road", {"um_000001": (21, 33), "um_000002": (20, 31),
                                               "umm_000003": (23, 35)}, test_ids=())
    image = root / "training" / "image_2" / "um_000002.png"
    image.write_bytes(image.read_bytes()[:200])  # truncated
    for argv_extra, message in ((["--split", "all"], "kitti_road image um_000002 (trainval split): Invalid PNG"),):
        code = main(["evaluate", "--model", str(exported), "--dataset", "kitti_road", "--data-dir", str(root),
                     *argv_extra])
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tfseg:")]
        assert code == 2 and len(errors) == 1 and message in errors[0], errors
    image.unlink()
    (root / "training" / "gt_image_2" / "um_road_000002.png").unlink()
    save_png(root / "training" / "gt_image_2" / "umm_road_000003.png", np.zeros((5, 5, 3), np.uint8))
    code = main(["evaluate", "--model", str(exported), "--dataset", "kitti_road", "--data-dir", str(root),
                 "--split", "all"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tfseg:")]
    assert code == 2 and len(errors) == 1
    assert "umm_road_000003.png: mask is 5x5 but its image is 23x35" in errors[0], errors
