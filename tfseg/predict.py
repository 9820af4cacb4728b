"""Segment a folder of images, or a video, with an exported SavedModel.

This module deliberately imports nothing from ``tfseg.models`` or the training code: a
SavedModel written by :mod:`tfseg.serving.export` is all it needs, which is what a deployment has.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tfseg.data.labels import full_palette
from tfseg.errors import UserError
from tfseg.fileio import atomic_path
from tfseg.images import IMAGE_SUFFIXES, list_images
from tfseg.kitti_benchmark import Calibration, read_calibration, to_bev
from tfseg.photos import Photo, PhotoError, photo_size, read_photo
from tfseg.predictions import encode_depth, is_kitti_image_id, kitti_submission_stem, quantize_probability
from tfseg.serving.client import ExportedModel, load_model
from tfseg.serving.test_time import NO_TEST_TIME_AUGMENTATION, TestTimeAugmentation
from tfseg.viz import depth_preview, overlay, write_rgb

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


# --tile auto tiles an image whose network input is larger than this (pixels).
TILE_AUTO_PIXELS = 2048 * 2048
DEFAULT_TILE = 1024
DEFAULT_BATCH = 4


@dataclass
class PredictSummary:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    converted: Counter = field(default_factory=Counter)  # e.g. {"16-bit": 3, "EXIF orientation": 2}
    tiled: int = 0
    seconds: float = 0.0
    archive: Path | None = None  # the KITTI submission, once every image is written

    def report(self) -> str:
        """One line: what was done, skipped (by reason) and converted, and how fast."""
        rate = len(self.written) / self.seconds if self.seconds else 0.0
        parts = [f"segmented {len(self.written)} image(s) in {self.seconds:.1f} s ({rate:.2f} img/s)"]
        if self.tiled:
            parts.append(f"{self.tiled} in tiles")
        if self.failed:
            reasons = Counter(reason.split(" (")[0] for _, reason in self.failed)
            parts.append(f"skipped {len(self.failed)}: " + ", ".join(f"{n} {r}" for r, n in reasons.items()))
        if self.converted:
            parts.append("converted: " + ", ".join(f"{n} {kind}" for kind, n in sorted(self.converted.items())))
        if self.archive is not None:
            parts.append(f"KITTI submission {self.archive}")
        return "; ".join(parts)


def check_folders(input_dir: Path, output_dir: Path, recursive: bool = False, stacked_with=()):
    """Validates the input folders (``input_dir`` and those of the images stacked before
    its own) and the output folder; returns ``input_dir``'s images to segment and the
    broken links among them."""
    for folder in (input_dir, *stacked_with):
        if not folder.exists():
            raise UserError(f"input {folder}: does not exist")
        if not folder.is_dir():
            raise UserError(f"input {folder}: is not a directory")
        if not os.access(folder, os.R_OK | os.X_OK):
            raise UserError(f"input {folder}: cannot be read (permission denied)")
    images, broken = list_images(input_dir, recursive)
    if not images and not broken:
        where = " or its sub-folders" if recursive else " (--recursive looks in sub-folders)"
        raise UserError(f"input {input_dir}: holds no images ({', '.join(IMAGE_SUFFIXES)}){where}")

    def holds_output(folder: Path) -> bool:
        resolved_in, resolved_out = folder.resolve(), output_dir.resolve()
        return resolved_out == resolved_in or resolved_in in resolved_out.parents

    if holds_output(input_dir):
        raise UserError(f"output {output_dir}: must not be the input folder or inside it")
    if any(holds_output(folder) for folder in stacked_with):
        raise UserError(f"output {output_dir}: must not be an input folder or inside one")
    return images, broken


def output_names(images: list[Path], input_dir: Path) -> dict[Path, Path]:
    """Each image's output name, relative and without suffix: its path under ``input_dir``,
    with ``stem_suffix`` where two images of one folder share a stem."""
    relative = {p: p.relative_to(input_dir) for p in images}
    counts = Counter(r.with_suffix("") for r in relative.values())
    return {p: r.with_suffix("") if counts[r.with_suffix("")] == 1
            else r.with_name(f"{r.stem}_{r.suffix.lstrip('.').lower()}") for p, r in relative.items()}


def write_mask(path: Path, classes: np.ndarray, palette: np.ndarray) -> None:
    """A palette PNG: pixel values are the class ids, the palette gives their colours."""
    mask = Image.fromarray(classes, mode="P")
    mask.putpalette(full_palette(palette).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        mask.save(tmp, format="PNG")


def write_depth(path: Path, depth: np.ndarray) -> None:
    """A 16-bit grey PNG of a depth map ``[H, W]`` in metres, stored as ``round(256 d)``
    (KITTI's depth format: 1/256 m steps up to 255.99 m; 0 means no depth)."""
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), encode_depth(depth)):
            raise OSError(f"cannot write {path}")


