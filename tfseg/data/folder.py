"""Your own data: a folder of images and masks that share file stems.

Layout (folder names configurable in ``data.folder``)::

    <data_dir>/images/<stem>.{png,jpg,jpeg,bmp,tif}
    <data_dir>/masks/<stem>.png                       (or .bmp/.tif: masks must be lossless)
    <data_dir>/classes.yaml                           class names and display colours
    <data_dir>/splits/{train,val,...}.txt             optional, one stem a line

``classes.yaml`` is a list with one entry per class id, in order; ``color`` is optional::

    - {name: background, color: [0, 0, 0]}
    - {name: crack, color: [255, 0, 0]}

Mask formats (``data.folder.mask_format``):

- ``index``: grey (L) or palette (P) PNGs whose stored values are class ids, 255 = void;
- ``palette``: palette PNGs only, decoded to their indices (never their colours);
- ``binary``: 0 = background (0), 255 = foreground (1); other grey levels, such as
  anti-aliased edges, become void; without ``classes.yaml`` the classes are
  ``background`` and ``foreground``;
- ``color``: RGB masks painted in the ``classes.yaml`` colours; other colours are void.

Values a format does not allow become void and are reported by ``check``.

Splits: the ``splits/*.txt`` lists when there are any (plus ``all``); otherwise ``train``
and ``val`` (a seeded hold-out of ``data.folder.val_fraction``, see
:mod:`tfseg.data.splits`) and ``all``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import yaml

from tfseg.config import DataConfig
from tfseg.data import splits as splits_lib
from tfseg.data.files import Example, FileSource, Problem
from tfseg.data.labels import VOID, voc_palette
from tfseg.errors import UserError
from tfseg.images import IMAGE_SUFFIXES, open_image, read_bytes, read_indices

MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif")
BINARY_CLASSES = ("background", "foreground")


def read_classes(path: Path) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and ``[K, 3]`` uint8 colours from a ``classes.yaml`` file.

    Accepts a list of ``{name, color}`` mappings (or of plain names), optionally under a
    top-level ``classes:`` key. Missing colours come from the VOC colour map.
    """
    try:
        spec = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err})") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if isinstance(spec, dict) and "classes" in spec:
        spec = spec["classes"]
    if not isinstance(spec, list) or not spec:
        raise UserError(f"{path}: expected a list of classes, e.g. - {{name: background, color: [0, 0, 0]}}")
    if len(spec) > VOID:
        raise UserError(f"{path}: {len(spec)} classes; at most {VOID} fit (id {VOID} is void)")
    names, colours = [], voc_palette(len(spec))
    for index, entry in enumerate(spec):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise UserError(f"{path}: class {index} needs a name, got {entry!r}")
        unknown = set(entry) - {"name", "color"}
        if unknown:
            raise UserError(f"{path}: class {entry['name']!r} has unknown key(s) {', '.join(sorted(unknown))}")
        if "color" in entry:
            colour = entry["color"]
            if (not isinstance(colour, (list, tuple)) or len(colour) != 3
                    or not all(isinstance(c, int) and 0 <= c <= 255 for c in colour)):
                raise UserError(f"{path}: class {entry['name']!r}: color must be [r, g, b] in 0..255, "
                                f"got {colour!r}")
            colours[index] = colour
        names.append(entry["name"])
    if len(set(names)) != len(names):
        raise UserError(f"{path}: class names repeat")
    return tuple(names), colours


def _by_stem(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, str], list[Problem]]:
    """``{stem: path}`` of the files in ``folder`` with one of ``suffixes``."""
    found, problems = {}, []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        stem, suffix = os.path.splitext(entry.name)
        if not entry.is_file() or suffix.lower() not in suffixes:
            continue
        if stem in found:
            problems.append(Problem(entry.path, f"another file has the same stem: {found[stem]}"))
            continue
        found[stem] = entry.path
    return found, problems


