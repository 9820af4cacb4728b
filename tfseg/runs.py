"""THE run directory: every file ``tfseg train`` writes there, and reading them back.

::

    RUN_DIR/
      config.yaml  labels.json  split.json  class_weights.json
      checkpoints/ (ckpt-N.*, checkpoint, best.keras)   history.csv  curves.png  tensorboard/
      wandb/  wandb_run_id  metrics_<split>.json  model.keras  export/

Nothing else in tfseg spells these names. :func:`prepare_run_dir` creates a run directory
or finds an unfinished run there to resume (the resume check); :func:`load_run` reads a
finished one and checks its files against each other.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from tfseg import config as config_lib
from tfseg.config import RunConfig, load_config
from tfseg.errors import UserError
from tfseg.fileio import write_text
from tfseg.heads import LOGITS, named_outputs

MODEL_FILE = "model.keras"  # the best model, once training has finished
CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"  # class names, palette, the stacked input images
SPLIT_FILE = "split.json"  # a seeded train/val split (KITTI Road, folders without lists)
CLASS_WEIGHTS_FILE = "class_weights.json"
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_INDEX = "checkpoint"  # TensorFlow's index in CHECKPOINT_DIR: names the latest checkpoint
BEST_FILE = "checkpoints/best.keras"
HISTORY_FILE = "history.csv"
CURVES_FILE = "curves.png"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
WANDB_RUN_ID_FILE = "wandb_run_id"
METRICS_PREFIX = "metrics_"  # metrics_<split>.json, written by `tfseg evaluate --run-dir`

# Settings a resumed run may change; every other setting must match the run's config.yaml.
RESUMABLE = ("train.learning_rate", "train.checkpoint_steps", "train.checkpoint_minutes",
             "train.worker_timeout_seconds", "train.wandb_mode")


def metrics_path(run_dir: Path, split: str) -> Path:
    """Where ``tfseg evaluate --run-dir`` writes the scores of ``split``."""
    return Path(run_dir) / f"{METRICS_PREFIX}{split}.json"


def custom_objects() -> dict:
    """What Keras needs to load a tfseg ``.keras`` file: the losses and streaming metrics
    (tfseg's layers register themselves when their module is imported, here)."""
    from tfseg import losses
    from tfseg.metrics import MeanIoU, PixelAccuracy
    from tfseg.models import custom_layers  # noqa: F401

    return {**losses.custom_objects(), "MeanIoU": MeanIoU, "PixelAccuracy": PixelAccuracy}


def load_trained_model(path: str | Path):
    """A ``.keras`` file written by training (its precision policy included)."""
    import keras

    return keras.saving.load_model(path, custom_objects=custom_objects())


@dataclass
class Run:
    directory: Path
    config: RunConfig
    class_names: list[str]
    palette: list[list[int]]  # [num_classes, 3] RGB
    input_groups: list[str]  # the RGB images stacked in each input, e.g. ["image"]

    @property
    def model_path(self) -> Path:
        return self.directory / MODEL_FILE

    def model(self):
        """The best model (``model.keras``), as trained (its precision policy included)."""
        if not self.model_path.is_file():
            raise UserError(f"run directory {self.directory}: has no {MODEL_FILE}; has its training finished?")
        model = load_trained_model(self.model_path)
        # The files of a run must describe the same model: one edited by hand, or copied
        # from another run, is named here rather than failing deep inside Keras.
        classes, channels = named_outputs(model.output)[LOGITS].shape[-1], model.inputs[0].shape[-1]
        if classes != len(self.class_names):
            raise UserError(f"run directory {self.directory}: {LABELS_FILE} names {len(self.class_names)} classes "
                            f"but {MODEL_FILE} predicts {classes}; restore {LABELS_FILE} as training wrote it")
        if channels != 3 * len(self.input_groups):
            raise UserError(f"run directory {self.directory}: {LABELS_FILE} stacks {len(self.input_groups)} "
                            f"image(s) ({3 * len(self.input_groups)} channels) but {MODEL_FILE} takes {channels} "
                            f"channels; restore {LABELS_FILE} as training wrote it")
        return model

    def network(self):
        """The best model as served: the same weights computing in float32 throughout,
        whatever precision it was trained in (what the SavedModel and evaluation run)."""
        from tfseg.serving.graph import float32_model

        model = self.model()
        try:
            return float32_model(model, self.config.model, len(self.class_names))
        except (ValueError, TypeError) as err:  # the config's model is not the one that was saved
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(f"run directory {self.directory}: {CONFIG_FILE} (model {self.config.model.name}, "
                            f"options {self.config.model.options}) does not build the model in {MODEL_FILE} "
                            f"({first_line}); restore {CONFIG_FILE} as training wrote it") from None

    def scores(self) -> dict:
        """The scores ``tfseg evaluate --run-dir`` wrote here, by split."""
        scores = {}
        for path in sorted(self.directory.glob(f"{METRICS_PREFIX}*.json")):
            report = json.loads(path.read_text())
            scores[path.stem.removeprefix(METRICS_PREFIX)] = {
                key: report[key] for key in ("miou", "pixel_accuracy", "max_f", "average_precision") if key in report}
        return scores


def load_run(run_dir: str | Path) -> Run:
    """Reads a run directory; a missing or foreign one is a :class:`UserError`."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise UserError(f"run directory {directory}: not found")
    config_path, labels_path = directory / CONFIG_FILE, directory / LABELS_FILE
    for path in (config_path, labels_path):
        if not path.is_file():
            raise UserError(f"run directory {directory}: has no {path.name}; give a directory written by `tfseg train`")
    try:
        labels = json.loads(labels_path.read_text())
        class_names, palette = list(labels["class_names"]), list(labels["palette"])
        # Runs from before stacked inputs have no "input_groups": one RGB image.
        input_groups = list(labels.get("input_groups", ["image"]))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"run directory {directory}: {LABELS_FILE} is not the JSON training writes "
                        "(class_names, palette, input_groups)") from None
    if len(palette) != len(class_names) or not all(isinstance(c, list) and len(c) == 3 for c in palette):
        raise UserError(f"run directory {directory}: {LABELS_FILE} needs one [r, g, b] colour per class "
                        f"({len(class_names)} classes); restore it as training wrote it")
    if not input_groups:
        raise UserError(f"run directory {directory}: {LABELS_FILE} names no input images; restore it as "
                        "training wrote it")
    return Run(directory, load_config(str(config_path)), class_names, palette, input_groups)


def write_labels(run_dir: Path, class_names, palette, input_groups) -> None:
    """``labels.json``: the class names, their colours and the RGB images stacked in each input."""
    write_text(run_dir / LABELS_FILE, json.dumps(
        {"class_names": list(class_names), "palette": [list(map(int, c)) for c in palette],
         "input_groups": list(input_groups)}, indent=1))


def write_config(run_dir: Path, config: RunConfig, comments: list[str]) -> None:
    """``config.yaml``: the resolved configuration, then ``#`` comment lines (what the
    machine-dependent settings resolved to, changes on resumption), so that the file still
    loads as a configuration."""
    write_text(run_dir / CONFIG_FILE, config_lib.dump(config) + "".join(line + "\n" for line in comments))


def resolved_comment(resolved: dict) -> list[str]:
    """YAML comment lines recording what "auto" settings became on this machine.

    Comments, so that the file still loads as a plain configuration (``--config
    RUN_DIR/config.yaml`` reproduces the run, resolving "auto" again where it runs).
    """
    return [f"# resolved {key}: {value}" for key, value in resolved.items()]


def settings_changed(previous: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two configuration mappings."""
    changed = []
    for key in sorted(set(previous) | set(current)):
        old, new = previous.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict) and key != "options":
            changed += settings_changed(old, new, f"{prefix}{key}.")
        elif old != new:
            changed.append(f"{prefix}{key}")
    return changed


