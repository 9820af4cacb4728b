"""Encoded images inside the graph: PNG/JPEG bytes -> uint8 RGB, turned upright.

A phone stores a portrait photo as a landscape JPEG plus an EXIF ``Orientation`` tag that
every viewer applies. A model served with TF Serving receives the bytes only, so the tag
is read here with TensorFlow ops (nothing Python-side runs in a SavedModel):

    JPEG: FF D8 ... FF E1 <length> "Exif\\0\\0" <TIFF header: "II"|"MM", 42, IFD0 offset>
          IFD0: <entry count> then 12-byte entries (tag, type, count, value); the
          Orientation tag 0x0112 holds a SHORT from 1 (upright) to 8.

Only the first ``MAX_IFD_ENTRIES`` entries of IFD0 are looked at (the tag sits among the
first dozen in files from cameras and phones); anything unexpected counts as upright.
"""

from __future__ import annotations

import tensorflow as tf

EXIF_HEADER = b"Exif\x00\x00"
ORIENTATION_TAG = 0x0112
# How far into the file the EXIF segment may start (APP1 follows SOI, maybe APP0).
EXIF_SEARCH_BYTES = 65536
MAX_IFD_ENTRIES = 64


def _bytes_at(data: tf.Tensor, position: tf.Tensor, length: int) -> tf.Tensor:
    """``length`` bytes of ``data`` from ``position`` as int32 ``[length]`` (zeros past the end)."""
    padded = tf.strings.join([data, tf.constant(b"\x00" * length)])
    position = tf.clip_by_value(position, 0, tf.strings.length(data))
    return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, position, length), tf.uint8), tf.int32)


def exif_orientation(data: tf.Tensor) -> tf.Tensor:
    """The EXIF orientation (int32 1..8) of encoded image bytes (a scalar tf.string); 1
    for anything but a JPEG with a readable Orientation tag."""
    head = tf.strings.substr(data, 0, EXIF_SEARCH_BYTES)
    before = tf.strings.split(head, sep=EXIF_HEADER, maxsplit=1)[0]
    found = tf.strings.length(before) < tf.strings.length(head)
    start = tf.strings.length(before)  # where "Exif\0\0" begins
    marker = _bytes_at(data, start - 4, 2)
    soi = _bytes_at(data, tf.constant(0), 2)
    is_exif_app1 = found & tf.reduce_all(tf.equal(soi, [0xFF, 0xD8])) & tf.reduce_all(tf.equal(marker, [0xFF, 0xE1]))

    tiff = start + len(EXIF_HEADER)
    order = _bytes_at(data, tiff, 2)
    little = tf.reduce_all(tf.equal(order, [0x49, 0x49]))  # "II"
    big = tf.reduce_all(tf.equal(order, [0x4D, 0x4D]))  # "MM"

    def number(raw):  # unsigned integer from bytes [..., n] in the file's byte order
        weights = tf.bitwise.left_shift(1, 8 * tf.range(tf.shape(raw)[-1]))
        return tf.where(little, tf.reduce_sum(raw * weights, -1), tf.reduce_sum(raw * tf.reverse(weights, [0]), -1))

    ifd = tiff + number(_bytes_at(data, tiff + 4, 4))
    count = tf.minimum(number(_bytes_at(data, ifd, 2)), MAX_IFD_ENTRIES)
    entries = tf.reshape(_bytes_at(data, ifd + 2, 12 * MAX_IFD_ENTRIES), [MAX_IFD_ENTRIES, 12])
    tags = number(entries[:, 0:2])
    values = number(entries[:, 8:10])
    is_orientation = (tags == ORIENTATION_TAG) & (tf.range(MAX_IFD_ENTRIES) < count)
    value = tf.reduce_max(tf.where(is_orientation, values, 0))
    valid = is_exif_app1 & (little | big) & (value >= 1) & (value <= 8)
    return tf.where(valid, value, 1)


def apply_orientation(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
    """``image`` ``[H, W, C]`` as a viewer shows it for EXIF ``orientation`` 1..8."""
    transposed = tf.transpose(image, [1, 0, 2])
    branches = [
        lambda: image,                                # 1: upright
        lambda: tf.image.flip_left_right(image),      # 2: mirrored
        lambda: tf.image.rot90(image, 2),             # 3: upside down
        lambda: tf.image.flip_up_down(image),         # 4: mirrored, upside down
        lambda: transposed,                           # 5: transposed
        lambda: tf.image.rot90(image, 3),             # 6: turn 90 degrees clockwise
        lambda: tf.image.rot90(transposed, 2),        # 7: transverse
        lambda: tf.image.rot90(image, 1),             # 8: turn 90 degrees counter-clockwise
    ]
    return tf.switch_case(tf.clip_by_value(orientation, 1, 8) - 1, branches)


def decode_upright(data: tf.Tensor) -> tf.Tensor:
    """PNG/JPEG/BMP/GIF bytes (scalar tf.string) -> uint8 RGB ``[H, W, 3]``, EXIF orientation
    applied. JPEGs decode with the accurate integer DCT, as tfseg's data sources do."""
    from tfseg.images import decode_image_tf

    return apply_orientation(decode_image_tf(data), exif_orientation(data))
