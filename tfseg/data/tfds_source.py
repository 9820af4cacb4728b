"""A source that reads the TFRecords written by :mod:`tfseg.data.tfds_builders`.

Selected with ``data.use_tfds: true`` for kitti_road, voc2012, voc2007 and voc_aug. It yields
the same pixels as the file sources: images are decoded with the same exact decoder
(:func:`tfseg.data.files.decode_image_tf`, not TFDS' default one, whose fast JPEG DCT
differs), and masks were stored as tfseg class ids.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from tfseg.config import DataConfig
from tfseg.data import kitti_road, voc
from tfseg.data import splits as splits_lib
from tfseg.data.tfds_builders import make_builder
from tfseg.errors import UserError
from tfseg.images import decode_image_tf


class TfdsSource:
    """``(image uint8 [H, W, 3], label uint8 [H, W])`` from prepared TFDS records."""

    input_groups = ("image",)
    targets: tuple[str, ...] = ()

    def __init__(self, config: DataConfig):
        self.config = config
        self.name = config.source
        self.builder = make_builder(config.source, config.tfds_data_dir)
        if not self.builder.is_prepared():
            raise UserError(
                f"{self.name}: the tensorflow-datasets records are not prepared in "
                f"{self.builder.data_dir}; run tfseg.data.tfds_builders.prepare_tfds({self.name!r}, "
                "<folder with the raw files>) first, or set data.use_tfds: false")
        if config.source == "kitti_road":
            self.class_names, self.palette = kitti_road.CLASS_NAMES, kitti_road.PALETTE
            self.splits = ("train", "val", "trainval") + (("test",) if "test" in self.builder.info.splits else ())
        else:
            self.class_names, self.palette = voc.CLASS_NAMES, voc.voc_palette(voc.NUM_CLASSES)
            self.splits = tuple(self.builder.info.splits)
        self._assignment = None

    # KITTI's train/val are chosen at read time from the ids the builder recorded.
    def split_assignment(self) -> dict[str, list[str]]:
        if self._assignment is None:
            ids = list(self.builder.info.metadata["trainval_ids"])
            c = self.config
            if c.split_file:
                self._assignment = splits_lib.read_split(c.split_file, ids, self.name)
            else:
                size = splits_lib.holdout_size(len(ids), c.kitti.val_count, c.kitti.val_fraction)
                self._assignment = splits_lib.stratified_holdout(ids, size, c.kitti.split_seed,
                                                                 kitti_road.category)
        return self._assignment

    def split_record(self) -> dict | None:
        if self.name != "kitti_road":
            return None  # VOC's official split lists
        k = self.config.kitti
        return {"source": self.name, "data_dir": str(self.builder.data_dir), "seed": k.split_seed,
                "val_count": k.val_count, "val_fraction": k.val_fraction,
                "stratified_by": "category (um/umm/uu)", **self.split_assignment()}

    def _stored_split(self, split: str) -> str:
        """The split as written by the builder: KITTI's train and val live in ``trainval``."""
        if split not in self.splits:
            raise UserError(f"{self.name} (tfds) has no split {split!r}: choose one of {', '.join(self.splits)}")
        return "trainval" if self.name == "kitti_road" and split in ("train", "val") else split

    def ids(self, split: str) -> list[str]:
        """Image ids (file names without ``.png``/``.jpg``) in the order of :meth:`dataset`."""
        names = self._records(split).map(lambda ex: ex["file_name"]).as_numpy_iterator()
        return [name.decode().rsplit(".", 1)[0] for name in names]

    def num_examples(self, split: str) -> int:
        stored = self._stored_split(split)
        if stored != split:
            return len(self.split_assignment()[split])
        return self.builder.info.splits[stored].num_examples

    def dataset(self, split: str) -> tf.data.Dataset:
        """Unbatched ``(image uint8 [H, W, 3], label uint8 [H, W])`` in the records' fixed order."""

        def to_example(ex):
            return decode_image_tf(ex["image"]), ex["segmentation_mask"][..., 0]

        return self._records(split).map(to_example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _records(self, split: str) -> tf.data.Dataset:
        """The split's raw records (image still encoded), in their fixed order."""
        stored = self._stored_split(split)
        ds = self.builder.as_dataset(
            split=stored, shuffle_files=False,
            decoders={"image": tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(interleave_cycle_length=1))
        if stored != split:
            wanted = tf.constant(np.array([f"{i}.png" for i in self.split_assignment()[split]], object))
            table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(wanted, tf.ones_like(wanted, tf.int32)), 0)
            ds = ds.filter(lambda ex: table.lookup(ex["file_name"]) > 0)
        return ds
