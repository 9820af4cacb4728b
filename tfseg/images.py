"""Reading image files: plain or inside a zip archive, decoded strictly, listed, checked.

A *location* is a file path, or ``"<archive.zip>::<member>"`` for a file inside a zip
archive, which lets KITTI Road be read straight from ``data_road.zip``. Decoding is
Pillow's, strict about truncated files; :func:`decode_image_tf` is TensorFlow's, equal to
it pixel for pixel. Datasets, ``predict`` and ``evaluate`` all read images through here.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile

from tfseg.errors import UserError

ARCHIVE_SEPARATOR = "::"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Formats TensorFlow decodes itself (losslessly, or for JPEG exactly like Pillow); TIFF is not one.
TF_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def member_location(archive: str | os.PathLike, member: str) -> str:
    return f"{os.fspath(archive)}{ARCHIVE_SEPARATOR}{member}"


def split_location(location: str) -> tuple[str, str | None]:
    """``"a.zip::m"`` -> ``("a.zip", "m")``; a plain path -> ``(path, None)``."""
    archive, sep, member = location.partition(ARCHIVE_SEPARATOR)
    if sep and archive.lower().endswith(".zip"):
        return archive, member
    return location, None


def is_member(location: str) -> bool:
    return split_location(location)[1] is not None


def read_bytes(location: str) -> bytes:
    """The raw bytes of a file or zip member; a missing one is a :class:`UserError`."""
    archive, member = split_location(location)
    try:
        if member is None:
            with open(archive, "rb") as f:
                return f.read()
        # A fresh handle per read: ZipFile objects are not safe to share across the
        # threads tf.data runs numpy_function in, and opening one costs well under 1 ms.
        with zipfile.ZipFile(archive) as zf:
            return zf.read(member)
    except FileNotFoundError:
        raise UserError(f"{location}: file not found") from None
    except KeyError:
        raise UserError(f"{location}: no such member in {archive}") from None
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{location}: cannot read ({err})") from None


@contextlib.contextmanager
def strict_pillow() -> Iterator[None]:
    """Makes Pillow raise on truncated files instead of quietly padding them with grey."""
    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


def unreadable(err: Exception) -> str:
    """Why Pillow could not read an image, as the reason part of a one-line message."""
    if isinstance(err, Image.UnidentifiedImageError):  # its message names a BytesIO object
        return "not a readable image (unknown or unsupported format)"
    return f"not a readable image ({err})"


def open_image(data: bytes, name: str) -> Image.Image:
    """A fully loaded Pillow image; unreadable or truncated data is a :class:`UserError`."""
    try:
        with strict_pillow():
            image = Image.open(io.BytesIO(data))
            image.load()
        return image
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError...)
        raise UserError(f"{name}: {unreadable(err)}") from None


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Encoded image bytes -> uint8 RGB ``[H, W, 3]`` (grey and palette images are expanded,
    alpha is dropped)."""
    image = open_image(data, name)
    if image.mode in ("I;16", "I;16B", "I", "F"):
        raise UserError(f"{name}: {image.mode} image; tfseg expects 8-bit images")
    return np.asarray(image.convert("RGB"))


def decode_indices(data: bytes, name: str) -> np.ndarray:
    """A palette (P) or grey (L) PNG -> its stored values, uint8 ``[H, W]``.

    For palette PNGs these are the palette *indices*, which is what VOC-style masks mean by
    class ids; converting to colours (as ``tf.io.decode_png`` does) would lose them.
    """
    image = open_image(data, name)
    if image.mode not in ("P", "L"):
        raise UserError(f"{name}: a {image.mode} image, expected a palette (P) or grey (L) "
                        "PNG of class ids")
    return np.asarray(image, dtype=np.uint8)


def read_rgb(location: str) -> np.ndarray:
    return decode_rgb(read_bytes(location), location)


def read_indices(location: str) -> np.ndarray:
    return decode_indices(read_bytes(location), location)


def image_size(location: str) -> tuple[int, int]:
    """``(height, width)`` from the file header, without decoding the pixels."""
    data = read_bytes(location)
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Exception as err:
        raise UserError(f"{location}: {unreadable(err)}") from None
    return height, width


def verify_image(location: str) -> str | None:
    """Why the image at ``location`` cannot be trusted, or None if it decodes completely.

    OpenCV and Pillow in its lenient mode decode a truncated JPEG without complaint (the
    missing rows come out grey), so besides a strict full decode this checks that a JPEG
    ends with its end-of-image marker and lets Pillow's ``verify`` check PNG chunk CRCs.
    """
    try:
        data = read_bytes(location)
    except UserError as err:
        return str(err).removeprefix(f"{location}: ")
    if not data:
        return "empty file"
    # Some writers pad JPEGs with zero bytes after the marker; that is harmless.
    if data[:2] == b"\xff\xd8" and not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return "truncated JPEG: no end-of-image marker at the end of the file"
    try:
        with strict_pillow():
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
    except Exception as err:
        return f"not a readable image ({type(err).__name__}: {err})"
    return None


def list_images(folder: str | os.PathLike, recursive: bool = False) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The images in ``folder`` (and its sub-folders, with ``recursive``), sorted, and the
    image-named entries that cannot be read: broken symbolic links."""
    images, broken = [], []
    for directory, subdirs, files in os.walk(folder, followlinks=False):
        subdirs.sort()
        if not recursive:
            subdirs.clear()
        for name in sorted(files):
            path = Path(directory) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if path.is_symlink() and not path.exists():
                broken.append((path, f"a broken symbolic link (to {os.readlink(path)})"))
            elif path.is_file():
                images.append(path)
    return sorted(images), broken


def decode_image_tf(data):
    """Encoded bytes (scalar tf.string) -> uint8 RGB ``[H, W, 3]``, equal to :func:`decode_rgb`.

    JPEG goes through ``decode_jpeg`` with the accurate integer DCT: the default fast DCT
    differs from Pillow by up to 20 grey levels, the accurate one matches it exactly.
    """
    import tensorflow as tf

    image = tf.cond(
        tf.io.is_jpeg(data),
        lambda: tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(data, channels=3, expand_animations=False),
    )
    image.set_shape([None, None, 3])
    return image
