"""FCN-32s, FCN-16s and FCN-8s on VGG16 (Long, Shelhamer, Darrell, CVPR 2015 / PAMI 2016).

The network, at the default options, is the paper's:

* VGG16's conv1_1 ... pool5 (keras.applications' layer names, so its weights load);
* fc6 and fc7 convolutionalised: 7x7x4096 and 1x1x4096 convolutions, ReLU, dropout 0.5;
  with pretrained weights they are VGG16's ``fc1``/``fc2`` Dense weights reshaped;
* ``score_fr``: a 1x1 convolution to the classes (zero-initialised, as in the paper);
* FCN-16s/8s: the stride-32 scores are upsampled 2x by a learned transposed convolution
  initialised to bilinear interpolation (``upscore2``, ``upscore_pool4``), and added to
  1x1 class scores of pool4 (and pool3) that are first multiplied by ``pool4_scale``
  (``pool3_scale``): 0.01 and 0.0001 are the "all-at-once" FCN-8s of the PAMI paper;
  ``scale_skips=False`` gives the staged variants of the CVPR paper (no scaling);
* the final upsampling (x32, x16 or x8) is fixed bilinear interpolation, per channel and
  without weights (the paper fixes the last deconvolution to bilinear).

Parameters for 21 classes: FCN-32s 134,346,581; FCN-16s 134,364,410; FCN-8s 134,376,863
(the paper's "134M").

Any input size: with ``alignment="pad32"`` (default) the model zero-pads the image at the
bottom and right to a multiple of 32, every layer is 'same'-padded (fc6 included), the
2x and final upsamplings are exactly aligned with the skip maps (half-pixel-centre
bilinear), and the logits are cropped back to the input's height and width.
``alignment="pad100"`` is the original Caffe net instead: conv1_1 pads the input by 100,
fc6 is 'valid', the deconvolutions are 'valid' and the score maps are cropped at the
paper's offsets (5 for pool4, 9 for pool3, 19/27/31 at the end); it computes about 1.8x
more at 384x1248 but is coordinate-for-coordinate the Caffe model. Both give logits of
the input's size for any height and width, so the registry stride is 1.

Everything after fc7 (scores, skip scaling, upsampling, fusion) runs in float32 under
mixed precision; the logits are float32.

``decoder_channels`` gives the common KITTI-road variant: the 1x1 convolutions on fc7,
pool4 and pool3 map to ``decoder_channels`` (e.g. 512) instead of the classes,
truncated-normal initialised (stddev 0.01), the 2x upsamplings keep that width, and a 1x1
``score`` convolution maps to the classes at stride 8 (16, 32) before the fixed final
upsampling. ``weight_decay`` adds an L2 penalty on the kernels of the decoder layers
(the encoder's decay, if wanted, is the optimizer's ``train.weight_decay``).

``decoder="kitti"`` (FCN-8s only) is the decoder of the widely copied KITTI Road FCN-8s,
layer for layer: a 1x1 convolution of fc7 to ``decoder_channels`` (512), a 4x4 stride-2
transposed convolution to pool4's 512 channels added to ``pool4_scale`` x pool4 itself, an
8x8 stride-2 transposed convolution to pool3's 256 channels added to ``pool3_scale`` x
pool3 itself, and a 16x16 stride-8 transposed convolution to the classes. The skips are
the raw pooled features, with no 1x1 projections; every decoder kernel is learned and
truncated-normal initialised (stddev 0.01), with biases, and 'same' padding as in
TensorFlow's ``conv2d_transpose``. 149,072,962 parameters for two classes.
"""

from __future__ import annotations

import keras
from keras import layers

from tfseg.models.custom_layers import (BilinearUpsample2D, BilinearUpsampling, Conv2DTranspose,
                                        CropToReference, PadToMultiple, Scale)
from tfseg.models.encoders import (VGG16_CONV_LAYERS, finish_encoder, scaled_width,
                                   vgg16_features)

ALIGNMENTS = ("pad32", "pad100")
DECODERS = ("scores", "kitti")
# Crop offsets of the Caffe net (alignment="pad100"): the score maps of pool4 and pool3
# and the final upsampled map, by the final upsampling factor.
PAD100_SKIP_OFFSETS = {"pool4": 5, "pool3": 9}
PAD100_FINAL_OFFSETS = {32: 19, 16: 27, 8: 31}