def write_grey(path: Path, levels: np.ndarray) -> None:
    """A grey PNG of uint8 ``levels`` ``[H, W]``, written atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(levels, mode="L").save(tmp, format="PNG")


def write_probability(path: Path, probability: np.ndarray) -> None:
    """A grey PNG of a probability map ``[H, W]`` in [0, 1], stored as round(255 p)."""
    write_grey(path, quantize_probability(probability))


def predict_folder(model_path: str | Path, input_dir: str | Path, output_dir: str | Path,
                   overwrite: bool = False, progress: bool = True, probabilities: bool = False,
                   recursive: bool = False, tile: str | int = "auto",
                   batch_size: int = DEFAULT_BATCH, stacked_with=(), kitti_submission: bool = False,
                   calib_dir: str | Path | None = None,
                   tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION) -> PredictSummary:
    """Writes ``output/masks/<name>.png`` and ``output/overlays/<name>.png`` per input image
    (``<name>`` keeps the sub-folders with ``recursive``), and with ``probabilities``
    (two-class models) ``output/probabilities/<name>.png``: the class-1 probability as
    0..255, named for the KITTI road benchmark where the stem is a KITTI image id
    (``um_000000`` -> ``um_road_000000.png``).

    Photos are read upright and converted as :mod:`tfseg.photos` says; images of one size
    are segmented in batches of ``batch_size``; an image whose network input exceeds
    ``TILE_AUTO_PIXELS`` (``tile="auto"``), or any image (``tile=N``), is segmented in
    tiles of N (default ``DEFAULT_TILE``) pixels. An image that cannot be read or runs
    out of memory is reported in the summary and skipped; the others are still segmented.

    A model of stacked RGB images (e.g. background + composite) takes, in ``stacked_with``,
    the folders of the images before ``input_dir``'s, in the model's order; the files are
    paired by their path (any image suffix), and overlays are drawn on ``input_dir``'s.

    Args:
      model_path: a SavedModel from ``tfseg export``, or its model base folder.
      input_dir: the folder of images to segment (the last of stacked images).
      output_dir: where masks/, overlays/ (and probabilities/, depth/) go; not the input.
      overwrite: replace existing outputs (otherwise any existing one refuses the run).
      progress: show a progress bar on stderr.
      probabilities: also write the class-1 probability maps (two-class models).
      recursive: also segment the images of sub-folders; the outputs mirror them.
      tile: "auto", "off" or a tile size in pixels (see above).
      batch_size: images of one size segmented together.
      stacked_with: the folders of the images stacked before ``input_dir``'s.
      kitti_submission: KITTI Road test images (``um_000000.png``...): also write each road
        probability map in the benchmark's bird's-eye view, ``output/bev/um_road_000000.png``
        (800x400 uint8), with the image's calibration from ``calib_dir``, and pack them
        at the root of ``output/kitti_road_bev.zip``, the file the benchmark takes.
      calib_dir: the images' calibration files ``<id>.txt`` (default: ``calib/`` beside
        ``input_dir``, as in ``data_road/testing/``).
      tta: test-time augmentation around a SavedModel exported without it (each image
        whole: not in tiles).
    """
    from tqdm import tqdm

    if tta.enabled and tile not in ("auto", "off"):
        raise UserError(f"--tile {tile}: test-time augmentation runs on whole images; leave --tile or --tta-* out")
    started = time.perf_counter()
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    stacked_with = [Path(folder) for folder in stacked_with]
    images, broken = check_folders(input_dir, output_dir, recursive, stacked_with)
    model = load_model(model_path)
    model.with_test_time_augmentation(tta)
    if tile not in ("auto", "off") and not model.can_tile:
        raise UserError(f"--tile {tile}: model {model.path} holds the whole inference path only; tiles need the "
                        "SavedModel's `network` endpoint (give the SavedModel, or leave --tile out)")
    if len(model.inputs) != 1 + len(stacked_with):
        raise UserError(f"model {model.path} takes {' + '.join(model.inputs)} stacked: give one --input folder "
                        f"for each, in that order (got {1 + len(stacked_with)})")
    probability_of = 1 if probabilities else None
    if kitti_submission and len(model.class_names) != 2:
        raise UserError(f"--kitti-submission: model {model.path} has {len(model.class_names)} classes; the KITTI Road "
                        "benchmark takes the road probability of a two-class (road) model")
    if probabilities and len(model.class_names) != 2:
        raise UserError(f"--probabilities: model {model_path} has {len(model.class_names)} classes; "
                        "probability maps are written for two-class models")
    if probabilities and not model.has_probabilities:
        raise UserError(f"--probabilities: model {model.path} was exported without probabilities "
                        "(--no-probabilities); export it again without that flag")
    names = output_names(images, input_dir)
    calibrations = {}
    if kitti_submission:
        if not probabilities:
            raise UserError("--kitti-submission writes road probabilities: it needs --probabilities")
        calibrations = submission_calibrations(images, Path(calib_dir) if calib_dir else input_dir.parent / "calib")
    targets = {p: OutputPaths(output_dir, names[p], probabilities, model.has_depth, kitti_submission)
               for p in images}
    archive = output_dir / SUBMISSION_ARCHIVE if kitti_submission else None
    if archive is not None and archive.exists() and not overwrite:
        raise UserError(f"output {output_dir}: {archive.name} already exists; pass --overwrite or choose another "
                        "--output")
    existing = [t for paths in targets.values() for t in paths.all() if t.exists()]
    if existing and not overwrite:
        raise UserError(f"output {output_dir}: {len(existing)} file(s) already exist (e.g. {existing[0]}); "
                        "pass --overwrite or choose another --output")
    try:
        for folder in sorted({t.parent for paths in targets.values() for t in paths.all()}):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"output {output_dir}: cannot be created ({err.strerror})") from None

    summary = PredictSummary(failed=list(broken) + unpaired_partners(images, input_dir, stacked_with, recursive))
    batches, unreadable = size_batches(images, batch_size)
    summary.failed += unreadable
    # Two threads read the next batch and write finished outputs while the model runs;
    # one batch is read ahead and a bounded number of writes wait, so memory stays bounded.
    pending: deque = deque()

    def finish_write():
        path, done = pending.popleft()
        try:
            done.result()
        except OSError as err:
            raise UserError(f"output {output_dir}: cannot write ({err})") from None
        summary.written.append(targets[path].mask)

    with ThreadPoolExecutor(max_workers=2) as pool, \
            tqdm(total=len(images), desc="segmenting", unit="img", disable=not progress, file=sys.stderr) as bar:
        def read(batch):
            return read_batch(batch, input_dir, stacked_with)

        reading = pool.submit(read, batches[0]) if batches else None
        for index, batch in enumerate(batches):
            photos, failed = reading.result()
            reading = pool.submit(read, batches[index + 1]) if index + 1 < len(batches) else None
            summary.failed += failed
            for path, photo, result in segment_batch(model, photos, tile, probability_of):
                if isinstance(result, str):
                    summary.failed.append((path, result))
                    continue
                summary.converted.update(photo.notes)
                summary.tiled += result.tiled
                pending.append((path, pool.submit(write_outputs, targets[path], photo.image[..., -3:], result,
                                                  model.palette, calibrations.get(path))))
            while len(pending) > 2 * batch_size:
                finish_write()
            bar.update(len(batch))
        while pending:
            finish_write()
    summary.failed.sort()
    summary.written.sort()
    if archive is not None and not summary.failed:
        write_submission_archive(archive, [targets[p].bev for p in images])
        summary.archive = archive
    summary.seconds = time.perf_counter() - started
    return summary


# The file the KITTI Road benchmark takes: every BEV road map at the archive's root.
SUBMISSION_ARCHIVE = "kitti_road_bev.zip"


def submission_calibrations(images: list[Path], calib_dir: Path) -> dict[Path, Calibration]:
    """Each KITTI test image's calibration, read before any work; an image that is not
    named like KITTI's, or has no calibration file, refuses the run in one line."""
    others = [p for p in images if not is_kitti_image_id(p.stem)]
    if others:
        raise UserError(f"--kitti-submission: {others[0]} is not named like a KITTI Road image (um_000000.png, "
                        f"umm_..., uu_...); {len(others)} such image(s)")
    missing = [p for p in images if not (calib_dir / f"{p.stem}.txt").is_file()]
    if missing:
        raise UserError(f"--kitti-submission: KITTI calib {calib_dir / (missing[0].stem + '.txt')}: not found "
                        f"({len(missing)} of {len(images)} image(s) without one); give their folder with --calib")
    return {p: read_calibration(calib_dir / f"{p.stem}.txt") for p in images}


