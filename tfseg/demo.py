"""``tfseg demo``: the whole product on data tfseg generates itself, end to end.

data -> train -> evaluate on the held-out test split -> export a SavedModel ->
segment folders of held-out images with that SavedModel -> gallery of the results.

It runs every preset whose data is generated (``synthetic`` and ``fgbg``: nothing to
download); the others are refused before any work, in one line naming the data they need.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from tfseg.config import GENERATED_SOURCE_NAMES, RunConfig
from tfseg.errors import UserError

NUM_FOLDER_IMAGES = 12
NUM_GALLERY_ROWS = 6


def check_demo_config(config: RunConfig) -> None:
    """Refuses, in one line, a preset whose data tfseg cannot generate."""
    if config.data.source not in GENERATED_SOURCE_NAMES:
        raise UserError(
            f"demo --config {config.name}: its data ({config.data.source}) must be downloaded; demo runs the "
            f"presets on generated data ({', '.join(GENERATED_SOURCE_NAMES)}): for this one use `tfseg train "
            f"--config {config.name} --set data.data_dir=DIR` (README: Datasets)")


def write_samples(examples: list[tuple], input_groups: tuple[str, ...], folder) -> list:
    """Writes each example's image as ``folder/<group>/test_NNNN.png``, one folder per
    stacked RGB image (``[H, W, 3 k]`` -> k files), as a user would bring them; returns
    the folders in the model's order."""
    from tfseg.viz import write_rgb

    folders = [folder / group for group in input_groups]
    for i, (image, *_) in enumerate(examples):
        for k, group_folder in enumerate(folders):
            write_rgb(group_folder / f"test_{i:04d}.png", image[..., 3 * k:3 * k + 3])
    return folders


def run_demo(config: RunConfig) -> dict:
    check_demo_config(config)  # before the imports below load TensorFlow: a refusal is instant
    from tfseg.data.sources import make_source
    from tfseg.evaluate import evaluate_run, write_report
    from tfseg.predict import predict_folder
    from tfseg.runs import load_run, metrics_path
    from tfseg.serving.export import export_run
    from tfseg.training.run import train
    from tfseg.viz import save_gallery

    started = time.time()
    train(config)
    run = load_run(config.run_dir)
    metrics = evaluate_run(run.directory, "test", progress=False)
    write_report(metrics, metrics_path(run.directory, "test"))  # the export carries these scores
    export_dir = export_run(run)

    # Held-out images as files, as a user would bring them, segmented by the SavedModel alone.
    source = make_source(run.config.data)
    count = min(NUM_FOLDER_IMAGES, source.num_examples("test"))
    examples = list(source.dataset("test").take(count).as_numpy_iterator())
    *stacked_with, images_dir = write_samples(examples, source.input_groups, run.directory / "samples")
    predictions_dir = run.directory / "predictions"
    predict_folder(export_dir, images_dir, predictions_dir, progress=False, stacked_with=stacked_with)

    rows = []
    for i, (image, label, *_) in enumerate(examples[:NUM_GALLERY_ROWS]):
        predicted = np.asarray(Image.open(predictions_dir / "masks" / f"test_{i:04d}.png"))
        rows.append((image[..., -3:], label, predicted))  # the last stacked image, as overlays are
    save_gallery(rows, run.palette, run.directory / "gallery.png")

    metrics["seconds"] = round(time.time() - started, 1)
    write_report(metrics, run.directory / "metrics.json")
    return metrics