class FolderSource(FileSource):
    """Images and masks from ``data.data_dir``; see the module docstring."""

    name = "folder"

    def __init__(self, config: DataConfig):
        super().__init__()
        self.config = config
        f = config.folder
        if not config.data_dir:
            raise UserError("data.data_dir is empty: set it to a folder with images/ and masks/")
        self.root = Path(config.data_dir)
        self.images_dir, self.masks_dir = self.root / f.images_subdir, self.root / f.masks_subdir
        for folder in (self.images_dir, self.masks_dir):
            if not folder.is_dir():
                raise UserError(f"{folder}: not found; a folder dataset needs {f.images_subdir}/ and "
                                f"{f.masks_subdir}/ (see data.folder.images_subdir, masks_subdir)")
        self.mask_format = f.mask_format
        classes_path = Path(f.classes_file)
        if not classes_path.is_absolute():
            classes_path = self.root / classes_path
        if classes_path.is_file():
            self.class_names, self.palette = read_classes(classes_path)
        elif f.mask_format == "binary":
            self.class_names, self.palette = BINARY_CLASSES, np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
        else:
            raise UserError(f"{classes_path}: not found; list the class names (and colours) there, "
                            "e.g. - {name: background, color: [0, 0, 0]}")
        if f.mask_format == "binary" and len(self.class_names) != 2:
            raise UserError(f"{classes_path}: binary masks have 2 classes, the file lists "
                            f"{len(self.class_names)}")
        self._colour_ids = {tuple(int(c) for c in colour): i for i, colour in enumerate(self.palette)}
        if f.mask_format == "color" and len(self._colour_ids) != len(self.class_names):
            raise UserError(f"{classes_path}: colour masks need a different colour for every class")
        self.lists_dir = self.root / f.splits_subdir
        lists = sorted(p.stem for p in self.lists_dir.glob("*.txt")) if self.lists_dir.is_dir() else []
        if "all" in lists:
            raise UserError(f"{self.lists_dir}/all.txt: 'all' is reserved for every labelled image")
        self.has_lists = bool(lists)
        self.splits = tuple(lists) + ("all",) if lists else ("train", "val", "all")
        self._pairs: tuple[dict[str, Example], list[Problem]] | None = None
        self._assignment: dict[str, list[str]] | None = None

    def _all_pairs(self) -> tuple[dict[str, Example], list[Problem]]:
        if self._pairs is None:
            images, problems = _by_stem(self.images_dir, IMAGE_SUFFIXES)
            masks, mask_problems = _by_stem(self.masks_dir, MASK_SUFFIXES + (".jpg", ".jpeg"))
            problems += mask_problems
            pairs = {}
            for stem, image in images.items():
                mask = masks.get(stem)
                if mask is None:
                    problems.append(Problem(image, f"no mask {self.masks_dir}/{stem}.png"))
                elif mask.lower().endswith((".jpg", ".jpeg")):
                    problems.append(Problem(mask, "JPEG mask: lossy compression corrupts class ids; "
                                                  "save masks as PNG"))
                else:
                    pairs[stem] = Example(image, mask, stem)
            for stem in sorted(set(masks) - set(images)):
                problems.append(Problem(masks[stem], "mask without an image; ignored", False))
            self._pairs = pairs, problems
        return self._pairs

    def split_assignment(self) -> dict[str, list[str]]:
        """The seeded ``{"train", "val"}`` ids (folders without split lists)."""
        if self._assignment is None:
            ids = sorted(self._all_pairs()[0])
            c, f = self.config, self.config.folder
            if c.split_file:
                self._assignment = splits_lib.read_split(c.split_file, ids, self.name)
            else:
                size = splits_lib.holdout_size(len(ids), len(ids), f.val_fraction)
                self._assignment = splits_lib.stratified_holdout(ids, size, f.split_seed)
        return self._assignment

    def split_record(self) -> dict | None:
        if self.has_lists:
            return None  # the folder's own split lists
        f = self.config.folder
        return {"source": self.name, "data_dir": str(self.root), "seed": f.split_seed,
                "val_fraction": f.val_fraction, **self.split_assignment()}

    def scan(self, split: str):
        pairs, problems = self._all_pairs()
        if split == "all":
            return [pairs[s] for s in sorted(pairs)], problems
        if not self.has_lists:
            return [pairs[s] for s in self.split_assignment()[split]], problems
        list_path = self.lists_dir / f"{split}.txt"
        examples, problems = [], list(problems)
        for stem in [line.strip() for line in list_path.read_text().splitlines() if line.strip()]:
            if stem in pairs:
                examples.append(pairs[stem])
            else:
                problems.append(Problem(str(list_path), f"lists {stem!r}, which has no image/mask pair"))
        return examples, problems

    # -- decoding ------------------------------------------------------------------------
    def read_raw_label(self, location: str) -> np.ndarray:
        """Indices ``[H, W]`` (index, palette), grey ``[H, W]`` (binary) or RGB ``[H, W, 3]``."""
        if self.mask_format == "index":
            return read_indices(location)
        image = open_image(read_bytes(location), location)
        if self.mask_format == "palette":
            if image.mode != "P":
                raise UserError(f"{location}: a {image.mode} image, but data.folder.mask_format is "
                                "palette (P) PNGs")
            return np.asarray(image, np.uint8)
        if self.mask_format == "binary":
            return np.asarray(image.convert("L"), np.uint8)
        return np.asarray(image.convert("RGB"), np.uint8)

    def _packed_colours(self, raw: np.ndarray) -> np.ndarray:
        return (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]

    def decode_label(self, raw: np.ndarray) -> np.ndarray:
        if self.mask_format == "binary":
            return np.select([raw == 0, raw == 255], [np.uint8(0), np.uint8(1)], np.uint8(VOID)).astype(np.uint8)
        if self.mask_format == "color":
            packed = self._packed_colours(raw)
            label = np.full(raw.shape[:2], VOID, np.uint8)
            for (r, g, b), class_id in self._colour_ids.items():
                label[packed == ((r << 16) | (g << 8) | b)] = class_id
            return label
        k = len(self.class_names)
        return np.where((raw < k) | (raw == VOID), raw, np.uint8(VOID)).astype(np.uint8)

    def label_problems(self, raw: np.ndarray) -> list[str]:
        if self.mask_format == "color":
            packed = self._packed_colours(raw)
            known = np.array([(r << 16) | (g << 8) | b for r, g, b in self._colour_ids], np.int64)
            unknown = ~np.isin(packed, known)
            if not unknown.any():
                return []
            colours = np.unique(packed[unknown])[:3]
            listed = ", ".join(str((int(v >> 16), int((v >> 8) & 255), int(v & 255))) for v in colours)
            return [f"{int(unknown.sum())} pixel(s) of colours not in the class list: {listed}"]
        if self.mask_format == "binary":
            bad = np.unique(raw[(raw != 0) & (raw != 255)])
            what = "grey level(s) other than 0 and 255"
        else:
            k = len(self.class_names)
            bad = np.unique(raw[(raw >= k) & (raw != VOID)])
            what = f"class id(s) outside 0..{k - 1} and 255"
        if bad.size == 0:
            return []
        return [f"{int(np.isin(raw, bad).sum())} pixel(s) with {what}: "
                f"{', '.join(str(int(v)) for v in bad[:5])}{' ...' if bad.size > 5 else ''}"]
