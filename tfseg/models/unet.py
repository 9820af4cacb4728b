"""U-Net (Ronneberger, Fischer, Brox, 2015) with 'same' padding, and U-Nets on ImageNet encoders.

The default, ``unet(num_classes=2)``, is the paper's network: four 2x2 max-poolings, 64
filters doubling to 1024 at the bottom, two 3x3 convolutions per level, 2x2 transposed
convolutions halving the filters on the way up, skip concatenations, a 1x1 classifier
(31,031,810 parameters for two classes). 'same' padding replaces the paper's valid
convolutions and overlap-tile cropping, so the output has the input's size whenever the
input's height and width are multiples of ``2 ** depth`` (the exporter pads to that).

``unet_vgg16`` and ``unet_resnet50`` keep the U-Net's decoder (upsample 2x, concatenate
the encoder's map of that resolution, two 3x3 convolutions) on keras.applications' VGG16
or ResNet50 as the encoder, from stride 32 back to the input's resolution (stride 32:
the input's size must be a multiple of 32).
"""

from __future__ import annotations

import keras
from keras import layers

from tfseg.models.blocks import conv_block, heads
from tfseg.models.custom_layers import Conv2DTranspose, MaxPooling2D
from tfseg.models.encoders import (RESNET50_FEATURES, VGG16_CONV_LAYERS, finish_encoder,
                                   resnet50_features, vgg16_features)


