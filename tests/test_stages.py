"""Progressive resizing: small images first, then larger, in one run and one history."""

import csv
import re

import pytest

from tfseg.config import ConfigError, load_config
from tfseg.training.stages import StageBudget, stage_data_config, stage_index

STAGES = "train.stages=[{size: [96, 312], epochs: 2}, {size: [192, 624], epochs: 3}]"


def test_stage_follows_the_epoch_and_sets_the_training_size():
    config = load_config("kitti_unet_clahe", [STAGES, "train.epochs=5"])
    assert [stage_index([2, 3], e) for e in range(5)] == [0, 0, 1, 1, 1]
    first = stage_data_config(config.data, config.train, 0)
    assert first.resize == [96, 312] and first.augment.crop_size == [96, 312]  # crop scaled alike
    assert config.data.resize == [192, 624]  # validation and export keep the configured geometry
    last = stage_data_config(config.data, config.train, 1)
    assert last.resize == [192, 624]
    assert stage_data_config(config.data, config.train, None) is config.data


def test_a_stage_not_planned_yet_holds_the_epochs_from_its_start():
    assert [stage_index([2, 0, 0], e) for e in range(5)] == [0, 0, 1, 1, 1]
    assert [stage_index([0, 0], e) for e in range(3)] == [0, 0, 0]
    assert stage_index([], 3) is None


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


SMALL_RUN = ["data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
             "data.resize=[32, 32]", "model.options={depth: 2, base_filters: 4}", "train.batch_size=4"]


def trained_sizes(config, monkeypatch) -> list[tuple[int, int]]:
    """Trains ``config``; the size of each epoch's training pipeline, in order."""
    import tfseg.training.run as train_module

    sizes, build = [], train_module.build_dataset

    def spy(source, split, data, *args, **kwargs):
        if split == "train":
            sizes.append(tuple(data.resize))
        return build(source, split, data, *args, **kwargs)

    monkeypatch.setattr(train_module, "build_dataset", spy)
    train_module.train(config, verbose=2)
    return sizes


def test_a_run_in_stages_trains_each_at_its_size(tmp_path, capsys, monkeypatch):
    config = load_config("demo_unet", SMALL_RUN + [
        "train.epochs=3", "train.stages=[{size: [16, 16], epochs: 1}, {size: [32, 32], epochs: 2}]",
        f"run_dir={tmp_path / 'run'}"])
    assert trained_sizes(config, monkeypatch) == [(16, 16), (32, 32), (32, 32)]
    out = capsys.readouterr().out
    assert "stage 1/2: training on 16x16 images" in out and "stage 2/2: training on 32x32 images" in out
    with open(tmp_path / "run" / "history.csv") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2"]


def test_a_stage_budget_gives_each_stage_its_share_of_the_time():
    budget = StageBudget.of(load_config("kitti_unet_clahe", [
        "train.time_budget=10", "train.stages=[{size: [96, 312], epochs: 1}, {size: [192, 624], epochs: 3}]"]).train)
    assert budget.shares == (1, 3) and budget.pixels == (96 * 312, 192 * 624)
    assert budget.deadline(0) == 150 and budget.deadline(1) == 600
    # Stage 1's first epoch ended 40 s in; epochs of 20 s fit 5 more before 150 s.
    assert budget.fit(0, elapsed_seconds=40, epoch_seconds=20) == 6
    assert budget.fit(0, elapsed_seconds=200, epoch_seconds=20) == 1  # late: its one epoch
    # Stage 2 not timed yet: 4x the pixels, so training 4 x 15 s, plus 5 s of validation,
    # for its 450 s share: 6 epochs.
    assert budget.estimated_total([6, 0], 0, train_seconds=15, validation_seconds=5) == 6 + 6
    assert budget.estimated_total([6, 3], 1, train_seconds=60, validation_seconds=5) == 9
    assert StageBudget.of(load_config("fgbg_unet", []).train) is None  # stages, no budget


def test_a_run_in_stages_under_a_time_budget_trains_every_stage_in_order(tmp_path, capsys, monkeypatch):
    config = load_config("demo_unet", SMALL_RUN + [
        "train.epochs=1", "train.time_budget=0.05", "train.mixed_precision=float32",
        "train.stages=[{size: [16, 16], epochs: 1}, {size: [32, 32], epochs: 1}]", f"run_dir={tmp_path / 'run'}"])
    sizes = trained_sizes(config, monkeypatch)
    # However fast the machine: each stage planned at its first epoch, trained at least once, in order.
    assert sizes[0] == (16, 16) and sizes[-1] == (32, 32) and sizes == sorted(sizes)
    out = capsys.readouterr().out
    assert "stage 1/2 (until 0.025 min)" in out and "stage 2/2 (until 0.05 min)" in out
    assert "epoch(s) in all so far" in out  # stage 2 only estimated at stage 1's plan
    with open(tmp_path / "run" / "history.csv") as f:
        assert len(list(csv.DictReader(f))) == len(sizes)


def test_a_stage_plan_is_kept_in_the_checkpoints(tmp_path):
    import keras

    from tfseg.training.checkpoints import Position, TrainingCheckpoints

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.Adam()
    planned = TrainingCheckpoints(tmp_path, model, optimizer, budgeted_stages=2)
    planned.stage_epochs.assign([3, 0])
    planned.save(Position(4, 0, 8))
    resumed = TrainingCheckpoints(tmp_path, model, optimizer, budgeted_stages=2)
    assert resumed.restore() == Position(4, 0, 8)
    assert list(resumed.stage_epochs.numpy()) == [3, 0]
    assert stage_index(resumed.stage_epochs.numpy(), 4) == 1
