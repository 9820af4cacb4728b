"""tensorflow-datasets builders for KITTI Road and VOC segmentation, and a source reading them.

TFDS ships neither (its ``voc`` has boxes only, its ``kitti`` is object detection), so
these builders turn the raw files into sharded TFRecords once; ``data.use_tfds: true``
then reads the records instead of decoding thousands of files every epoch. They run in
*manual-dir* mode: nothing is downloaded, the raw data is read where
:mod:`tfseg.data.prepare` (or the user) put it:

- ``kitti_road``: ``manual_dir`` holds ``data_road.zip`` or ``data_road/`` (or is it).
  Splits ``trainval`` and ``test`` (all void labels); ``train``/``val`` are chosen when
  reading, by :mod:`tfseg.data.splits`, from the ids kept in the dataset's metadata, so the
  records never need rebuilding for another split seed or split file.
- ``voc_segmentation/2012``, ``/2007``: ``manual_dir`` holds ``VOCdevkit`` (or is a
  ``VOC<year>`` folder), or, unextracted, the ``VOC*<year>.tar`` archives (read as streams:
  once for the split lists and masks, then once per split for the JPEGs); the official
  split lists. ``/aug``: the extracted ``VOCdevkit`` and ``benchmark_RELEASE`` side by
  side; splits ``train`` (train_aug) and ``val``.

Features: ``image`` (the original PNG/JPEG bytes, uint8 ``[H, W, 3]``),
``segmentation_mask`` (PNG, uint8 ``[H, W, 1]``, tfseg class ids with 255 = void, so the
reader needs no colour or palette knowledge) and ``file_name``.
"""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from PIL import Image

from tfseg.config import DataConfig, VocConfig
from tfseg.data import kitti_road, voc
from tfseg.data.files import Example, FileSource
from tfseg.data.labels import VOID
from tfseg.errors import UserError
from tfseg.images import decode_indices, image_size, read_bytes


def _features() -> tfds.features.FeaturesDict:
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "segmentation_mask": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
        "file_name": tfds.features.Text(),
    })


def _generate(source: FileSource, examples: list[Example]):
    """Yields ``(key, features)``; the image keeps its original encoding (no re-compression)."""
    for example in examples:
        height, width = image_size(example.image_path)
        if example.label_path is None:
            label = np.full((height, width), VOID, np.uint8)
        else:
            label = source.read_label(example)
            if label.shape != (height, width):
                raise UserError(f"{example.label_path}: mask is {label.shape[0]}x{label.shape[1]} "
                                f"but its image is {height}x{width}")
        yield example.id, {
            "image": read_bytes(example.image_path),
            "segmentation_mask": label[..., np.newaxis],
            "file_name": os.path.basename(example.image_path.split("::")[-1]),
        }


class KittiRoad(tfds.core.GeneratorBasedBuilder):
    """KITTI Road (data_road): road / not-road segmentation, devkit label convention."""

    # TFDS 4.9 looks this up through `importlib_resources` for builders defined outside its
    # own package, a module the pinned environment lacks; naming the file directly avoids it.
    code_path = epath.Path(__file__)
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Place data_road.zip from https://www.cvlibs.net/datasets/kitti/eval_road.php (or its "
        "extracted data_road/ folder) in manual_dir; `tfseg data prepare --dataset kitti_road --data-dir DIR` downloads it.")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="KITTI Road: 0 = not road, 1 = road, 255 = void.",
            features=_features(),
            supervised_keys=("image", "segmentation_mask"),
            homepage="https://www.cvlibs.net/datasets/kitti/eval_road.php",
            citation="Fritsch, Kuehnl, Geiger: A New Performance Measure and Evaluation Benchmark "
                     "for Road Detection Algorithms. ITSC 2013.",
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        source = kitti_road.KittiRoadSource(DataConfig(source="kitti_road", data_dir=str(dl_manager.manual_dir)))
        trainval, test = source.examples("trainval"), source.scan("test")[0]
        self.info.metadata["trainval_ids"] = [e.id for e in trainval]
        generators = {"trainval": _generate(source, trainval)}
        if test:
            generators["test"] = _generate(source, test)
        return generators

    def _generate_examples(self, *args):  # the generators come from _split_generators
        raise NotImplementedError


class VocSegmentationConfig(tfds.core.BuilderConfig):
    pass


