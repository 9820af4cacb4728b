"""Pictures for people: overlays, galleries and training curves."""

from __future__ import annotations

import os

import cv2
import numpy as np

from tfseg.data.labels import VOID, colorize
from tfseg.fileio import atomic_path


def overlay(image: np.ndarray, classes: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blends class colours into ``image`` ``[H, W, 3]`` uint8; class 0 and void stay clear."""
    colours = colorize(classes, palette).astype(np.float32)
    painted = (classes != 0) & (classes != VOID)
    out = image.astype(np.float32)
    out[painted] = (1 - alpha) * out[painted] + alpha * colours[painted]
    return np.clip(out, 0, 255).astype(np.uint8)


def write_rgb(path: str | os.PathLike, image: np.ndarray) -> None:
    """An RGB picture ``[H, W, 3]`` uint8 as PNG (or JPEG, by the suffix), written atomically."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")


def depth_preview(depth: np.ndarray, near: float | None = None, far: float | None = None) -> np.ndarray:
    """A colour picture of a depth map ``[H, W]``: near is bright (yellow), far is dark
    (OpenCV's magma map from ``near`` to ``far``, by default the map's own range); uint8
    RGB ``[H, W, 3]``."""
    near = float(np.min(depth)) if near is None else near
    far = float(np.max(depth)) if far is None else far
    if far <= near:
        scaled = np.zeros(depth.shape, np.uint8)
    else:
        scaled = np.round(255 * np.clip((far - depth) / (far - near), 0, 1)).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_MAGMA), cv2.COLOR_BGR2RGB)


def save_grid(rows: list[list[np.ndarray]], titles: list[str], path: str | os.PathLike) -> None:
    """Saves a grid of RGB pictures ``[H, W, 3]`` uint8, one list per row, titled columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = len(titles)
    height, width = rows[0][0].shape[:2]
    cell = 3.0  # inches per column; rows follow the pictures' aspect ratio
    fig, axes = plt.subplots(len(rows), columns, squeeze=False,
                             figsize=(cell * columns, cell * height / width * len(rows) + 0.4))
    for row_axes, pictures in zip(axes, rows):
        for ax, picture in zip(row_axes, pictures):
            ax.imshow(picture, interpolation="nearest")
            ax.axis("off")
    for ax, title in zip(axes[0], titles):
        ax.set_title(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def save_gallery(rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]], palette: np.ndarray,
                 path: str | os.PathLike) -> None:
    """One row per ``(image, true classes, predicted classes)``."""
    pictures = [[image, colorize(truth, palette), colorize(prediction, palette)]
                for image, truth, prediction in rows]
    save_grid(pictures, ["input", "ground truth", "prediction"], path)


def plot_curves(rows: list[dict[str, str]], path: str | os.PathLike) -> None:
    """Plots loss and mIoU (and a depth head's RMSE) per epoch, train and validation, from
    the rows of a run's ``history.csv`` (as :class:`csv.DictReader` gives them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    epochs = [int(r["epoch"]) + 1 for r in rows]
    keys = ["loss", "miou"] + (["depth_rmse"] if rows[0].get("depth_rmse") else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4))
    for ax, key in zip(axes, keys):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in rows[0]:
                ax.plot(epochs, [float(r[prefix + key]) for r in rows], style, marker="o",
                        label="validation" if prefix else "train")
        ax.set_xlabel("epoch")
        ax.set_title(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


def _compact(count: float) -> str:
    """1466970 -> "1.47M", 93852 -> "93.9k": pixel counts that fit a heat-map cell."""
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(int(count))


def save_confusion_matrix(matrix: np.ndarray, class_names, path: str | os.PathLike) -> None:
    """The confusion matrix ``[C, C]`` (rows: truth, columns: prediction) as a heat map of
    each row's fractions, with the pixel counts written in the cells when they fit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, np.float64)
    fractions = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    size = len(class_names)
    fig, ax = plt.subplots(figsize=(2 + 0.45 * size, 1.6 + 0.45 * size))
    shown = ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(size), class_names, rotation=90)
    ax.set_yticks(range(size), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    if size <= 8:
        for (row, column), count in np.ndenumerate(matrix):
            ax.text(column, row, f"{fractions[row, column]:.3f}\n{_compact(count)}", ha="center", va="center",
                    fontsize=7, color="white" if fractions[row, column] > 0.5 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046, label="fraction of the row")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80)
    plt.close(fig)


# Errors drawn over a picture: right road (TP), road predicted where there is none (FP),
# road missed (FN).
ERROR_COLOURS = {"true_positive": (0, 200, 0), "false_positive": (230, 0, 0), "false_negative": (0, 90, 255)}


def error_overlay(image: np.ndarray, label: np.ndarray, predicted: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """``image`` uint8 RGB ``[H, W, 3]`` with the road decisions ``predicted`` (bool
    ``[H, W]``) against ``label`` (0, 1, void) painted in :data:`ERROR_COLOURS`; void stays
    clear."""
    out = image.astype(np.float32)
    truth = label == 1
    for mask, name in ((truth & predicted, "true_positive"), ((label == 0) & predicted, "false_positive"),
                       (truth & ~predicted, "false_negative")):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(ERROR_COLOURS[name], np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def save_bev_comparison(path: str | os.PathLike, image: np.ndarray, label: np.ndarray, probability: np.ndarray,
                        calibration) -> None:
    """One KITTI image's road errors (probability >= 0.5 against the truth), in perspective
    above and in the benchmark's bird's-eye view below (the camera image in BEV under the
    same colours; far at the top), as a PNG: ``image`` uint8 RGB ``[H, W, 3]``, ``label``
    uint8 ``[H, W]``, ``probability`` of road uint8 ``[H, W]``, ``calibration`` a
    :class:`tfseg.kitti_benchmark.Calibration`."""
    from tfseg.kitti_benchmark import bev_sampling

    predicted = probability >= 128
    sampling = bev_sampling(calibration, label.shape)
    bev = error_overlay(sampling.apply(image, 0), sampling.apply(label, VOID), sampling.apply(predicted, False))
    top = error_overlay(image, label, predicted)
    width = max(top.shape[1], bev.shape[1])
    canvas = np.full((top.shape[0] + bev.shape[0], width, 3), 255, np.uint8)
    canvas[:top.shape[0], :top.shape[1]] = top
    canvas[top.shape[0]:, :bev.shape[1]] = bev
    write_rgb(path, canvas)
