"""Dataset statistics: sizes, class frequencies, void share and class weights.

:func:`stats` returns plain JSON-ready data. Frequencies count *valid* pixels (void, 255,
excluded); ``void_fraction`` is the share of all labelled pixels that are void.

Class weights use median-frequency balancing (Eigen & Fergus, ICCV 2015): for class ``c``,
``freq(c)`` is its pixel count divided by the valid pixels of the images in which ``c``
occurs, and ``weight(c) = median(freq) / freq(c)``, the median taken over the classes that
occur. Rare classes get weights above 1, common ones below; a class that never occurs gets
weight 0. They are computed on the training split (``train``, else the first labelled one).
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from tfseg.data.files import Example, FileSource
from tfseg.data.labels import VOID
from tfseg.data.sources import Source
from tfseg.images import image_size


class _Tally:
    """Running per-split counts."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.num_images = 0
        self.labelled_images = 0
        self.sizes: Counter = Counter()
        self.pixels = np.zeros(num_classes, np.int64)
        self.void = 0
        self.total = 0
        # Valid pixels of the images in which each class occurs (for median frequency).
        self.pixels_where_present = np.zeros(num_classes, np.int64)

    def add(self, size: tuple[int, int], label: np.ndarray | None) -> None:
        self.num_images += 1
        self.sizes[f"{size[0]}x{size[1]}"] += 1
        if label is None:
            return
        self.labelled_images += 1
        counts = np.bincount(label.ravel(), minlength=256)
        self.pixels += counts[: self.num_classes]
        self.void += int(counts[VOID])
        self.total += label.size
        valid = label.size - int(counts[VOID])
        self.pixels_where_present += np.where(counts[: self.num_classes] > 0, valid, 0)

    def summary(self) -> dict:
        valid = int(self.pixels.sum())
        result = {
            "num_images": self.num_images,
            "image_sizes": dict(sorted(self.sizes.items(), key=lambda item: (-item[1], item[0]))),
        }
        if self.labelled_images:
            result.update({
                "labelled_images": self.labelled_images,
                "class_pixel_counts": [int(n) for n in self.pixels],
                "class_pixel_frequency": [float(n / valid) if valid else 0.0 for n in self.pixels],
                "void_fraction": float(self.void / self.total) if self.total else 0.0,
            })
        return result


def median_frequency_weights(pixels: np.ndarray, pixels_where_present: np.ndarray) -> list[float]:
    """``median(freq) / freq(c)`` per class; 0 for classes that never occur."""
    present = pixels > 0
    if not present.any():
        return [0.0] * len(pixels)
    freq = np.where(present, pixels / np.maximum(pixels_where_present, 1), 0.0)
    median = float(np.median(freq[present]))
    return [float(median / f) if f > 0 else 0.0 for f in freq]


def inverse_frequency_weights(pixels: np.ndarray) -> list[float]:
    """``valid / (classes present * pixels(c))`` per class: 1 for every class when all are
    equally frequent, above 1 for rare ones; 0 for classes that never occur."""
    present = pixels > 0
    if not present.any():
        return [0.0] * len(pixels)
    scale = pixels.sum() / present.sum()
    return [float(scale / n) if n > 0 else 0.0 for n in pixels]


def class_weights(source: Source, split: str, method: str, progress: bool = False) -> list[float]:
    """Class weights from ``split``'s labels: ``method`` "median_frequency" (the weights
    ``tfseg data stats`` reports) or "inverse_frequency"."""
    tally = _tally(source, split, None, progress)
    if method == "median_frequency":
        return median_frequency_weights(tally.pixels, tally.pixels_where_present)
    if method == "inverse_frequency":
        return inverse_frequency_weights(tally.pixels)
    raise ValueError(f"unknown class weighting {method!r}")


def _tally(source: Source, split: str, workers: int | None, progress: bool) -> _Tally:
    tally = _Tally(len(source.class_names))
    if isinstance(source, FileSource):
        examples = source.examples(split)
        with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            items = pool.map(lambda e: _file_items(source, e), examples)
            for size, label in tqdm(items, total=len(examples), desc=f"stats {split}", disable=not progress):
                tally.add(size, label)
    else:
        for _, label, *_ in tqdm(source.dataset(split).as_numpy_iterator(), desc=f"stats {split}",
                             disable=not progress):
            tally.add(label.shape, label)
    return tally


def _file_items(source, example: Example) -> tuple[tuple[int, int], np.ndarray | None]:
    """Image size from the header (no pixel decoding) and the decoded label."""
    size = image_size(example.image_path)
    return size, None if example.label_path is None else source.read_label(example)


def stats(source: Source, splits: list[str] | None = None, workers: int | None = None,
          progress: bool = False) -> dict:
    """Statistics of ``source``: per split and, for the training split, class weights.

    Returns ``{"source", "class_names", "num_images": {split: n}, "splits": {split: {
    num_images, image_sizes {"HxW": count}, and if labelled: labelled_images,
    class_pixel_counts, class_pixel_frequency, void_fraction}}, "weights_split",
    "class_pixel_frequency", "void_fraction", "class_weights", "class_weighting"}``.
    File sources are read directly (labels decoded, images only sized); others through
    their ``tf.data`` pipeline.
    """
    splits = list(splits or source.splits)
    tallies = {split: _tally(source, split, workers, progress) for split in splits}
    labelled = [s for s in splits if tallies[s].labelled_images]
    weights_split = "train" if "train" in labelled else (labelled[0] if labelled else None)
    result = {
        "source": source.name,
        "class_names": list(source.class_names),
        "num_images": {s: tallies[s].num_images for s in splits},
        "splits": {s: tallies[s].summary() for s in splits},
        "weights_split": weights_split,
        "class_weighting": "median frequency balancing (Eigen & Fergus 2015)",
    }
    if weights_split:
        tally = tallies[weights_split]
        summary = result["splits"][weights_split]
        result["class_pixel_frequency"] = summary["class_pixel_frequency"]
        result["void_fraction"] = summary["void_fraction"]
        result["class_weights"] = median_frequency_weights(tally.pixels, tally.pixels_where_present)
    return result


def format_stats(result: dict) -> str:
    """The four-line summary of :func:`stats`' result that ``tfseg data stats`` prints."""
    def listed(mapping: dict, digits: int = 4) -> str:
        return ", ".join(f"{name} {value:.{digits}f}" for name, value in mapping.items())

    counts = ", ".join(f"{split} {n}" for split, n in result["num_images"].items())
    lines = [f"num_images: {counts}"]
    sized = max(result["splits"], key=lambda split: result["num_images"][split])  # the largest split
    sizes = sorted(result["splits"][sized]["image_sizes"].items(), key=lambda item: -item[1])
    lines.append(f"image_sizes ({sized}): " + ", ".join(f"{size} x{n}" for size, n in sizes))
    if result["weights_split"] is not None:
        names = result["class_names"]
        frequency = dict(zip(names, result["class_pixel_frequency"], strict=True))
        weights = dict(zip(names, result["class_weights"], strict=True))
        lines.append(f"class_pixel_frequency ({result['weights_split']}): {listed(frequency)}; "
                     f"void_fraction {result['void_fraction']:.4f}")
        lines.append(f"class_weights (median frequency): {listed(weights)}")
    return "\n".join(lines)
