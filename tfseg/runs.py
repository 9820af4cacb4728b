"""A run directory as written by ``tfseg train``: its configuration, labels and model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tfseg.artifacts import CONFIG_FILE, LABELS_FILE, MODEL_FILE
from tfseg.config import RunConfig, load_config
from tfseg.errors import UserError


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
        from tfseg.train import load_trained_model

        if not self.model_path.is_file():
            raise UserError(f"run directory {self.directory}: has no {MODEL_FILE}; has its training finished?")
        model = load_trained_model(self.model_path)
        # The files of a run must describe the same model: one edited by hand, or copied
        # from another run, is named here rather than failing deep inside Keras.
        classes, channels = model.outputs[0].shape[-1], model.inputs[0].shape[-1]
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
        from tfseg.inference import float32_model

        model = self.model()
        try:
            return float32_model(model, self.config.model, len(self.class_names))
        except (ValueError, TypeError) as err:  # the config's model is not the one that was saved
            first_line = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UserError(f"run directory {self.directory}: {CONFIG_FILE} (model {self.config.model.name}, "
                            f"options {self.config.model.options}) does not build the model in {MODEL_FILE} "
                            f"({first_line}); restore {CONFIG_FILE} as training wrote it") from None


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
    if len(palette) != len(class_names) or not input_groups:
        raise UserError(f"run directory {directory}: {LABELS_FILE} has {len(class_names)} class names but "
                        f"{len(palette)} palette colours")
    return Run(directory, load_config(str(config_path)), class_names, palette, input_groups)