def write_submission_archive(archive: Path, maps: list[Path]) -> None:
    """Packs the BEV maps at the root of a zip archive, written atomically."""
    import zipfile

    with atomic_path(archive) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as packed:
            for path in sorted(maps):
                packed.write(path, arcname=path.name)


class OutputPaths:
    """Where one image's outputs go."""

    def __init__(self, output_dir: Path, name: Path, probabilities: bool, depth: bool = False, bev: bool = False):
        self.mask = output_dir / "masks" / name.with_suffix(".png")
        self.overlay = output_dir / "overlays" / name.with_suffix(".png")
        self.probability = (output_dir / "probabilities" / name.with_name(f"{kitti_submission_stem(name.name)}.png")
                            if probabilities else None)
        self.depth = output_dir / "depth" / name.with_suffix(".png") if depth else None
        self.depth_preview = output_dir / "depth_preview" / name.with_suffix(".png") if depth else None
        # The road probability in the KITTI benchmark's bird's-eye view (--kitti-submission).
        self.bev = output_dir / "bev" / f"{kitti_submission_stem(name.stem)}.png" if bev else None

    def all(self) -> list[Path]:
        optional = (self.probability, self.depth, self.depth_preview, self.bev)
        return [self.mask, self.overlay] + [path for path in optional if path is not None]


