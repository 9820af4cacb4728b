"""PASCAL VOC segmentation (2012, 2007) and the SBD-augmented ``train_aug`` set.

VOC layout (``VOCdevkit/VOC2012``; ``data_dir`` may name that folder, ``VOCdevkit`` or the
folder holding ``VOCdevkit``)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png           palette PNG: index = class id 0..20, 255 = border
    ImageSets/Segmentation/{train,val,trainval}.txt   (VOC2007's test tar adds test.txt)

Masks are decoded as palette *indices* with Pillow, never as colours.

SBD (``benchmark_RELEASE/dataset``, Hariharan et al. 2011) adds ``cls/<id>.mat`` files, each a
MATLAB struct ``GTcls`` whose ``Segmentation`` field is the class-id map (no border
labels), and ``train.txt``/``val.txt``. The ``voc_aug`` source's ``train`` split is the
usual ``train_aug``: SBD train + SBD val + VOC2012 train, minus VOC2012 val (10,582 images
with the full data), taking VOC2012's mask where both have one; its ``val`` split is
VOC2012 val (1,449 images).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tfseg.config import DataConfig
from tfseg.data.files import Example, FileSource, Problem
from tfseg.data.labels import VOID, voc_palette
from tfseg.errors import UserError
from tfseg.images import read_bytes, read_indices

CLASS_NAMES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
NUM_CLASSES = len(CLASS_NAMES)


def find_voc_root(data_dir: str, year: str) -> Path:
    """The ``VOC<year>`` folder (the one holding ``JPEGImages``) in or at ``data_dir``."""
    if not data_dir:
        raise UserError(f"data.data_dir is empty: set it to VOCdevkit/VOC{year} or the folder that "
                        f"holds VOCdevkit (`tfseg data prepare --dataset voc{year} --data-dir DIR` downloads it)")
    path = Path(data_dir)
    if not path.is_dir():
        raise UserError(f"data.data_dir {path}: not a folder")
    for candidate in (path, path / f"VOC{year}", path / "VOCdevkit" / f"VOC{year}"):
        if (candidate / "JPEGImages").is_dir() and (candidate / "ImageSets" / "Segmentation").is_dir():
            return candidate
    raise UserError(f"data.data_dir {path}: no VOC{year} segmentation data: expected JPEGImages/ and "
                    f"ImageSets/Segmentation/ in it, in VOC{year}/ or in VOCdevkit/VOC{year}/")


def find_sbd_root(data_dir: str, sbd_dir: str) -> Path:
    """SBD's ``benchmark_RELEASE/dataset`` folder (the one holding ``cls/``)."""
    if sbd_dir:
        candidates = [Path(sbd_dir), Path(sbd_dir) / "dataset"]
    else:
        base = Path(data_dir)
        candidates = [base / "benchmark_RELEASE" / "dataset", base.parent / "benchmark_RELEASE" / "dataset",
                      base.parent.parent / "benchmark_RELEASE" / "dataset"]
    for candidate in candidates:
        if (candidate / "cls").is_dir():
            return candidate
    where = sbd_dir or f"{data_dir}/benchmark_RELEASE"
    raise UserError(f"no SBD data at {where}: expected benchmark_RELEASE/dataset/cls/ (set data.voc.sbd_dir; "
                    "`tfseg data prepare --dataset voc_aug --data-dir DIR` downloads it)")


def read_id_list(path: Path) -> list[str]:
    """One image id a line; blank lines skipped."""
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err})") from None


def decode_sbd_mat(data: bytes, name: str) -> np.ndarray:
    """An SBD ``cls/*.mat`` file's bytes -> ``GTcls.Segmentation``, uint8 ``[H, W]``."""
    import scipy.io

    try:
        mat = scipy.io.loadmat(io.BytesIO(data), squeeze_me=True, struct_as_record=False)
        segmentation = np.asarray(mat["GTcls"].Segmentation)
    except KeyError:
        raise UserError(f"{name}: no GTcls struct; is this an SBD cls/*.mat file?") from None
    except AttributeError:
        raise UserError(f"{name}: GTcls has no Segmentation field") from None
    except Exception as err:  # scipy raises ValueError, TypeError, MatReadError...
        raise UserError(f"{name}: not a readable MATLAB file ({err})") from None
    if segmentation.ndim != 2 or segmentation.min() < 0 or segmentation.max() > 255:
        raise UserError(f"{name}: GTcls.Segmentation is not a 2-D map of class ids")
    return segmentation.astype(np.uint8)


def read_voc_label(location: str) -> np.ndarray:
    """A VOC palette PNG or an SBD ``.mat`` -> raw class indices uint8 ``[H, W]``."""
    if location.lower().endswith(".mat"):
        return decode_sbd_mat(read_bytes(location), location)
    return read_indices(location)


