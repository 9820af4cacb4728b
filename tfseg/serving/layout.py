"""The layout of an export, TF Serving's: a model base folder of numbered versions.

::

    BASE/                    TF Serving's --model_base_path
      1/  2/ ...             each a SavedModel: saved_model.pb  variables/
        assets.extra/        tfseg.json (class names, palette, preprocessing, ...), model.keras
"""

from __future__ import annotations

from pathlib import Path

from tfseg.errors import UserError
from tfseg.runs import MODEL_FILE

METADATA_FILE = Path("assets.extra") / "tfseg.json"
KERAS_COPY = Path("assets.extra") / MODEL_FILE  # the run's model.keras the export was made from


def model_versions(base: Path) -> list[tuple[int, Path]]:
    """The numbered version folders of a model base folder, lowest first; none if ``base``
    is not a folder."""
    if not base.is_dir():
        return []
    return sorted((int(p.name), p) for p in base.iterdir() if p.name.isdigit())


def next_version(base: Path) -> int:
    """One more than the highest numbered version folder in ``base`` (1 if none)."""
    return max((number for number, _ in model_versions(base)), default=0) + 1


def saved_model_dir(path: Path) -> Path:
    """``path`` itself if it is a SavedModel, else its highest numbered version folder that
    holds one."""
    if (path / "saved_model.pb").is_file():
        return path
    for _, version in reversed(model_versions(path)):
        if (version / "saved_model.pb").is_file():
            return version
    raise UserError(f"model {path}: not a SavedModel directory (no saved_model.pb, no version folder "
                    "holding one); give the folder written by `tfseg export`")
