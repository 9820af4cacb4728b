"""CLAHE (contrast-limited adaptive histogram equalization) written with TensorFlow ops only.

The result is meant to equal ``cv2.createCLAHE(clip_limit, tile_grid_size).apply`` so that
images equalized in a ``tf.data`` pipeline or inside an exported SavedModel look exactly like
images equalized offline with OpenCV. The steps follow OpenCV's algorithm:

1. If the image height or width is not a multiple of the tile grid, the image is padded at the
   bottom and right with ``BORDER_REFLECT_101`` by ``tiles - size % tiles`` in *both*
   dimensions (so a dimension that already divided evenly gains ``tiles`` more pixels), and
   the tiles are cut from the padded image. The padding only feeds the histograms.
2. Per tile: a 256-bin histogram; every bin is clipped at
   ``max(int(clip_limit * tile_area / 256), 1)`` (no clipping when ``clip_limit <= 0``); the
   clipped excess goes back as an even share per bin, and the remainder as one more count in
   every ``max(256 // remainder, 1)``-th bin from bin 0 until it is used up.
3. Per tile: the LUT is ``round(cumsum(hist) * (255 / tile_area))`` in float32, ties to even
   like ``cvRound``.
4. Per pixel: bilinear interpolation between the LUTs of the four nearest tile centres, at
   tile coordinate ``x / tile_width - 0.5`` (clamped at the borders), in float32 and in
   OpenCV's order of operations, then rounded.

Histograms come from one ``tf.math.unsorted_segment_sum`` over ``tile_id * 256 + value`` (no
``[H, W, 256]`` one-hot), and the interpolation does one gather per pixel that fetches all
four neighbouring LUT entries at once, as a row of four bytes.

Every operation is one that TFLite's builtins and ONNX (opset 17) have: no float64, no
ClipByValue, no Bitcast, no bit shifts. So the exported model keeps CLAHE in its graph on
every runtime, equal to OpenCV there too (``tests/test_runtimes.py``).

Outside XLA the result is bit-exact. Under XLA (``jit_compile=True``) the compiler fuses
multiply-adds into FMAs, so a few pixels that sit on a rounding tie (about 1 in 10,000 on
KITTI-sized images) come out one grey level off.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import tensorflow as tf

_BINS = 256  # 8-bit histograms
_FIX_SHIFT = 14  # OpenCV's fixed-point precision for 8-bit RGB <-> YCrCb


def clahe(image, clip_limit: float = 2.0, tile_grid_size: tuple[int, int] = (8, 8)) -> tf.Tensor:
    """Equalizes ``image`` like ``cv2.createCLAHE(clip_limit, tile_grid_size).apply``.

    Args:
      image: uint8 tensor ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]``, ``[B, H, W, 1]`` or
        ``[B, H, W, 3]`` (three channels are RGB), with ``H, W >= 1``. The rank and the
        channel count must be known when tracing; ``B``, ``H`` and ``W`` may be dynamic.
      clip_limit: contrast limit, as OpenCV's ``clipLimit`` (Python number or scalar
        tensor); ``<= 0`` disables clipping (plain adaptive histogram equalization).
      tile_grid_size: ``(tiles_x, tiles_y)``, tile columns then tile rows, in the order of
        OpenCV's ``tileGridSize`` (width first).

    Returns:
      uint8 tensor with the shape of ``image``.

    Colour images: only luminance is equalized, so hues are kept. The image is converted to
    YCrCb (BT.601, as ``cv2.COLOR_RGB2YCrCb``), Y is equalized, and the new Y is converted
    back with the original Cr and Cb. YCrCb because the conversion is linear and cheap in a
    graph (integer multiply-adds, unlike Lab's cube roots), it leaves chroma untouched, and it
    is what OpenCV users pair with CLAHE; equalizing R, G and B separately would shift hues.
    The conversions use OpenCV's 14-bit fixed-point coefficients and rounding, so the result
    equals ``cvtColor(RGB2YCrCb) -> CLAHE on Y -> cvtColor(YCrCb2RGB)`` done with cv2.
    """
    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8:
        raise TypeError(f"clahe expects a uint8 image, got {image.dtype.name}")
    rank = image.shape.rank
    if rank not in (2, 3, 4):
        raise ValueError(f"clahe expects [H,W], [H,W,C] or [B,H,W,C], got shape {image.shape}")
    tiles_x, tiles_y = (int(n) for n in tile_grid_size)
    if tiles_x < 1 or tiles_y < 1:
        raise ValueError(f"tile_grid_size must be positive, got {tile_grid_size}")

    def equalize(gray):  # uint8 [B, H, W] -> uint8 [B, H, W]
        return _clahe_gray(gray, clip_limit, tiles_x, tiles_y)

    if rank == 2:
        return equalize(image[tf.newaxis])[0]
    batch = image if rank == 4 else image[tf.newaxis]
    channels = image.shape[-1]
    if channels == 1:
        out = equalize(batch[..., 0])[..., tf.newaxis]
    elif channels == 3:
        y, cr, cb = _rgb_to_ycrcb(batch)
        out = _ycrcb_to_rgb(tf.cast(equalize(tf.cast(y, tf.uint8)), tf.float32), cr, cb)
    else:
        raise ValueError(f"clahe expects 1 or 3 channels known when tracing, got {channels}")
    return out if rank == 4 else out[0]


def _clahe_gray(gray: tf.Tensor, clip_limit, tiles_x: int, tiles_y: int) -> tf.Tensor:
    """CLAHE of a batch of grey images: uint8 ``[B, H, W]`` -> uint8 ``[B, H, W]``."""
    _, height, width = tf.unstack(tf.shape(gray))
    # OpenCV pads only when some dimension is not a multiple of the grid, but then both.
    ragged = tf.logical_or(height % tiles_y != 0, width % tiles_x != 0)
    padded_h = tf.where(ragged, height + tiles_y - height % tiles_y, height)
    padded_w = tf.where(ragged, width + tiles_x - width % tiles_x, width)
    tile_h, tile_w = padded_h // tiles_y, padded_w // tiles_x

    hist = _tile_histograms(gray, tiles_x, tiles_y, padded_h, padded_w, tile_h, tile_w)
    luts = _clipped_luts(hist, clip_limit, tile_h * tile_w)
    return _interpolate(gray, luts, tiles_x, tiles_y, tile_h, tile_w)


def _reflect_101(index: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Maps indices ``>= 0`` into ``[0, size)`` like ``cv2.BORDER_REFLECT_101`` (``abc|ba``).

    The reflection repeats as often as needed, so padding wider than the image works too.
    """
    period = tf.maximum(2 * size - 2, 1)  # size 1 -> period 1 -> always index 0
    index = index % period
    return tf.where(index >= size, period - index, index)


def _tile_histograms(gray, tiles_x, tiles_y, padded_h, padded_w, tile_h, tile_w):
    """Histograms of the tiles of the reflect-padded images: int32 ``[B, ty, tx, 256]``."""
    batch, height, width = tf.unstack(tf.shape(gray))
    # Only the few new rows and columns are gathered; the rest is copied by concat.
    padded = tf.concat(
        [gray, tf.gather(gray, _reflect_101(tf.range(height, padded_h), height), axis=1)], 1)
    padded = tf.concat(
        [padded, tf.gather(padded, _reflect_101(tf.range(width, padded_w), width), axis=2)], 2)

    # Count ``tile_id * 256 + value``. (Not tf.math.bincount: its output size depends on
    # max(input), which makes XLA treat the image as a compile-time constant and recompile
    # for every new image.)
    num_tiles = tiles_y * tiles_x
    bin_base = ((tf.range(batch) * num_tiles)[:, None, None]
                + ((tf.range(padded_h) // tile_h) * tiles_x)[None, :, None]
                + (tf.range(padded_w) // tile_w)[None, None, :]) * _BINS
    # Rank-1 segment ids: ONNX's conversion handles no others.
    bin_ids = tf.reshape(bin_base + tf.cast(padded, tf.int32), [-1])
    hist = tf.math.unsorted_segment_sum(tf.ones_like(bin_ids), bin_ids,
                                        batch * num_tiles * _BINS)
    return tf.reshape(hist, [batch, tiles_y, tiles_x, _BINS])


# Clip limits are kept as fractions with at most this denominator (2.0, 2.5, 0.3, 0.01
# exactly); it keeps every product in _bin_limit below 2**31.
_MAX_DENOMINATOR = 128


def _bin_limit(clip_limit, area: tf.Tensor) -> tf.Tensor:
    """OpenCV's per-bin count limit, int32: ``max(int(clip_limit * area / 256), 1)``, or
    ``area`` (nothing clipped) when ``clip_limit <= 0``.

    OpenCV multiplies in double precision, which TFLite's builtins lack. A Python number
    becomes the fraction ``n / d`` (the double itself for 2.0, 2.5 or 40.0; the decimal for
    0.3) and ``floor(area * n / D)``, ``D = 256 d``, is computed in int32 from parts that
    cannot overflow: with ``n = q D + r`` and ``area = w D + s``, it is
    ``area q + w r + floor(s r / D)``. ``tests/test_clahe.py`` compares it with OpenCV's
    double arithmetic over every tile area of images up to 4K. A tensor is multiplied in
    float32, which is exact when ``clip_limit * area`` needs at most 24 significant bits
    (1.0, 2.0, 4.0, ... with tiles of up to 2**21 pixels).
    """
    if isinstance(clip_limit, (int, float)):
        if clip_limit <= 0:
            return area
        # A limit of 256 or more clips nothing (no bin exceeds the area), so the fraction
        # is capped there.
        fraction = Fraction(min(float(clip_limit), float(_BINS))).limit_denominator(_MAX_DENOMINATOR)
        divisor = fraction.denominator * _BINS
        quotient, remainder = divmod(fraction.numerator, divisor)
        limit = (area * quotient + (area // divisor) * remainder
                 + (area % divisor) * remainder // divisor)
        return tf.maximum(limit, 1)
    clip_limit = tf.cast(clip_limit, tf.float32)
    area_f = tf.cast(area, tf.float32)
    limit = tf.cast(tf.floor(tf.minimum(clip_limit * area_f / _BINS, area_f)), tf.int32)
    return tf.where(clip_limit > 0, tf.maximum(limit, 1), area)


def _clamp(x: tf.Tensor, low, high) -> tf.Tensor:
    """``tf.clip_by_value`` from min and max, which every runtime has (TFLite's builtins
    lack ClipByValue)."""
    return tf.minimum(tf.maximum(x, low), high)


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    """Saturating cast to uint8 of integer values (``tf.saturate_cast`` clips with
    ClipByValue)."""
    return tf.cast(_clamp(x, tf.constant(0, x.dtype), tf.constant(255, x.dtype)), tf.uint8)


def _clipped_luts(hist: tf.Tensor, clip_limit, area: tf.Tensor) -> tf.Tensor:
    """Clips and redistributes int32 histograms ``[..., 256]`` of ``area`` pixels each and
    returns their equalization LUTs, uint8 ``[..., 256]``."""
    limit = _bin_limit(clip_limit, area)

    excess = tf.reduce_sum(tf.maximum(hist - limit, 0), axis=-1, keepdims=True)
    share = excess // _BINS
    residual = excess - share * _BINS
    # The residual goes one count at a time to bins 0, step, 2*step, ... until used up.
    step = tf.maximum(_BINS // tf.maximum(residual, 1), 1)
    bins = tf.range(_BINS)
    extra = tf.logical_and(bins % step == 0, bins // step < residual)
    hist = tf.minimum(hist, limit) + share + tf.cast(extra, tf.int32)

    # float32 scale and product as OpenCV's ``sum * lutScale``; tf.round ties to even.
    scale = tf.constant(_BINS - 1, tf.float32) / tf.cast(area, tf.float32)
    cdf = tf.cast(tf.cumsum(hist, axis=-1), tf.float32)
    return _to_uint8(tf.round(cdf * scale))


def _interpolate(gray, luts, tiles_x, tiles_y, tile_h, tile_w):
    """Maps uint8 ``[B, H, W]`` through a per-pixel bilinear blend of the four nearest tile
    LUTs (uint8 ``[B, ty, tx, 256]``); returns uint8 ``[B, H, W]``."""
    batch, height, width = tf.unstack(tf.shape(gray))

    def axis_weights(size, tile, tiles):
        # Tile-centre coordinate t = i / tile - 0.5 (float32 as OpenCV). Pixel i lies in
        # "cell" floor(t) + 1 in [0, tiles], between tiles clamp(floor(t)) and
        # clamp(floor(t) + 1); ``frac`` is the weight of the second one.
        coord = tf.cast(tf.range(size), tf.float32) * (1.0 / tf.cast(tile, tf.float32)) - 0.5
        lower = tf.floor(coord)
        cell = _clamp(tf.cast(lower, tf.int32) + 1, 0, tiles)
        frac = coord - lower
        return cell, frac, 1.0 - frac

    cell_y, ya, ya1 = axis_weights(height, tile_h, tiles_y)
    cell_x, xa, xa1 = axis_weights(width, tile_w, tiles_x)

    # For each cell, the LUTs of its four corner tiles (clamped at the borders) side by
    # side, so that one gather of 4-byte rows fetches all four entries a pixel needs.
    def clamped(n):
        return _clamp(tf.range(-1, n + 1), 0, n - 1)

    ext = tf.gather(tf.gather(luts, clamped(tiles_y), axis=1), clamped(tiles_x), axis=2)
    corners = tf.stack([ext[:, :-1, :-1], ext[:, :-1, 1:], ext[:, 1:, :-1], ext[:, 1:, 1:]],
                       axis=-1)  # [B, ty + 1, tx + 1, 256, 4]
    table = tf.reshape(corners, [-1, 4])

    cells = (tiles_y + 1) * (tiles_x + 1)
    row_base = (tf.range(batch) * cells)[:, None] + (cell_y * (tiles_x + 1))[None, :]
    index = tf.reshape(row_base * _BINS, [-1, 1]) + (cell_x * _BINS)[None, :]  # [B*H, W]
    index = tf.reshape(index, [batch, height, width]) + tf.cast(gray, tf.int32)
    packed = tf.gather(table, index)  # uint8 [B, H, W, 4]
    # Unstacking bytes before the cast moves a quarter of the data of unstacking floats.
    l11, l12, l21, l22 = (tf.cast(c, tf.float32) for c in tf.unstack(packed, axis=-1))

    # OpenCV's order of float32 operations, so that ties round the same way.
    xa, xa1 = xa[None, None, :], xa1[None, None, :]
    ya, ya1 = ya[None, :, None], ya1[None, :, None]
    res = (l11 * xa1 + l12 * xa) * ya1 + (l21 * xa1 + l22 * xa) * ya
    # A blend of values in [0, 255] with weights summing to 1 (+- an ulp) rounds into
    # [0, 255], so a plain cast needs no clamp.
    return tf.cast(tf.round(res), tf.uint8)


def _descale(x: tf.Tensor) -> tf.Tensor:
    """OpenCV's ``CV_DESCALE``: ``x / 2**14`` rounded half up, for float32 ``x`` holding an
    integer of magnitude below ``2**24`` (so every step is exact).

    In float32 rather than int32: OpenCV's arithmetic shift floors, but ONNX shifts unsigned
    integers only and truncates integer division towards zero, and TensorFlow's int32 floor
    division is slower than a float multiply and floor.
    """
    return tf.floor((x + (1 << (_FIX_SHIFT - 1))) * (1.0 / (1 << _FIX_SHIFT)))


def _rgb_to_ycrcb(rgb: tf.Tensor):
    """uint8 RGB ``[..., 3]`` -> ``Y``, ``Cr - 128``, ``Cb - 128``, each float32 ``[...]``
    holding integers.

    Bit-exact ``cv2.COLOR_RGB2YCrCb``: BT.601 with OpenCV's 14-bit fixed-point coefficients
    (0.299, 0.587, 0.114; 0.713, 0.564). Every product and sum is an integer below ``2**23``,
    exact in float32 (with or without fused multiply-adds). Chroma is kept centred on 0
    because that is how the inverse uses it; ``clip(c + 128, 0, 255) - 128 ==
    clip(c, -128, 127)``.
    """
    # Unstack as uint8 then cast: a quarter of the memory traffic of unstacking floats.
    r, g, b = (tf.cast(c, tf.float32) for c in tf.unstack(rgb, axis=-1))
    y = _descale(r * 4899 + g * 9617 + b * 1868)
    cr = _clamp(_descale((r - y) * 11682), -128.0, 127.0)
    cb = _clamp(_descale((b - y) * 9241), -128.0, 127.0)
    return y, cr, cb


def _ycrcb_to_rgb(y: tf.Tensor, cr: tf.Tensor, cb: tf.Tensor) -> tf.Tensor:
    """float32 ``Y``, ``Cr - 128``, ``Cb - 128`` ``[...]`` (integers) -> uint8 RGB
    ``[..., 3]``.

    Bit-exact ``cv2.COLOR_YCrCb2RGB``: coefficients 1.403, -0.714, -0.344, 1.773 in OpenCV's
    14-bit fixed point.
    """
    planes = [_to_uint8(y + _descale(cr * 22987)),
              _to_uint8(y + _descale(cb * -5636 + cr * -11698)),
              _to_uint8(y + _descale(cb * 29049))]
    # Interleave the channels with a 2-D transpose: on CPU it is ~2.5x faster than
    # tf.stack(..., axis=-1), which copies one element at a time.
    rgb = tf.transpose(tf.reshape(tf.stack(planes), [3, -1]))
    return tf.reshape(rgb, tf.concat([tf.shape(y), [3]], axis=0))


def clahe_opencv(image, clip_limit: float = 2.0, tile_grid_size: tuple[int, int] = (8, 8)) -> tf.Tensor:
    """:func:`clahe` computed by OpenCV inside the graph, through ``tf.numpy_function``.

    For the ``tf.data`` input pipeline, where it gives the same pixels as :func:`clahe`
    for about a fifth of the CPU time (OpenCV's CLAHE is vectorised C++ and releases the
    GIL while it runs). It cannot be saved in a SavedModel, so the exported model keeps
    the TensorFlow version. ``image``: uint8 ``[H, W]``, ``[H, W, 1]`` or ``[H, W, 3]``
    (RGB), as OpenCV's colour pipeline ``RGB2YCrCb -> CLAHE on Y -> YCrCb2RGB``.
    """
    import cv2

    image = tf.convert_to_tensor(image)
    if image.dtype != tf.uint8 or image.shape.rank not in (2, 3):
        raise ValueError(f"clahe_opencv expects a uint8 [H,W] or [H,W,C] image, got "
                         f"{image.dtype.name} {image.shape}")
    grid = tuple(int(n) for n in tile_grid_size)
    limit = float(clip_limit)

    def equalize(pixels: np.ndarray) -> np.ndarray:
        # One CLAHE object per call: they keep scratch buffers, so sharing one across
        # tf.data's threads would not be safe, and creating one costs microseconds.
        op = cv2.createCLAHE(limit, grid)
        if pixels.ndim == 2 or pixels.shape[-1] == 1:
            return op.apply(np.ascontiguousarray(pixels.reshape(pixels.shape[:2]))).reshape(pixels.shape)
        y, cr, cb = cv2.split(cv2.cvtColor(pixels, cv2.COLOR_RGB2YCrCb))
        return cv2.cvtColor(cv2.merge([op.apply(y), cr, cb]), cv2.COLOR_YCrCb2RGB)

    out = tf.numpy_function(equalize, [image], tf.uint8, stateful=False)
    out.set_shape(image.shape)
    return out
