"""Training with ``model.fit``: checkpoints, resume, CSV and TensorBoard logs, curves.

A run directory holds everything about one run::

    run_dir/
      config.yaml        the resolved configuration, written before training starts
      labels.json        class names and display palette of the data source
      backup/            Keras BackupAndRestore state while a run is unfinished (resume)
      checkpoints/best.keras
      history.csv  curves.png  tensorboard/
      model.keras        the best model, written when training finishes
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import keras
import yaml

from tfseg import config as config_lib
from tfseg.artifacts import CONFIG_FILE, LABELS_FILE, MODEL_FILE, SPLIT_FILE
from tfseg.config import RunConfig
from tfseg.data.pipeline import build_dataset
from tfseg.data.sources import make_source
from tfseg.data.splits import write_split_record
from tfseg.errors import UserError
from tfseg.fileio import atomic_path, write_text
from tfseg.interrupts import StopAtBoundary
from tfseg.losses import MaskedSparseCrossEntropy
from tfseg.metrics import MeanIoU, PixelAccuracy
from tfseg.models import build_model, check_options, model_stride
from tfseg.runtime import apply_precision, describe, make_strategy, resolve_jit_compile
from tfseg.viz import plot_curves

class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model whenever ``monitor`` improves, writing the file atomically."""

    def __init__(self, path: Path, monitor: str = "val_miou", best: float = -math.inf):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and value > self.best:
            self.best = float(value)
            with atomic_path(self.path) as tmp:
                self.model.save(tmp)


class CurvesPlot(keras.callbacks.Callback):
    """Redraws ``curves.png`` after every epoch, so an interrupted run still has its plot."""

    def __init__(self, history_csv: Path, path: Path):
        super().__init__()
        self.history_csv, self.path = history_csv, path

    def on_epoch_end(self, epoch, logs=None):
        plot_curves(self.history_csv, self.path)


def best_logged(history_csv: Path, key: str = "val_miou") -> float:
    """The best value of ``key`` in a CSV history so far (-inf when there is none)."""
    if not history_csv.exists():
        return -math.inf
    with open(history_csv, newline="") as f:
        return max((float(row[key]) for row in csv.DictReader(f) if row.get(key)), default=-math.inf)


def resolved_comment(resolved: dict) -> str:
    """YAML comment lines recording what "auto" settings became on this machine.

    Comments, so that the file still loads as a plain configuration (``--config
    RUN_DIR/config.yaml`` reproduces the run, resolving "auto" again where it runs).
    """
    return "".join(f"# resolved {key}: {value}\n" for key, value in resolved.items())


def custom_objects() -> dict:
    return {"MaskedSparseCrossEntropy": MaskedSparseCrossEntropy, "MeanIoU": MeanIoU,
            "PixelAccuracy": PixelAccuracy}


def load_trained_model(path: str | Path) -> keras.Model:
    return keras.saving.load_model(path, custom_objects=custom_objects())


def compile_model(model: keras.Model, config: RunConfig, num_classes: int, total_steps: int) -> None:
    t = config.train
    schedule = keras.optimizers.schedules.CosineDecay(
        t.learning_rate, decay_steps=max(total_steps, 1), alpha=t.final_learning_rate_fraction
    )
    if t.weight_decay:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=t.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(schedule)
    model.compile(
        optimizer=optimizer,
        loss=MaskedSparseCrossEntropy(),
        metrics=[MeanIoU(num_classes), PixelAccuracy(num_classes)],
        jit_compile=resolve_jit_compile(t),
    )


