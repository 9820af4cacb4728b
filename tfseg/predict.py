"""Segment a folder of images, or a video, with an exported SavedModel.

This module deliberately imports nothing from ``tfseg.models`` or the training code: a
SavedModel written by :mod:`tfseg.export` is all it needs, which is what a deployment has.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tfseg.artifacts import METADATA_FILE
from tfseg.data.files import read_rgb
from tfseg.data.labels import full_palette
from tfseg.evaluate import kitti_submission_stem, quantize_probability
from tfseg.errors import UserError
from tfseg.fileio import atomic_path
from tfseg.viz import overlay

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


@dataclass
class PredictSummary:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def saved_model_dir(path: Path) -> Path:
    """``path`` itself if it is a SavedModel, else its highest numbered version folder
    (TF Serving's layout, as ``tfseg export`` writes it)."""
    if (path / "saved_model.pb").is_file():
        return path
    versions = sorted((int(p.name), p) for p in path.iterdir() if p.name.isdigit()) if path.is_dir() else []
    for _, version in reversed(versions):
        if (version / "saved_model.pb").is_file():
            return version
    raise UserError(f"model {path}: not a SavedModel directory (no saved_model.pb, no version folder "
                    "holding one); give the folder written by `tfseg export`")


class SegmentationModel:
    """An exported tfseg SavedModel: ``model(image uint8 [H, W, 3]) -> classes uint8 [H, W]``.

    ``path`` is a SavedModel folder or a model base folder of versions (the highest is used).
    """

    def __init__(self, path: str | Path):
        path = saved_model_dir(Path(path))
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            raise UserError(f"model {path}: has no {METADATA_FILE}; was it written by `tfseg export`?")
        import tensorflow as tf

        try:
            self.metadata = json.loads(metadata_path.read_text())
            self.class_names = self.metadata["class_names"]
            self.palette = np.asarray(self.metadata["palette"], np.uint8)
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"model {path}: {METADATA_FILE} is unreadable ({err})") from None
        self.path = path
        self.has_probabilities = "probabilities" in self.metadata.get("outputs", ["probabilities"])
        try:
            self._loaded = tf.saved_model.load(str(path))  # kept referenced: it owns the variables
        except Exception as err:  # protobuf's DecodeError, TensorFlow's errors, OSError...
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            raise UserError(f"model {path}: cannot be loaded as a SavedModel ({reason})") from None
        self.serve = self._loaded.serve

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` uint8 ``[N, H, W, 3]`` -> ``{"classes": uint8 [N, H, W],
        "probabilities": float32 [N, H, W, num_classes]}``."""
        return {key: value.numpy() for key, value in self.serve(images).items()}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One image ``[H, W, 3]`` uint8 -> its class map ``[H, W]`` uint8."""
        return self.serve(image[np.newaxis])["classes"].numpy()[0]


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check_folders(input_dir: Path, output_dir: Path) -> list[Path]:
    """Validates the input and output folders; returns the images to segment."""
    if not input_dir.exists():
        raise UserError(f"input {input_dir}: does not exist")
    if not input_dir.is_dir():
        raise UserError(f"input {input_dir}: is not a directory")
    try:
        images = list_images(input_dir)
    except PermissionError:
        raise UserError(f"input {input_dir}: cannot be read (permission denied)") from None
    if not images:
        raise UserError(f"input {input_dir}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    resolved_in, resolved_out = input_dir.resolve(), output_dir.resolve()
    if resolved_out == resolved_in or resolved_in in resolved_out.parents:
        raise UserError(f"output {output_dir}: must not be the input folder or inside it")
    return images


def output_stems(images: list[Path]) -> dict[Path, str]:
    """One output name per image: its stem, or stem_suffix where two images share a stem."""
    counts: dict[str, int] = {}
    for p in images:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    return {p: p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}" for p in images}


def write_mask(path: Path, classes: np.ndarray, palette: np.ndarray) -> None:
    """A palette PNG: pixel values are the class ids, the palette gives their colours."""
    mask = Image.fromarray(classes, mode="P")
    mask.putpalette(full_palette(palette).reshape(-1).tolist())
    with atomic_path(path) as tmp:
        mask.save(tmp, format="PNG")


def write_rgb(path: Path, image: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise OSError(f"cannot write {path}")


def write_probability(path: Path, probability: np.ndarray) -> None:
    """A grey PNG of a probability map ``[H, W]`` in [0, 1], stored as round(255 p)."""
    with atomic_path(path) as tmp:
        Image.fromarray(quantize_probability(probability), mode="L").save(tmp, format="PNG")


def predict_folder(model_path: str | Path, input_dir: str | Path, output_dir: str | Path,
                   overwrite: bool = False, progress: bool = True,
                   probabilities: bool = False) -> PredictSummary:
    """Writes ``output/masks/<stem>.png`` and ``output/overlays/<stem>.png`` per input image,
    and with ``probabilities`` (two-class models) ``output/probabilities/<name>.png``: the
    class-1 probability as 0..255, named for the KITTI road benchmark where the stem is a
    KITTI image id (``um_000000`` -> ``um_road_000000.png``).

    Unreadable images are reported and skipped; the others are still segmented.
    """
    from tqdm import tqdm

    input_dir, output_dir = Path(input_dir), Path(output_dir)
    images = check_folders(input_dir, output_dir)
    model = SegmentationModel(model_path)
    if probabilities and len(model.class_names) != 2:
        raise UserError(f"--probabilities: model {model_path} has {len(model.class_names)} classes; "
                        "probability maps are written for two-class models")
    if probabilities and not model.has_probabilities:
        raise UserError(f"--probabilities: model {model.path} was exported without probabilities "
                        "(--no-probabilities); export it again without that flag")
    stems = output_stems(images)
    targets = {p: (output_dir / "masks" / f"{stems[p]}.png", output_dir / "overlays" / f"{stems[p]}.png")
               + ((output_dir / "probabilities" / f"{kitti_submission_stem(stems[p])}.png",) if probabilities else ())
               for p in images}
    existing = [t for paths in targets.values() for t in paths if t.exists()]
    if existing and not overwrite:
        raise UserError(f"output {output_dir}: {len(existing)} file(s) already exist (e.g. {existing[0]}); "
                        "pass --overwrite or choose another --output")
    try:
        for sub in ("masks", "overlays") + (("probabilities",) if probabilities else ()):
            (output_dir / sub).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"output {output_dir}: cannot be created ({err.strerror})") from None

    summary = PredictSummary()
    for path in tqdm(images, desc="segmenting", unit="img", disable=not progress, file=sys.stderr):
        try:
            # The training sources' decoder: a JPEG gives the pixels training saw.
            image = read_rgb(str(path))
        except (UserError, OSError) as err:
            summary.failed.append((path, str(err)))
            tqdm.write(f"skipped {path}: {err}", file=sys.stderr)
            continue
        # One call; the probabilities are only copied out when they are written.
        outputs = model.serve(image[np.newaxis])
        classes = outputs["classes"].numpy()[0]
        mask_path, overlay_path, *probability_path = targets[path]
        try:
            write_mask(mask_path, classes, model.palette)
            write_rgb(overlay_path, overlay(image, classes, model.palette))
            if probabilities:
                write_probability(probability_path[0], outputs["probabilities"][0, ..., 1].numpy())
        except OSError as err:
            raise UserError(f"output {mask_path.parent.parent}: cannot write ({err})") from None
        summary.written.append(mask_path)
    return summary


def predict_video(model_path: str | Path, video: str | Path, output_dir: str | Path,
                  overwrite: bool = False, progress: bool = True, frame_masks: bool = False) -> PredictSummary:
    """Segments every frame of ``video``; writes ``output/<stem>_overlay.mp4`` (same size and
    frame rate) and, with ``frame_masks``, ``output/<stem>_masks/<frame:06d>.png``.

    The video is written under a temporary name and renamed when complete.
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
    model = SegmentationModel(model_path)
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
    return summary
