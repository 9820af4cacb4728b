"""Folder datasets: index, palette, binary and colour masks; classes.yaml; split lists."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from data_fixtures import random_image, save_jpeg, save_png
from tfseg.config import DataConfig, FolderConfig
from tfseg.data.labels import voc_palette
from tfseg.data.sources import make_source
from tfseg.data.splits import write_split
from tfseg.errors import UserError

CLASSES_YAML = """\
- {name: background, color: [0, 0, 0]}
- {name: crack, color: [255, 0, 0]}
- name: stain
  color: [0, 0, 255]
"""


def folder(data_dir, **options):
    return make_source(DataConfig(source="folder", data_dir=str(data_dir), folder=FolderConfig(**options)))


def make_folder(root, masks: dict[str, np.ndarray], classes=CLASSES_YAML, jpeg=True, palette=None):
    rng = np.random.default_rng(0)
    for stem, mask in masks.items():
        image = random_image(rng, *mask.shape[:2])
        if jpeg:
            save_jpeg(root / "images" / f"{stem}.jpg", image)
        else:
            save_png(root / "images" / f"{stem}.png", image)
        save_png(root / "masks" / f"{stem}.png", mask, palette)
    if classes is not None:
        (root / "classes.yaml").write_text(classes)
    return root


def index_mask(height, width, value=1):
    mask = np.zeros((height, width), np.uint8)
    mask[height // 3:, : width // 2] = value
    mask[0, 0] = 255
    return mask


def test_index_masks_with_split_lists(tmp_path):
    make_folder(tmp_path, {"a": index_mask(19, 23), "b": index_mask(21, 20, 2), "c": index_mask(9, 31)})
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.txt").write_text("a\nc\n")
    (tmp_path / "splits" / "val.txt").write_text("b\n")
    source = folder(tmp_path)
    assert source.class_names == ("background", "crack", "stain")
    assert source.palette.tolist() == [[0, 0, 0], [255, 0, 0], [0, 0, 255]]
    assert source.splits == ("train", "val", "all")
    assert [e.id for e in source.examples("train")] == ["a", "c"]
    for (image, label), example in zip(source.dataset("all").as_numpy_iterator(),
                                       source.examples("all"), strict=True):
        np.testing.assert_array_equal(label, np.asarray(Image.open(example.label_path)))
        np.testing.assert_array_equal(image, source.read_image(example))
    with pytest.raises(UserError, match="has a fixed split"):
        write_split(source, tmp_path / "split.json")


def test_seeded_split_without_lists(tmp_path):
    make_folder(tmp_path, {f"img{i:02d}": index_mask(8, 8) for i in range(20)})
    source = folder(tmp_path, val_fraction=0.25)
    assert source.splits == ("train", "val", "all")
    assert source.num_examples("val") == 5 and source.num_examples("train") == 15
    record = write_split(source, tmp_path / "run" / "split.json")
    assert record["val"] == [e.id for e in source.examples("val")]
    assert [e.id for e in folder(tmp_path, val_fraction=0.25).examples("val")] == record["val"]


def test_palette_masks_decode_indices(tmp_path):
    mask = index_mask(15, 18, 2)
    make_folder(tmp_path, {"p": mask}, palette=voc_palette(256))
    source = folder(tmp_path, mask_format="palette")
    np.testing.assert_array_equal(source.read_label(source.examples("all")[0]), mask)
    make_folder(tmp_path / "grey", {"p": mask})
    with pytest.raises(UserError, match="L image, but data.folder.mask_format is palette"):
        folder(tmp_path / "grey", mask_format="palette").read_label(
            folder(tmp_path / "grey", mask_format="palette").examples("all")[0])


def test_binary_masks(tmp_path):
    mask = np.zeros((10, 12), np.uint8)
    mask[4:, 6:] = 255
    mask[4, 6] = 128  # an anti-aliased edge pixel
    make_folder(tmp_path, {"m": mask}, classes=None, jpeg=False)
    source = folder(tmp_path, mask_format="binary")
    assert source.class_names == ("background", "foreground")
    label = source.read_label(source.examples("all")[0])
    assert label[0, 0] == 0 and label[9, 11] == 1 and label[4, 6] == 255
    assert np.count_nonzero(label == 1) == np.count_nonzero(mask == 255)
    assert "grey level(s) other than 0 and 255: 128" in source.label_problems(mask)[0]


def test_colour_masks(tmp_path):
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[2:, :3] = (255, 0, 0)
    rgb[:2, 5:] = (0, 0, 255)
    rgb[5, 6] = (1, 2, 3)
    make_folder(tmp_path, {"c": rgb})
    source = folder(tmp_path, mask_format="color")
    label = source.read_label(source.examples("all")[0])
    assert label[3, 1] == 1 and label[0, 6] == 2 and label[0, 3] == 0 and label[5, 6] == 255
    assert "(1, 2, 3)" in source.label_problems(rgb)[0]


def test_layout_problems(tmp_path):
    make_folder(tmp_path, {"a": index_mask(8, 8), "b": index_mask(8, 8)})
    (tmp_path / "masks" / "b.png").unlink()
    save_png(tmp_path / "masks" / "orphan.png", index_mask(8, 8))
    source = folder(tmp_path)
    with pytest.raises(UserError, match="b.jpg: no mask"):
        source.examples("all")
    reasons = {p.reason: p.fatal for p in source.structure_problems()}
    assert reasons["mask without an image; ignored"] is False
    save_jpeg(tmp_path / "masks" / "b.jpg", np.zeros((8, 8, 3), np.uint8))
    assert any("JPEG mask" in p.reason for p in folder(tmp_path).structure_problems())


@pytest.mark.parametrize("text,message", [
    ("[]", "expected a list of classes"),
    ("- {name: a}\n- {name: a}", "class names repeat"),
    ("- {name: a, color: [0, 0]}", "color must be"),
    ("- {name: a, colour: [0, 0, 0]}", "unknown key"),
    ("- {color: [0, 0, 0]}", "needs a name"),
    ("- [unclosed", "not valid YAML"),
])
def test_bad_classes_file(tmp_path, text, message):
    make_folder(tmp_path, {"a": index_mask(8, 8)}, classes=text)
    with pytest.raises(UserError, match=message):
        folder(tmp_path)


def test_missing_classes_file_and_folders(tmp_path):
    make_folder(tmp_path, {"a": index_mask(8, 8)}, classes=None)
    with pytest.raises(UserError, match="classes.yaml: not found"):
        folder(tmp_path)
    with pytest.raises(UserError, match="labels: not found"):
        folder(tmp_path, masks_subdir="labels")


def test_tiff_images_go_through_the_numpy_decoder(tmp_path):
    rng = np.random.default_rng(3)
    image = random_image(rng, 11, 13)
    (tmp_path / "images").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "t.tif")
    save_png(tmp_path / "masks" / "t.png", index_mask(11, 13))
    (tmp_path / "classes.yaml").write_text(CLASSES_YAML)
    (decoded, label), = folder(tmp_path).dataset("all").as_numpy_iterator()
    np.testing.assert_array_equal(decoded, image)
    np.testing.assert_array_equal(label, index_mask(11, 13))
