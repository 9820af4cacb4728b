"""Segmentation losses on logits that ignore the void label.

Every loss takes ``y_true`` ``[B, H, W]`` integer class ids (any int dtype; ``ignore_index``,
255, is void) and ``y_pred`` ``[B, H, W, C]`` logits, computes in float32 whatever the
policy, and returns one scalar per batch. They are plain tensor code (``keras.ops``), so
they compile into an XLA train step.

Pixel losses (means over the *valid pixels of the whole batch*):

* :class:`MaskedSparseCrossEntropy` -- softmax cross-entropy, optionally class-weighted:
  ``sum(w[y] * ce) / sum(w[y])`` (the weighted mean PyTorch's ``CrossEntropyLoss`` takes).
  For two classes it is exactly the binary cross-entropy of the class-1 probability.
* :class:`FocalLoss` -- ``(1 - p_t) ** gamma * ce`` (Lin et al. 2017), optionally weighted.

Region losses (soft, on softmax probabilities ``p`` and one-hot labels ``y``, summed over
the batch's valid pixels per class, then averaged over the chosen classes; ``smooth``
keeps empty classes finite):

* :class:`DiceLoss` -- ``1 - (2 sum(p y) + s) / (sum(p) + sum(y) + s)``;
* :class:`JaccardLoss` -- soft IoU: ``1 - (sum(p y) + s) / (sum(p) + sum(y) - sum(p y) + s)``;
* :class:`TverskyLoss` -- ``TI = (TP + s) / (TP + alpha FP + beta FN + s)``, loss
  ``(1 - TI) ** gamma`` (gamma 1: Tversky, Salehi et al. 2017; gamma < 1: focal Tversky,
  Abraham & Khan 2019).
* :class:`LovaszSoftmaxLoss` -- the Lovasz extension of ``1 - IoU`` (Berman et al. 2018):
  per class, the errors ``|y - p|`` sorted in decreasing order, weighted by the steps of the
  IoU loss of the growing sets of the largest errors. It is ``1 - IoU`` exactly where
  ``p`` is 0 or 1, and a tight convex surrogate of it in between. Averaged over the chosen
  classes that occur in the batch (no ``smooth``).

``classes="foreground"`` leaves class 0 out of a region loss: for two classes that is the
binary form (class 1 only). :class:`CombinedLoss` is a weighted sum, e.g. cross-entropy +
Dice; :func:`make_loss` builds it from ``config.loss``.
"""

from __future__ import annotations

import keras
from keras import ops

from tfseg.data.labels import VOID

PIXEL_TERMS = ("cross_entropy", "focal")
REGION_TERMS = ("dice", "jaccard", "tversky", "focal_tversky", "lovasz")
TERMS = PIXEL_TERMS + REGION_TERMS


def _valid(y_true, ignore_index):
    """``(labels int32 with void replaced by 0, valid float32 mask)``, both ``[B, H, W]``."""
    y_true = ops.cast(y_true, "int32")
    valid = ops.not_equal(y_true, ignore_index)
    return ops.where(valid, y_true, ops.zeros_like(y_true)), ops.cast(valid, "float32")


def _pixel_mean(per_pixel, labels, valid, class_weights):
    """The mean of ``per_pixel`` over the valid pixels, weighted by ``class_weights[label]``
    when given; 0 for a batch without a valid pixel (or, weighted, without weight)."""
    if class_weights is None:
        return ops.sum(per_pixel * valid) / ops.maximum(ops.sum(valid), 1.0)
    weights = valid * ops.take(ops.convert_to_tensor(class_weights, "float32"), labels)
    return ops.sum(per_pixel * weights) / ops.maximum(ops.sum(weights), 1e-12)


class _SegmentationLoss(keras.losses.Loss):
    """The batch reduction happens in ``call``: Keras must not average a second time."""

    def __init__(self, name: str, ignore_index: int = VOID, **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="none", **kwargs)
        self.ignore_index = ignore_index

    def get_config(self):
        return {"ignore_index": self.ignore_index, "name": self.name}


@keras.saving.register_keras_serializable(package="tfseg")
class MaskedSparseCrossEntropy(_SegmentationLoss):
    """Softmax cross-entropy averaged over the valid pixels of the batch, so an image with
    many void pixels does not weigh more per pixel than a fully labelled one; with
    ``class_weights`` (one per class) the weighted mean. A batch without any valid pixel
    has loss 0 rather than NaN."""

    def __init__(self, ignore_index: int = VOID, class_weights: list[float] | None = None,
                 name: str = "masked_sparse_cross_entropy", **kwargs):
        super().__init__(name, ignore_index, **kwargs)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        labels, valid = _valid(y_true, self.ignore_index)
        per_pixel = ops.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"), from_logits=True)
        return _pixel_mean(per_pixel, labels, valid, self.class_weights)

    def get_config(self):
        return {**super().get_config(), "class_weights": self.class_weights}


