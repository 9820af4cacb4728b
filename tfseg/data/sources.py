"""Data sources: each yields ``(image uint8 [H, W, 3] RGB, label uint8 [H, W])`` examples.

A source also knows its class names and display palette; everything downstream (the
pipeline, training, export, predict) takes those from here rather than from constants.

File-based sources (kitti_road, voc2012, voc2007, voc_aug, folder; see
:class:`tfseg.data.files.FileSource`) also list their ``examples(split)`` and decode them
with NumPy functions shared by ``tf.data``, :mod:`tfseg.data.check` and
:mod:`tfseg.data.stats`. With ``data.use_tfds: true`` kitti_road and the VOC sources read
prepared tensorflow-datasets records instead (:mod:`tfseg.data.tfds_source`).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import tensorflow as tf

from tfseg.config import GENERATED_SOURCE_NAMES, SOURCE_NAMES, DataConfig
from tfseg.data import fgbg, synthetic
from tfseg.data.folder import FolderSource
from tfseg.data.kitti_road import KittiRoadSource
from tfseg.data.voc import Voc2007Source, Voc2012Source, VocAugSource
from tfseg.errors import UserError
from tfseg.heads import DEPTH


class Source(Protocol):
    """What every data source offers; nothing downstream asks a source for more."""

    name: str
    class_names: tuple[str, ...]
    palette: np.ndarray  # [num_classes, 3] uint8 RGB
    splits: tuple[str, ...]  # e.g. ("train", "val", "trainval", "test")
    # The RGB images stacked along the channels of every input, in order: ("image",) for
    # photos, ("background", "composite") for a pair (6 channels).
    input_groups: tuple[str, ...]
    # The maps each example carries for heads beyond the classes, by head name
    # (tfseg.heads): () or ("depth",) (float32 [H, W] metres). 0 marks an unknown value.
    targets: tuple[str, ...]

    def num_examples(self, split: str) -> int: ...

    def ids(self, split: str) -> list[str]:
        """The split's image ids, in the order of :meth:`dataset`."""

    def dataset(self, split: str) -> tf.data.Dataset:
        """Unbatched ``(image uint8 [H, W, 3 len(input_groups)], label uint8 [H, W])`` in a
        fixed order, at the images' own size; images without ground truth come with
        all-void labels. With :attr:`targets`, each example is ``(image, label, {name: map})``
        (:func:`example_parts`)."""

    def split_record(self) -> dict | None:
        """The seeded train/val split, for a split file (:mod:`tfseg.data.splits`); None
        where the split is fixed (official lists, generated data)."""


def example_parts(example: tuple) -> tuple:
    """``(image, label, targets)`` of an example or batch, ``targets`` the dict of the maps
    for heads beyond the classes (empty for a source without :attr:`Source.targets`)."""
    image, label, *rest = example
    return image, label, (rest[0] if rest else {})


def with_targets(image, label, targets: dict) -> tuple:
    """The example (or batch) of :func:`example_parts`' parts: ``(image, label)``, or
    ``(image, label, targets)`` when there are targets."""
    return (image, label, targets) if targets else (image, label)


class GeneratedSource:
    """Examples generated on the fly from ``(seed, split, index)``: nothing to download.

    Subclasses set ``name``, ``class_names``, ``palette`` and ``self.config`` (with
    ``height``, ``width``, ``num_train``, ``num_val``, ``num_test`` and ``seed``), and
    generate ``example(split, index)``.
    """

    splits = ("train", "val", "test")
    input_groups: tuple[str, ...] = ("image",)
    targets: tuple[str, ...] = ()

    def example(self, split: str, index: int) -> tuple:
        """``(image uint8 [H, W, 3 k], label uint8 [H, W], *maps)`` of example ``index`` of
        ``split``: one float32 ``[H, W]`` map per name in :attr:`targets`, in its order."""
        raise NotImplementedError

    def num_examples(self, split: str) -> int:
        sizes = {"train": self.config.num_train, "val": self.config.num_val, "test": self.config.num_test}
        if split not in sizes:
            raise UserError(f"{self.name} data has no split {split!r}: choose one of {', '.join(sizes)}")
        return sizes[split]

    def ids(self, split: str) -> list[str]:
        return [f"{split}_{index:06d}" for index in range(self.num_examples(split))]

    def split_record(self) -> None:
        return None  # every split is generated from its own seed

    def dataset(self, split: str) -> tf.data.Dataset:
        c = self.config

        def generate(index):
            return self.example(split, int(index))

        def to_example(index):
            dtypes = [tf.uint8, tf.uint8] + [tf.float32] * len(self.targets)
            image, label, *maps = tf.numpy_function(generate, [index], dtypes, stateful=False)
            image.set_shape((c.height, c.width, 3 * len(self.input_groups)))
            for map_ in (label, *maps):
                map_.set_shape((c.height, c.width))
            return with_targets(image, label, dict(zip(self.targets, maps, strict=True)))

        indices = tf.data.Dataset.range(self.num_examples(split))
        return indices.map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