def unet(
    num_classes: int,
    input_channels: int = 3,
    depth: int = 4,
    base_filters: int = 64,
    batch_norm: bool = False,
    batch_norm_momentum: float = 0.99,
    dropout: float = 0.0,
    residual: bool = False,
    upsampling: str = "transpose",
    depth_head: bool = False,
    depth_range: float = 10.0,
    name: str = "unet",
) -> keras.Model:
    """Builds a U-Net for ``[B, H, W, input_channels]`` float inputs.

    Args:
      num_classes: channels of the output logits ``[B, H, W, num_classes]`` (float32).
      depth: number of 2x2 poolings; the input size must be a multiple of ``2 ** depth``.
      base_filters: filters of the first level; level ``i`` has ``base_filters * 2**i``.
      batch_norm: batch normalisation after every 3x3 convolution (before ReLU).
      batch_norm_momentum: of its moving statistics, which validation and inference use.
        Keras' 0.99 averages over the last few hundred steps; a short run (a few hundred
        steps in all) validates better with 0.9, which follows the weights more closely.
      dropout: dropout rate applied at the bottom of the network (the paper used 0.5).
      residual: adds a 1x1-projected shortcut around each pair of convolutions.
      upsampling: "transpose" (2x2 transposed convolution, as in the paper) or
        "bilinear" (bilinear resize followed by a 2x2 convolution).
      depth_head: also output a depth map ``[B, H, W, 1]`` (float32, metres) from the last
        decoder features: the model returns ``{"logits", "depth"}``.
      depth_range: the depth head's largest depth, metres (see
        :func:`tfseg.models.blocks.depth_head`).
    """
    if upsampling not in ("transpose", "bilinear"):
        raise ValueError(f"upsampling must be 'transpose' or 'bilinear', got {upsampling!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    inputs = keras.Input(shape=(None, None, input_channels), name="image")
    block = dict(batch_norm=batch_norm, residual=residual, batch_norm_momentum=batch_norm_momentum)

    x, skips = inputs, []
    for level in range(depth):
        x = conv_block(x, base_filters * 2**level, name=f"down{level}", **block)
        skips.append(x)
        x = MaxPooling2D(2, name=f"down{level}_pool")(x)

    x = conv_block(x, base_filters * 2**depth, name="bottom", **block)
    if dropout:
        x = layers.Dropout(dropout, name="bottom_dropout")(x)

    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        if upsampling == "transpose":
            x = Conv2DTranspose(filters, 2, strides=2, name=f"up{level}_transpose")(x)
        else:
            x = layers.UpSampling2D(2, interpolation="bilinear", name=f"up{level}_resize")(x)
            x = layers.Conv2D(filters, 2, padding="same", name=f"up{level}_conv")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([skips[level], x])
        x = conv_block(x, filters, name=f"up{level}", **block)

    return keras.Model(inputs, heads(x, num_classes, depth_head, depth_range), name=name)


def unet_stride(depth: int = 4, **_) -> int:
    """The size multiple a U-Net's input needs: one factor of two per pooling."""
    return 2**depth


def _upsample(x, filters: int, upsampling: str, name: str):
    if upsampling == "transpose":
        return Conv2DTranspose(filters, 2, strides=2, name=f"{name}_transpose")(x)
    x = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_resize")(x)
    return layers.Conv2D(filters, 2, padding="same", name=f"{name}_conv")(x)


def _encoder_unet(inputs, bottom, skips, num_classes, decoder_filters, batch_norm, upsampling,
                  depth_head, depth_range, name) -> keras.Model:
    """The U-Net decoder from ``bottom`` (stride 32) up through ``skips`` (strides 16 ... 1).

    ``skips`` holds one encoder map, or None, per decoder level, deepest first.
    """
    decoder_filters = tuple(int(f) for f in decoder_filters)
    if len(decoder_filters) != len(skips):
        raise ValueError(f"decoder_filters needs {len(skips)} values (one per level from stride "
                         f"16 to 1), got {len(decoder_filters)}")
    if upsampling not in ("transpose", "bilinear"):
        raise ValueError(f"upsampling must be 'transpose' or 'bilinear', got {upsampling!r}")
    x = bottom
    for level, (skip, filters) in enumerate(zip(skips, decoder_filters)):
        x = _upsample(x, filters, upsampling, name=f"decoder{level}")
        if skip is not None:
            x = layers.Concatenate(name=f"decoder{level}_concat")([skip, x])
        x = conv_block(x, filters, name=f"decoder{level}", batch_norm=batch_norm)
    return keras.Model(inputs, heads(x, num_classes, depth_head, depth_range), name=name)


def unet_vgg16(
    num_classes: int,
    input_channels: int = 3,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    decoder_filters: tuple = (256, 128, 64, 32, 16),
    batch_norm: bool = True,
    upsampling: str = "transpose",
    skip_connections: bool = True,
    depth_head: bool = False,
    depth_range: float = 10.0,
    name: str = "unet_vgg16",
) -> keras.Model:
    """A U-Net on VGG16 (conv1_1 ... pool5): skips from block5_conv3 (stride 16) to block1_conv2.

    Args:
      encoder_weights: None, "imagenet" or the path of keras.applications VGG16 weights
        (with or without the top); pretrained weights need ``input_channels=3``.
      freeze_encoder: makes VGG16's convolutions non-trainable.
      decoder_filters: filters of the five decoder levels, stride 16 first.
      batch_norm, upsampling: as for :func:`unet`, in the decoder.
      skip_connections: False drops the concatenations: a plain deconvolution decoder on
        the encoder (the classic "frozen pretrained encoder + decoder" baseline).
      depth_head, depth_range: as for :func:`unet`.
    """
    if encoder_weights is not None and input_channels != 3:
        raise ValueError("encoder_weights need input_channels=3")
    inputs = keras.Input(shape=(None, None, input_channels), name="image")
    f = vgg16_features(inputs)
    skips = [f["block5_conv3"], f["block4_conv3"], f["block3_conv3"], f["block2_conv2"],
             f["block1_conv2"]]
    if not skip_connections:
        skips = [None] * len(skips)
    model = _encoder_unet(inputs, f["block5_pool"], skips, num_classes, decoder_filters,
                          batch_norm, upsampling, depth_head, depth_range, name)
    return finish_encoder(model, "vgg16", encoder_weights, freeze_encoder, VGG16_CONV_LAYERS)


def unet_resnet50(
    num_classes: int,
    input_channels: int = 3,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    decoder_filters: tuple = (256, 128, 64, 32, 16),
    batch_norm: bool = True,
    upsampling: str = "transpose",
    skip_connections: bool = True,
    depth_head: bool = False,
    depth_range: float = 10.0,
    name: str = "unet_resnet50",
) -> keras.Model:
    """A U-Net on keras.applications' ResNet50: skips conv4_block6_out (stride 16),
    conv3_block4_out, conv2_block3_out, conv1_relu (stride 2); the last level has none.

    Args: as for :func:`unet_vgg16`. A frozen encoder's batch normalisation runs in
    inference mode (Keras does so for non-trainable BatchNormalization layers).
    """
    if encoder_weights is not None and input_channels != 3:
        raise ValueError("encoder_weights need input_channels=3")
    inputs = keras.Input(shape=(None, None, input_channels), name="image")
    f = resnet50_features(inputs)
    skips = [f[name_] for name_ in reversed(RESNET50_FEATURES[:-1])] + [None]
    if not skip_connections:
        skips = [None] * len(skips)
    model = _encoder_unet(inputs, f[RESNET50_FEATURES[-1]], skips, num_classes, decoder_filters,
                          batch_norm, upsampling, depth_head, depth_range, name)
    encoder_layers = [layer.name for layer in model.layers
                      if not layer.name.startswith(("decoder", "logits", "image"))]
    return finish_encoder(model, "resnet50", encoder_weights, freeze_encoder, encoder_layers)


def encoder_unet_stride(**_) -> int:
    """U-Nets on VGG16 and ResNet50 downsample five times: the size must be a multiple of 32."""
    return 32