@dataclass
class Segmented:
    classes: np.ndarray  # uint8 [H, W]
    probability: np.ndarray | None  # float32 [H, W], class 1
    tiled: bool = False
    depth: np.ndarray | None = None  # float32 [H, W], metres


def size_batches(images: list[Path], batch_size: int) -> tuple[list[list[Path]], list[tuple[Path, str]]]:
    """Images grouped by their (upright) size into batches, from their headers alone."""
    by_size: dict[tuple[int, int], list[Path]] = {}
    failed = []
    for path in images:
        try:
            by_size.setdefault(photo_size(path), []).append(path)
        except PhotoError as err:
            failed.append((path, str(err)))
    batches = [paths[i:i + batch_size] for _, paths in sorted(by_size.items()) for i in range(0, len(paths), batch_size)]
    return batches, failed


def partner_files(path: Path, input_dir: Path, stacked_with: list[Path]) -> list[Path]:
    """The files stacked before ``path`` (an image in ``input_dir``): in each of the
    ``stacked_with`` folders, the image at the same relative path, with any image suffix."""
    relative = path.relative_to(input_dir).with_suffix("")
    partners = []
    for folder in stacked_with:
        found = [folder / relative.with_suffix(suffix) for suffix in IMAGE_SUFFIXES]
        found = [candidate for candidate in found if candidate.is_file()]
        if not found:
            raise PhotoError(f"no image {relative}.* in {folder} to stack with it")
        partners.append(found[0])
    return partners


