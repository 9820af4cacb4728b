"""Model registry: ``build_model(name, num_classes, **options)`` returns a ``keras.Model``.

Every model maps ``[B, H, W, C]`` float images to ``[B, H, W, num_classes]`` float32
logits. Models are written with Keras layers and ``keras.ops`` only (no TensorFlow), so
they also run on Keras' JAX and PyTorch backends. Their few custom layers
(:mod:`tfseg.models.custom_layers`) are registered when this package is imported, which
loading a saved ``.keras`` model needs.

Registered models (stride: the multiple the input's height and width must have):

* ``unet`` (stride ``2 ** depth``): the U-Net of Ronneberger et al. 2015;
* ``unet_vgg16``, ``unet_resnet50`` (32): the U-Net decoder on keras.applications'
  VGG16 or ResNet50 encoder;
* ``fcn32_vgg16``, ``fcn16_vgg16``, ``fcn8_vgg16`` (1: they pad and crop inside): FCN
  (Long, Shelhamer, Darrell 2015);
* ``fcn_baseline`` (32): five strided convolutions, five transposed convolutions.

:func:`tfseg.models.cost.model_cost` counts a built model's parameters and forward FLOPs.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import keras

from tfseg.errors import UserError
from tfseg.models.baseline import fcn_baseline, fcn_baseline_stride
from tfseg.models.fcn import fcn8_vgg16, fcn16_vgg16, fcn32_vgg16, fcn_stride
from tfseg.models.unet import encoder_unet_stride, unet, unet_resnet50, unet_stride, unet_vgg16


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., keras.Model]
    # The multiple that input height and width must have, given the builder's options.
    stride: Callable[..., int]


MODELS: dict[str, ModelEntry] = {
    "unet": ModelEntry(unet, unet_stride),
    "unet_vgg16": ModelEntry(unet_vgg16, encoder_unet_stride),
    "unet_resnet50": ModelEntry(unet_resnet50, encoder_unet_stride),
    "fcn32_vgg16": ModelEntry(fcn32_vgg16, fcn_stride),
    "fcn16_vgg16": ModelEntry(fcn16_vgg16, fcn_stride),
    "fcn8_vgg16": ModelEntry(fcn8_vgg16, fcn_stride),
    "fcn_baseline": ModelEntry(fcn_baseline, fcn_baseline_stride),
}


def _entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def check_options(name: str, options: dict) -> None:
    """Raises a :class:`UserError` naming any option the builder does not accept, or whose
    value is not of its default's kind (a switch must be true or false, a count a whole
    number)."""
    parameters = inspect.signature(_entry(name).build).parameters
    accepted = set(parameters) - {"num_classes", "name"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise UserError(f"model {name}: unknown option(s) {', '.join(unknown)} "
                        f"(accepted: {', '.join(sorted(accepted))})")
    for key, value in options.items():
        default = parameters[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise UserError(f"model.options.{key}: {value!r}; give true or false")
        if type(default) is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise UserError(f"model.options.{key}: {value!r}; give a whole number")


def build_model(name: str, num_classes: int, **options) -> keras.Model:
    """The registered model ``name`` with ``options``; a value its builder refuses (a depth
    of 0, a dropout rate of 1.5) is a :class:`UserError` naming the model and its options."""
    check_options(name, options)
    try:
        return _entry(name).build(num_classes=num_classes, **options)
    except (ValueError, TypeError) as err:
        reason = " ".join(str(err).split())[:300] or type(err).__name__
        raise UserError(f"model {name} with options {options}: {reason}") from None


def model_stride(name: str, **options) -> int:
    check_options(name, options)
    return _entry(name).stride(**options)
