"""The recipe presets: what each one says it is, a few training steps of each on the real
samples (or synthetic data), and the README's table of them."""

import csv
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, SHARED_DATA
from tfseg import config as config_lib
from tfseg.config import load_config
from tfseg.training.run import train

KITTI = os.path.join(SHARED_DATA, "kitti_road_sample")
VOC = os.path.join(SHARED_DATA, "voc2012_sample")
# Shrinks any preset to seconds: tiny images, one epoch of two steps, no downloads.
FEW_STEPS = ["data.resize=[64, 160]", "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2"]
SMALL_FCN8 = ["model.options.width_multiplier=0.0625", "model.options.encoder_weights=null",
              "model.options.decoder_channels=16"]
VOC_SAMPLE = [f"data.data_dir={VOC}", "data.source=voc2012", "data.augment.crop_size=[64, 64]",
              "data.resize=[64, 64]"]
SMALL_UNET = ["model.options.depth=2", "model.options.base_filters=4"]
SMALL_RESNET = ["model.options.encoder_weights=null", "model.options.decoder_filters=[8, 8, 8, 8, 8]"]

# preset -> the overrides that shrink it onto the sample data.
RECIPES = {
    "kitti_fcn8_512": [f"data.data_dir={KITTI}"] + SMALL_FCN8,
    "voc_resunet_tversky": VOC_SAMPLE + SMALL_UNET + ["train.wandb_project="],
    "voc_resnet_unet_dice": VOC_SAMPLE + SMALL_RESNET,
    "voc_unet_focal_tversky": VOC_SAMPLE + SMALL_UNET,
    "voc2007_baseline": VOC_SAMPLE + ["model.options.base_filters=4"],
    "voc2007_baseline_cosine": VOC_SAMPLE + ["model.options.base_filters=4"],
    "voc2007_baseline_augment": VOC_SAMPLE + ["model.options.base_filters=4"],
    "voc2007_baseline_weighted": VOC_SAMPLE + ["model.options.base_filters=4"],
    "voc2007_resnet_frozen": VOC_SAMPLE + SMALL_RESNET,
    "voc2007_unet": VOC_SAMPLE + SMALL_UNET,
    # Both stages of progressive resizing, at a quarter of the size.
    "fgbg_unet": ["data.fgbg={height: 48, width: 48, foreground_size: 24, num_train: 8, num_val: 4}",
                  "data.resize=[48, 48]", "train.epochs=2",
                  "train.stages=[{size: [24, 24], epochs: 1}, {size: [48, 48], epochs: 1}]"] + SMALL_UNET,
}


def test_the_kitti_fcn8_512_recipe_is_the_one_described():
    config = load_config("kitti_fcn8_512")
    options = config.model.options
    assert config.model.name == "fcn8_vgg16" and options["decoder"] == "kitti"
    assert (options["decoder_channels"], options["pool4_scale"], options["pool3_scale"]) == (512, 0.01, 0.001)
    assert (config.train.batch_size, config.train.epochs, config.data.kitti.val_count) == (8, 40, 48)
    assert config.data.preprocess.clahe and config.data.augment.horizontal_flip
    assert config.data.palette[1] == [0, 255, 0]  # road is green


def test_the_loss_recipes():
    assert load_config("voc_resunet_tversky").loss.terms == {"cross_entropy": 1.0, "tversky": 1.0}
    assert load_config("voc_resunet_tversky").train.batch_size == 1
    assert load_config("voc_resnet_unet_dice").loss.terms == {"cross_entropy": 1.0, "dice": 1.0}
    focal = load_config("voc_unet_focal_tversky")
    assert focal.loss.terms == {"cross_entropy": 1.0, "focal_tversky": 1.0}
    assert focal.model.name == "unet" and "encoder_weights" not in focal.model.options
    augment = load_config("voc_resnet_unet_dice").data.augment
    assert augment.crop_size == [224, 224] and augment.rotation_degrees and augment.scale_range
    assert augment.horizontal_flip and augment.saturation and augment.hue


def test_the_voc2007_ladder_changes_one_thing_per_rung():
    """Each rung's resolved config differs from the one before only where its YAML says."""
    ladder = ["voc2007_baseline", "voc2007_baseline_cosine", "voc2007_baseline_augment",
              "voc2007_baseline_weighted", "voc2007_resnet_frozen"]
    expected = {  # rung -> the top-level changes, besides name and run_dir
        "voc2007_baseline_cosine": {"train"},
        "voc2007_baseline_augment": {"data"},
        "voc2007_baseline_weighted": {"loss"},
        "voc2007_resnet_frozen": {"data", "model"},
    }
    for before, after in zip(ladder, ladder[1:]):
        a, b = (config_lib.to_dict(load_config(name)) for name in (before, after))
        changed = {key for key in a if a[key] != b[key]} - {"name", "run_dir"}
        assert changed == expected[after], after
    assert load_config("voc2007_baseline").train.schedule == "constant"
    assert load_config("voc2007_baseline_weighted").loss.class_weights == "median_frequency"
    frozen = load_config("voc2007_resnet_frozen").model.options
    assert frozen["freeze_encoder"] and not frozen["skip_connections"]
    assert load_config("voc2007_unet").model.name == "unet"


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(RECIPES))
def test_each_recipe_trains_a_few_steps(preset, tmp_path):
    run_dir = tmp_path / "run"
    config = load_config(preset, FEW_STEPS + RECIPES[preset] + [f"run_dir={run_dir}"])
    train(config, verbose=0)
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == config.train.epochs
    assert all(math.isfinite(float(row["loss"])) and 0 <= float(row["val_miou"]) <= 1 for row in rows)
    written = load_config(str(run_dir / "config.yaml"))
    assert written.loss == config.loss and written.model == config.model


@pytest.mark.slow
def test_kitti_fcn8_512_paints_road_green_on_the_original_images(tmp_path):
    """The recipe's whole path on real KITTI images: train, export, predict at 1242x375."""
    from tfseg.cli import main

    run_dir = tmp_path / "run"
    train(load_config("kitti_fcn8_512", FEW_STEPS + RECIPES["kitti_fcn8_512"] + [f"run_dir={run_dir}"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    images = tmp_path / "images"
    images.mkdir()
    name = "um_000000.png"
    original = Path(KITTI, "training", "image_2", name)
    (images / name).write_bytes(original.read_bytes())
    assert main(["predict", "--model", str(run_dir / "export"), "-i", str(images), "-o", str(tmp_path / "out")]) == 0
    mask = np.asarray(Image.open(tmp_path / "out" / "masks" / name))
    painted = np.asarray(Image.open(tmp_path / "out" / "overlays" / name).convert("RGB"))
    image = np.asarray(Image.open(original).convert("RGB"))
    assert mask.shape == image.shape[:2]
    expected = image.astype(np.float32)
    road = mask == 1
    assert road.any() and not road.all()  # seeded: about 0.6 % of the pixels after two steps
    expected[road] = 0.5 * expected[road] + 0.5 * np.array([0, 255, 0], np.float32)
    np.testing.assert_array_equal(painted, np.clip(expected, 0, 255).astype(np.uint8))


def test_the_readme_recipes_table_has_every_recipe_with_its_command():
    readme = Path(REPO, "README.md").read_text()
    table = readme.split("## Recipes", 1)[1].split("\n## ", 1)[0]
    for preset in RECIPES:
        row = next((line for line in table.splitlines() if line.startswith(f"| `{preset}`")), None)
        assert row is not None, preset
        assert re.search(rf"tfseg train --config {preset}\b", row), preset
