"""Optimisers, learning-rate schedules, reduce-on-plateau and early stopping."""

import csv
import math

import keras
import numpy as np
import pytest

from tfseg.config import load_config
from tfseg.training.loop import EpochEnd, LoopSettings
from tfseg.training.schedules import Patience, Schedule, make_optimizer


def reference(kind, step, base=0.1, total=100, warmup=10, floor=0.05, power=0.9, every=20, factor=0.1):
    ramp = min((step + 1) / warmup, 1.0) if warmup else 1.0
    t = max(step - warmup, 0)
    progress = min(t / (total - warmup), 1.0)
    value = {"constant": 1.0, "plateau": 1.0,
             "cosine": floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)),
             "poly": floor + (1 - floor) * (1 - progress) ** power,
             "step": factor ** (t // every)}[kind]
    return base * ramp * value


@pytest.mark.parametrize("kind", ["constant", "cosine", "poly", "step", "plateau"])
def test_schedules_follow_their_formulas(kind):
    schedule = Schedule(kind, 0.1, 100, warmup_steps=10, final_fraction=0.05, power=0.9, step_every=20,
                        step_factor=0.1)
    for step in (0, 4, 9, 10, 33, 57, 99, 150):
        assert float(schedule(step)) == pytest.approx(reference(kind, step), rel=1e-5), step


def test_schedule_survives_a_keras_round_trip():
    schedule = Schedule("poly", 0.01, 500, warmup_steps=20, power=0.9)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert float(again(123)) == pytest.approx(float(schedule(123)))


@pytest.mark.parametrize("settings, kind, checks", [
    (["train.optimizer=sgd", "train.momentum=0.8", "train.nesterov=true"], keras.optimizers.SGD,
     {"momentum": 0.8, "nesterov": True}),
    (["train.optimizer=adamw", "train.weight_decay=0.01"], keras.optimizers.AdamW, {"weight_decay": 0.01}),
    (["train.optimizer=adam", "train.clip_norm=1.5"], keras.optimizers.Adam, {"global_clipnorm": 1.5}),
])
def test_optimizers_from_config(tmp_path, settings, kind, checks):
    config = load_config("demo_unet", settings + [f"run_dir={tmp_path}", "train.schedule=poly"])
    optimizer, schedule = make_optimizer(config.train, 10, 3, "float32")
    assert type(optimizer) is kind and schedule.kind == "poly" and schedule.total_steps == 30
    for key, value in checks.items():
        assert getattr(optimizer, key) == pytest.approx(value) if isinstance(value, float) else \
            getattr(optimizer, key) == value


def test_gradient_clipping_bounds_the_update():
    variable = keras.Variable(np.zeros(4, np.float32))
    optimizer = keras.optimizers.SGD(1.0, global_clipnorm=1.0)
    optimizer.apply([keras.ops.convert_to_tensor(np.full(4, 10.0, np.float32))], [variable])
    assert float(np.linalg.norm(variable.numpy())) == pytest.approx(1.0, rel=1e-5)


def test_patience():
    patience = Patience(2)
    assert [patience.update(s) for s in (0.5, 0.6, 0.6, 0.55, 0.7, 0.1, 0.2)] == \
        [False, False, False, True, False, False, True]


def test_plateau_scale_follows_the_scores_and_replays():
    settings = LoopSettings(10, 5, 0, 5.0, plateau_patience=2, plateau_factor=0.5)
    schedule = Schedule("plateau", 0.1, 50)
    epoch_end = EpochEnd(settings, schedule)
    for score in (0.5, 0.6, 0.6, 0.6, 0.6, 0.6):
        epoch_end.update(score)
    assert float(schedule(0)) == pytest.approx(0.1 * 0.25)  # two plateaus of two epochs
    replayed = Schedule("plateau", 0.1, 50)
    replay = EpochEnd(settings, replayed)
    for score in (0.5, 0.6, 0.6, 0.6, 0.6, 0.6):
        replay.update(score)
    assert float(replayed(0)) == float(schedule(0))


def test_early_stopping_ends_the_run_with_its_best_model(tmp_path):
    from tfseg.training.run import train

    config = load_config("demo_unet", [
        "data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
        "model.options={depth: 2, base_filters: 4, batch_norm: false}", "train.epochs=6", "train.batch_size=4",
        # A rate too small to change the predictions (and no batch-norm statistics): the
        # score cannot improve.
        "train.learning_rate=1e-12", "train.schedule=constant", "train.early_stopping_patience=2",
        f"run_dir={tmp_path / 'run'}"])
    train(config, verbose=0)
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [row["epoch"] for row in rows] == ["0", "1", "2"]
    assert (tmp_path / "run" / "model.keras").exists()


def test_fit_epochs():
    from tfseg.training.schedules import fit_epochs

    assert fit_epochs(600, 100, 50, 40) == 11  # the first epoch plus ten of 50 s in the 500 s left
    assert fit_epochs(600, 100, 50, 5) == 5  # never more than train.epochs
    assert fit_epochs(60, 100, 50, 40) == 1  # the first epoch alone overran


def test_time_budget_fits_the_epochs_and_the_schedule(tmp_path, capsys):
    from tfseg.training.run import train

    config = load_config("demo_unet", [
        "data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
        "model.options={depth: 2, base_filters: 4}", "train.epochs=5", "train.batch_size=4",
        "train.time_budget=0.001", f"run_dir={tmp_path / 'run'}"])  # 0.06 s: one epoch
    train(config, verbose=1)
    out = capsys.readouterr().out
    assert "time budget 0.001 min: 1 epoch(s)" in out and "epoch 1/1" in out
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1


def test_a_refitted_schedule_spans_the_new_total():
    schedule = Schedule("cosine", 0.1, 100, final_fraction=0.05)
    schedule.total.assign(40)  # what a time budget does after the first epoch
    assert float(schedule(40)) == pytest.approx(0.1 * 0.05)
    assert float(schedule(20)) == pytest.approx(reference("cosine", 20, total=40, warmup=0), rel=1e-5)