class VocSegmentation(tfds.core.GeneratorBasedBuilder):
    """PASCAL VOC semantic segmentation masks (the part TFDS' ``voc`` lacks)."""

    code_path = epath.Path(__file__)  # see KittiRoad.code_path
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = [
        VocSegmentationConfig(name="2012", description="VOC2012 train/val (1,464/1,449 images)."),
        VocSegmentationConfig(name="2007", description="VOC2007 segmentation (train, val, test if present)."),
        VocSegmentationConfig(name="aug", description="train_aug (VOC2012 + SBD, 10,582) and VOC2012 val."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Extract VOCtrainval_11-May-2012.tar (and for 'aug' SBD's benchmark.tgz) into manual_dir, "
        "so that it holds VOCdevkit/ (and benchmark_RELEASE/); `tfseg data prepare --dataset voc_aug --data-dir DIR` does this.")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="PASCAL VOC segmentation: class ids 0..20, 255 = object border / void.",
            features=_features(),
            supervised_keys=("image", "segmentation_mask"),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/",
            citation="Everingham et al.: The PASCAL Visual Object Classes (VOC) Challenge. IJCV 2010.",
        )

    def _split_generators(self, dl_manager):
        name, manual_dir = self.builder_config.name, Path(dl_manager.manual_dir)
        tars = sorted(p for p in manual_dir.glob("VOC*.tar") if name in p.name) if name != "aug" else []
        extracted = any((d / f"VOC{name}" / "JPEGImages").is_dir() or (d / "JPEGImages").is_dir()
                        for d in (manual_dir, manual_dir / "VOCdevkit"))
        if tars and not extracted:
            lists, masks = _scan_voc_tars(tars, name)
            return {split: _generate_from_voc_tars(tars, name, ids, masks) for split, ids in lists.items()}
        config = DataConfig(source=f"voc{name}", data_dir=str(manual_dir), voc=VocConfig())
        cls = {"2012": voc.Voc2012Source, "2007": voc.Voc2007Source, "aug": voc.VocAugSource}
        source = cls[name](config)
        return {split: _generate(source, source.examples(split)) for split in source.splits}

    def _generate_examples(self, *args):
        raise NotImplementedError


def _voc_member_patterns(year: str) -> dict[str, re.Pattern]:
    base = rf"(?:^|/)VOC{year}/"
    return {"list": re.compile(base + r"ImageSets/Segmentation/(\w+)\.txt$"),
            "mask": re.compile(base + r"SegmentationClass/([^/]+)\.png$"),
            "image": re.compile(base + r"JPEGImages/([^/]+)\.jpg$")}


def _scan_voc_tars(tars: list[Path], year: str) -> tuple[dict[str, list[str]], dict[str, bytes]]:
    """One streaming pass: the segmentation split lists and every mask's bytes (small)."""
    patterns = _voc_member_patterns(year)
    lists, masks = {}, {}
    for tar in tars:
        try:
            with tarfile.open(tar, "r|*") as archive:
                for info in archive:
                    if not info.isfile():
                        continue
                    for kind in ("list", "mask"):
                        match = patterns[kind].search(info.name)
                        if match:
                            data = archive.extractfile(info).read()
                            if kind == "list":
                                lists[match[1]] = [i.strip() for i in data.decode().splitlines() if i.strip()]
                            else:
                                masks[match[1]] = data
        except tarfile.TarError as err:
            raise UserError(f"{tar}: not a readable tar archive ({err})") from None
    if not lists:
        raise UserError(f"{', '.join(map(str, tars))}: no VOC{year}/ImageSets/Segmentation/*.txt inside")
    return lists, masks


def _generate_from_voc_tars(tars: list[Path], year: str, ids: list[str], masks: dict[str, bytes]):
    """Streams the archives once more, yielding the examples of ``ids`` as their JPEGs pass."""
    missing = [i for i in ids if i not in masks]
    if missing:
        raise UserError(f"{tars[0]}: no SegmentationClass/{missing[0]}.png for a listed image "
                        f"({len(missing)} in all)")
    wanted, pattern = set(ids), _voc_member_patterns(year)["image"]
    for tar in tars:
        with tarfile.open(tar, "r|*") as archive:
            for info in archive:
                match = pattern.search(info.name)
                if not (match and match[1] in wanted and info.isfile()):
                    continue
                image_id, data = match[1], archive.extractfile(info).read()
                name = f"{tar}::{info.name}"
                label = voc.decode_voc_label(decode_indices(masks[image_id], f"{name} (its mask)"))
                with Image.open(io.BytesIO(data)) as image:
                    width, height = image.size
                if label.shape != (height, width):
                    raise UserError(f"{name}: mask is {label.shape[0]}x{label.shape[1]} but the image "
                                    f"is {height}x{width}")
                wanted.discard(image_id)
                yield image_id, {"image": data, "segmentation_mask": label[..., np.newaxis],
                                 "file_name": f"{image_id}.jpg"}
    if wanted:
        raise UserError(f"{tars[0]}: no JPEGImages/{sorted(wanted)[0]}.jpg for a listed image "
                        f"({len(wanted)} in all)")


BUILDERS = {"kitti_road": (KittiRoad, None), "voc2012": (VocSegmentation, "2012"),
            "voc2007": (VocSegmentation, "2007"), "voc_aug": (VocSegmentation, "aug")}


def make_builder(source_name: str, tfds_data_dir: str = "") -> tfds.core.DatasetBuilder:
    """The builder behind a tfseg source name (kitti_road, voc2012, voc2007, voc_aug)."""
    if source_name not in BUILDERS:
        raise UserError(f"source {source_name!r} has no tensorflow-datasets builder: choose one of "
                        f"{', '.join(BUILDERS)}")
    cls, config = BUILDERS[source_name]
    kwargs = {"data_dir": tfds_data_dir or None}
    if config:
        kwargs["config"] = config
    return cls(**kwargs)


def prepare_tfds(source_name: str, manual_dir: str | os.PathLike, tfds_data_dir: str = "") -> Path:
    """Writes the TFRecords of ``source_name`` from the raw files in ``manual_dir``; returns
    the dataset's folder. Preparing an already prepared dataset does nothing."""
    if not Path(manual_dir).exists():
        raise UserError(f"{manual_dir}: not found; it should hold the raw dataset files")
    builder = make_builder(source_name, tfds_data_dir)
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
    return Path(os.fspath(builder.data_path))
