"""Segmentation scores from a confusion matrix, with the void label ignored.

Two forms share one definition of the scores: NumPy functions for evaluation over a whole
split, and streaming ``keras.metrics.Metric`` s for training logs. Rows of the confusion
matrix are ground-truth classes, columns are predicted classes. :class:`RoadCurve` is the
KITTI devkit's precision/recall curve of a two-class probability map (MaxF, AP).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfseg.data.labels import VOID
from tfseg.predictions import PROBABILITY_LEVELS


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int,
                     ignore_index: int = VOID) -> np.ndarray:
    """``[num_classes, num_classes]`` int64 counts of (true, predicted) pixel pairs.

    ``labels`` and ``predictions`` are integer arrays of the same shape; pixels whose label
    is ``ignore_index`` are skipped. Any other label outside ``0..num_classes-1`` is an error,
    because it means the data and the model disagree about the classes.
    """
    labels = np.asarray(labels).reshape(-1).astype(np.int64)
    predictions = np.asarray(predictions).reshape(-1).astype(np.int64)
    valid = labels != ignore_index
    labels, predictions = labels[valid], predictions[valid]
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        unknown = [int(v) for v in np.unique(labels) if not 0 <= v < num_classes]
        raise ValueError(f"label values {unknown} "
                         f"are outside 0..{num_classes - 1} and not void ({ignore_index})")
    flat = labels * num_classes + predictions
    return np.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def scores(matrix: np.ndarray) -> dict:
    """IoU per class, mean IoU, pixel accuracy and mean class accuracy from a confusion matrix.

    Classes absent from both the ground truth and the predictions have an undefined IoU
    (reported as ``None``) and are left out of the means, as in the VOC evaluation.
    """
    matrix = np.asarray(matrix, np.float64)
    true_positive = np.diag(matrix)
    per_true = matrix.sum(axis=1)
    union = per_true + matrix.sum(axis=0) - true_positive
    present = union > 0
    iou = np.where(present, true_positive / np.maximum(union, 1), np.nan)
    has_pixels = per_true > 0
    class_accuracy = np.where(has_pixels, true_positive / np.maximum(per_true, 1), np.nan)
    total = matrix.sum()
    return {
        "miou": float(np.nanmean(iou)) if present.any() else 0.0,
        "pixel_accuracy": float(true_positive.sum() / total) if total else 0.0,
        "mean_class_accuracy": float(np.nanmean(class_accuracy)) if has_pixels.any() else 0.0,
        "iou_per_class": [None if np.isnan(v) else float(v) for v in iou],
        "valid_pixels": int(total),
    }


def batch_confusion_matrix(y_true, y_pred, num_classes: int, ignore_index: int = VOID):
    """The confusion matrix of one batch, in ops that XLA compiles: int32 ``[C, C]``.

    ``y_true``: ``[B, H, W]`` integer labels; ``y_pred``: ``[B, H, W, C]`` logits or scores.
    Counting is a matrix product of one-hot maps, ``onehot(true)^T @ onehot(predicted)``,
    image by image: its shapes are fixed, unlike a bincount's, and it runs on the matrix
    units. The products are float32, and exact, because every partial sum is an integer
    below 2**24 (an image of under 16.7 million pixels); the images are then summed in int32.
    Void pixels (and any label outside ``0..C-1``) have an all-zero one-hot row.
    """
    labels = ops.cast(y_true, "int32")
    batch = ops.shape(labels)[0]
    valid = ops.cast(ops.logical_and(ops.not_equal(labels, ignore_index), labels < num_classes), "float32")
    safe_labels = ops.where(labels < num_classes, labels, 0)
    truth = ops.one_hot(ops.reshape(safe_labels, (batch, -1)), num_classes, dtype="float32")
    truth = truth * ops.reshape(valid, (batch, -1, 1))
    predicted = ops.one_hot(ops.reshape(ops.argmax(y_pred, axis=-1), (batch, -1)), num_classes,
                            dtype="float32")
    per_image = ops.einsum("bpt,bpq->btq", truth, predicted)
    return ops.sum(ops.cast(per_image, "int32"), axis=0)


class _ConfusionMatrixMetric(keras.metrics.Metric):
    """Accumulates a confusion matrix from ``[B,H,W]`` labels and ``[B,H,W,C]`` logits.

    The running matrix is int64 so that it stays exact over any split (a float32 count
    stops growing at 2**24 pixels, about 36 KITTI images); its variable is summed across
    replicas under ``tf.distribute``. Every update compiles under XLA.
    """

    def __init__(self, num_classes: int, ignore_index: int = VOID, name: str | None = None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                        dtype="int64", aggregation="sum", name="matrix")

    def update_state(self, y_true, y_pred, sample_weight=None):
        counts = batch_confusion_matrix(y_true, y_pred, self.num_classes, self.ignore_index)
        self.matrix.assign_add(ops.cast(counts, "int64"))

    def reset_state(self):
        self.matrix.assign(ops.zeros((self.num_classes, self.num_classes), "int64"))

    def _matrix(self):
        """The running matrix as float32, for the scores: ratios need no more precision."""
        return ops.cast(self.matrix, "float32")

    def get_config(self):
        return {"num_classes": self.num_classes, "ignore_index": self.ignore_index,
                "name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tfseg")
class MeanIoU(_ConfusionMatrixMetric):
    """Mean intersection-over-union over the classes present in labels or predictions."""

    def __init__(self, num_classes: int, ignore_index: int = VOID, name: str = "miou", **kwargs):
        super().__init__(num_classes, ignore_index, name=name, **kwargs)

    def result(self):
        matrix = self._matrix()
        true_positive = ops.diagonal(matrix)
        union = ops.sum(matrix, axis=0) + ops.sum(matrix, axis=1) - true_positive
        present = ops.cast(union > 0, "float32")
        iou = true_positive / ops.maximum(union, 1.0)
        return ops.sum(iou * present) / ops.maximum(ops.sum(present), 1.0)


@keras.saving.register_keras_serializable(package="tfseg")
class PixelAccuracy(_ConfusionMatrixMetric):
    """Fraction of valid pixels whose predicted class is right."""

    def __init__(self, num_classes: int, ignore_index: int = VOID, name: str = "pixel_accuracy", **kwargs):
        super().__init__(num_classes, ignore_index, name=name, **kwargs)

    def result(self):
        matrix = self._matrix()
        return ops.sum(ops.diagonal(matrix)) / ops.maximum(ops.sum(matrix), 1.0)


@keras.saving.register_keras_serializable(package="tfseg")
class MaxF(keras.metrics.Metric):
    """The KITTI devkit's MaxF of class 1 over the pixels seen: the best F-measure over the
    256 thresholds of the class-1 probability quantised as a submission PNG stores it
    (:class:`RoadCurve` computes the same in NumPy, and also the rest of the devkit's table).

    ``[B, H, W]`` labels and two-class ``[B, H, W, 2]`` logits; pixels labelled neither 0
    nor 1 (void) are left out. Each update counts the
    batch's valid pixels per quantised level with a segment sum (XLA compiles it); the
    float32 counts are exact while a batch holds under 2**24 pixels (eight 384x1248 images
    hold 3.8 million), and the running counts are int64.
    """

    def __init__(self, name: str = "max_f", **kwargs):
        super().__init__(name=name, **kwargs)
        self.positives = self.add_variable(shape=(PROBABILITY_LEVELS,), initializer="zeros", dtype="int64",
                                           aggregation="sum", name="positives")
        self.negatives = self.add_variable(shape=(PROBABILITY_LEVELS,), initializer="zeros", dtype="int64",
                                           aggregation="sum", name="negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        probability = ops.softmax(ops.cast(y_pred, "float32"), axis=-1)[..., 1]
        levels = ops.reshape(ops.cast(ops.round(ops.clip(probability, 0.0, 1.0) * 255.0), "int32"), (-1,))
        for variable, label in ((self.positives, 1), (self.negatives, 0)):
            counts = ops.segment_sum(ops.cast(ops.equal(labels, label), "float32"), levels,
                                     num_segments=PROBABILITY_LEVELS)
            variable.assign_add(ops.cast(counts, "int64"))

    def reset_state(self):
        for variable in (self.positives, self.negatives):
            variable.assign(ops.zeros((PROBABILITY_LEVELS,), "int64"))

    def result(self):
        # As RoadCurve.scores: at threshold t, false negatives are the positives below t,
        # false positives the negatives at t or above.
        positives, negatives = ops.cast(self.positives, "float32"), ops.cast(self.negatives, "float32")
        true_positive = ops.sum(positives) - (ops.cumsum(positives) - positives)
        false_positive = ops.flip(ops.cumsum(ops.flip(negatives, axis=0)), axis=0)
        recall = true_positive / ops.maximum(ops.sum(positives), 1.0)
        precision = true_positive / (true_positive + false_positive + 1e-10)
        return ops.max(2 * precision * recall / (precision + recall + 1e-10))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def positive_class_scores(matrix: np.ndarray) -> dict:
    """Precision, recall and F1 of class 1 at the hard decision, from a two-class confusion
    matrix (rows true, columns predicted)."""
    tp, fp, fn = matrix[1, 1], matrix[0, 1], matrix[1, 0]
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": float(precision), "recall": float(recall),
            "f1": float(2 * precision * recall / max(precision + recall, 1e-12))}


class RoadCurve:
    """The KITTI devkit's pixel evaluation of a probability map, accumulated over images.

    ``positives[q]`` / ``negatives[q]`` count valid pixels of the positive / negative class
    whose quantised probability is ``q``. At threshold ``t / 255`` a pixel is predicted
    positive when ``q >= t``, which is exactly the devkit's histogram over float thresholds
    ``range(256) / 255`` for maps read as ``uint8 / 255``.
    """

    def __init__(self):
        self.positives = np.zeros(PROBABILITY_LEVELS, np.int64)
        self.negatives = np.zeros(PROBABILITY_LEVELS, np.int64)

    def add(self, label: np.ndarray, probability: np.ndarray) -> None:
        """``label`` uint8 ``[H, W]`` (0, 1, 255 = void), ``probability`` uint8 ``[H, W]``."""
        self.positives += np.bincount(probability[label == 1], minlength=PROBABILITY_LEVELS)
        self.negatives += np.bincount(probability[label == 0], minlength=PROBABILITY_LEVELS)

    def scores(self) -> dict:
        """``max_f``, its ``max_f_threshold`` (and precision, recall, false positive rate
        ``FP / N`` and false negative rate ``FN / P`` there) and ``average_precision``
        (11-point, as the devkit computes it)."""
        total_positive, total_negative = int(self.positives.sum()), int(self.negatives.sum())
        # False negatives at threshold t: positives with q < t; false positives: negatives with q >= t.
        false_negative = np.concatenate([[0], np.cumsum(self.positives)[:-1]])
        false_positive = np.cumsum(self.negatives[::-1])[::-1]
        true_positive = total_positive - false_negative
        recall = true_positive / max(total_positive, 1)
        precision = true_positive / (true_positive + false_positive + 1e-10)
        kept = ~((recall == 0) & (precision == 0))  # the devkit drops these thresholds
        thresholds = np.arange(PROBABILITY_LEVELS)[kept] / 255.0
        recall, precision = recall[kept], precision[kept]
        false_positive, false_negative = false_positive[kept], false_negative[kept]
        if not recall.size:
            return {"max_f": 0.0, "max_f_threshold": None, "average_precision": 0.0}
        f_measure = 2 * precision * recall / (precision + recall + 1e-10)
        best = int(np.argmax(f_measure))
        levels = np.arange(0.0, 1.1, 0.1)
        average_precision = np.mean([precision[recall >= r].max() if (recall >= r).any() else 0.0
                                     for r in levels])
        return {"max_f": float(f_measure[best]), "max_f_threshold": float(thresholds[best]),
                "max_f_precision": float(precision[best]), "max_f_recall": float(recall[best]),
                "max_f_fpr": float(false_positive[best] / max(total_negative, 1)),
                "max_f_fnr": float(false_negative[best] / max(total_positive, 1)),
                "average_precision": float(average_precision)}
