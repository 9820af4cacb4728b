"""Photos as people have them, read the way a viewer shows them: uint8 RGB, upright.

:func:`read_photo` decodes with Pillow (the decoder of tfseg's data sources, so an 8-bit
RGB image gives exactly the pixels training saw), applies the EXIF orientation, and
converts every other kind of image one consistent way, saying what it did:

* 16-bit (grey or RGB PNG, TIFF): the high byte of each value, ``value >> 8``, which is
  what Pillow itself keeps of 16-bit RGB;
* grey, bilevel and palette images: expanded to RGB;
* RGBA, LA, PA: the colour channels, alpha dropped (no compositing);
* CMYK (JPEG from print workflows): Pillow's CMYK -> RGB conversion.

Errors are :class:`PhotoError` with a reason that does not repeat the path.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from tfseg.errors import UserError
from tfseg.images import open_image, unreadable

# EXIF orientations 5..8 swap width and height.
TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)
EXIF_ORIENTATION = 0x0112
SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I")


class PhotoError(Exception):
    """A photo that cannot be segmented; the message is the reason alone."""


@dataclass
class Photo:
    image: np.ndarray  # uint8 [H, W, 3] RGB, upright
    notes: list[str] = field(default_factory=list)  # conversions applied, e.g. "16-bit"


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a damaged EXIF block: shown upright by viewers too
        return 1


def photo_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` as a viewer shows the photo, from its header alone."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            return (width, height) if _orientation(image) in TRANSPOSING_ORIENTATIONS else (height, width)
    except Exception as err:
        raise PhotoError(_reason(err)) from None


def _stored_16_bit(data: bytes) -> bool:
    """Whether the file stores 16 bits a channel (which Pillow may reduce to 8 on loading)."""
    try:
        with Image.open(io.BytesIO(data)) as header:  # the decoder's raw mode, before loading
            return bool(header.tile) and "16" in str(header.tile[0][3])
    except Exception:
        return False


def _reason(err: Exception) -> str:
    if isinstance(err, PermissionError):
        return "cannot be read (permission denied)"
    return unreadable(err)


def read_photo(path: Path) -> Photo:
    """The photo at ``path`` as uint8 RGB ``[H, W, 3]``, upright, with what was converted."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PhotoError(_reason(err)) from None
    return decode_photo(data, str(path))


def decode_photo(data: bytes, name: str) -> Photo:
    """An encoded photo (the bytes of a file named ``name``) as :func:`read_photo` reads it."""
    try:
        image = open_image(data, name)
    except UserError as err:
        raise PhotoError(str(err).removeprefix(f"{name}: ")) from None
    notes = ["16-bit"] if _stored_16_bit(data) and image.mode not in SIXTEEN_BIT_GREY else []
    if _orientation(image) != 1:
        image = ImageOps.exif_transpose(image)
        notes.append("EXIF orientation")
    if image.mode in SIXTEEN_BIT_GREY:
        values = np.asarray(image).astype(np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise PhotoError(f"{image.mode} image with values outside 0..65535; not a photo")
        grey = (values >> 8).astype(np.uint8)
        return Photo(np.repeat(grey[..., np.newaxis], 3, axis=-1), notes + ["16-bit"])
    if image.mode == "F":
        raise PhotoError("32-bit floating-point image; not a photo")
    conversions = {"L": "grey", "1": "grey", "P": "palette", "RGBA": "alpha", "LA": "alpha", "PA": "alpha",
                   "CMYK": "CMYK", "YCbCr": None, "RGB": None}
    if image.mode not in conversions:
        raise PhotoError(f"{image.mode} image; not a kind of photo tfseg reads")
    if conversions[image.mode]:
        notes.append(conversions[image.mode])
    return Photo(np.asarray(image.convert("RGB")), notes)
