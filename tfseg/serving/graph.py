"""The inference path of a trained network: uint8 images of any size in, class maps of the
same size out. The exported SavedModel (:mod:`tfseg.serving.export`) and ``tfseg evaluate``
(:mod:`tfseg.evaluate`) both run :func:`make_inference_fn`, so what is scored is what
is served.

    images uint8 [N, H, W, C]   (C = 3 per RGB image stacked: 3, or 6 for a pair)
      -> network_input: resize to data.resize, CLAHE, normalise   (as in training)
      -> pad to the network's stride (reflect), network, crop the padding off
      -> logits resized bilinearly back to H x W (when data.resize is set)
      -> softmax, argmax
      (a depth head's map: cropped and resized back alike)

With test-time augmentation (:class:`~tfseg.serving.test_time.TestTimeAugmentation`) the
network runs once per scale and flip of the network input, and the passes' probabilities
are averaged: baked into an export, or around an exported SavedModel's ``network_input``
and ``network`` endpoints (:meth:`tfseg.serving.client.SegmentationModel.
with_test_time_augmentation`), the same function either way (:func:`passes_inference_fn`).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfseg.config import DataConfig, ModelConfig
from tfseg.data.preprocess import network_input, pad_to_multiple
from tfseg.heads import DEPTH, LOGITS, named_outputs
from tfseg.serving.test_time import NO_TEST_TIME_AUGMENTATION, TestTimeAugmentation

NETWORK_SCOPE = "network"
# A batch of encoded PNG/JPEG files (what a REST client sends, base64-encoded).
BYTES_INPUT = tf.TensorSpec([None], tf.string, name="image_bytes")


def serving_input(channels: int = 3) -> tf.TensorSpec:
    """What the inference path takes: a batch of uint8 images of any one size, ``channels``
    deep (one RGB image, or several stacked)."""
    return tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")


def network_input_spec(channels: int = 3) -> tf.TensorSpec:
    """What the network itself takes: network_input's output (or a tile of it)."""
    return tf.TensorSpec([None, None, None, channels], tf.float32, name="network_input")


def make_network_input_fn(data_config: DataConfig, stride: int):
    """``images uint8 [N, H, W, 3]`` -> float32 ``[N, h', w', 3]``: the tensor the network is
    fed, padded to a multiple of ``stride``."""

    def network_input_fn(images):
        return pad_to_multiple(network_input(images, data_config), stride)

    return network_input_fn


def make_network_fn(model: keras.Model):
    """``float32 [N, h, w, 3]`` (sides multiples of the stride) -> float32 logits
    ``[N, h, w, num_classes]``: the network alone, for segmenting a big image in tiles."""

    def network_fn(x):
        return tf.cast(named_outputs(model(x, training=False))[LOGITS], tf.float32)

    return network_fn


def make_inference_fn(model: keras.Model, data_config: DataConfig, stride: int,
                      probabilities: bool = True, tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION):
    """``images uint8 [N, H, W, C]`` -> ``{"classes": uint8 [N, H, W],
    "probabilities": float32 [N, H, W, num_classes]}``, at the images' own size
    (``probabilities`` only when asked for), and ``"depth": float32 [N, H, W]`` (metres)
    from a model with a depth head; see :func:`passes_inference_fn`.
    """

    def network(x):
        # The network's own operations under one name: the int8 conversion quantizes
        # those only (tfseg.serving.runtimes), leaving the exact integer CLAHE and the
        # resizing in float.
        with tf.name_scope(NETWORK_SCOPE):
            return named_outputs(model(x, training=False))

    return passes_inference_fn(lambda images: network_input(images, data_config), network, stride,
                               resized=bool(data_config.resize), probabilities=probabilities, tta=tta)


def passes_inference_fn(preprocess, network, stride: int, *, resized: bool, probabilities: bool = True,
                        tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION):
    """The inference function of a network given in two pieces: ``preprocess(images uint8
    [N, H, W, C]) -> float32 [N, h, w, C]`` (the network input, not padded; ``resized``:
    whether ``h, w`` is a fixed size rather than the image's) and ``network(float32 [N, h',
    w', C], sides multiples of ``stride``) -> {head name: [N, h', w', channels]}``.

    Logits, not probabilities, are resized back: the same as resizing the probabilities
    for the argmax of two classes, and closer to the network's own decision for more.
    With ``tta``, each pass's probabilities at the image's size are averaged and the
    classes are their argmax; the depth map is the first pass's (the first scale, not
    mirrored: a monocular depth estimate does not survive rescaling).
    """

    def inference_fn(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        x = preprocess(images)
        net_height, net_width = tf.shape(x)[1], tf.shape(x)[2]

        def network_pass(scale: float, mirrored: bool) -> dict:
            """The heads at the image's size for one pass."""
            scaled = x
            if scale != 1.0:
                size = tf.cast(tf.round(tf.cast(tf.stack([net_height, net_width]), tf.float32) * scale), tf.int32)
                scaled = tf.image.resize(x, size, method="bilinear")
            if mirrored:
                scaled = tf.reverse(scaled, axis=[2])
            heads = network(pad_to_multiple(scaled, stride))
            pass_height, pass_width = tf.shape(scaled)[1], tf.shape(scaled)[2]

            def back_to_image(maps):
                maps = tf.cast(maps, tf.float32)[:, :pass_height, :pass_width, :]
                if mirrored:
                    maps = tf.reverse(maps, axis=[2])
                if resized or scale != 1.0:
                    maps = tf.image.resize(maps, tf.stack([height, width]), method="bilinear")
                return maps

            return {name: back_to_image(maps) for name, maps in heads.items()}

        passes = [network_pass(scale, mirrored) for scale, mirrored in tta.passes]
        if len(passes) == 1:
            logits = passes[0][LOGITS]
            outputs = {"classes": tf.cast(tf.argmax(logits, axis=-1), tf.uint8)}
            if probabilities:
                outputs["probabilities"] = tf.nn.softmax(logits, axis=-1)
        else:
            mean = tf.add_n([tf.nn.softmax(heads[LOGITS], axis=-1) for heads in passes]) / len(passes)
            outputs = {"classes": tf.cast(tf.argmax(mean, axis=-1), tf.uint8)}
            if probabilities:
                outputs["probabilities"] = mean
        if DEPTH in passes[0]:
            outputs[DEPTH] = passes[0][DEPTH][..., 0]
        return outputs

    return inference_fn


def make_bytes_inference_fn(inference_fn):
    """``image_bytes string [N]`` (encoded PNG/JPEG) -> ``inference_fn``'s outputs.

    Each image is decoded and turned upright by its EXIF orientation in the graph
    (:mod:`tfseg.serving.encoded`); the images of one call must share a size once decoded.
    """
    from tfseg.serving.encoded import decode_upright

    def bytes_inference_fn(image_bytes):
        images = tf.map_fn(decode_upright, image_bytes,
                           fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
        return inference_fn(images)

    return bytes_inference_fn


def float32_model(model: keras.Model, model_config: ModelConfig, num_classes: int) -> keras.Model:
    """The same network with the same weights, computing in float32 throughout.

    A model trained under a mixed-precision policy computes in bfloat16 or float16; for
    serving and evaluation tfseg rebuilds it under float32 and copies its (float32)
    weights over, so that predictions do not depend on the training precision.
    """
    options = dict(model_config.options)
    if options.get("encoder_weights") is not None:
        options["encoder_weights"] = None  # every weight is copied from ``model`` below
    from tfseg.models import build_model  # here: a client of an export needs no model code

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        copy = build_model(model_config.name, num_classes, **options)
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights(model.get_weights())
    return copy
