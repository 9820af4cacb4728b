"""KITTI Road (``data_road``): urban road segmentation, 289 training and 290 test images.

Layout, read from the extracted folder or straight from ``data_road.zip``::

    training/image_2/{um,umm,uu}_NNNNNN.png          images (sizes vary around 1242x375)
    training/gt_image_2/{um,umm,uu}_road_NNNNNN.png  road ground truth (``*_lane_*`` ignored)
    training/calib/{um,umm,uu}_NNNNNN.txt            calibration, for the bird's-eye view
    testing/image_2/{um,umm,uu}_NNNNNN.png           test images, no ground truth
    testing/calib/{um,umm,uu}_NNNNNN.txt

Calibration is optional: without ``calib/`` the data trains and scores in perspective;
with it, evaluation also scores in the benchmark's bird's-eye view
(:mod:`tfseg.kitti_benchmark`), and every image of a split must have its file.

Ground truth follows the devkit: a pixel is *valid* where its red channel is non-zero and
*road* where its blue channel is non-zero. So magenta (255, 0, 255) is road (1), red
(255, 0, 0) is not road (0), and black and pure blue (0, 0, 255) are void (255).

Splits: ``trainval`` (all labelled images), ``train`` and ``val`` (a seeded hold-out,
stratified over um/umm/uu, see :mod:`tfseg.data.splits`), ``test`` (unlabelled, so its
labels come out all void; present when ``testing/image_2`` is).

Validation hold-out: ``min(kitti.val_count, round(kitti.val_fraction * N))`` of the ``N``
labelled images (at least one, and at least one left for training), spread over the
categories in proportion to their sizes with at least one from each. The defaults (48,
0.17) give the customary 48 of 289 (16 um, 16 umm, 16 uu), and 2 of a 10-image sample.
"""

from __future__ import annotations

import functools
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from tfseg.config import DataConfig
from tfseg.data import splits as splits_lib
from tfseg.data.files import Example, FileSource, Problem
from tfseg.data.labels import VOID
from tfseg.errors import UserError
from tfseg.images import member_location, read_rgb
from tfseg.kitti_benchmark import Calibration, read_calibration

CLASS_NAMES = ("not_road", "road")
# The ground truth's own colours, so a colourised label map looks like a KITTI GT file.
PALETTE = np.array([[255, 0, 0], [255, 0, 255]], np.uint8)
CATEGORIES = ("um", "umm", "uu")
ARCHIVE_NAME = "data_road.zip"

# Every colour the road ground truth uses: magenta, red, black, and the pure blue that
# marks a few void pixels in some files. Anything else is reported by ``check``.
KNOWN_COLOURS = {(255, 0, 255): "road", (255, 0, 0): "not road", (0, 0, 0): "void",
                 (0, 0, 255): "void"}

_IMAGE_NAME = re.compile(r"^(um|umm|uu)_(\d{6})\.png$")
_ROAD_NAME = re.compile(r"^(um|umm|uu)_road_(\d{6})\.png$")
_LANE_NAME = re.compile(r"^(um|umm|uu)_lane_(\d{6})\.png$")


def decode_ground_truth(rgb: np.ndarray) -> np.ndarray:
    """KITTI GT colours ``[H, W, 3]`` uint8 -> class ids ``[H, W]`` uint8 (0, 1, 255)."""
    valid = rgb[..., 0] > 0
    road = rgb[..., 2] > 0
    return np.where(valid, road.astype(np.uint8), np.uint8(VOID)).astype(np.uint8)


def decode_ground_truth_tf(rgb):
    """The same as :func:`decode_ground_truth`, in TensorFlow ops (bit-identical)."""
    import tensorflow as tf

    valid = rgb[..., 0] > 0
    road = tf.cast(rgb[..., 2] > 0, tf.uint8)
    return tf.where(valid, road, tf.constant(VOID, tf.uint8))


def unknown_colours(rgb: np.ndarray) -> dict[tuple[int, int, int], int]:
    """Pixel counts of colours in a GT image that KITTI Road does not use."""
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    values, counts = np.unique(packed, return_counts=True)
    found = {(int(v >> 16), int((v >> 8) & 255), int(v & 255)): int(n) for v, n in zip(values, counts)}
    return {colour: n for colour, n in found.items() if colour not in KNOWN_COLOURS}


