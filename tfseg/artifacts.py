"""Names of the files tfseg writes, shared by the modules that write and read them."""

from pathlib import Path

# In a run directory.
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.yaml"
LABELS_FILE = "labels.json"
SPLIT_FILE = "split.json"  # a seeded train/val split (KITTI Road, folders without lists)

# In an exported SavedModel directory: class names, palette, preprocessing, stride.
METADATA_FILE = Path("assets.extra") / "tfseg.json"


def model_versions(base: Path) -> list[tuple[int, Path]]:
    """The numbered version folders of an export's model base folder (TF Serving's layout,
    ``BASE/<N>/``), lowest first; none if ``base`` is not a folder."""
    if not base.is_dir():
        return []
    return sorted((int(p.name), p) for p in base.iterdir() if p.name.isdigit())
