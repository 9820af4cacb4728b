"""`tfseg predict` on a folder of real-world photos: every odd and bad kind of input."""

import io
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.test_encoded import asymmetric_image, jpeg_with_exif, pillow_exif
from tfseg.cli import main
from tfseg.config import DataConfig
from tfseg.models import build_model
from tfseg.photos import Photo, read_photo
from tfseg.predict import PredictSummary, predict_folder, segment_batch
from tfseg.serving.client import SegmentationModel
from tfseg.serving.export import export_saved_model

PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)


def export_tiny(path, resize=(), seed=0):
    keras_rng = np.random.default_rng(seed)
    model = build_model("unet", 3, depth=2, base_filters=4)
    model.set_weights([keras_rng.normal(scale=0.3, size=w.shape).astype("float32") for w in model.get_weights()])
    return export_saved_model(model, path, data_config=DataConfig(resize=list(resize)), stride=4,
                              class_names=["a", "b", "c"], palette=PALETTE)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return export_tiny(tmp_path_factory.mktemp("photos") / "sm")


@pytest.fixture
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    (folder / "trip" / "day1").mkdir(parents=True)
    image = asymmetric_image(40, 60)
    (folder / "phone.jpg").write_bytes(jpeg_with_exif(image, pillow_exif(6)))
    cv2.imwrite(str(folder / "grey16.png"), (np.arange(40 * 60).reshape(40, 60) * 27).astype(np.uint16))
    cv2.imwrite(str(folder / "rgb16.png"), (image.astype(np.uint16) * 257)[..., ::-1])
    Image.fromarray(image[..., 0]).save(folder / "grey.png")
    Image.fromarray(np.dstack([image, np.full((40, 60), 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(image).convert("P").save(folder / "palette.png")
    Image.fromarray(image).convert("CMYK").save(folder / "print.jpg")
    Image.fromarray(image).save(folder / "same.png")
    Image.fromarray(image).save(folder / "same.jpg", quality=95)
    Image.fromarray(image).save(folder / "trip" / "day1" / "beach.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = io.BytesIO()
    Image.fromarray(image).save(good, format="JPEG")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[:300])
    os.symlink(folder / "gone.png", folder / "dangling.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_every_kind_of_photo(model_path, photo_folder, tmp_path):
    out = tmp_path / "out"
    summary = predict_folder(model_path, photo_folder, out, progress=False, recursive=True)
    written = sorted(str(p.relative_to(out / "masks")) for p in summary.written)
    assert written == ["grey.png", "grey16.png", "palette.png", "phone.png", "print.png", "rgb16.png", "rgba.png",
                       "same_jpg.png", "same_png.png", "trip/day1/beach.png"]
    failed = {p.name: reason for p, reason in summary.failed}
    assert set(failed) == {"corrupt.png", "truncated.jpg", "dangling.png"}
    assert failed["dangling.png"] == f"a broken symbolic link (to {photo_folder / 'gone.png'})"
    for path, reason in summary.failed:  # the reason alone: no path, no Python object
        assert str(path) not in reason and "BytesIO" not in reason and "\n" not in reason
    assert summary.converted == {"EXIF orientation": 1, "16-bit": 2, "grey": 1, "alpha": 1, "palette": 1,
                                 "CMYK": 1}

    model = SegmentationModel(model_path)
    # The phone photo is segmented upright (a 60x40 portrait), like a viewer shows it.
    upright = read_photo(photo_folder / "phone.jpg").image
    assert upright.shape == (60, 40, 3)
    mask = np.asarray(Image.open(out / "masks" / "phone.png"))
    np.testing.assert_array_equal(mask, model(upright))
    assert Image.open(out / "overlays" / "phone.png").size == (40, 60)
    # 16-bit: the high byte, the same for grey and RGB.
    np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / "rgb16.png")),
                                  model(asymmetric_image(40, 60)))

    report = summary.report()
    assert report.startswith("segmented 10 image(s) in ") and "skipped 3" in report
    assert "1 a broken symbolic link" in report and "2 16-bit" in report and "1 EXIF orientation" in report


def test_without_recursive_sub_folders_are_left_alone(model_path, photo_folder, tmp_path):
    summary = predict_folder(model_path, photo_folder, tmp_path / "out", progress=False)
    assert not any("trip" in str(p) for p in summary.written)
    assert not (tmp_path / "out" / "masks" / "trip").exists()


def test_cli_exit_status_and_one_line_per_skipped_file(model_path, photo_folder, tmp_path, capsys):
    code = main(["predict", "--model", str(model_path), "-i", str(photo_folder), "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1  # something was skipped
    skipped = [line for line in captured.err.splitlines() if line.startswith("skipped ")]
    assert len(skipped) == 3
    for line in skipped:
        path = line.split(": ", 1)[0].removeprefix("skipped ")
        assert line.count(path) == 1
    assert "segmented 9 image(s)" in captured.out


@pytest.mark.parametrize("resize", [(), (24, 40)])
def test_tiles_equal_the_whole_image(tmp_path, resize):
    path = export_tiny(tmp_path / "sm", resize=resize, seed=1)
    model = SegmentationModel(path)
    image = np.random.default_rng(2).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    whole = model.predict(image[np.newaxis])
    classes, probability = model.segment_tiled(image, tile=128, probability_of=1)
    np.testing.assert_array_equal(classes, whole["classes"][0])
    np.testing.assert_allclose(probability, whole["probabilities"][0, ..., 1], atol=1e-5)


def test_tile_option_through_predict(model_path, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image = np.random.default_rng(3).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    Image.fromarray(image).save(folder / "big.png")
    summary = predict_folder(model_path, folder, tmp_path / "tiled", progress=False, tile=128)
    assert summary.tiled == 1
    whole = predict_folder(model_path, folder, tmp_path / "whole", progress=False, tile="off")
    assert whole.tiled == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "tiled" / "masks" / "big.png")),
                                  np.asarray(Image.open(tmp_path / "whole" / "masks" / "big.png")))


class OutOfMemoryAbove:
    """A stand-in model that runs out of memory for batches above a pixel budget."""

    has_depth = False

    def __init__(self, budget):
        self.budget, self.calls = budget, []

    def network_pixels(self, height, width):
        return height * width

    def serve(self, images):
        self.calls.append(images.shape[0])
        if images.size // 3 > self.budget:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        return {"classes": tf.zeros(images.shape[:3], tf.uint8)}


def test_out_of_memory_retries_one_by_one_then_skips_only_that_image():
    photos = [(f"p{i}", Photo(np.zeros((10, 10, 3), np.uint8))) for i in range(3)]
    model = OutOfMemoryAbove(budget=150)  # one 10x10 image fits, three do not
    results = list(segment_batch(model, photos, "off", None))
    assert model.calls == [3, 1, 1, 1]
    assert all(not isinstance(r, str) for _, _, r in results)

    big = [("huge", Photo(np.zeros((20, 20, 3), np.uint8)))]
    (_, _, reason), = segment_batch(model, big, "off", None)
    assert reason.startswith("out of memory")


def test_report_line():
    summary = PredictSummary(seconds=2.0)
    summary.written = [1, 2, 3, 4]
    assert summary.report() == "segmented 4 image(s) in 2.0 s (2.00 img/s)"
