"""Building blocks shared by the model families."""

from __future__ import annotations

from keras import layers

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


def classifier(x, num_classes: int, name: str = "logits"):
    """The 1x1 convolution to class logits, kept in float32 under mixed precision."""
    return layers.Conv2D(num_classes, 1, dtype="float32", name=name)(x)


def heads(x, num_classes: int, depth_head: bool = False, depth_range: float = 10.0):
    """The model's outputs from its last features: the class logits, and with
    ``depth_head`` also a depth map ``[B, H, W, 1]`` float32 from its own 1x1 convolution:
    ``[logits, depth]``. The depth is ``depth_range`` x a sigmoid, in metres: bounded, it
    starts at half the range everywhere, and the range scales the optimiser's steps to
    metres (a plain linear output would crawl from 0 towards depths of several metres)."""
    logits = classifier(x, num_classes)
    if not depth_head:
        return logits
    unit = layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="depth_unit")(x)
    return [logits, Scale(depth_range, dtype="float32", name="depth")(unit)]


def split_outputs(outputs) -> tuple:
    """``(logits, depth or None)`` of a model's outputs: the logits alone, or ``[logits,
    depth]`` from a model with a depth head (:func:`heads`)."""
    if isinstance(outputs, (list, tuple)):
        return outputs[0], outputs[1]
    return outputs, None
