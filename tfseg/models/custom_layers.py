"""Small serializable layers and initializers the model families share.

Everything here is written with ``keras.ops`` only (no TensorFlow), is registered under
the ``tfseg`` package for ``.keras`` files loaded with ``safe_mode=True``, and handles
inputs whose height and width are only known when the model runs (``None`` at build
time). Importing :mod:`tfseg.models` registers them; code that loads a saved model must
have imported it first.
"""

from __future__ import annotations

import numpy as np
import keras
from keras import layers, ops


def bilinear_kernel_1d(size: int) -> np.ndarray:
    """The 1-D bilinear interpolation filter of a transposed convolution of kernel ``size``.

    For the stride ``f = ceil(size / 2)`` and ``size == 2 * f`` this is the filter of
    Long et al.'s ``upsample_filt``: the tent ``1 - |i - c| / f`` centred on
    ``c = (size - 1) / 2``.
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    return 1.0 - np.abs(np.arange(size) - center) / factor


def bilinear_kernel_2d(kernel_size) -> np.ndarray:
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return np.outer(bilinear_kernel_1d(kh), bilinear_kernel_1d(kw))


def subpixel_conv_transpose(x, kernel, strides, padding: str):
    """A 2-D transposed convolution whose kernel size is a multiple of its stride, computed
    as a small convolution followed by depth-to-space (a "sub-pixel" convolution).

    ``x``: ``[B, H, W, C]``; ``kernel``: ``[kh, kw, F, C]``, laid out as
    ``keras.layers.Conv2DTranspose`` keeps it; ``strides`` ``(sh, sw)`` with ``kh = mh * sh``
    and ``kw = mw * sw``. Returns ``[B, H * sh, W * sw, F]`` for ``padding="same"`` and
    ``[B, (H - 1) * sh + kh, (W - 1) * sw + kw, F]`` for ``"valid"``, equal to
    ``ops.conv_transpose`` (no bias).

    Why: output row ``q * s + r`` of a transposed convolution only ever meets kernel rows
    ``r, r + s, ..., r + (m - 1) * s``. So each of the ``s * s`` output phases is an
    ``m x m`` convolution of the input, and all of them together are one convolution to
    ``s * s * F`` channels, whose channels depth-to-space interleaves. XLA lowers the
    transposed convolution itself into a convolution over an input dilated with zeros,
    ``s * s`` times the work; this form does only the useful multiplications (the U-Net's
    2x2 stride-2 up-sampling becomes a 1x1 convolution: a plain matrix product).
    """
    (sh, sw), (kh, kw) = strides, kernel.shape[:2]
    mh, mw = kh // sh, kw // sw
    filters, channels = kernel.shape[2], kernel.shape[3]
    # [kh, kw, F, C] -> [mh, mw, C, sh * sw * F]: tap j of phase r is kernel row j * s + r,
    # met by input row q - j, so the taps are reversed to read as a correlation.
    phases = ops.reshape(kernel, (mh, sh, mw, sw, filters, channels))
    phases = ops.flip(ops.flip(phases, axis=0), axis=2)
    phases = ops.transpose(phases, (0, 2, 5, 1, 3, 4))
    phases = ops.reshape(phases, (mh, mw, channels, sh * sw * filters))
    if mh > 1 or mw > 1:
        x = ops.pad(x, [[0, 0], [mh - 1, mh - 1], [mw - 1, mw - 1], [0, 0]])
    y = ops.conv(x, phases, strides=1, padding="valid")
    shape = ops.shape(y)
    batch, height, width = shape[0], shape[1], shape[2]
    y = ops.reshape(y, (batch, height, width, sh, sw, filters))
    y = ops.transpose(y, (0, 1, 3, 2, 4, 5))
    y = ops.reshape(y, (batch, height * sh, width * sw, filters))
    if padding == "same":
        # The "same" output is the full one without (k - s) // 2 leading rows, as in
        # TensorFlow's conv2d_transpose (the gradient of a "same" strided convolution).
        top, left = (kh - sh) // 2, (kw - sw) // 2
        in_height, in_width = height - (mh - 1), width - (mw - 1)
        y = y[:, top:top + in_height * sh, left:left + in_width * sw, :]
    return y


@keras.saving.register_keras_serializable(package="tfseg")
class Conv2DTranspose(layers.Conv2DTranspose):
    """``keras.layers.Conv2DTranspose`` computed by :func:`subpixel_conv_transpose` where
    the kernel size is a multiple of the stride (2x2/2 in the U-Net, 4x4/2 in FCN).

    The same layer in every other respect: the same arguments, the same ``kernel`` and
    ``bias`` variables, the same outputs to float rounding; other configurations
    (dilation, ``output_padding``, ``channels_first``) run the parent's computation. It
    keeps the parent's class name on purpose: a ``.keras`` file files each layer's weights
    under its class name, so with this name the weights of models saved with Keras' own
    layer load into tfseg's models and back (registered as ``tfseg>Conv2DTranspose``).
    """

    def _subpixel(self) -> bool:
        return (self.data_format == "channels_last" and self.output_padding is None
                and tuple(self.dilation_rate) == (1, 1)
                and all(k % s == 0 for k, s in zip(self.kernel_size, self.strides)))

    def call(self, inputs):
        if not self._subpixel():
            return super().call(inputs)
        y = subpixel_conv_transpose(inputs, self.kernel, self.strides, self.padding)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y) if self.activation is not None else y


@keras.saving.register_keras_serializable(package="tfseg")
class MaxPooling2D(layers.MaxPooling2D):
    """``keras.layers.MaxPooling2D`` whose 2x2, stride-2 case is a reshape and a max.

    Why: XLA differentiates a pooling window (``reduce_window``) with select-and-scatter,
    a slow kernel on GPUs; the maximum over two axes of ``[B, H/2, 2, W/2, 2, C]`` is a
    plain reduction whose gradient is an elementwise mask. It gives the same outputs for
    "valid" and "same" padding (odd sizes: "valid" drops the last row or column, "same"
    repeats it, which changes no maximum as padding with -inf would not either, and which,
    unlike a pad with -inf, TFLite's int8 quantizer takes) and the same gradients, except
    how a tie between equal maxima shares it (among zeros after a ReLU, where the gradient
    is zero anyway). Measured on one
    H200 (Keras on JAX, bf16), a 576x576 U-Net training step was 7 % faster. Other pool
    sizes, strides and ``channels_first`` run the parent's computation. The class keeps
    the parent's name like :class:`Conv2DTranspose` (registered as ``tfseg>MaxPooling2D``).
    """

    def _reshaped(self) -> bool:
        return (tuple(self.pool_size) == (2, 2) and tuple(self.strides) == (2, 2)
                and self.data_format == "channels_last")

    def call(self, inputs):
        if not self._reshaped():
            return super().call(inputs)
        shape = ops.shape(inputs)
        height, width = shape[1], shape[2]
        if self.padding == "same":
            out_height, out_width = (height + 1) // 2, (width + 1) // 2
            x = inputs
            # Sizes known to be even (training crops) need nothing; others get their last
            # row and column once more, cut off again where the size was even.
            if inputs.shape[1] is None or inputs.shape[1] % 2:
                x = ops.concatenate([x, x[:, -1:]], axis=1)[:, :2 * out_height]
            if inputs.shape[2] is None or inputs.shape[2] % 2:
                x = ops.concatenate([x, x[:, :, -1:]], axis=2)[:, :, :2 * out_width]
        else:
            out_height, out_width = height // 2, width // 2
            x = inputs[:, :2 * out_height, :2 * out_width, :]
        x = ops.reshape(x, (shape[0], out_height, 2, out_width, 2, inputs.shape[-1]))
        return ops.max(x, axis=(2, 4))


@keras.saving.register_keras_serializable(package="tfseg")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialises a ``Conv2DTranspose`` kernel to bilinear upsampling, channel by channel.

    The kernel ``[kh, kw, out_channels, in_channels]`` gets the 2-D bilinear filter on its
    channel diagonal and zeros elsewhere, so output channel ``i`` is input channel ``i``
    upsampled. With kernel ``2 * f``, stride ``f`` and 'same' padding the layer then
    computes the half-pixel-centre bilinear resize (``tf.image.resize``'s "bilinear")
    everywhere except within ``f`` pixels of the border. Channels beyond
    ``min(out_channels, in_channels)`` start at zero.
    """

    def __call__(self, shape, dtype=None):
        if len(shape) != 4:
            raise ValueError(f"BilinearUpsampling initialises 4-D kernels, got shape {shape}")
        kh, kw, out_channels, in_channels = shape
        kernel = np.zeros(shape, dtype="float32")
        filt = bilinear_kernel_2d((kh, kw))
        for c in range(min(out_channels, in_channels)):
            kernel[:, :, c, c] = filt
        return ops.convert_to_tensor(kernel, dtype=dtype or keras.config.floatx())

    def get_config(self):
        return {}


@keras.saving.register_keras_serializable(package="tfseg")
class BilinearUpsample2D(layers.Layer):
    """Fixed (weightless) bilinear upsampling by an integer ``factor``, channel by channel.

    It is the transposed convolution with kernel ``2 * factor`` and stride ``factor``
    whose kernel is the bilinear filter and never trains (the final upsampling of FCN),
    computed per channel so that it holds no parameters and costs ``C`` rather than
    ``C * C`` kernel applications. ``padding="same"`` gives ``factor * H`` outputs
    aligned like a half-pixel bilinear resize; ``"valid"`` gives the full
    ``(H - 1) * factor + 2 * factor`` outputs of Caffe's Deconvolution (to be cropped).
    """

    def __init__(self, factor: int, padding: str = "same", **kwargs):
        super().__init__(**kwargs)
        if int(factor) < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        if padding not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.factor = int(factor)
        self.padding = padding
        self.kernel_size = 2 * self.factor

    def call(self, x):
        shape = ops.shape(x)
        batch, height, width, channels = shape[0], shape[1], shape[2], x.shape[-1]
        kernel = bilinear_kernel_2d(self.kernel_size)[:, :, None, None]
        kernel = ops.convert_to_tensor(kernel, dtype=x.dtype)
        # Channels go to the batch axis: one single-channel transposed convolution each.
        y = ops.reshape(ops.transpose(x, (0, 3, 1, 2)), (-1, height, width, 1))
        y = subpixel_conv_transpose(y, kernel, (self.factor, self.factor), self.padding)
        out_shape = ops.shape(y)
        y = ops.reshape(y, (batch, channels, out_shape[1], out_shape[2]))
        return ops.transpose(y, (0, 2, 3, 1))

    def _out_size(self, size):
        if size is None:
            return None
        if self.padding == "same":
            return size * self.factor
        return (size - 1) * self.factor + self.kernel_size

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        return (b, self._out_size(h), self._out_size(w), c)

    def compute_flops(self, input_shape, output_shape):
        """Forward FLOPs (2 per multiply-add) of the per-channel transposed convolution."""
        _, h, w, c = input_shape
        return 2 * h * w * c * self.kernel_size**2

    def get_config(self):
        return {**super().get_config(), "factor": self.factor, "padding": self.padding}


@keras.saving.register_keras_serializable(package="tfseg")
class Scale(layers.Layer):
    """Multiplies its input by a constant (FCN's scaled pool3/pool4 skips).

    Build it with ``dtype="float32"`` under mixed precision: the input is cast to float32
    first, so ``1e-4 * x`` does not fall into float16's subnormal range.
    """

    def __init__(self, scale: float, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, x):
        return x * ops.cast(self.scale, x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="tfseg")
class PadToMultiple(layers.Layer):
    """Zero-pads ``[B, H, W, C]`` at the bottom and right to multiples of ``multiple``."""

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)

    def call(self, x):
        shape = ops.shape(x)
        pad_h = (self.multiple - shape[1] % self.multiple) % self.multiple
        pad_w = (self.multiple - shape[2] % self.multiple) % self.multiple
        padded = ops.pad(x, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        # Padding by computed amounts leaves TensorFlow's graph without the channel count,
        # which TFLite's convolutions need; a reshape (no copy) states it again.
        return ops.reshape(padded, (-1, shape[1] + pad_h, shape[2] + pad_w, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        b, h, w, c = input_shape
        up = lambda n: None if n is None else -(-n // self.multiple) * self.multiple  # noqa: E731
        return (b, up(h), up(w), c)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="tfseg")
class CropToReference(layers.Layer):
    """Crops ``x`` to the height and width of ``reference``, starting at ``offset``.

    Called on ``[x, reference]``; the output is
    ``x[:, oy:oy + H_ref, ox:ox + W_ref, :]`` (Caffe's Crop layer, axis 2).
    """

    def __init__(self, offset=(0, 0), **kwargs):
        super().__init__(**kwargs)
        offset = (offset, offset) if isinstance(offset, int) else tuple(offset)
        self.offset = (int(offset[0]), int(offset[1]))

    def call(self, inputs):
        x, reference = inputs
        ref_shape = ops.shape(reference)
        oy, ox = self.offset
        return x[:, oy:oy + ref_shape[1], ox:ox + ref_shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return {**super().get_config(), "offset": list(self.offset)}
