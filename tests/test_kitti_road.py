"""KITTI Road: devkit label decoding, layouts (folder and zip), splits, tf.data equality."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image

from data_fixtures import BLACK, BLUE, KITTI_SAMPLE, MAGENTA, RED, make_kitti, needs_samples, save_png
from tfseg.config import DataConfig, KittiConfig
from tfseg.data import splits as splits_lib
from tfseg.data.kitti_road import KittiRoadSource, decode_ground_truth
from tfseg.data.sources import make_source
from tfseg.errors import UserError


def kitti(data_dir, **kitti_options) -> KittiRoadSource:
    return make_source(DataConfig(source="kitti_road", data_dir=str(data_dir),
                                  kitti=KittiConfig(**kitti_options)))


def colour_counts(path) -> dict[tuple, int]:
    """Pixel count per RGB colour, by Pillow's own colour histogram (not NumPy)."""
    image = Image.open(path).convert("RGB")
    return {colour: count for count, colour in image.getcolors(maxcolors=1 << 24)}


def expected_counts(path) -> tuple[int, int, int]:
    """(not road, road, void) from the colour table of the devkit's four GT colours."""
    counts = colour_counts(path)
    assert set(counts) <= {MAGENTA, RED, BLACK, BLUE}, f"{path}: unexpected colours {set(counts)}"
    return counts.get(RED, 0), counts.get(MAGENTA, 0), counts.get(BLACK, 0) + counts.get(BLUE, 0)


@needs_samples
def test_sample_labels_match_an_independent_count():
    source = kitti(KITTI_SAMPLE)
    examples = source.examples("trainval")
    assert len(examples) == 10
    blue_void = 0
    for example in examples:
        label = source.read_label(example)
        assert label.dtype == np.uint8 and label.ndim == 2
        found = np.bincount(label.ravel(), minlength=256)
        not_road, road, void = expected_counts(example.label_path)
        assert (found[0], found[1], found[255]) == (not_road, road, void), example.id
        assert found.sum() == found[0] + found[1] + found[255]
        blue_void += colour_counts(example.label_path).get(BLUE, 0)
    assert blue_void > 0  # the sample's pure-blue pixels were exercised and came out void


@needs_samples
def test_sample_tf_data_equals_numpy_decoding_for_every_size():
    source = kitti(KITTI_SAMPLE)
    examples = source.examples("trainval")
    sizes = set()
    for (image, label), example in zip(source.dataset("trainval").as_numpy_iterator(), examples, strict=True):
        expected_image, expected_label = source.load(example)
        assert image.dtype == np.uint8 and label.dtype == np.uint8
        np.testing.assert_array_equal(image, expected_image)
        np.testing.assert_array_equal(label, expected_label)
        sizes.add(image.shape[:2])
    assert sizes == {(375, 1242), (370, 1226), (376, 1241), (374, 1238)}


@needs_samples
def test_sample_splits_are_stratified_and_deterministic():
    source = kitti(KITTI_SAMPLE)
    val = [e.id for e in source.examples("val")]
    train = [e.id for e in source.examples("train")]
    assert len(val) == 2 and len(train) == 8  # min(48, round(0.17 * 10)) = 2
    assert sorted(i.split("_")[0] for i in val) == ["um", "umm"]
    assert not set(val) & set(train)
    assert val == [e.id for e in kitti(KITTI_SAMPLE).examples("val")]
    assert [e.id for e in source.examples("test")] == ["um_000000", "um_000001"]
    assert source.num_examples("trainval") == 10


def test_devkit_rule_on_every_colour():
    rgb = np.array([[MAGENTA, RED, BLACK, BLUE, (200, 30, 0), (7, 0, 9), (0, 255, 0)]], np.uint8)
    # valid where red > 0, road where blue > 0
    np.testing.assert_array_equal(decode_ground_truth(rgb), [[1, 0, 255, 255, 0, 1, 255]])


def test_odd_sizes_lane_files_and_unlabelled_test_split(tmp_path):
    sizes = {"um_000000": (37, 53), "umm_000001": (41, 60), "uu_000002": (29, 47)}
    root = make_kitti(tmp_path / "data_road", sizes, test_ids=("uu_000000",))
    source = kitti(tmp_path)  # the folder holding data_road/ works too
    assert [e.id for e in source.examples("trainval")] == sorted(sizes)
    for image, label in source.dataset("trainval").as_numpy_iterator():
        assert image.shape[:2] == label.shape and image.shape[:2] in sizes.values()
    (image, label), = source.dataset("test").as_numpy_iterator()
    assert image.shape == (20, 31, 3) and (label == 255).all()
    assert source.examples("test")[0].label_path is None
    assert source.structure_problems() == []  # um_lane_* files are not problems
    assert str(root) == source.root