@keras.saving.register_keras_serializable(package="tfseg")
class FocalLoss(_SegmentationLoss):
    """``(1 - p_t) ** gamma * cross-entropy``, averaged (class-weighted, if given) over the
    valid pixels: confident, easy pixels count less."""

    def __init__(self, gamma: float = 2.0, ignore_index: int = VOID, class_weights: list[float] | None = None,
                 name: str = "focal", **kwargs):
        super().__init__(name, ignore_index, **kwargs)
        self.gamma = float(gamma)
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        labels, valid = _valid(y_true, self.ignore_index)
        ce = ops.sparse_categorical_crossentropy(labels, ops.cast(y_pred, "float32"), from_logits=True)
        p_true = ops.exp(-ce)
        per_pixel = ops.power(ops.maximum(1.0 - p_true, 0.0), self.gamma) * ce
        return _pixel_mean(per_pixel, labels, valid, self.class_weights)

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "class_weights": self.class_weights}


def _masked_probabilities(y_true, y_pred, ignore_index):
    """``(probabilities, one_hot)``: the softmax of ``y_pred`` and the one-hot labels, both
    float32 ``[B, H, W, C]`` and 0 at void pixels."""
    labels, valid = _valid(y_true, ignore_index)
    valid = valid[..., None]
    return (ops.softmax(ops.cast(y_pred, "float32"), axis=-1) * valid,
            ops.one_hot(labels, y_pred.shape[-1], dtype="float32") * valid)


def _checked_classes(classes: str) -> str:
    """The classes a region loss covers: ``"all"``, or ``"foreground"`` (all but class 0)."""
    if classes not in ("all", "foreground"):
        raise ValueError(f"classes: 'all' or 'foreground', got {classes!r}")
    return classes


