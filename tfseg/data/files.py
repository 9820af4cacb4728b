"""Reading image and mask files, plain or inside a zip archive, and the file-source base class.

Every file-based source lists its data as :class:`Example` s and decodes them with the pure
NumPy functions here, so that training (``tf.data``), ``check`` and ``stats`` all see the same
pixels. Where a TensorFlow op gives bit-identical results (PNG, and JPEG with
``dct_method="INTEGER_ACCURATE"``, which matches Pillow's libjpeg), ``tf.data`` uses it
instead, because it runs outside the Python GIL; tests hold the two paths to equality.

A *location* is a file path, or ``"<archive.zip>::<member>"`` for a file inside a zip
archive, which lets KITTI Road be read straight from ``data_road.zip``.
"""

from __future__ import annotations

import contextlib
import io
import os
import zipfile
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
from PIL import Image, ImageFile

from tfseg.data.labels import VOID
from tfseg.errors import UserError

ARCHIVE_SEPARATOR = "::"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Formats TensorFlow decodes itself (losslessly, or for JPEG exactly like Pillow); TIFF is not one.
TF_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class Example:
    """One image and its ground truth. ``label_path`` is None where there is none (test sets)."""

    image_path: str
    label_path: str | None
    id: str


class Problem(NamedTuple):
    """Something wrong with a file. ``fatal`` ones stop :meth:`FileSource.examples`;
    the others (say, a mask without an image) are only reported by ``check``."""

    file: str
    reason: str
    fatal: bool = True


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


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(entry.path for entry in os.scandir(folder)
                  if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES))


def void_like(image: np.ndarray) -> np.ndarray:
    """An all-void label map ``[H, W]`` uint8 for an image ``[H, W, 3]`` that has no labels."""
    return np.full(image.shape[:2], VOID, np.uint8)


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


