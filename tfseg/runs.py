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
        return load_trained_model(self.model_path)


def load_run(run_dir: str | Path) -> Run:
    """Reads a run directory; a missing or foreign one is a :class:`UserError`."""
    directory = Path(run_dir)
    if not directory.is_dir():
        raise UserError(f"run directory {directory}: not found")
    config_path, labels_path = directory / CONFIG_FILE, directory / LABELS_FILE
    for path in (config_path, labels_path):
        if not path.is_file():
            raise UserError(f"run directory {directory}: has no {path.name}; give a directory written by `tfseg train`")
    labels = json.loads(labels_path.read_text())
    # Runs from before stacked inputs have no "input_groups": one RGB image.
    return Run(directory, load_config(str(config_path)), labels["class_names"], labels["palette"],
               labels.get("input_groups", ["image"]))