def unpaired_partners(images: list[Path], input_dir: Path, stacked_with: list[Path],
                      recursive: bool) -> list[tuple[Path, str]]:
    """The images of the ``stacked_with`` folders that no image of ``input_dir`` pairs with
    (those of ``input_dir`` without partners are found when they are read)."""
    stems = {path.relative_to(input_dir).with_suffix("") for path in images}
    unpaired = []
    for folder in stacked_with:
        for path in list_images(folder, recursive)[0]:
            relative = path.relative_to(folder).with_suffix("")
            if relative not in stems:
                unpaired.append((path, f"no image {relative}.* in {input_dir} to stack with it"))
    return unpaired


def read_stacked(path: Path, input_dir: Path, stacked_with: list[Path]) -> Photo:
    """The photo at ``path``, after its partners (:func:`partner_files`) along the channels:
    uint8 ``[H, W, 3 k]``; all of them must have one size."""
    if not stacked_with:
        return read_photo(path)
    photos = []
    for partner in partner_files(path, input_dir, stacked_with):
        try:
            photos.append(read_photo(partner))
        except PhotoError as err:
            raise PhotoError(f"{partner}: {err}") from None
    photo = read_photo(path)
    for partner, other in zip(stacked_with, photos):
        if other.image.shape != photo.image.shape:
            raise PhotoError(f"is {photo.image.shape[0]}x{photo.image.shape[1]} but its partner in {partner} "
                             f"is {other.image.shape[0]}x{other.image.shape[1]}")
    notes = sorted({note for p in (*photos, photo) for note in p.notes})
    return Photo(np.concatenate([p.image for p in (*photos, photo)], axis=-1), notes)


def read_batch(paths: list[Path], input_dir: Path,
               stacked_with: list[Path]) -> tuple[list[tuple[Path, Photo]], list[tuple[Path, str]]]:
    photos, failed = [], []
    for path in paths:
        try:
            photos.append((path, read_stacked(path, input_dir, stacked_with)))
        except PhotoError as err:
            failed.append((path, str(err)))
    return photos, failed


def segment_batch(model: ExportedModel, photos: list[tuple[Path, Photo]], tile: str | int,
                  probability_of: int | None):
    """Yields ``(path, photo, Segmented or the reason it failed)`` for each photo."""
    import tensorflow as tf

    whole, tiled = [], []
    for path, photo in photos:
        height, width = photo.image.shape[:2]
        big = model.network_pixels(height, width) > TILE_AUTO_PIXELS
        # Tiles carry class scores only: a model with a depth head sees whole images, and so
        # does a converted file, which holds the whole path only.
        in_tiles = tile != "off" and (tile != "auto" or big) and not model.has_depth and model.can_tile
        (tiled if in_tiles else whole).append((path, photo))
    tile_size = DEFAULT_TILE if tile in ("auto", "off") else int(tile)
    same_size = len({p.image.shape for _, p in whole}) <= 1
    groups = [whole] if whole and same_size else [[item] for item in whole]
    for group in groups:
        try:
            outputs = model.serve(np.stack([photo.image for _, photo in group]))
        except (tf.errors.ResourceExhaustedError, MemoryError):
            if len(group) > 1:  # the batch was too big: one at a time
                for item in group:
                    yield from segment_batch(model, [item], tile, probability_of)
                continue
            yield group[0][0], group[0][1], f"out of memory (try --tile {tile_size // 2})"
            continue
        classes = np.asarray(outputs["classes"])
        probability = (np.asarray(outputs["probabilities"])[..., probability_of] if probability_of is not None
                       else None)
        depth = np.asarray(outputs["depth"]) if model.has_depth else None
        for i, (path, photo) in enumerate(group):
            yield path, photo, Segmented(classes[i], probability[i] if probability is not None else None,
                                         depth=depth[i] if depth is not None else None)
    for path, photo in tiled:
        try:
            classes, probability = model.segment_tiled(photo.image, tile_size, probability_of)
        except (tf.errors.ResourceExhaustedError, MemoryError):
            yield path, photo, f"out of memory in tiles of {tile_size} (try --tile {tile_size // 2})"
            continue
        yield path, photo, Segmented(classes, probability, tiled=True)