def fcn_vgg16(
    num_classes: int,
    output_stride: int = 8,
    input_channels: int = 3,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    pool4_scale: float | None = 0.01,
    pool3_scale: float | None = 0.0001,
    scale_skips: bool = True,
    dropout: float = 0.5,
    decoder_channels: int | None = None,
    weight_decay: float = 0.0,
    alignment: str = "pad32",
    width_multiplier: float = 1.0,
    decoder: str = "scores",
    name: str | None = None,
) -> keras.Model:
    """Builds FCN-``output_stride`` on VGG16 (``output_stride`` 32, 16 or 8).

    Args:
      num_classes: channels of the float32 logits ``[B, H, W, num_classes]``.
      input_channels: channels of the input; pretrained weights need 3.
      encoder_weights: None, "imagenet" or the path of VGG16 weights (with the top, to
        initialise fc6/fc7 from fc1/fc2, or without it: fc6/fc7 then stay random).
      freeze_encoder: makes conv1_1 ... fc7 (everything VGG16's weights initialise)
        non-trainable.
      pool4_scale, pool3_scale: factors on pool4/pool3 before their score layers
        (FCN-16s/8s); None or 1 means no scaling.
      scale_skips: False disables both scalings (the staged training variant).
      dropout: rate of the dropout after fc6 and after fc7.
      decoder_channels: None for the paper's decoder; an int for the wider KITTI variant.
      weight_decay: L2 factor on the decoder's kernels (0 for none).
      alignment: "pad32" (pad to 32, 'same' layers, crop at the end) or "pad100" (the
        Caffe net's pad-100 and crop offsets); see the module documentation.
      width_multiplier: scales every VGG16 and fc6/fc7 width. 1.0 is the published
        network; other values are for tests and cannot take pretrained weights.
      decoder: "scores" (the paper's, or its ``decoder_channels`` variant) or "kitti"
        (FCN-8s with 'pad32' only: raw pool4/pool3 skips and learned transposed
        convolutions; see the module documentation).
    """
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder == "kitti" and (output_stride != 8 or alignment != "pad32"):
        raise ValueError("decoder='kitti' is an FCN-8s decoder with alignment='pad32'")
    if output_stride not in PAD100_FINAL_OFFSETS:
        raise ValueError(f"output_stride must be 32, 16 or 8, got {output_stride}")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {', '.join(ALIGNMENTS)}, got {alignment!r}")
    if encoder_weights is not None and (width_multiplier != 1.0 or input_channels != 3):
        raise ValueError("encoder_weights need width_multiplier=1.0 and input_channels=3")
    name = name or f"fcn{output_stride}_vgg16"
    pad100 = alignment == "pad100"
    padding = "valid" if pad100 else "same"

    inputs = keras.Input(shape=(None, None, input_channels), name="image")
    if pad100:
        x = layers.ZeroPadding2D(100, name="pad100")(inputs)
    else:
        x = PadToMultiple(32, name="pad_to_32")(inputs)
    features = vgg16_features(x, width_multiplier, first_padding=padding)

    fc_width = scaled_width(4096, width_multiplier)
    x = layers.Conv2D(fc_width, 7, padding=padding, activation="relu", name="fc6")(features["block5_pool"])
    x = layers.Dropout(dropout, name="drop6")(x)
    x = layers.Conv2D(fc_width, 1, activation="relu", name="fc7")(x)
    x = layers.Dropout(dropout, name="drop7")(x)

    # The decoder, in float32 whatever the policy.
    regularizer = keras.regularizers.L2(weight_decay) if weight_decay else None
    if not scale_skips:
        pool4_scale = pool3_scale = None
    if decoder == "kitti":
        logits = kitti_decoder(x, features, inputs, num_classes, decoder_channels or 512,
                               pool4_scale, pool3_scale, regularizer)
    else:
        logits = scores_decoder(x, features, inputs, num_classes, output_stride, decoder_channels,
                                pool4_scale, pool3_scale, regularizer, pad100)
    model = keras.Model(inputs, logits, name=name)

    # fc6/fc7 come from VGG16's classifier: the weights must include the top.
    return finish_encoder(model, "vgg16", encoder_weights, freeze_encoder,
                          VGG16_CONV_LAYERS + ("fc6", "fc7"), include_top=True)


def scores_decoder(fc7, features: dict, inputs, num_classes: int, output_stride: int,
                   decoder_channels: int | None, pool4_scale: float | None,
                   pool3_scale: float | None, regularizer, pad100: bool):
    """The paper's decoder (or its ``decoder_channels`` variant): float32 logits
    ``[B, H, W, num_classes]`` of ``inputs``' size from fc7 and the pool4/pool3 features."""
    padding = "valid" if pad100 else "same"
    width = decoder_channels or num_classes
    score_init = (keras.initializers.TruncatedNormal(stddev=0.01) if decoder_channels
                  else "zeros")

    def score(t, filters, layer_name):
        return layers.Conv2D(filters, 1, kernel_initializer=score_init, kernel_regularizer=regularizer,
                             dtype="float32", name=layer_name)(t)

    x = score(fc7, width, "score_fr")
    skips = {32: [], 16: [("pool4", "block4_pool", pool4_scale)],
             8: [("pool4", "block4_pool", pool4_scale), ("pool3", "block3_pool", pool3_scale)]}
    for i, (skip, feature, scale) in enumerate(skips[output_stride]):
        x = Conv2DTranspose(width, 4, strides=2, padding=padding, use_bias=False,
                            kernel_initializer=BilinearUpsampling(),
                            kernel_regularizer=regularizer, dtype="float32",
                            name="upscore2" if i == 0 else "upscore_pool4")(x)
        s = features[feature]
        if scale is not None and scale != 1:
            s = Scale(scale, dtype="float32", name=f"scale_{skip}")(s)
        s = score(s, width, f"score_{skip}")
        if pad100:
            s = CropToReference(PAD100_SKIP_OFFSETS[skip], dtype="float32", name=f"score_{skip}c")([s, x])
        x = layers.Add(dtype="float32", name=f"fuse_{skip}")([x, s])
    if decoder_channels:
        x = score(x, num_classes, "score")
    final = {32: "upscore", 16: "upscore16", 8: "upscore8"}[output_stride]
    x = BilinearUpsample2D(output_stride, padding=padding, dtype="float32", name=final)(x)
    offset = PAD100_FINAL_OFFSETS[output_stride] if pad100 else 0
    return CropToReference(offset, dtype="float32", name="logits")([x, inputs])