def decode_voc_label(raw: np.ndarray) -> np.ndarray:
    """Raw indices -> class ids uint8 ``[H, W]``: indices VOC does not define become void,
    so a stray value cannot reach the loss (``check`` reports it)."""
    return np.where((raw < NUM_CLASSES) | (raw == VOID), raw, np.uint8(VOID)).astype(np.uint8)


def voc_label_problems(raw: np.ndarray) -> list[str]:
    bad = np.unique(raw[(raw >= NUM_CLASSES) & (raw != VOID)])
    if bad.size == 0:
        return []
    return [f"{int(np.isin(raw, bad).sum())} pixel(s) with class index outside 0..20 and 255: "
            f"{', '.join(str(int(v)) for v in bad[:5])}{' ...' if bad.size > 5 else ''}"]


class _VocBase(FileSource):
    class_names = CLASS_NAMES
    palette = voc_palette(NUM_CLASSES)

    def read_raw_label(self, location: str) -> np.ndarray:
        return read_voc_label(location)

    def decode_label(self, raw: np.ndarray) -> np.ndarray:
        return decode_voc_label(raw)

    def label_problems(self, raw: np.ndarray) -> list[str]:
        return voc_label_problems(raw)

    def _pair(self, root: Path, image_id: str) -> tuple[Example | None, list[Problem]]:
        image = root / "JPEGImages" / f"{image_id}.jpg"
        label = root / "SegmentationClass" / f"{image_id}.png"
        problems = [Problem(str(p), "file not found") for p in (image, label) if not p.is_file()]
        if problems:
            return None, problems
        return Example(str(image), str(label), image_id), []


class VocSource(_VocBase):
    """VOC<year> segmentation with its official ImageSets/Segmentation split lists."""

    year = "2012"

    def __init__(self, config: DataConfig):
        super().__init__()
        self.name = f"voc{self.year}"
        self.root = find_voc_root(config.data_dir, self.year)
        lists = self.root / "ImageSets" / "Segmentation"
        self.splits = tuple(sorted(p.stem for p in lists.glob("*.txt")))
        if not self.splits:
            raise UserError(f"{lists}: no split lists (train.txt, val.txt, ...)")

    def scan(self, split: str):
        examples, problems = [], []
        for image_id in read_id_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt"):
            example, missing = self._pair(self.root, image_id)
            problems += missing
            if example:
                examples.append(example)
        return examples, problems


class Voc2012Source(VocSource):
    year = "2012"


class Voc2007Source(VocSource):
    year = "2007"


class VocAugSource(_VocBase):
    """VOC2012 + SBD: ``train`` is train_aug (10,582 images), ``val`` is VOC2012 val."""

    name = "voc_aug"
    splits = ("train", "val")

    def __init__(self, config: DataConfig):
        super().__init__()
        self.root = find_voc_root(config.data_dir, "2012")
        self.sbd_root = find_sbd_root(config.data_dir, config.voc.sbd_dir)

    def root_description(self) -> str:
        return f"{self.root} and {self.sbd_root}"

    def train_aug_ids(self) -> list[str]:
        voc_lists = self.root / "ImageSets" / "Segmentation"
        ids = set(read_id_list(voc_lists / "train.txt"))
        sbd_lists = [self.sbd_root / n for n in ("train.txt", "val.txt") if (self.sbd_root / n).is_file()]
        for path in sbd_lists:
            ids.update(read_id_list(path))
        if not sbd_lists:  # without SBD's own lists, every .mat file counts
            ids.update(p.stem for p in (self.sbd_root / "cls").glob("*.mat"))
        return sorted(ids - set(read_id_list(voc_lists / "val.txt")))

    def scan(self, split: str):
        if split == "val":
            ids = read_id_list(self.root / "ImageSets" / "Segmentation" / "val.txt")
            pairs = [self._pair(self.root, i) for i in ids]
            return [e for e, _ in pairs if e], [p for _, ps in pairs for p in ps]
        examples, problems = [], []
        for image_id in self.train_aug_ids():
            # VOC2012's masks carry the 255 borders SBD lacks: prefer them where both exist.
            label = self.root / "SegmentationClass" / f"{image_id}.png"
            if not label.is_file():
                label = self.sbd_root / "cls" / f"{image_id}.mat"
            image = self.root / "JPEGImages" / f"{image_id}.jpg"
            if not image.is_file():
                image = self.sbd_root / "img" / f"{image_id}.jpg"
            missing = [Problem(str(p), "file not found") for p in (image, label) if not p.is_file()]
            problems += missing
            if not missing:
                examples.append(Example(str(image), str(label), image_id))
        return examples, problems