def test_reads_data_road_zip_like_the_folder(tmp_path):
    sizes = {"um_000000": (21, 33), "umm_000004": (25, 30), "uu_000009": (19, 27)}
    root = make_kitti(tmp_path / "extracted" / "data_road", sizes)
    archive = tmp_path / "zipped" / "data_road.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, "data_road/" + path.relative_to(root).as_posix())
    folder, packed = kitti(root), kitti(archive)
    assert kitti(archive.parent).root == packed.root  # a folder holding the zip works too
    assert [e.id for e in packed.examples("trainval")] == [e.id for e in folder.examples("trainval")]
    for split in ("trainval", "test"):
        zipped = list(packed.dataset(split).as_numpy_iterator())
        plain = list(folder.dataset(split).as_numpy_iterator())
        assert len(zipped) == len(plain) > 0
        for (a_image, a_label), (b_image, b_label) in zip(zipped, plain):
            np.testing.assert_array_equal(a_image, b_image)
            np.testing.assert_array_equal(a_label, b_label)


def test_missing_ground_truth_and_size_mismatch_are_errors(tmp_path):
    root = make_kitti(tmp_path, {"um_000000": (20, 30), "um_000001": (20, 30), "uu_000000": (20, 30)})
    (root / "training" / "gt_image_2" / "uu_road_000000.png").unlink()
    with pytest.raises(UserError, match="uu_000000.png: no ground truth"):
        kitti(root).examples("train")

    root = make_kitti(tmp_path / "b", {"um_000000": (20, 30), "um_000001": (20, 30)})
    save_png(root / "training" / "gt_image_2" / "um_road_000001.png", np.full((21, 30, 3), 255, np.uint8))
    source = kitti(root)
    bad = source.examples("trainval")[1]
    with pytest.raises(UserError, match="mask is 21x30 but its image .* is 20x30"):
        source.load(bad)
    with pytest.raises(Exception, match="mask is 21x30 but its image is 20x30"):
        list(source.dataset("trainval").as_numpy_iterator())


def test_not_a_kitti_folder(tmp_path):
    with pytest.raises(UserError, match="no KITTI Road data"):
        kitti(tmp_path)
    with pytest.raises(UserError, match="data_dir is empty"):
        kitti("")


def test_split_file_is_reused_and_checked(tmp_path):
    ids = {f"{c}_{n:06d}": (12, 16) for c in ("um", "umm", "uu") for n in range(6)}
    root = make_kitti(tmp_path / "data_road", ids)
    source = kitti(root)
    split_path = tmp_path / "run" / "split.json"
    record = splits_lib.write_split(source, split_path)
    assert record["val"] == [e.id for e in source.examples("val")]
    with pytest.raises(UserError, match="already exists"):
        splits_lib.write_split(source, split_path)

    # A later run with another seed still uses the file's split.
    config = DataConfig(source="kitti_road", data_dir=str(root), split_file=str(split_path),
                        kitti=KittiConfig(split_seed=123))
    assert [e.id for e in make_source(config).examples("val")] == record["val"]
    reseeded = kitti(root, split_seed=123)
    assert [e.id for e in reseeded.examples("val")] != record["val"]

    # Data that no longer matches the file is an error, not a silent change of split.
    (root / "training" / "image_2" / "uu_000005.png").unlink()
    (root / "training" / "gt_image_2" / "uu_road_000005.png").unlink()
    with pytest.raises(UserError, match="not in the data"):
        make_source(config).examples("val")


def test_a_named_split_file_that_does_not_exist_is_an_error(tmp_path):
    root = make_kitti(tmp_path / "data_road", {f"um_{n:06d}": (12, 16) for n in range(4)})
    config = DataConfig(source="kitti_road", data_dir=str(root), split_file=str(tmp_path / "typo.json"))
    with pytest.raises(UserError, match=r"typo.json: not found"):
        make_source(config).examples("val")  # never a silently seeded split instead