def kitti_decoder(fc7, features: dict, inputs, num_classes: int, fc7_channels: int,
                  pool4_scale: float | None, pool3_scale: float | None, regularizer):
    """The KITTI Road FCN-8s decoder: float32 logits ``[B, H, W, num_classes]`` of
    ``inputs``' size from fc7 (stride 32) and the raw pool4 (16) and pool3 (8) features."""
    init = keras.initializers.TruncatedNormal(stddev=0.01)

    def float32_layer(layer, *args, **kwargs):
        return layer(*args, kernel_initializer=init, kernel_regularizer=regularizer,
                     padding="same", dtype="float32", **kwargs)

    x = float32_layer(layers.Conv2D, fc7_channels, 1, name="fc7_1x1")(fc7)
    for skip, feature, scale, kernel in (("pool4", "block4_pool", pool4_scale, 4),
                                         ("pool3", "block3_pool", pool3_scale, 8)):
        s = features[feature]
        x = float32_layer(Conv2DTranspose, s.shape[-1], kernel, strides=2, name=f"up_{skip}")(x)
        if scale is not None and scale != 1:
            s = Scale(scale, dtype="float32", name=f"scale_{skip}")(s)
        x = layers.Add(dtype="float32", name=f"fuse_{skip}")([x, s])
    x = float32_layer(Conv2DTranspose, num_classes, 16, strides=8, name="upscore8")(x)
    return CropToReference(0, dtype="float32", name="logits")([x, inputs])


def fcn32_vgg16(
    num_classes: int,
    input_channels: int = 3,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    dropout: float = 0.5,
    decoder_channels: int | None = None,
    weight_decay: float = 0.0,
    alignment: str = "pad32",
    width_multiplier: float = 1.0,
    name: str = "fcn32_vgg16",
) -> keras.Model:
    """FCN-32s: scores of fc7 upsampled 32x. See :func:`fcn_vgg16` for the options."""
    return fcn_vgg16(num_classes, 32, input_channels, encoder_weights, freeze_encoder,
                     dropout=dropout, decoder_channels=decoder_channels, weight_decay=weight_decay,
                     alignment=alignment, width_multiplier=width_multiplier, name=name)


def fcn16_vgg16(
    num_classes: int,
    input_channels: int = 3,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    pool4_scale: float | None = 0.01,
    scale_skips: bool = True,
    dropout: float = 0.5,
    decoder_channels: int | None = None,
    weight_decay: float = 0.0,
    alignment: str = "pad32",
    width_multiplier: float = 1.0,
    name: str = "fcn16_vgg16",
) -> keras.Model:
    """FCN-16s: adds a pool4 skip. See :func:`fcn_vgg16` for the options."""
    return fcn_vgg16(num_classes, 16, input_channels, encoder_weights, freeze_encoder,
                     pool4_scale=pool4_scale, scale_skips=scale_skips, dropout=dropout,
                     decoder_channels=decoder_channels, weight_decay=weight_decay,
                     alignment=alignment, width_multiplier=width_multiplier, name=name)


def fcn8_vgg16(
    num_classes: int,
    input_channels: int = 3,
    encoder_weights: str | None = None,
    freeze_encoder: bool = False,
    pool4_scale: float | None = 0.01,
    pool3_scale: float | None = 0.0001,
    scale_skips: bool = True,
    dropout: float = 0.5,
    decoder_channels: int | None = None,
    weight_decay: float = 0.0,
    alignment: str = "pad32",
    width_multiplier: float = 1.0,
    decoder: str = "scores",
    name: str = "fcn8_vgg16",
) -> keras.Model:
    """FCN-8s: adds pool4 and pool3 skips. See :func:`fcn_vgg16` for the options."""
    return fcn_vgg16(num_classes, 8, input_channels, encoder_weights, freeze_encoder,
                     pool4_scale=pool4_scale, pool3_scale=pool3_scale, scale_skips=scale_skips,
                     dropout=dropout, decoder_channels=decoder_channels,
                     weight_decay=weight_decay, alignment=alignment,
                     width_multiplier=width_multiplier, decoder=decoder, name=name)


def fcn_stride(**_) -> int:
    """FCNs pad and crop inside the model: any input size works."""
    return 1
