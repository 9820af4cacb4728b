"""train.best_metric: the best epoch picked by the validation MaxF that KITTI ranks by."""

import csv

import pytest
from data_fixtures import KITTI_SAMPLE, needs_samples

from tfseg.cli import main
from tfseg.config import load_config
from tfseg.data.pipeline import build_dataset
from tfseg.data.sources import make_source
from tfseg.metrics import MaxF
from tfseg.models import model_stride
from tfseg.runs import load_trained_model
from tfseg.training.run import train

TINY = ["data.resize=[64, 192]", "data.augment.crop_size=[64, 192]", "model.options={depth: 2, base_filters: 4}",
        "train.epochs=4", "train.batch_size=4", "train.mixed_precision=float32", "train.learning_rate=0.01",
        "train.best_metric=val_max_f", f"data.data_dir={KITTI_SAMPLE}", "data.kitti.val_count=4",
        "data.kitti.val_fraction=0.4"]


@needs_samples
@pytest.mark.slow
def test_the_kept_model_is_the_epoch_of_the_best_validation_max_f(tmp_path):
    config = load_config("kitti_unet", TINY + [f"run_dir={tmp_path / 'run'}"])
    train(config, verbose=0)
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    scores = [float(row["val_max_f"]) for row in rows]
    assert len(scores) == 4 and all(0 < s <= 1 for s in scores) and "max_f" in rows[0]
    # The kept model, scored again on the validation batches training used.
    model = load_trained_model(tmp_path / "run" / "model.keras")
    source = make_source(load_config(str(tmp_path / "run" / "config.yaml")).data)
    metric = MaxF()
    stride = model_stride("unet", depth=2, base_filters=4)
    for images, labels in build_dataset(source, "val", config.data, 4, training=False, stride=stride):
        metric.update_state(labels, model(images, training=False))
    assert float(metric.result()) == pytest.approx(max(scores), abs=1e-6)


def test_val_max_f_needs_two_classes(tmp_path, capsys):
    assert main(["train", "--config", "demo_unet", "--run-dir", str(tmp_path / "run"),
                 "--set", "train.best_metric=val_max_f"]) == 2
    err = capsys.readouterr().err.strip()
    assert "train.best_metric val_max_f: needs two classes; synthetic has" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@needs_samples
def test_last_keeps_the_last_epoch_trained_on_every_labelled_image(tmp_path, monkeypatch, capsys):
    import json

    import keras
    import numpy as np

    saved = []  # the weights of every best.keras written
    save = keras.Model.save

    def spy(model, path, *args, **kwargs):
        if "best" in str(path):
            saved.append([w.copy() for w in model.get_weights()])
        return save(model, path, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save", spy)
    config = load_config("kitti_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.epochs=3",
                                               "data.kitti.val_count=0", "train.best_metric=last"])
    train(config, verbose=0)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    assert split["val"] == [] and len(split["train"]) == 10  # every labelled image of the sample
    with open(tmp_path / "run" / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and not any(value for row in rows for key, value in row.items() if key.startswith("val_"))
    assert len(saved) == 3  # every epoch's model replaces the one before
    kept = load_trained_model(tmp_path / "run" / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, saved[-1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(kept, saved[0], strict=True))
    assert main(["evaluate", "--run-dir", str(tmp_path / "run")]) == 2  # its val split: nothing to score
    err = capsys.readouterr().err.strip()
    assert "the val split holds no images (none were held out)" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("settings, message", [
    (["data.kitti.val_count=0"], "holds out no validation images; set train.best_metric=last"),
    (["train.best_metric=last", "train.schedule=plateau"], "no score for the plateau schedule"),
    (["train.best_metric=last", "train.early_stopping_patience=3"], "no score for early stopping"),
])
@needs_samples
def test_keeping_a_best_epoch_needs_validation_images(tmp_path, capsys, settings, message):
    argv = ["train", "--config", "kitti_unet", "--run-dir", str(tmp_path / "run"), "--set", f"data.data_dir={KITTI_SAMPLE}"]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
