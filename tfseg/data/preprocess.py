"""The deterministic path from a uint8 image to the network's input, shared by all.

    uint8 image [H, W, 3] --resize_image--> [h, w, 3] uint8 (data.resize, bilinear, rounded)
                          --equalize------> CLAHE on the luminance (data.preprocess.clahe)
                          --normalize-----> float32 network input

:func:`network_input` is the single definition of "what the network sees": the training
pipeline applies its steps around the cache and augmentation (resize and CLAHE before the
cache, normalisation after augmentation), and the exported SavedModel and ``tfseg
evaluate`` call :func:`network_input` itself (:mod:`tfseg.serving.graph`), so there is no
train/serve drift to test away.

Inputs of several RGB images stacked along the channels (``[..., H, W, 3 k]``, e.g. a
background and a composite: ``k = 2``) are preprocessed image by image: CLAHE equalizes each
image's own luminance, and the ImageNet normalisations subtract (and divide by) the RGB
statistics from each image's three channels (:func:`per_rgb_image`). "unit" scales every
channel alike.

``data.resize: [h, w]`` stretches every image to exactly ``h x w``, whatever its aspect
ratio, and the predictions are stretched back to the image's own size. It is meant for
datasets whose images share (nearly) one aspect ratio, like KITTI Road (1242x375,
1241x376, 1238x374, 1226x370: within 1 % of each other); for photos of any shape (VOC)
leave it empty and train on random crops instead.
"""

from __future__ import annotations

import tensorflow as tf

from tfseg.config import DataConfig, PreprocessConfig
from tfseg.data.clahe import clahe, clahe_opencv

# ImageNet channel means in RGB order, on the 0..255 scale, and standard deviations on 0..1.
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)


def per_rgb_image(fn, images: tf.Tensor) -> tf.Tensor:
    """Applies ``fn`` (``[..., 3]`` -> ``[..., 3]``) to each RGB image of ``images``
    ``[..., 3 k]`` (channels ``0:3``, ``3:6``, ...) and stacks the results the same way."""
    channels = images.shape[-1]
    if channels is None or channels % 3:
        raise ValueError(f"expected RGB images stacked along the channels (3 k of them), got {images.shape}")
    if channels == 3:
        return fn(images)
    return tf.concat([fn(images[..., i:i + 3]) for i in range(0, channels, 3)], axis=-1)


def resize_image(images: tf.Tensor, size) -> tf.Tensor:
    """uint8 ``[..., H, W, C]`` -> uint8 ``[..., size[0], size[1], C]``: bilinear with half-pixel
    centres and no antialiasing, rounded back to uint8, so that CLAHE sees integers."""
    # Cast first (exact for uint8): the same result, and an op every runtime has (TFLite's
    # built-in bilinear resize takes floats only). Min and max rather than clip_by_value,
    # which TFLite's builtins lack.
    resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
    return tf.cast(tf.round(tf.minimum(tf.maximum(resized, 0.0), 255.0)), tf.uint8)


def equalize(images: tf.Tensor, config: PreprocessConfig, backend: str = "tensorflow") -> tf.Tensor:
    """CLAHE on each RGB image's luminance if ``config.clahe``: uint8 ``[..., H, W, 3 k]`` in
    and out.

    ``backend="opencv"`` (single ``[H, W, 3 k]`` examples only) computes the same pixels with
    OpenCV through ``tf.numpy_function``: for the input pipeline, never for a SavedModel.
    """
    if not config.clahe:
        return images
    if backend not in ("opencv", "tensorflow"):
        raise ValueError(f"unknown CLAHE backend {backend!r}")
    equalize_one = clahe_opencv if backend == "opencv" else clahe
    return per_rgb_image(lambda rgb: equalize_one(rgb, config.clahe_clip_limit, tuple(config.clahe_tile_grid)),
                         images)


def normalize(images: tf.Tensor, normalization: str = "unit") -> tf.Tensor:
    """Maps RGB images ``[..., 3 k]`` on the 0..255 scale (uint8 or float) to float32
    network inputs, image by image.

    normalization:
      "unit": ``x / 255``, for networks trained from scratch.
      "imagenet_caffe": BGR channel order minus the ImageNet mean, unscaled: what the
        original VGG16 weights (and ``keras.applications.vgg16.preprocess_input``) expect.
      "imagenet_torch": ``(x / 255 - mean) / std`` per RGB channel: ResNet-style weights.
    """
    x = tf.cast(images, tf.float32)
    if normalization == "unit":
        return x / 255.0
    if normalization == "imagenet_caffe":
        return per_rgb_image(lambda rgb: tf.reverse(rgb - tf.constant(IMAGENET_MEAN_RGB), axis=[-1]), x)
    if normalization == "imagenet_torch":
        mean = tf.constant(IMAGENET_MEAN_RGB) / 255.0
        return per_rgb_image(lambda rgb: (rgb / 255.0 - mean) / tf.constant(IMAGENET_STD_RGB), x)
    raise ValueError(f"unknown normalization {normalization!r}")


def preprocess(images: tf.Tensor, config: PreprocessConfig) -> tf.Tensor:
    """uint8 RGB ``[..., H, W, 3 k]`` -> float32 network input of the same shape (no resize)."""
    return normalize(equalize(images, config), config.normalization)


def network_input(images: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """uint8 RGB ``[N, H, W, 3 k]`` -> float32 ``[N, h, w, 3 k]``: resized to ``config.resize``
    (when set, else kept at ``H x W``), equalized and normalised, as the network was trained."""
    if config.resize:
        images = resize_image(images, config.resize)
    return preprocess(images, config.preprocess)


def pad_to_multiple(x: tf.Tensor, stride: int) -> tf.Tensor:
    """Pads ``[N, H, W, C]`` at the bottom and right so that H and W are multiples of ``stride``.

    Reflection keeps image statistics at the new border like those inside; it is only
    possible while the padding is smaller than the image, so tiny images get zeros instead.
    """
    if x.shape[1] is not None and x.shape[2] is not None and not (x.shape[1] % stride or x.shape[2] % stride):
        # Sizes fixed in the graph (data.resize) that fit already: nothing to pad, and the
        # shapes stay static for converters and runtimes (XNNPACK delegates static shapes).
        return x
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    # (stride - size % stride) % stride rather than (-size) % stride: the same numbers, with
    # no negative operand, whose modulo other runtimes (ONNX) may take C's way.
    pad_h, pad_w = (stride - height % stride) % stride, (stride - width % stride) % stride
    paddings = [[0, 0], [0, pad_h], [0, pad_w], [0, 0]]
    can_reflect = tf.logical_and(pad_h < height, pad_w < width)
    padded = tf.cond(can_reflect,
                     lambda: tf.pad(x, paddings, mode="REFLECT"),
                     lambda: tf.pad(x, paddings))
    # The branches' dynamic paddings lose the static channel count, which converters
    # (TFLite) need for the convolutions after; a reshape states it in the graph itself.
    return tf.reshape(padded, tf.concat([tf.shape(padded)[:3], [x.shape[-1]]], axis=0))