def write_outputs(paths: OutputPaths, image: np.ndarray, result: Segmented, palette: np.ndarray,
                  calibration: Calibration | None = None) -> None:
    write_mask(paths.mask, result.classes, palette)
    write_rgb(paths.overlay, overlay(image, result.classes, palette))
    if paths.probability is not None:
        write_probability(paths.probability, result.probability)
    if paths.bev is not None:
        write_grey(paths.bev, to_bev(quantize_probability(result.probability), calibration, 0))
    if paths.depth is not None:
        write_depth(paths.depth, result.depth)
        write_rgb(paths.depth_preview, depth_preview(result.depth))


def predict_video(model_path: str | Path, video: str | Path, output_dir: str | Path,
                  overwrite: bool = False, progress: bool = True, frame_masks: bool = False,
                  tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION) -> PredictSummary:
    """Segments every frame of ``video``; writes ``output/<stem>_overlay.mp4`` (same size and
    frame rate) and, with ``frame_masks``, ``output/<stem>_masks/<frame:06d>.png``.

    The video is written under a temporary name and renamed when complete. A video that
    stops decoding before the frame count its container gives is reported in the summary's
    ``failed``, with the frames before written.
    """
    from tqdm import tqdm

    video, output_dir = Path(video), Path(output_dir)
    if not video.is_file():
        raise UserError(f"input {video}: does not exist")
    capture = cv2.VideoCapture(str(video))
    if not capture.isOpened():
        raise UserError(f"input {video}: not a readable video (corrupt or unsupported codec)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    target = output_dir / f"{video.stem}_overlay.mp4"
    masks_dir = output_dir / f"{video.stem}_masks"
    if not overwrite and (target.exists() or (frame_masks and masks_dir.exists())):
        raise UserError(f"output {target if target.exists() else masks_dir}: already exists; "
                        "pass --overwrite or choose another --output")
    model = load_model(model_path)
    if len(model.inputs) != 1:
        raise UserError(f"model {model.path} takes {' + '.join(model.inputs)} stacked: it segments "
                        "folders of paired images, not a video")
    model.with_test_time_augmentation(tta)
    summary = PredictSummary()
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"output {output_dir}: cannot be created ({err.strerror})") from None
    with atomic_path(target) as tmp:
        writer = None
        try:
            with tqdm(total=total, desc="segmenting", unit="frame", disable=not progress, file=sys.stderr) as bar:
                while True:
                    ok, frame = capture.read()
                    if not ok:
                        break
                    image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                    classes = model(image)
                    # MPEG-4 needs even sizes: odd ones gain a copied last row or column.
                    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
                    if writer is None:
                        size = (image.shape[1] + pad_w, image.shape[0] + pad_h)
                        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
                        if not writer.isOpened():
                            raise UserError(f"output {target}: cannot write an mp4 video there")
                    painted = cv2.cvtColor(overlay(image, classes, model.palette), cv2.COLOR_RGB2BGR)
                    writer.write(cv2.copyMakeBorder(painted, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE))
                    if frame_masks:
                        write_mask(masks_dir / f"{bar.n:06d}.png", classes, model.palette)
                    bar.update()
                    summary.written.append(target)
        finally:
            capture.release()
            if writer is not None:
                writer.release()
        if writer is None:
            raise UserError(f"input {video}: holds no readable frame")
    if total and len(summary.written) < total:
        # The container promised more frames than could be decoded: a cut or damaged file.
        summary.failed.append((video, f"stopped decoding after frame {len(summary.written)} of {total} "
                                      "(cut short or damaged); the overlay holds the frames before"))
    return summary