class FileSource:
    """Base of the sources that read image and mask files.

    Subclasses set ``name``, ``class_names``, ``palette``, ``splits`` and implement
    :meth:`scan`, :meth:`read_raw_label`, :meth:`decode_label` and :meth:`label_problems`.
    Decoded labels follow the tfseg convention: uint8 class ids, 255 = void; raw values
    that are not allowed become void (``check`` reports them).
    """

    name = "files"
    class_names: tuple[str, ...] = ()
    palette: np.ndarray
    splits: tuple[str, ...] = ()
    input_groups: tuple[str, ...] = ("image",)
    has_depth = False
    root: str | os.PathLike = ""  # where the files are, for messages

    def __init__(self):
        self._scanned: dict[str, tuple[list[Example], list[Problem]]] = {}

    # -- listing -------------------------------------------------------------------------
    def scan(self, split: str) -> tuple[list[Example], list[Problem]]:
        """The split's complete examples, and the :class:`Problem` s met while listing them."""
        raise NotImplementedError

    def _scan_cached(self, split: str):
        if split not in self.splits:
            raise UserError(f"{self.name} has no split {split!r}: choose one of {', '.join(self.splits)}")
        if split not in self._scanned:
            self._scanned[split] = self.scan(split)
        return self._scanned[split]

    def examples(self, split: str) -> list[Example]:
        """The split's examples in a fixed order; a missing file is a :class:`UserError`."""
        examples, problems = self._scan_cached(split)
        fatal = [p for p in problems if p.fatal]
        if fatal:
            file, reason, _ = fatal[0]
            more = f" (and {len(fatal) - 1} more problem(s))" if len(fatal) > 1 else ""
            raise UserError(f"{file}: {reason}{more}; run `tfseg data check` for the full list")
        if not examples:
            raise UserError(f"{self.name}: split {split!r} has no examples in {self.root_description()}")
        return examples

    def complete_examples(self, split: str) -> list[Example]:
        """The split's examples whose files are all there, without raising for the others."""
        return self._scan_cached(split)[0]

    def structure_problems(self) -> list[Problem]:
        """Problems with the file layout of every split (missing masks, stray files...)."""
        seen, problems = set(), []
        for split in self.splits:
            for problem in self._scan_cached(split)[1]:
                if problem not in seen:
                    seen.add(problem)
                    problems.append(problem)
        return problems

    def root_description(self) -> str:
        return str(self.root)

    def num_examples(self, split: str) -> int:
        return len(self.examples(split))

    def ids(self, split: str) -> list[str]:
        return [example.id for example in self.examples(split)]

    def split_record(self) -> dict | None:
        """The seeded train/val split to freeze in a split file; None where the split is
        fixed (official lists). Sources with a seeded split override this."""
        return None

    # -- decoding (NumPy) ----------------------------------------------------------------
    def read_image(self, example: Example) -> np.ndarray:
        """uint8 RGB ``[H, W, 3]``."""
        return read_rgb(example.image_path)

    def read_raw_label(self, location: str) -> np.ndarray:
        """The mask as stored (colours, indices...), before the mapping to class ids."""
        raise NotImplementedError

    def decode_label(self, raw: np.ndarray) -> np.ndarray:
        """Raw mask -> class ids uint8 ``[H, W]``, 255 = void."""
        raise NotImplementedError

    def label_problems(self, raw: np.ndarray) -> list[str]:
        """What is not allowed in a raw mask (unknown colours, out-of-range indices)."""
        raise NotImplementedError

    def read_label(self, example: Example) -> np.ndarray:
        return self.decode_label(self.read_raw_label(example.label_path))

    def load(self, example: Example) -> tuple[np.ndarray, np.ndarray]:
        """``(image uint8 [H, W, 3], label uint8 [H, W])``; unlabelled examples get all void."""
        image = self.read_image(example)
        if example.label_path is None:
            return image, void_like(image)
        label = self.read_label(example)
        if label.shape != image.shape[:2]:
            raise UserError(f"{example.label_path}: mask is {label.shape[0]}x{label.shape[1]} but "
                            f"its image {example.image_path} is {image.shape[0]}x{image.shape[1]}")
        return image, label

    # -- tf.data ---------------------------------------------------------------------------
    def label_tf(self, label_path, image, read):
        """The label ``[H, W]`` uint8 for one example inside ``tf.data``.

        ``read(path)`` gives a file's bytes as a tf.string scalar. This default decodes with
        the NumPy decoders through ``tf.numpy_function``; sources whose decoding TensorFlow
        ops reproduce exactly override it."""
        import tensorflow as tf

        def decode(path, height, width):
            location = path.decode()
            raw = self.read_raw_label(location)
            # A value outside the label set is an error in the data, not void: training on
            # it would hide the problem (`tfseg data check` lists every such file).
            problems = self.label_problems(raw)
            if problems:
                raise UserError(f"{location}: {problems[0]}")
            label = self.decode_label(raw)
            if label.shape != (height, width):
                raise UserError(f"{location}: mask is {label.shape[0]}x{label.shape[1]} but its "
                                f"image is {height}x{width}")
            return label

        shape = tf.shape(image)
        label = tf.numpy_function(decode, [label_path, shape[0], shape[1]], tf.uint8, stateful=False)
        label.set_shape([None, None])
        return label

    def dataset(self, split: str):
        """Unbatched ``(image uint8 [H, W, 3], label uint8 [H, W])`` in the order of
        :meth:`examples`; examples without labels come with all-void labels."""
        import tensorflow as tf

        examples = self.examples(split)
        image_paths = [e.image_path for e in examples]
        label_paths = [e.label_path or "" for e in examples]
        archived = any(is_member(p) for p in image_paths + label_paths)
        tf_decodable = all(p.lower().endswith(TF_IMAGE_SUFFIXES) for p in image_paths)

        def read(path):
            if archived:
                data = tf.numpy_function(lambda p: read_bytes(p.decode()), [path], tf.string,
                                         stateful=False)
                data.set_shape([])
                return data
            return tf.io.read_file(path)

        def decode_image(path):
            if tf_decodable:
                return decode_image_tf(read(path))
            image = tf.numpy_function(lambda p: read_rgb(p.decode()), [path], tf.uint8, stateful=False)
            image.set_shape([None, None, 3])
            return image

        def to_example(image_path, label_path):
            image = decode_image(image_path)
            label = tf.cond(
                tf.equal(label_path, ""),
                lambda: tf.fill(tf.shape(image)[:2], tf.constant(VOID, tf.uint8)),
                lambda: self.label_tf(label_path, image, read),
            )
            return image, label

        ds = tf.data.Dataset.from_tensor_slices((image_paths, label_paths))
        return ds.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