class _RegionLoss(_SegmentationLoss):
    """Soft per-class sums over the batch's valid pixels: ``(TP, sum p, sum y)``."""

    def __init__(self, name: str, classes: str = "all", smooth: float = 1.0, ignore_index: int = VOID, **kwargs):
        super().__init__(name, ignore_index, **kwargs)
        self.classes, self.smooth = _checked_classes(classes), float(smooth)

    def sums(self, y_true, y_pred):
        probabilities, one_hot = _masked_probabilities(y_true, y_pred, self.ignore_index)
        axes = tuple(range(len(y_pred.shape) - 1))
        true_positive = ops.sum(probabilities * one_hot, axis=axes)
        predicted, actual = ops.sum(probabilities, axis=axes), ops.sum(one_hot, axis=axes)
        if self.classes == "foreground":
            true_positive, predicted, actual = true_positive[1:], predicted[1:], actual[1:]
        return true_positive, predicted, actual

    def get_config(self):
        return {**super().get_config(), "classes": self.classes, "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="tfseg")
class DiceLoss(_RegionLoss):
    def __init__(self, classes: str = "all", smooth: float = 1.0, name: str = "dice", **kwargs):
        super().__init__(name, classes, smooth, **kwargs)

    def call(self, y_true, y_pred):
        tp, predicted, actual = self.sums(y_true, y_pred)
        return 1.0 - ops.mean((2.0 * tp + self.smooth) / (predicted + actual + self.smooth))


@keras.saving.register_keras_serializable(package="tfseg")
class JaccardLoss(_RegionLoss):
    def __init__(self, classes: str = "all", smooth: float = 1.0, name: str = "jaccard", **kwargs):
        super().__init__(name, classes, smooth, **kwargs)

    def call(self, y_true, y_pred):
        tp, predicted, actual = self.sums(y_true, y_pred)
        return 1.0 - ops.mean((tp + self.smooth) / (predicted + actual - tp + self.smooth))


@keras.saving.register_keras_serializable(package="tfseg")
class TverskyLoss(_RegionLoss):
    """``alpha`` weighs false positives, ``beta`` false negatives (beta > alpha favours
    recall); ``gamma`` != 1 makes it the focal Tversky loss."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, gamma: float = 1.0, classes: str = "all",
                 smooth: float = 1.0, name: str = "tversky", **kwargs):
        super().__init__(name, classes, smooth, **kwargs)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)

    def call(self, y_true, y_pred):
        tp, predicted, actual = self.sums(y_true, y_pred)
        false_positive, false_negative = predicted - tp, actual - tp
        index = (tp + self.smooth) / (tp + self.alpha * false_positive + self.beta * false_negative + self.smooth)
        return ops.mean(ops.power(ops.maximum(1.0 - index, 0.0), self.gamma))

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta, "gamma": self.gamma}


@keras.saving.register_keras_serializable(package="tfseg")
class LovaszSoftmaxLoss(_SegmentationLoss):
    """The Lovasz-softmax loss over the batch's valid pixels, flattened (one sort per class)."""

    def __init__(self, classes: str = "all", ignore_index: int = VOID, name: str = "lovasz", **kwargs):
        super().__init__(name, ignore_index, **kwargs)
        self.classes = _checked_classes(classes)

    def call(self, y_true, y_pred):
        num_classes = y_pred.shape[-1]
        probabilities, one_hot = _masked_probabilities(y_true, y_pred, self.ignore_index)
        one_hot = ops.reshape(one_hot, (-1, num_classes))
        # Void pixels get error 0 and truth 0: they sort behind every positive error, so they
        # change no step that an error weighs (a static shape, unlike dropping them: XLA).
        errors = ops.abs(one_hot - ops.reshape(probabilities, (-1, num_classes)))
        first = 1 if self.classes == "foreground" else 0
        losses, present = [], []
        for c in range(first, num_classes):
            order = ops.argsort(-errors[:, c])
            sorted_errors, sorted_truth = ops.take(errors[:, c], order), ops.take(one_hot[:, c], order)
            positives = ops.sum(sorted_truth)
            # The IoU loss of the k largest errors' set, for every k: the union is >= 1.
            intersection = positives - ops.cumsum(sorted_truth)
            union = positives + ops.cumsum(1.0 - sorted_truth)
            iou_loss = 1.0 - intersection / union
            steps = ops.concatenate([iou_loss[:1], iou_loss[1:] - iou_loss[:-1]])
            losses.append(ops.sum(sorted_errors * steps))
            present.append(ops.cast(positives > 0, "float32"))
        losses, present = ops.stack(losses), ops.stack(present)
        return ops.sum(losses * present) / ops.maximum(ops.sum(present), 1.0)

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


@keras.saving.register_keras_serializable(package="tfseg")
class CombinedLoss(keras.losses.Loss):
    """``sum(weight * loss)`` over ``terms``, a list of ``(weight, loss)``."""

    def __init__(self, terms, name: str = "combined", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="none", **kwargs)
        self.terms = [(float(weight), keras.saving.deserialize_keras_object(loss) if isinstance(loss, dict) else loss)
                      for weight, loss in terms]

    def call(self, y_true, y_pred):
        return sum(weight * loss.call(y_true, y_pred) for weight, loss in self.terms)

    def get_config(self):
        return {"name": self.name,
                "terms": [[weight, keras.saving.serialize_keras_object(loss)] for weight, loss in self.terms]}


# Loss term -> its loss, built from a LossConfig and the class weights (pixel terms use them).
TERM_BUILDERS = {
    "cross_entropy": lambda c, weights: MaskedSparseCrossEntropy(class_weights=weights),
    "focal": lambda c, weights: FocalLoss(c.focal_gamma, class_weights=weights),
    "dice": lambda c, weights: DiceLoss(c.region_classes, c.smooth),
    "jaccard": lambda c, weights: JaccardLoss(c.region_classes, c.smooth),
    "tversky": lambda c, weights: TverskyLoss(c.tversky_alpha, c.tversky_beta, 1.0, c.region_classes, c.smooth),
    "focal_tversky": lambda c, weights: TverskyLoss(c.tversky_alpha, c.tversky_beta, c.focal_tversky_gamma,
                                                    c.region_classes, c.smooth),
    "lovasz": lambda c, weights: LovaszSoftmaxLoss(c.region_classes),
}
assert tuple(TERM_BUILDERS) == TERMS


def make_loss(config, num_classes: int, class_weights: list[float] | None = None) -> keras.losses.Loss:
    """The loss ``config`` (a :class:`tfseg.config.LossConfig`) describes: one term, or the
    weighted sum of several. ``class_weights`` go to the pixel terms."""
    if config.region_classes == "foreground" and num_classes < 2 and set(config.terms) & set(REGION_TERMS):
        raise ValueError("region_classes: foreground needs at least two classes")
    terms = [(weight, TERM_BUILDERS[name](config, class_weights)) for name, weight in config.terms.items()]
    if len(terms) == 1 and terms[0][0] == 1.0:
        return terms[0][1]
    return CombinedLoss(terms)


def custom_objects() -> dict:
    """Everything a saved model's compile configuration may name."""
    return {cls.__name__: cls for cls in (MaskedSparseCrossEntropy, FocalLoss, DiceLoss, JaccardLoss,
                                          TverskyLoss, LovaszSoftmaxLoss, CombinedLoss)}