def prepare_run_dir(config: RunConfig) -> tuple[Path, bool]:
    """Creates the run directory, or finds an interrupted run there to resume.

    Returns ``(run_dir, resuming)``. A directory holding a finished run, or an unfinished
    run with a different configuration, is an error: nothing of it is overwritten.
    """
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir}: exists and is not a directory")
    if (run_dir / MODEL_FILE).exists():
        raise UserError(f"run directory {run_dir}: holds a finished run ({MODEL_FILE}); "
                        "choose another --run-dir")
    saved_config = run_dir / CONFIG_FILE
    if (run_dir / "backup").exists() and saved_config.exists():
        previous = yaml.safe_load(saved_config.read_text())
        if previous != config_lib.to_dict(config):
            raise UserError(f"run directory {run_dir}: holds an unfinished run with a different "
                            "configuration; resume it with the same settings or choose another --run-dir")
        return run_dir, True
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run directory {run_dir}: is not empty and holds no run to resume; "
                        "choose another --run-dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"run directory {run_dir}: cannot be created ({err.strerror})") from None
    return run_dir, False


def train(config: RunConfig, verbose: int = 2, callbacks=()) -> Path:
    """Trains the configured model; returns the path of the saved best model.

    ``callbacks`` are extra Keras callbacks, run after tfseg's own.
    """
    check_options(config.model.name, config.model.options)
    # A seeded split is frozen in the run directory: every later evaluation of this run,
    # and its resumption, use the very same split, from any directory.
    run_split_file = Path(config.run_dir).resolve() / SPLIT_FILE
    if not config.data.split_file and run_split_file.is_file():  # resuming
        config.data.split_file = str(run_split_file)
    source, split_record = make_source(config.data), None
    if not config.data.split_file:
        split_record = source.split_record()
        if split_record is not None:
            config.data.split_file = str(run_split_file)
    run_dir, resuming = prepare_run_dir(config)
    if split_record is not None:
        write_split_record(split_record, run_split_file)
    print(f"{'resuming' if resuming else 'starting'} run in {run_dir}")

    keras.utils.set_random_seed(config.train.seed)
    policy = apply_precision(config.train)
    jit_compile = resolve_jit_compile(config.train)
    strategy = make_strategy(config.train)
    resolved = describe(policy, jit_compile, strategy)
    write_text(run_dir / CONFIG_FILE, config_lib.dump(config) + resolved_comment(resolved))
    num_classes = len(source.class_names)
    write_text(run_dir / LABELS_FILE, json.dumps(
        {"class_names": list(source.class_names), "palette": source.palette.tolist()}, indent=1))

    t = config.train
    steps = t.steps_per_epoch or max(source.num_examples("train") // t.batch_size, 1)
    stride = model_stride(config.model.name, **config.model.options)
    train_ds = build_dataset(source, "train", config.data, t.batch_size, training=True, seed=t.seed, stride=stride)
    val_ds = build_dataset(source, "val", config.data, t.batch_size, training=False, stride=stride)

    with strategy.scope():
        model = build_model(config.model.name, num_classes, **config.model.options)
        compile_model(model, config, num_classes, total_steps=steps * t.epochs)
    print(f"model {config.model.name}: {model.count_params():,} parameters, policy {policy}, "
          f"XLA {'on' if jit_compile else 'off'}, "
          f"{strategy.num_replicas_in_sync} replica(s), stride {stride}")

    best_path = run_dir / "checkpoints" / "best.keras"
    history_csv = run_dir / "history.csv"
    callbacks = [
        # First, so that an epoch is backed up before any later callback can stop the run.
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard")),
        # A resumed run must only replace the best checkpoint by a better one.
        BestCheckpoint(best_path, best=best_logged(history_csv)),
        CurvesPlot(history_csv, run_dir / "curves.png"),
        *callbacks,
    ]
    stopper = StopAtBoundary()  # last: it stops only once the others are done
    with stopper.handling_signals():
        model.fit(train_ds, validation_data=val_ds, epochs=t.epochs, steps_per_epoch=steps,
                  callbacks=[*callbacks, stopper], verbose=verbose, shuffle=False)

    best = load_trained_model(best_path)
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        best.save(tmp)
    return run_dir / MODEL_FILE
