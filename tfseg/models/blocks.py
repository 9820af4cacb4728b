"""Building blocks shared by the model families."""

from __future__ import annotations

from keras import layers

from tfseg.heads import DEPTH, LOGITS
from tfseg.models.custom_layers import Scale


def conv_block(x, filters: int, name: str, batch_norm: bool = False, residual: bool = False,
               batch_norm_momentum: float = 0.99):
    """Two 3x3 'same' convolutions with ReLU, optionally batch-normalised and residual."""
    shortcut = x
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm,
                          kernel_initializer="he_normal", name=f"{name}_conv{i}")(x)
        if batch_norm:
            x = layers.BatchNormalization(momentum=batch_norm_momentum, name=f"{name}_bn{i}")(x)
        if residual and i == 2:
            shortcut = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_shortcut")(shortcut)
            x = layers.Add(name=f"{name}_add")([x, shortcut])
        x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def classifier(x, num_classes: int, name: str = LOGITS):
    """The 1x1 convolution to class logits, kept in float32 under mixed precision."""
    return layers.Conv2D(num_classes, 1, dtype="float32", name=name)(x)


def depth_head(x, depth_range: float):
    """A depth map ``[B, H, W, 1]`` float32 in metres from the last features: ``depth_range``
    x a sigmoid of a 1x1 convolution. Bounded, it starts at half the range everywhere, and
    the range scales the optimiser's steps to metres (a plain linear output would crawl from
    0 towards depths of several metres)."""
    unit = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="depth_unit")(x)
    return Scale(depth_range, dtype="float32", name=DEPTH)(unit)


def heads(x, num_classes: int, depth: bool = False, depth_range: float = 10.0):
    """The model's outputs from its last features: the logits alone, or with ``depth`` the
    dict ``{"logits", "depth"}``."""
    logits = classifier(x, num_classes)
    if not depth:
        return logits
    return {LOGITS: logits, DEPTH: depth_head(x, depth_range)}
