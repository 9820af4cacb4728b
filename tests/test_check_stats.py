"""`check` finds broken files; `stats` counts what an independent computation counts."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data_fixtures import (BLACK, BLUE, KITTI_SAMPLE, MAGENTA, RED, VOC_SAMPLE, make_kitti, make_voc,
                      needs_samples, random_image, save_jpeg, save_png)
from tfseg.config import DataConfig, FolderConfig, SyntheticConfig
from tfseg.data.check import check
from tfseg.images import verify_image
from tfseg.data.labels import voc_palette
from tfseg.data.sources import make_source
from tfseg.data.stats import median_frequency_weights, stats


def source_for(name, data_dir, **kwargs):
    return make_source(DataConfig(source=name, data_dir=str(data_dir), **kwargs))


def corrupt_png(path):
    """Flips bytes inside the image data: the chunk CRC no longer matches."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 20
    data[start: start + 8] = bytes(255 - b for b in data[start: start + 8])
    path.write_bytes(bytes(data))


def truncate(path, keep=0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_check_kitti_finds_every_kind_of_problem(tmp_path):
    ids = {f"um_{i:06d}": (16, 24) for i in range(5)}
    root = make_kitti(tmp_path, ids)
    gt = root / "training" / "gt_image_2"
    corrupt_png(root / "training" / "image_2" / "um_000000.png")
    save_png(gt / "um_road_000001.png", np.full((17, 24, 3), MAGENTA, np.uint8))  # wrong size
    odd = np.asarray(Image.open(gt / "um_road_000002.png")).copy()
    odd[0, :3] = (0, 255, 0)  # green is no KITTI Road colour
    save_png(gt / "um_road_000002.png", odd)
    truncate(gt / "um_road_000003.png", 0.5)
    (root / "training" / "image_2" / "um_000004.png").unlink()  # ground truth without image
    problems = check(source_for("kitti_road", root))
    by_file = {}
    for file, reason in problems:
        by_file.setdefault(file.rsplit("/", 1)[-1], []).append(reason)
    assert "not a readable image" in by_file["um_000000.png"][0]
    assert by_file["um_road_000001.png"] == ["mask is 17x24 but its image um_000001.png is 16x24"]
    assert "3 pixel(s) of unknown colour" in by_file["um_road_000002.png"][0]
    assert "(0, 255, 0)" in by_file["um_road_000002.png"][0]
    assert "not a readable image" in by_file["um_road_000003.png"][0]
    assert "no image" in by_file["um_road_000004.png"][0]
    assert len(problems) == 5


def test_truncated_jpeg_is_caught_although_decoders_accept_it(tmp_path):
    import cv2

    path = save_jpeg(tmp_path / "x.jpg", random_image(np.random.default_rng(0), 64, 80))
    assert verify_image(str(path)) is None
    truncate(path, 0.7)
    assert cv2.imread(str(path)) is not None  # OpenCV decodes it without complaint
    assert "truncated JPEG" in verify_image(str(path))
    path.write_bytes(b"")
    assert verify_image(str(path)) == "empty file"


def test_check_voc_index_jpeg_and_size(tmp_path):
    make_voc(tmp_path / "VOCdevkit", "2012", {
        "train": {"a": (20, 24, [1]), "b": (22, 26, [2]), "c": (18, 20, [5])}, "val": {"d": (21, 25, [3])}})
    root = tmp_path / "VOCdevkit" / "VOC2012"
    truncate(root / "JPEGImages" / "a.jpg")
    mask = np.asarray(Image.open(root / "SegmentationClass" / "b.png")).copy()
    mask[5, 5] = 42
    save_png(root / "SegmentationClass" / "b.png", mask, voc_palette(256))
    save_png(root / "SegmentationClass" / "c.png", np.zeros((18, 21), np.uint8), voc_palette(256))
    problems = dict(check(source_for("voc2012", tmp_path)))
    assert "truncated JPEG" in problems[str(root / "JPEGImages" / "a.jpg")]
    assert problems[str(root / "SegmentationClass" / "b.png")].startswith(
        "1 pixel(s) with class index outside 0..20 and 255: 42")
    assert "mask is 18x21" in problems[str(root / "SegmentationClass" / "c.png")]
    assert len(problems) == 3


def test_check_folder_ids_beyond_the_class_list(tmp_path):
    (tmp_path / "classes.yaml").write_text("- background\n- object\n")
    save_png(tmp_path / "images" / "a.png", random_image(np.random.default_rng(0), 8, 9))
    mask = np.zeros((8, 9), np.uint8)
    mask[1, 1], mask[2, 2] = 1, 7
    save_png(tmp_path / "masks" / "a.png", mask)
    source = source_for("folder", tmp_path, folder=FolderConfig())
    assert check(source) == [(str(tmp_path / "masks" / "a.png"),
                              "1 pixel(s) with class id(s) outside 0..1 and 255: 7")]
    assert source.read_label(source.examples("all")[0])[2, 2] == 255


@needs_samples
def test_real_samples_are_clean():
    assert check(source_for("kitti_road", KITTI_SAMPLE)) == []
    assert check(source_for("voc2012", VOC_SAMPLE)) == []


@needs_samples
def test_kitti_sample_stats_match_a_colour_count():
    source = source_for("kitti_road", KITTI_SAMPLE)
    result = stats(source)
    assert result["num_images"] == {"train": 8, "val": 2, "trainval": 10, "test": 2}
    assert result["splits"]["trainval"]["image_sizes"] == {
        "375x1242": 6, "376x1241": 2, "370x1226": 1, "374x1238": 1}
    # Independent count: Pillow's colour table of each GT file, colours mapped by hand.
    totals = {"not_road": 0, "road": 0, "void": 0}
    for path in sorted((KITTI_SAMPLE / "training" / "gt_image_2").glob("*_road_*.png")):
        for count, colour in Image.open(path).convert("RGB").getcolors(1 << 24):
            totals[{RED: "not_road", MAGENTA: "road", BLACK: "void", BLUE: "void"}[colour]] += count
    trainval = result["splits"]["trainval"]
    assert trainval["class_pixel_counts"] == [totals["not_road"], totals["road"]]
    valid = totals["not_road"] + totals["road"]
    assert trainval["class_pixel_frequency"] == pytest.approx([totals["not_road"] / valid,
                                                               totals["road"] / valid])
    assert trainval["void_fraction"] == pytest.approx(totals["void"] / (valid + totals["void"]))
    assert "class_pixel_counts" not in result["splits"]["test"]
    assert result["weights_split"] == "train"
    road_weight = result["class_weights"][1]
    assert road_weight > 1 > result["class_weights"][0]  # road is the rarer class


def test_median_frequency_weights_by_hand():
    # Class 0 in two images of 100 valid pixels (80 px), class 1 in one of them (20 px),
    # class 2 in the other (30 px), class 3 nowhere.
    pixels = np.array([80, 20, 30, 0])
    where_present = np.array([200, 100, 100, 0])
    freq = [0.4, 0.2, 0.3]
    median = 0.3
    assert median_frequency_weights(pixels, where_present) == pytest.approx(
        [median / f for f in freq] + [0.0])


def test_stats_through_tf_data_for_non_file_sources():
    config = DataConfig(synthetic=SyntheticConfig(height=24, width=20, num_train=3, num_val=2, num_test=1))
    result = stats(make_source(config), splits=["train", "val"])
    assert result["num_images"] == {"train": 3, "val": 2}
    assert result["splits"]["train"]["image_sizes"] == {"24x20": 3}
    assert sum(result["splits"]["train"]["class_pixel_counts"]) + round(
        result["splits"]["train"]["void_fraction"] * 3 * 24 * 20) == 3 * 24 * 20
