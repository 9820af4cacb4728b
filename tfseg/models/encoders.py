"""ImageNet encoders (VGG16, ResNet50) and loading their weights into tfseg models.

The encoders' layers carry the names of ``keras.applications``' models, so weights are
copied layer by layer, by name, from a ``keras.applications`` model holding them:

* ``"imagenet"``: the ``keras.applications`` ImageNet weights (downloaded once into the
  Keras cache, ``$KERAS_HOME/models``, by default ``~/.keras/models``; offline, put the
  file named in :data:`IMAGENET_FILES` there);
* a path to a weights file of the matching ``keras.applications`` model: Keras 3
  ``.weights.h5``, a legacy Keras 2 ``.h5`` weights or model file, or a ``.keras`` model;
  with the classifier top (``include_top=True``) or without;
* ``None``: random initialisation.

ImageNet weights expect ``data.preprocess.normalization: imagenet_caffe`` inputs (BGR
minus the ImageNet mean, unscaled), for VGG16 and for keras.applications' ResNet50 alike.
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from keras import layers

from tfseg.errors import UserError
from tfseg.models.custom_layers import MaxPooling2D

# (filters, convolutions) of VGG16's five blocks.
VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
VGG16_CONV_LAYERS = tuple(f"block{b}_conv{i}" for b, (_, n) in enumerate(VGG16_BLOCKS, 1)
                          for i in range(1, n + 1))
# VGG16's fully connected layers and the convolutions of FCN that take their weights.
VGG16_FC_TO_CONV = {"fc1": "fc6", "fc2": "fc7"}

# Outputs of keras.applications.ResNet50 at strides 2, 4, 8, 16 and 32.
RESNET50_FEATURES = ("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                     "conv4_block6_out", "conv5_block3_out")

_APPLICATIONS = {"vgg16": "VGG16", "resnet50": "ResNet50"}
# The files keras.applications downloads for weights="imagenet", by (encoder, with the top).
IMAGENET_FILES = {
    ("vgg16", True): "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    ("vgg16", False): "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ("resnet50", True): "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
    ("resnet50", False): "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}

# The encoder, and whether with its classifier top, that each model with encoder_weights loads.
ENCODER_OF_MODEL = {"fcn8_vgg16": ("vgg16", True), "fcn16_vgg16": ("vgg16", True),
                    "fcn32_vgg16": ("vgg16", True), "unet_vgg16": ("vgg16", False),
                    "unet_resnet50": ("resnet50", False)}


def weights_file(model_name: str) -> str:
    """The file name of the ImageNet weights ``model_name`` loads for ``encoder_weights: imagenet``."""
    return IMAGENET_FILES[ENCODER_OF_MODEL[model_name]]


def keras_cache() -> Path:
    """Where keras.applications keeps the weights it downloads: ``$KERAS_HOME/models``
    (``~/.keras/models`` when KERAS_HOME is unset)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"


def scaled_width(filters: int, width_multiplier: float) -> int:
    return max(1, int(round(filters * width_multiplier)))


def vgg16_features(x, width_multiplier: float = 1.0, first_padding: str = "same") -> dict:
    """VGG16's convolutional part (conv1_1 ... pool5) on ``x``, with keras.applications' names.

    Returns every conv and pool output by layer name (``"block4_pool"`` is FCN's pool4).
    ``first_padding="valid"`` lets FCN's paper alignment pad the input itself.
    ``width_multiplier`` scales every width (for tests; weights need 1.0).
    """
    features = {}
    for block, (filters, convs) in enumerate(VGG16_BLOCKS, 1):
        for i in range(1, convs + 1):
            name = f"block{block}_conv{i}"
            x = layers.Conv2D(scaled_width(filters, width_multiplier), 3, activation="relu",
                              padding=first_padding if name == "block1_conv1" else "same",
                              name=name)(x)
            features[name] = x
        # 'same' pooling is Caffe's ceil mode on odd sizes (FCN's pad-100 alignment needs it
        # for inputs under 26 pixels); on even sizes it equals keras.applications' 'valid'.
        x = MaxPooling2D(2, strides=2, padding="same", name=f"block{block}_pool")(x)
        features[f"block{block}_pool"] = x
    return features


def resnet50_features(inputs) -> dict:
    """keras.applications' ResNet50 (no top, random weights) built on ``inputs``.

    Its layers become part of the caller's model (not a nested model), keeping their
    keras.applications names. Returns the outputs named in :data:`RESNET50_FEATURES`.
    """
    backbone = keras.applications.ResNet50(include_top=False, weights=None, input_tensor=inputs)
    return {name: backbone.get_layer(name).output for name in RESNET50_FEATURES}


def _h5_has_top(path: Path) -> bool:
    """Whether an HDF5 weights file holds the classifier top of its keras.applications model."""
    import h5py

    with h5py.File(path, "r") as f:
        if "layer_names" in f.attrs or "model_weights" in f:  # Keras 2 (legacy) format
            group = f["model_weights"] if "layer_names" not in f.attrs else f
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["layer_names"]]
            return "predictions" in names
        # Keras 3 .weights.h5: variables stored per layer under auto-generated class names.
        return "layers" in f and any(key.startswith("dense") for key in f["layers"])