def with_defaults(saved: dict, defaults: dict) -> dict:
    """``saved`` (a run's config.yaml) with the settings it lacks taken from ``defaults``:
    settings added to tfseg after the run was written, which it ran with at their default."""
    merged = dict(saved)
    for key, default in defaults.items():
        if key not in merged:
            merged[key] = default
        elif isinstance(default, dict) and isinstance(merged[key], dict) and key != "options":
            merged[key] = with_defaults(merged[key], default)
    return merged


def prepare_run_dir(config: RunConfig, is_writer: bool = True) -> tuple[Path, list[str]]:
    """Creates the run directory, or finds an unfinished run there to go on with.

    Returns ``(run_dir, changes)``: ``changes`` are the lines recording the settings of
    :data:`RESUMABLE` that differ from the unfinished run's. A directory holding a finished
    run, an unfinished run with other settings, or files that are not a run is an error:
    nothing of it is overwritten. Only the writer creates the directory, and only it judges
    a folder that holds no run.
    """
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir}: exists and is not a directory")
    if is_writer and run_dir.is_dir() and not os.access(run_dir, os.W_OK | os.X_OK):
        raise UserError(f"run directory {run_dir}: cannot be written (permission denied); choose another "
                        "--run-dir or make it writable")
    if (run_dir / MODEL_FILE).exists():
        raise UserError(f"run directory {run_dir}: holds a finished run ({MODEL_FILE}); "
                        "choose another --run-dir")
    saved_config = run_dir / CONFIG_FILE
    if saved_config.is_file() and not started(run_dir):
        return run_dir, []  # stopped (or refused) before its first checkpoint: it simply starts again
    if saved_config.is_file():
        try:
            previous = yaml.safe_load(saved_config.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            previous = None
        if not isinstance(previous, dict):
            raise UserError(f"run directory {run_dir}: its {CONFIG_FILE} is not the YAML training writes; "
                            "restore it, or choose another --run-dir")
        current = config_lib.to_dict(config)
        previous = with_defaults(previous, config_lib.to_dict(RunConfig()))
        changed = settings_changed(previous, current)
        fixed = [key for key in changed if key not in RESUMABLE]
        if fixed:
            raise UserError(f"run directory {run_dir}: holds an unfinished run with other settings "
                            f"({', '.join(fixed)}); go on with the same settings (only "
                            f"{', '.join(RESUMABLE)} may change) or choose another --run-dir")
        return run_dir, [f"# changed on resumption: {key}: {_lookup(previous, key)} -> {_lookup(current, key)}"
                         for key in changed]
    # Only the writer judges an unknown folder: the other workers of a multi-worker run
    # may already see the files it has begun to write there (split.json, logs).
    if is_writer and run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"run directory {run_dir}: is not empty and holds no run to resume; "
                        "choose another --run-dir")
    if is_writer:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(f"run directory {run_dir}: cannot be created ({err.strerror})") from None
    return run_dir, []


def started(run_dir: Path) -> bool:
    """Whether a run got as far as a checkpoint (or a best model) that resuming would use."""
    return (run_dir / CHECKPOINT_DIR / CHECKPOINT_INDEX).exists() or (run_dir / BEST_FILE).exists()


def _lookup(mapping: dict, dotted: str):
    for part in dotted.split("."):
        mapping = mapping[part]
    return mapping


def earlier_changes(config_path: Path) -> list[str]:
    """The "# changed on resumption" lines of an unfinished run's config.yaml."""
    if not config_path.is_file():
        return []
    return [line for line in config_path.read_text().splitlines() if line.startswith("# changed on resumption")]
