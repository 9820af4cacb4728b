"""The file-source base class: datasets of image and mask files, plain or in a zip archive.

Every file-based source lists its data as :class:`Example` s and decodes them with the pure
NumPy functions of :mod:`tfseg.images`, so that training (``tf.data``), ``check`` and
``stats`` all see the same pixels. Where a TensorFlow op gives bit-identical results (PNG,
and JPEG with ``dct_method="INTEGER_ACCURATE"``, which matches Pillow's libjpeg),
``tf.data`` uses it instead, because it runs outside the Python GIL; tests hold the two
paths to equality.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tfseg.data.labels import VOID
from tfseg.errors import UserError
from tfseg.images import TF_IMAGE_SUFFIXES, decode_image_tf, is_member, read_bytes, read_rgb


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


def void_like(image: np.ndarray) -> np.ndarray:
    """An all-void label map ``[H, W]`` uint8 for an image ``[H, W, 3]`` that has no labels."""
    return np.full(image.shape[:2], VOID, np.uint8)


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
    targets: tuple[str, ...] = ()
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
        if not examples and self.expects_examples(split):
            raise UserError(f"{self.name}: split {split!r} has no examples in {self.root_description()}")
        return examples

    def expects_examples(self, split: str) -> bool:
        """Whether an empty ``split`` means the data is not where it should be (True), rather
        than a split that was asked to hold nothing."""
        return True

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