def _source_model(arch: str, weights: str, include_top: bool) -> keras.Model:
    """A keras.applications model holding ``weights`` ("imagenet" or a path)."""
    app = getattr(keras.applications, _APPLICATIONS[arch])
    if weights == "imagenet":
        wanted = keras_cache() / IMAGENET_FILES[(arch, include_top)]
        try:
            return app(include_top=include_top, weights="imagenet",
                       input_shape=None if include_top else (None, None, 3))
        except Exception as err:  # keras.utils.get_file raises a bare Exception when a download fails
            if wanted.is_file():
                raise  # the file was there: not a download problem
            reason = str(err).rpartition(" -- ")[2].strip() or type(err).__name__
            raise UserError(f"encoder weights imagenet: {wanted.name} is not in {wanted.parent} and cannot be "
                            f"downloaded ({reason}); put it there (KERAS_HOME sets the folder), or --set "
                            "model.options.encoder_weights=PATH to a local copy, or =null to train from "
                            "scratch") from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"encoder weights {weights}: no such file (give 'imagenet', None or "
                        "the path of a .weights.h5, .h5 or .keras file)")
    if path.name.endswith(".keras"):
        return keras.saving.load_model(path, compile=False)
    if not path.name.endswith((".h5", ".hdf5")):
        raise UserError(f"encoder weights {weights}: expected a .weights.h5, .h5, .hdf5 or .keras file")
    has_top = _h5_has_top(path)
    model = app(include_top=has_top, weights=None, input_shape=None if has_top else (None, None, 3))
    try:
        model.load_weights(path)
    except (ValueError, KeyError) as err:
        raise UserError(f"encoder weights {weights}: not the weights of keras.applications."
                        f"{_APPLICATIONS[arch]} ({err})") from None
    return model


def load_encoder_weights(model: keras.Model, arch: str, weights: str,
                         include_top: bool = False) -> list[str]:
    """Copies ``arch``'s pretrained weights into the same-named layers of ``model``.

    ``include_top=True`` (FCN) asks "imagenet" for the full model and maps VGG16's
    ``fc1``/``fc2`` Dense weights into ``model``'s ``fc6``/``fc7`` convolutions; a local
    file without the top then leaves fc6/fc7 as initialised. Returns the names of the
    layers of ``model`` that received weights.
    """
    if arch not in _APPLICATIONS:
        raise ValueError(f"unknown encoder {arch!r}: choose one of {', '.join(_APPLICATIONS)}")
    source = _source_model(arch, weights, include_top)
    try:
        return copy_encoder_weights(source, model)
    except ValueError as err:
        raise UserError(f"encoder weights {weights}: {err}") from None


def fc_to_conv_kernel(kernel: np.ndarray, conv_kernel_shape) -> np.ndarray:
    """Reshapes a Dense kernel ``[h * w * c, n]`` into the ``[h, w, c, n]`` conv kernel.

    Keras' Flatten of an ``[h, w, c]`` map is row-major (index ``(y * w + x) * c + ch``),
    which is exactly the C-order reshape to ``[h, w, c, n]``.
    """
    if int(np.prod(kernel.shape)) != int(np.prod(conv_kernel_shape)):
        raise ValueError(f"cannot reshape a {kernel.shape} Dense kernel into {conv_kernel_shape}")
    return np.reshape(kernel, conv_kernel_shape)


def copy_encoder_weights(source: keras.Model, model: keras.Model) -> list[str]:
    """Copies weights from the layers of ``source`` into the same-named layers of ``model``.

    VGG16's ``fc1``/``fc2`` go into ``fc6``/``fc7`` when ``model`` has them. Layers whose
    shapes differ raise a ``ValueError``; returns the names of the layers copied into.
    """
    targets = {layer.name: layer for layer in model.layers}
    copied = []
    for layer in source.layers:
        values = layer.get_weights()
        if not values:
            continue
        name = VGG16_FC_TO_CONV.get(layer.name, layer.name)
        target = targets.get(name)
        if target is None or not target.weights:
            continue
        if name != layer.name:  # a Dense layer becoming a convolution
            values = [fc_to_conv_kernel(values[0], target.weights[0].shape), values[1]]
        shapes = [tuple(v.shape) for v in target.weights]
        if shapes != [v.shape for v in values]:
            raise ValueError(f"layer {name}: pretrained weights have shapes "
                             f"{[v.shape for v in values]}, the model's are {shapes}")
        target.set_weights(values)
        copied.append(name)
    if not copied:
        raise ValueError(f"no layer of {model.name} matches a layer of {source.name}")
    return copied


def finish_encoder(model: keras.Model, arch: str, encoder_weights: str | None, freeze_encoder: bool,
                   encoder_layers, include_top: bool = False) -> keras.Model:
    """Loads the encoder's weights (if any) and freezes its layers (if asked); returns ``model``."""
    if encoder_weights is not None:
        load_encoder_weights(model, arch, encoder_weights, include_top=include_top)
    if freeze_encoder:
        for layer_name in encoder_layers:
            model.get_layer(layer_name).trainable = False
    return model