class SyntheticSource(GeneratedSource):
    """Shapes on textures (:mod:`tfseg.data.synthetic`)."""

    name = "synthetic"
    class_names = synthetic.CLASS_NAMES

    def __init__(self, config: DataConfig):
        self.config = config.synthetic
        self.palette = synthetic.palette()

    def example(self, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        return synthetic.generate_example(c.seed, split, index, c.height, c.width)


class FgbgSource(GeneratedSource):
    """An object pasted onto a background (:mod:`tfseg.data.fgbg`), its mask and, with
    ``data.fgbg.depth``, its depth map. The input is the composite (``data.fgbg.inputs:
    composite``) or the background and the composite stacked (``pair``: 6 channels)."""

    name = "fgbg"
    class_names = fgbg.CLASS_NAMES
    palette = fgbg.PALETTE

    def __init__(self, config: DataConfig):
        self.config = config.fgbg
        self.input_groups = ("background", "composite") if self.config.inputs == "pair" else ("image",)
        self.targets = (DEPTH,) if self.config.depth else ()

    def example(self, split: str, index: int) -> tuple:
        c = self.config
        scene = fgbg.generate_scene(c.seed, split, index, c.height, c.width, c.foreground_size,
                                    c.backgrounds, c.foregrounds)
        image = np.concatenate([scene.background, scene.composite], axis=-1) if c.inputs == "pair" else scene.composite
        return (image, scene.mask, scene.depth) if c.depth else (image, scene.mask)


SOURCES = {
    "synthetic": SyntheticSource,
    "fgbg": FgbgSource,
    "kitti_road": KittiRoadSource,
    "voc2012": Voc2012Source,
    "voc2007": Voc2007Source,
    "voc_aug": VocAugSource,
    "folder": FolderSource,
}
assert tuple(SOURCES) == SOURCE_NAMES  # the config validates names without importing us
assert GENERATED_SOURCE_NAMES == tuple(name for name, source in SOURCES.items() if issubclass(source, GeneratedSource))
# Sources that tensorflow-datasets builders can serve (data.use_tfds: true).
TFDS_SOURCES = ("kitti_road", "voc2012", "voc2007", "voc_aug")


def make_source(config: DataConfig) -> Source:
    if config.source not in SOURCES:
        raise UserError(f"unknown data source {config.source!r}: choose one of {', '.join(SOURCES)}")
    if config.use_tfds:
        if config.source not in TFDS_SOURCES:
            raise UserError(f"data.use_tfds: source {config.source!r} has no tensorflow-datasets "
                            f"builder; it works with {', '.join(TFDS_SOURCES)}")
        from tfseg.data.tfds_source import TfdsSource  # imports tensorflow_datasets: only when asked

        return TfdsSource(config)
    return SOURCES[config.source](config)


def class_palette(config: DataConfig, source: Source) -> np.ndarray:
    """The colours of the classes, ``[K, 3]`` uint8: ``data.palette`` where set, else the source's."""
    if not config.palette:
        return np.asarray(source.palette, np.uint8)
    if len(config.palette) != len(source.class_names):
        raise UserError(f"data.palette: {len(config.palette)} colour(s) for the {len(source.class_names)} "
                        f"classes of {config.source} ({', '.join(source.class_names)})")
    return np.asarray(config.palette, np.uint8)
