"""Depth regression: the losses and metrics of a predicted depth map against its truth.

Depth maps are float32 ``[B, H, W]`` (or ``[B, H, W, 1]``) in metres. A true depth that
is not positive and finite marks a pixel without depth (what geometric augmentation
leaves uncovered, or void): every loss and metric here ignores it, and a batch without a
valid pixel gives a loss of 0, not NaN. Everything is written with ``keras.ops`` in
float32, so it compiles under XLA and runs on any Keras backend.

* :class:`MaskedL1`: the mean absolute error over valid pixels.
* :class:`MaskedSSIM`: ``(1 - SSIM) / 2`` over valid pixels, SSIM (Wang et al. 2004) of
  3x3 windows as in Godard et al.'s monocular depth loss, each map divided by its largest
  true depth first so that SSIM's constants suit every depth range; at invalid pixels the
  truth is replaced by the prediction (no error there).
* :func:`make_depth_loss`: their weighted sum, as ``loss.depth_terms`` says.
* :class:`DepthMetrics`: streaming RMSE, abs-rel (mean ``|p - t| / t``) and delta < 1.25
  (the fraction of pixels with ``max(p / t, t / p) < 1.25``), the measures of Eigen et al.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from tfseg.losses import CombinedLoss

SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # SSIM's constants for a dynamic range of 1
DELTA = 1.25


def _maps(y_true, y_pred):
    """Both as float32 ``[B, H, W]``, and the valid mask of the truth (float32 0/1)."""
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    if len(y_true.shape) == 4:
        y_true = y_true[..., 0]
    if len(y_pred.shape) == 4:
        y_pred = y_pred[..., 0]
    finite = ops.logical_and(ops.isfinite(y_true), y_true > 0)
    return ops.where(finite, y_true, 0.0), y_pred, ops.cast(finite, "float32")


def _valid_mean(values, valid):
    return ops.sum(values * valid) / ops.maximum(ops.sum(valid), 1.0)


@keras.saving.register_keras_serializable(package="tfseg")
class MaskedL1(keras.losses.Loss):
    """Mean ``|prediction - truth|`` over the pixels with a true depth."""

    def __init__(self, name: str = "masked_l1", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="none", **kwargs)

    def call(self, y_true, y_pred):
        y_true, y_pred, valid = _maps(y_true, y_pred)
        return _valid_mean(ops.abs(y_pred - y_true), valid)


def _mean3x3(x):
    """The mean of each 3x3 window of ``[B, H, W]``, edges reflected ('same' size)."""
    padded = ops.pad(x[..., None], [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
    return ops.average_pool(padded, 3, strides=1, padding="valid")[..., 0]


def ssim_map(x, y):
    """SSIM of the 3x3 windows around every pixel of ``x`` and ``y`` ``[B, H, W]``."""
    mu_x, mu_y = _mean3x3(x), _mean3x3(y)
    sigma_x = _mean3x3(x * x) - mu_x * mu_x
    sigma_y = _mean3x3(y * y) - mu_y * mu_y
    sigma_xy = _mean3x3(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * sigma_xy + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (sigma_x + sigma_y + SSIM_C2)
    return numerator / denominator


@keras.saving.register_keras_serializable(package="tfseg")
class MaskedSSIM(keras.losses.Loss):
    """``(1 - SSIM) / 2`` (clipped to [0, 1]) averaged over the pixels with a true depth."""

    def __init__(self, name: str = "masked_ssim", **kwargs):
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="none", **kwargs)

    def call(self, y_true, y_pred):
        y_true, y_pred, valid = _maps(y_true, y_pred)
        truth = ops.where(valid > 0, y_true, ops.stop_gradient(y_pred))
        scale = ops.maximum(ops.max(y_true * valid, axis=(1, 2), keepdims=True), 1e-6)
        dissimilarity = ops.clip((1.0 - ssim_map(y_pred / scale, truth / scale)) / 2.0, 0.0, 1.0)
        return _valid_mean(dissimilarity, valid)


def depth_error_sums(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The sums behind the depth scores, in NumPy: ``[squared error, relative error, pixels
    within delta 1.25, pixels]`` float64 over the pixels with a true depth. ``truth`` and
    ``predicted`` float ``[..., H, W]`` metres; a truth <= 0 (or not finite) means no depth."""
    valid = np.isfinite(truth) & (truth > 0)
    t, p = truth[valid].astype(np.float64), np.maximum(predicted[valid].astype(np.float64), 1e-6)
    return np.array([np.sum((p - t) ** 2), np.sum(np.abs(p - t) / t),
                     np.sum(np.maximum(p / t, t / p) < DELTA), t.size], np.float64)


def depth_scores(sums: np.ndarray) -> dict:
    """``depth_rmse`` (metres), ``depth_abs_rel`` and ``depth_delta1`` from
    :func:`depth_error_sums` (added over images); empty without a valid pixel."""
    squared, relative, within, count = sums
    if not count:
        return {}
    return {"depth_rmse": float(np.sqrt(squared / count)), "depth_abs_rel": float(relative / count),
            "depth_delta1": float(within / count)}


class DepthMetrics(keras.metrics.Metric):
    """Streaming depth errors over every valid pixel seen: ``result()`` is
    ``{"depth_rmse", "depth_abs_rel", "depth_delta1"}`` (NaN before any valid pixel)."""

    def __init__(self, name: str = "depth", **kwargs):
        super().__init__(name=name, **kwargs)
        self.squared_error = self.add_variable((), "zeros", dtype="float64", name="squared_error")
        self.relative_error = self.add_variable((), "zeros", dtype="float64", name="relative_error")
        self.within_delta = self.add_variable((), "zeros", dtype="float64", name="within_delta")
        self.count = self.add_variable((), "zeros", dtype="float64", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, valid = _maps(y_true, y_pred)
        safe_true = ops.where(valid > 0, y_true, 1.0)
        safe_pred = ops.maximum(y_pred, 1e-6)
        ratio = ops.maximum(safe_pred / safe_true, safe_true / safe_pred)
        sums = [(self.squared_error, ops.square(y_pred - y_true)),
                (self.relative_error, ops.abs(y_pred - y_true) / safe_true),
                (self.within_delta, ops.cast(ratio < DELTA, "float32")),
                (self.count, ops.ones_like(y_true))]
        for variable, values in sums:
            variable.assign_add(ops.cast(ops.sum(values * valid), "float64"))

    def result(self):
        count = self.count
        return {"depth_rmse": ops.sqrt(self.squared_error / count),
                "depth_abs_rel": self.relative_error / count,
                "depth_delta1": self.within_delta / count}

    def reset_state(self):
        for variable in self.variables:
            variable.assign(ops.zeros_like(variable))


# Depth loss term -> its loss (the names loss.depth_terms takes).
DEPTH_TERMS = {"l1": MaskedL1, "ssim": MaskedSSIM}


def make_depth_loss(terms: dict) -> keras.losses.Loss:
    """The weighted sum of the depth losses in ``terms`` (``loss.depth_terms``: ``l1``,
    ``ssim`` -> weight), one ``CombinedLoss`` even for a single term."""
    return CombinedLoss([(weight, DEPTH_TERMS[name]()) for name, weight in terms.items()], name="depth_loss")
