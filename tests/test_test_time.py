"""Test-time augmentation in the exported model: the passes averaged, as done by hand."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tfseg.cli import main
from tfseg.config import load_config
from tfseg.data.preprocess import pad_to_multiple
from tfseg.serving.client import SegmentationModel
from tfseg.serving.test_time import TestTimeAugmentation
from tfseg.training.run import train

# A stride-4 U-Net on images whose sides are multiples of 4 and no data.resize: nothing
# is padded, so a mirrored pass is the mirror image of a pass on the mirrored image.
TINY = [
    "data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
    "model.options={depth: 2, base_filters: 4}", "train.epochs=1", "train.batch_size=4",
    "train.mixed_precision=float32",
]
STRIDE = 4


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tta") / "run"
    train(load_config("demo_unet", TINY + [f"run_dir={run_dir}"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    assert main(["export", "--run-dir", str(run_dir), "--tta-flip"]) == 0
    assert main(["export", "--run-dir", str(run_dir), "--tta-scales", "1", "0.5"]) == 0
    return run_dir / "export"


@pytest.fixture(scope="module")
def resized_exports(tmp_path_factory):
    """A model with data.resize (not a multiple of the stride: the network input is padded),
    exported plain (1) and with flip and two scales baked in (2)."""
    run_dir = tmp_path_factory.mktemp("tta_resized") / "run"
    train(load_config("demo_unet", TINY + ["data.resize=[30, 42]", f"run_dir={run_dir}"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    assert main(["export", "--run-dir", str(run_dir), "--tta-flip", "--tta-scales", "1", "0.75"]) == 0
    return run_dir / "export"


def images(height=36, width=44, count=2):
    return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


def test_flip_tta_is_the_mean_of_the_two_passes_done_by_hand(exports):
    plain, flipped = SegmentationModel(exports / "1"), SegmentationModel(exports / "2")
    x = images()
    by_hand = (plain.predict(x)["probabilities"] + plain.predict(x[:, :, ::-1])["probabilities"][:, :, ::-1]) / 2
    out = flipped.predict(x)
    np.testing.assert_allclose(out["probabilities"], by_hand, atol=2e-6)
    np.testing.assert_array_equal(out["classes"], by_hand.argmax(-1))
    # Something changed: the network is not mirror-symmetric.
    assert np.abs(out["probabilities"] - plain.predict(x)["probabilities"]).max() > 1e-3
    assert flipped.metadata["test_time_augmentation"] == {"flip": True, "scales": [1.0]}
    assert plain.metadata["test_time_augmentation"] == {"flip": False, "scales": [1.0]}


def test_scale_tta_averages_a_pass_on_the_resized_network_input(exports):
    plain, scaled = SegmentationModel(exports / "1"), SegmentationModel(exports / "3")
    loaded = tf.saved_model.load(str(exports / "1"))
    x = images()
    # By hand from the plain export's own endpoints: the network input at half size,
    # padded to the stride, the network, the padding cropped, logits back to the image.
    half = tf.image.resize(loaded.network_input(x), [18, 22], method="bilinear")
    logits = loaded.network(pad_to_multiple(half, STRIDE))[:, :18, :22, :]
    small = tf.nn.softmax(tf.image.resize(logits, [36, 44], method="bilinear"), axis=-1).numpy()
    by_hand = (plain.predict(x)["probabilities"] + small) / 2
    np.testing.assert_allclose(scaled.predict(x)["probabilities"], by_hand, atol=2e-6)
    assert scaled.metadata["test_time_augmentation"] == {"flip": False, "scales": [1.0, 0.5]}


def test_evaluate_run_with_tta_writes_beside_the_plain_scores(exports, capsys):
    run_dir = exports.parent
    assert main(["evaluate", "--run-dir", str(run_dir)]) == 0
    assert main(["evaluate", "--run-dir", str(run_dir), "--tta-flip"]) == 0
    plain = json.loads((run_dir / "metrics_val.json").read_text())
    tta = json.loads((run_dir / "metrics_val_tta.json").read_text())
    assert plain["test_time_augmentation"] == {"flip": False, "scales": [1.0]}
    assert tta["test_time_augmentation"] == {"flip": True, "scales": [1.0]}
    # evaluate --run-dir with TTA scores what the export with TTA serves.
    assert main(["evaluate", "--model", str(exports / "2"), "--dataset", "synthetic", "--config", "demo_unet",
                 "--set", TINY[0], "--json", str(run_dir / "served.json")]) == 0
    served = json.loads((run_dir / "served.json").read_text())
    assert served["miou"] == pytest.approx(tta["miou"], abs=1e-6)


@pytest.mark.parametrize("which, baked, tta", [
    ("exports", "2", TestTimeAugmentation(flip=True)),
    ("exports", "3", TestTimeAugmentation(scales=(1.0, 0.5))),
    ("resized_exports", "2", TestTimeAugmentation(flip=True, scales=(1.0, 0.75))),
])
def test_tta_around_a_plain_export_serves_what_the_export_with_it_bakes_in(request, which, baked, tta):
    exports = request.getfixturevalue(which)
    around = SegmentationModel(exports / "1")
    around.with_test_time_augmentation(tta)
    x = images(37, 61)
    out, expected = around.predict(x), SegmentationModel(exports / baked).predict(x)
    np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=2e-6)
    np.testing.assert_array_equal(out["classes"], expected["classes"])
    assert np.abs(out["probabilities"] - SegmentationModel(exports / "1").predict(x)["probabilities"]).max() > 1e-3


def test_predict_and_evaluate_model_with_tta_give_the_baked_export_s_results(exports, tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i, image in enumerate(images(37, 61, count=3)):
        Image.fromarray(image).save(folder / f"{i}.png")
    assert main(["predict", "--model", str(exports / "1"), "--tta-flip", "-i", str(folder), "-o",
                 str(tmp_path / "around")]) == 0
    assert main(["predict", "--model", str(exports / "2"), "-i", str(folder), "-o", str(tmp_path / "baked")]) == 0
    plain = SegmentationModel(exports / "1")
    for i in range(3):
        around = np.asarray(Image.open(tmp_path / "around" / "masks" / f"{i}.png"))
        np.testing.assert_array_equal(around, np.asarray(Image.open(tmp_path / "baked" / "masks" / f"{i}.png")))
        assert (around != plain(np.asarray(Image.open(folder / f"{i}.png")))).any()  # the passes changed it
    data = ["--dataset", "synthetic", "--config", "demo_unet", "--set", TINY[0]]
    assert main(["evaluate", "--model", str(exports / "1"), "--tta-flip", *data,
                 "--json", str(tmp_path / "around.json")]) == 0
    assert main(["evaluate", "--model", str(exports / "2"), *data, "--json", str(tmp_path / "baked.json")]) == 0
    around, baked = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("around", "baked"))
    assert around["miou"] == pytest.approx(baked["miou"], abs=1e-6)
    assert around["test_time_augmentation"] == {"flip": True, "scales": [1.0]}


def test_bad_tta_settings_are_one_line(exports, tmp_path, capsys):
    for argv, message in [
        (["evaluate", "--model", str(exports / "2"), "--dataset", "synthetic", "--config", "demo_unet",
          "--set", TINY[0], "--tta-flip"], "was exported with test-time augmentation"),
        (["evaluate", "--predictions", str(tmp_path), "--dataset", "synthetic", "--tta-flip"],
         "--predictions are scored as they were made"),
        (["predict", "--model", str(exports / "1"), "-i", str(tmp_path), "-o", str(tmp_path / "out"),
          "--tta-flip", "--tile", "64"], "test-time augmentation runs on whole images"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
    assert main(["export", "--run-dir", str(exports.parent), "--tta-scales", "1", "9"]) == 2
    err = capsys.readouterr().err.strip()
    assert "test-time scales [1.0, 9.0]" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in exports.iterdir()) == ["1", "2", "3"]  # nothing written


def test_passes():
    assert TestTimeAugmentation().passes == [(1.0, False)] and not TestTimeAugmentation().enabled
    assert TestTimeAugmentation(flip=True, scales=(0.75, 1.0)).passes == [
        (0.75, False), (0.75, True), (1.0, False), (1.0, True)]


def test_bench_predict_times_tta_beside_the_plain_model(exports, tmp_path, capsys):
    from tfseg.bench.predict import main as bench_main

    json_path = tmp_path / "tta.json"
    assert bench_main(["--model", str(exports / "1"), "--tta-flip", "--synthetic", "--num-images", "2",
                       "--rounds", "2", "--json", str(json_path)]) == 0
    result = json.loads(json_path.read_text())
    assert result["tta"] == {"flip": True, "scales": [1.0]} and result["num_images"] == 2
    assert result["added_ms_per_image"] == pytest.approx(result["tta_ms_median"] - result["plain_ms_median"])
    assert len(result["tta_time_over_plain"]["rounds"]) == 2 and result["tta_time_over_plain"]["median"] > 0
    assert "tta takes" in capsys.readouterr().out
