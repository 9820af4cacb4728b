"""What a run records once per epoch: ``history.csv``, TensorBoard scalars and prediction
images, ``curves.png``.

``history.csv`` has one row per finished epoch: ``epoch`` (from 0), ``learning_rate`` (at
the epoch's end), the training ``loss``, ``miou``, ``pixel_accuracy`` and their ``val_``
counterparts. Each write replaces the file atomically, so a killed run leaves it whole.

TensorBoard's "validation" run also gets, every epoch, the same few validation images as
the network sees them (resized, equalized) beside their ground truth and the current
prediction (:class:`PredictionPanels`), under "predictions". With a tracker
(:mod:`tfseg.training.tracking`), rows and panels also go to Weights & Biases.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from tfseg.data.labels import colorize
from tfseg.data.sources import example_parts
from tfseg.fileio import write_text
from tfseg.heads import DEPTH, LOGITS, named_outputs
from tfseg.runs import CURVES_FILE, HISTORY_FILE, TENSORBOARD_DIR
from tfseg.training.tracking import WandbTracker
from tfseg.viz import depth_preview, plot_curves

# How many validation images TensorBoard shows every epoch.
PREVIEW_IMAGES = 4


class PredictionPanels:
    """A fixed set of validation examples, and ``[image | truth | prediction]`` panels of them.

    ``examples``: ``(image uint8 [H, W, 3 k], label uint8 [H, W])`` (and targets,
    :func:`tfseg.data.sources.example_parts`) as cached for training; ``network_input(images uint8 [N, H, W, 3 k])`` gives the
    network's input for them. Of stacked RGB images, the panel shows the last (a pair's
    composite); a model with a depth head adds ``| true depth | predicted depth``, coloured
    over the true depths' range.
    """

    def __init__(self, examples, network_input, palette):
        parts = [example_parts(example) for example in examples]
        self.inputs = [network_input(image[None]) for image, _, _ in parts]
        self.images = [image[..., -3:] for image, _, _ in parts]
        self.labels = [label for _, label, _ in parts]
        self.depths = [targets.get(DEPTH) for _, _, targets in parts]
        self.palette = np.asarray(palette, np.uint8)

    def render(self, model) -> np.ndarray:
        """uint8 ``[K, H, (3 or 5) W, 3]`` (the images' sizes differ: each panel is padded
        to the largest)."""
        panels = []
        for image, label, depth, x in zip(self.images, self.labels, self.depths, self.inputs):
            outputs = named_outputs(model(x, training=False))
            logits, predicted_depth = outputs[LOGITS], outputs.get(DEPTH)
            height, width = image.shape[:2]
            prediction = np.asarray(logits, np.float32)[0, :height, :width].argmax(-1).astype(np.uint8)
            columns = [image, colorize(label, self.palette), colorize(prediction, self.palette)]
            if predicted_depth is not None and depth is not None:
                known = depth[depth > 0]
                near, far = (float(known.min()), float(known.max())) if known.size else (0.0, 1.0)
                columns += [depth_preview(depth, near, far),
                            depth_preview(np.asarray(predicted_depth)[0, :height, :width, 0], near, far)]
            panels.append(np.concatenate(columns, 1))
        height, width = max(p.shape[0] for p in panels), max(p.shape[1] for p in panels)
        return np.stack([np.pad(p, [(0, height - p.shape[0]), (0, width - p.shape[1]), (0, 0)]) for p in panels])

COLUMNS = ("epoch", "learning_rate", "loss", "miou", "pixel_accuracy",
           "val_loss", "val_miou", "val_pixel_accuracy")


def read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class History:
    """The per-epoch record of a run in ``run_dir``; writes nothing unless ``is_writer``."""

    def __init__(self, run_dir: Path, is_writer: bool = True, tracker: WandbTracker | None = None):
        self.csv_path, self.curves_path = run_dir / HISTORY_FILE, run_dir / CURVES_FILE
        self.is_writer = is_writer
        self.tracker = tracker
        self.rows = read_rows(self.csv_path)
        self._writers = {}
        if is_writer:
            for name in ("train", "validation"):
                self._writers[name] = tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR / name))

    def keep_epochs_before(self, epoch: int) -> None:
        """Drops the rows of ``epoch`` and later: a resumed run writes them again."""
        kept = [row for row in self.rows if int(row["epoch"]) < epoch]
        if len(kept) < len(self.rows):
            self.rows = kept
            self._write_csv()

    def best(self, key: str = "val_miou") -> float:
        """The best finite value of ``key`` so far (-inf when there is none)."""
        values = [float(row[key]) for row in self.rows if row.get(key)]
        return max((v for v in values if math.isfinite(v)), default=-math.inf)

    def predictions(self, epoch: int, panels: np.ndarray) -> None:
        """Panels from :meth:`PredictionPanels.render` into TensorBoard at ``epoch``."""
        if not self.is_writer:
            return
        with self._writers["validation"].as_default(step=epoch):
            tf.summary.image("predictions", panels, max_outputs=len(panels))
        self._writers["validation"].flush()
        if self.tracker is not None:
            self.tracker.images(epoch, panels)

    def append(self, epoch: int, logs: dict[str, float]) -> None:
        # The columns every run has first, then those of the model's other heads (e.g.
        # depth_loss, depth_rmse, ..., val_depth_loss, ...) in the order they are logged.
        keys = [key for key in COLUMNS[1:] if key in logs] + [key for key in logs if key not in COLUMNS]
        row = {"epoch": str(epoch), **{key: repr(float(logs[key])) for key in keys}}
        self.rows.append(row)
        self._write_csv()
        if not self.is_writer:
            return
        for name, prefix in (("train", ""), ("validation", "val_")):
            with self._writers[name].as_default(step=epoch):
                for key, value in logs.items():
                    if key.startswith("val_") == bool(prefix):
                        tf.summary.scalar("epoch_" + key.removeprefix(prefix), value)
            self._writers[name].flush()
        if self.tracker is not None:
            self.tracker.log(epoch, logs)
        plot_curves(self.rows, self.curves_path)

    def _write_csv(self) -> None:
        if not self.is_writer:
            return
        text = io.StringIO()
        fields = list(COLUMNS)
        for row in self.rows:
            fields += [key for key in row if key not in fields]
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.csv_path, text.getvalue())
