"""``tfseg demo``: the whole product on the built-in synthetic data, end to end.

data -> train -> evaluate on the held-out test split -> export a SavedModel ->
segment a folder of held-out images with that SavedModel -> gallery of the results.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from tfseg.config import RunConfig
from tfseg.data.sources import make_source
from tfseg.evaluate import evaluate_run, write_report
from tfseg.export import export_run
from tfseg.predict import predict_folder, write_rgb
from tfseg.runs import load_run
from tfseg.train import train
from tfseg.viz import save_gallery

NUM_FOLDER_IMAGES = 12
NUM_GALLERY_ROWS = 6


def run_demo(config: RunConfig) -> dict:
    started = time.time()
    train(config)
    run = load_run(config.run_dir)
    metrics = evaluate_run(run.directory, "test", progress=False)
    export_dir = export_run(run.model(), run.config, run.directory / run.config.export.path,
                            run.class_names, run.palette, run_dir=run.directory)

    # Held-out images as files, as a user would bring them, segmented by the SavedModel alone.
    source = make_source(run.config.data)
    count = min(NUM_FOLDER_IMAGES, source.num_examples("test"))
    examples = list(source.dataset("test").take(count).as_numpy_iterator())
    images_dir = run.directory / "samples" / "images"
    for i, (image, _) in enumerate(examples):
        write_rgb(images_dir / f"test_{i:04d}.png", image)
    predictions_dir = run.directory / "predictions"
    predict_folder(export_dir, images_dir, predictions_dir, progress=False)

    rows = []
    for i, (image, label) in enumerate(examples[:NUM_GALLERY_ROWS]):
        predicted = np.asarray(Image.open(predictions_dir / "masks" / f"test_{i:04d}.png"))
        rows.append((image, label, predicted))
    save_gallery(rows, run.palette, run.directory / "gallery.png")

    metrics["seconds"] = round(time.time() - started, 1)
    write_report(metrics, run.directory / "metrics.json")
    return metrics