class _Tree:
    """Files below a folder, or below a prefix inside a zip archive, by relative path."""

    def __init__(self, base: str, archive: str | None = None):
        self.base, self.archive = base, archive
        self._names: list[str] | None = None

    def __str__(self) -> str:
        return f"{self.archive}::{self.base}" if self.archive else self.base

    def files(self, subdir: str) -> list[str]:
        """Names of the files directly inside ``subdir``, sorted."""
        if self.archive is None:
            folder = os.path.join(self.base, subdir)
            if not os.path.isdir(folder):
                return []
            return sorted(e.name for e in os.scandir(folder) if e.is_file())
        if self._names is None:
            with zipfile.ZipFile(self.archive) as zf:
                self._names = zf.namelist()
        prefix = f"{self.base}{subdir}/"
        return sorted(n[len(prefix):] for n in self._names
                      if n.startswith(prefix) and "/" not in n[len(prefix):] and n != prefix)

    def location(self, relative: str) -> str:
        if self.archive is None:
            return os.path.join(self.base, relative)
        return member_location(self.archive, f"{self.base}{relative}")


def find_tree(data_dir: str) -> _Tree:
    """Finds the KITTI Road root in ``data_dir``: a ``data_road`` folder (or its parent, or
    the folder holding ``training/``), or ``data_road.zip`` (or a folder holding it)."""
    if not data_dir:
        raise UserError("data.data_dir is empty: set it to the data_road folder or data_road.zip "
                        "(`tfseg data prepare --dataset kitti_road --data-dir DIR` downloads it)")
    path = Path(data_dir)
    if path.is_dir():
        for candidate in (path, path / "data_road"):
            if (candidate / "training" / "image_2").is_dir():
                return _Tree(str(candidate))
        if (path / ARCHIVE_NAME).is_file():
            path = path / ARCHIVE_NAME
    if path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError) as err:
            raise UserError(f"{path}: not a readable zip archive ({err})") from None
        marker = "training/image_2/"
        for name in names:
            if marker in name:
                return _Tree(name[: name.index(marker)], archive=str(path))
        raise UserError(f"{path}: no training/image_2/ inside; is this KITTI Road's data_road.zip?")
    if not path.exists():
        raise UserError(f"data.data_dir {path}: not found")
    raise UserError(f"data.data_dir {path}: no KITTI Road data: expected training/image_2/ in it, "
                    f"in data_road/, or a {ARCHIVE_NAME}")


def category(example_id: str) -> str:
    """``"umm_000012"`` -> ``"umm"``."""
    return example_id.split("_")[0]


