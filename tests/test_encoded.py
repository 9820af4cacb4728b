"""EXIF orientation read and applied inside the graph, checked against Pillow."""

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from tfseg.serving.encoded import decode_upright, exif_orientation


def asymmetric_image(height=12, width=20) -> np.ndarray:
    """Smooth (so JPEG keeps it recognisable) and different under every flip and turn."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x * y) * 255 // ((width - 1) * (height - 1))],
                    -1).astype(np.uint8)


def jpeg_with_exif(image: np.ndarray, exif: bytes | None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=95, **({"exif": exif} if exif else {}))
    return buffer.getvalue()


def pillow_exif(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "tfseg test camera"  # another tag before it, as cameras write
    exif[0x0112] = orientation
    return exif.tobytes()


def big_endian_exif(orientation: int) -> bytes:
    """A hand-made "MM" TIFF block: IFD0 with two entries, Orientation second."""
    entries = struct.pack(">HHII", 0x0100, 4, 1, 640) + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 2) + entries + b"\x00" * 4


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("exif", [pillow_exif, big_endian_exif])
def test_orientation_matches_pillow(orientation, exif):
    data = jpeg_with_exif(asymmetric_image(), exif(orientation))
    assert int(exif_orientation(tf.constant(data))) == orientation
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    np.testing.assert_array_equal(decode_upright(tf.constant(data)).numpy(), expected)


@pytest.mark.parametrize("data", [
    jpeg_with_exif(asymmetric_image(), None),                  # a JPEG without EXIF
    b"\x89PNG\r\n\x1a\n" + b"Exif\x00\x00MM" + b"\x00" * 40,   # "Exif" bytes, but not a JPEG's
    b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00XX",                 # neither II nor MM
    b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II",                 # cut short
    b"",
])
def test_anything_else_is_upright(data):
    assert int(exif_orientation(tf.constant(data))) == 1


def test_png_decodes_unchanged():
    image = asymmetric_image()
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    np.testing.assert_array_equal(decode_upright(tf.constant(buffer.getvalue())).numpy(), image)
