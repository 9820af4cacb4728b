"""Progressive resizing: small images first, then larger, in one run and one history."""

import csv
import re

import pytest

from tfseg.config import ConfigError, load_config
from tfseg.training.stages import stage_data_config, stage_index

STAGES = "train.stages=[{size: [96, 312], epochs: 2}, {size: [192, 624], epochs: 3}]"


def test_stage_follows_the_epoch_and_sets_the_training_size():
    config = load_config("kitti_unet_clahe", [STAGES, "train.epochs=5"])
    assert [stage_index(config.train, e) for e in range(5)] == [0, 0, 1, 1, 1]
    first = stage_data_config(config.data, config.train, 1)
    assert first.resize == [96, 312] and first.augment.crop_size == [96, 312]  # crop scaled alike
    assert config.data.resize == [192, 624]  # validation and export keep the configured geometry
    last = stage_data_config(config.data, config.train, 4)
    assert last.resize == [192, 624]


def test_without_a_resize_the_stage_is_the_crop():
    config = load_config("voc_unet", ["train.stages=[{size: [64, 64], epochs: 1}, {size: [128, 128], epochs: 1}]",
                                      "train.epochs=2"])
    assert not config.data.resize
    assert stage_data_config(config.data, config.train, 0).augment.crop_size == [64, 64]


@pytest.mark.parametrize("stages, message", [
    ("[{size: [96, 312], epochs: 2}]", "add up to 2, train.epochs is 5"),
    ("[{size: [96], epochs: 5}]", "expected {size: [height, width], epochs: n}"),
    ("[{size: [96, 312], epochs: 5, extra: 1}]", "expected"),
])
def test_bad_stages_are_errors(stages, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("kitti_unet_clahe", [f"train.stages={stages}", "train.epochs=5"])


def test_a_run_in_stages_trains_each_at_its_size(tmp_path, capsys):
    from tfseg.training.run import train

    config = load_config("demo_unet", [
        "data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
        "data.resize=[32, 32]", "model.options={depth: 2, base_filters: 4}", "train.batch_size=4",
        "train.epochs=3", "train.stages=[{size: [16, 16], epochs: 1}, {size: [32, 32], epochs: 2}]",
        f"run_dir={tmp_path / 'run'}"])
    sizes = []
    import tfseg.training.run as train_module

    build = train_module.build_dataset

    def spy(source, split, data, *args, **kwargs):
        if split == "train":
            sizes.append(tuple(data.resize))
        return build(source, split, data, *args, **kwargs)

    train_module.build_dataset = spy
    try:
        train(config, verbose=1)
    finally:
        train_module.build_dataset = build
    assert sizes == [(16, 16), (32, 32), (32, 32)]
    out = capsys.readouterr().out
    assert "stage 1/2: training on 16x16 images" in out and "stage 2/2: training on 32x32 images" in out
    with open(tmp_path / "run" / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2"]


def test_a_time_budget_is_refused_with_stages():
    from tfseg.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="train.time_budget: cannot plan the epochs of train.stages"):
        load_config("fgbg_unet", ["train.time_budget=10"])