class KittiRoadSource(FileSource):
    """KITTI Road from ``data.data_dir``; see the module docstring for splits and labels."""

    name = "kitti_road"
    class_names = CLASS_NAMES
    palette = PALETTE
    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config
        self.tree = find_tree(config.data_dir)
        self.root = str(self.tree)
        self._assignment: dict[str, list[str]] | None = None
        # A copy without testing/ (only the labelled part was extracted) simply has no test split.
        has_test = any(_IMAGE_NAME.match(n) for n in self.tree.files("testing/image_2"))
        self.splits = ("train", "val", "trainval") + (("test",) if has_test else ())
        self._calibrations: dict[str, Calibration] = {}

    @functools.cached_property
    def _training_calib_files(self) -> frozenset[str]:
        """The names in ``training/calib/``, listed once (not once per image)."""
        return frozenset(self.tree.files("training/calib"))

    @property
    def has_calibration(self) -> bool:
        """Whether the labelled images come with ``training/calib/`` (the BEV scores need it)."""
        return bool(self._training_calib_files)

    def calibration(self, example_id: str) -> Calibration:
        """The calibration of labelled image ``example_id`` (``training/calib/<id>.txt``),
        parsed once; a missing or malformed file is a :class:`UserError` naming it."""
        if example_id not in self._calibrations:
            name = f"{example_id}.txt"
            if name not in self._training_calib_files:
                raise UserError(f"KITTI calib {self.tree.location(f'training/calib/{name}')}: not found; every "
                                "image needs its calibration for the bird's-eye view (data_road.zip holds them)")
            self._calibrations[example_id] = read_calibration(self.tree.location(f"training/calib/{name}"))
        return self._calibrations[example_id]

    def structure_problems(self) -> list[Problem]:
        """The layout's problems, and with ``calib/`` folders each image's missing or
        malformed calibration file."""
        problems = super().structure_problems()
        for part, split in (("training", "trainval"), ("testing", "test")):
            calib_files = set(self.tree.files(f"{part}/calib"))
            if not calib_files or split not in self.splits:
                continue
            for example in self.complete_examples(split):
                location = self.tree.location(f"{part}/calib/{example.id}.txt")
                if f"{example.id}.txt" not in calib_files:
                    problems.append(Problem(location, "no calibration file for this image (the bird's-eye "
                                                      "view needs one per image)", False))
                    continue
                try:
                    read_calibration(location)
                except UserError as err:
                    problems.append(Problem(location, str(err).removeprefix(f"KITTI calib {location}: "), False))
        return problems

    def _labelled(self) -> tuple[list[Example], list[Problem]]:
        """Every complete training pair, sorted by id, and what is missing."""
        images = {}
        for name in self.tree.files("training/image_2"):
            match = _IMAGE_NAME.match(name)
            if match:
                images[f"{match[1]}_{match[2]}"] = self.tree.location(f"training/image_2/{name}")
        truths, problems = {}, []
        for name in self.tree.files("training/gt_image_2"):
            match = _ROAD_NAME.match(name)
            if match:
                truths[f"{match[1]}_{match[2]}"] = self.tree.location(f"training/gt_image_2/{name}")
            elif not _LANE_NAME.match(name):
                problems.append(Problem(self.tree.location(f"training/gt_image_2/{name}"),
                                        "not a KITTI Road ground-truth file name; ignored", False))
        for i in sorted(set(images) - set(truths)):
            gt = self.tree.location(f"training/gt_image_2/{category(i)}_road_{i.split('_')[1]}.png")
            problems.append(Problem(images[i], f"no ground truth {gt}"))
        for i in sorted(set(truths) - set(images)):
            problems.append(Problem(truths[i], f"no image training/image_2/{i}.png; ignored", False))
        examples = [Example(images[i], truths[i], i) for i in sorted(set(images) & set(truths))]
        return examples, problems

    def split_assignment(self) -> dict[str, list[str]]:
        """``{"train": ids, "val": ids}``, from ``data.split_file`` if it exists, else seeded."""
        if self._assignment is None:
            examples, _ = self._labelled()
            ids = [e.id for e in examples]
            if self.config.split_file:
                self._assignment = splits_lib.read_split(self.config.split_file, ids, self.name)
            else:
                k = self.config.kitti
                size = splits_lib.holdout_size(len(ids), k.val_count, k.val_fraction)
                self._assignment = splits_lib.stratified_holdout(ids, size, k.split_seed, category)
        return self._assignment

    def expects_examples(self, split: str) -> bool:
        """The validation split holds nothing when none is held out (``kitti.val_count: 0``)."""
        return split != "val" or bool(self.split_assignment()["val"])

    def split_record(self) -> dict:
        """What :func:`tfseg.data.splits.write_split` stores for this source."""
        k = self.config.kitti
        return {"source": self.name, "data_dir": self.root, "seed": k.split_seed,
                "val_count": k.val_count, "val_fraction": k.val_fraction,
                "stratified_by": "category (um/umm/uu)", **self.split_assignment()}

    def scan(self, split: str):
        if split == "test":
            examples = []
            for name in self.tree.files("testing/image_2"):
                match = _IMAGE_NAME.match(name)
                if match:
                    examples.append(Example(self.tree.location(f"testing/image_2/{name}"), None,
                                            f"{match[1]}_{match[2]}"))
            return examples, []
        examples, problems = self._labelled()
        if split != "trainval":
            wanted = set(self.split_assignment()[split])
            examples = [e for e in examples if e.id in wanted]
        return examples, problems

    def read_raw_label(self, location: str) -> np.ndarray:
        """The GT colours, uint8 RGB ``[H, W, 3]``."""
        return read_rgb(location)

    def decode_label(self, raw: np.ndarray) -> np.ndarray:
        return decode_ground_truth(raw)

    def label_problems(self, raw: np.ndarray) -> list[str]:
        unknown = unknown_colours(raw)
        if not unknown:
            return []
        worst = sorted(unknown.items(), key=lambda item: -item[1])[:3]
        listed = ", ".join(f"{colour} x{count}" for colour, count in worst)
        return [f"{sum(unknown.values())} pixel(s) of unknown colour (not magenta, red, black or "
                f"pure blue): {listed}{' ...' if len(unknown) > 3 else ''}; training and evaluation map "
                "them by the devkit's rule (valid where red > 0, road where blue > 0)"]

    def label_tf(self, label_path, image, read):
        import tensorflow as tf

        # PNG decoding is lossless, so TF's decoder gives exactly the NumPy path's colours.
        rgb = tf.io.decode_png(read(label_path), channels=3)
        label = decode_ground_truth_tf(rgb)
        same_size = tf.reduce_all(tf.equal(tf.shape(label), tf.shape(image)[:2]))
        sizes = [tf.strings.as_string(n) for n in (*tf.unstack(tf.shape(label)), *tf.unstack(tf.shape(image)[:2]))]
        message = tf.strings.join([label_path, ": mask is ", sizes[0], "x", sizes[1], " but its image is ",
                                   sizes[2], "x", sizes[3]])
        check = tf.debugging.Assert(same_size, [message])
        with tf.control_dependencies([check]):
            return tf.identity(label)
