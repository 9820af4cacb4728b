#!/usr/bin/env python3
"""Segment a folder of images with a tfseg model converted to TFLite or ONNX, without
TensorFlow: NumPy, Pillow, and LiteRT (``pip install ai-edge-litert``) or onnxruntime.

    python predict_lite.py --model model_int8.tflite --input images/ --output out/ [--probabilities]

The model files come from ``tfseg export --tflite --onnx``, in the export's
``N/assets.extra/`` folder, with ``tfseg.json`` (class names, palette): keep that file
beside the model file. The converted model holds the whole inference path (resize,
CLAHE, the network, the way back to each image's own size), so images of any size go in
as they are.

Writes ``out/masks/<name>.png`` (palette PNGs whose pixel values are the class ids) and,
for a two-class model with ``--probabilities``, ``out/probabilities/<name>.png`` (the
class-1 probability as ``round(255 p)``, KITTI road images named ``um_road_000000.png``),
named exactly as ``tfseg predict`` names them. Files are written atomically. An image
that cannot be read is named on stderr and skipped, and the exit status is then 1.

This file is self-contained on purpose (``scripts/predict_lite.py`` is it): copy it and
the model to a small board. tfseg itself runs converted files through :class:`LiteModel`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

METADATA_NAME = "tfseg.json"  # written by `tfseg export` beside the converted files
MODEL_SUFFIXES = (".tflite", ".onnx")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # as tfseg predict
SIGNATURE = "serving_default"


class ModelFileError(Exception):
    """A model file that cannot be used; the message is one line naming it."""


class LiteModel:
    """A converted tfseg model: ``predict(images uint8 [N, H, W, C]) -> {"classes": uint8
    [N, H, W], "probabilities": float32 [N, H, W, num_classes]}`` at the images' own size.

    ``path``: a ``.tflite`` file (run by LiteRT) or a ``.onnx`` file (onnxruntime), with
    ``tfseg.json`` beside it. ``threads``: the runtime's CPU threads (default: its own
    choice). Not thread-safe: call it from one thread.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        self.path = Path(path)
        self.runtime = {".tflite": "litert", ".onnx": "onnxruntime"}.get(self.path.suffix.lower())
        if self.runtime is None:
            raise ModelFileError(f"model {self.path}: is not a .tflite or .onnx file")
        if not self.path.is_file():
            raise ModelFileError(f"model {self.path}: does not exist")
        self.metadata = read_metadata(self.path)
        self.class_names = list(self.metadata["class_names"])
        self.palette = np.asarray(self.metadata["palette"], np.uint8)
        self._run = (_litert_runner if self.runtime == "litert" else _onnx_runner)(self.path, threads)

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self._run(np.ascontiguousarray(images, dtype=np.uint8))
        return {name: np.asarray(value) for name, value in outputs.items()}


def read_metadata(model_path: Path) -> dict:
    path = model_path.parent / METADATA_NAME
    if not path.is_file():
        raise ModelFileError(f"model {model_path}: no {METADATA_NAME} beside it; copy the one from the export's "
                             "assets.extra/ folder (a file not written by `tfseg export` has none)")
    try:
        metadata = json.loads(path.read_text())
        if not metadata["class_names"] or len(metadata["palette"]) < len(metadata["class_names"]):
            raise ValueError("fewer colours than classes")
    except (ValueError, KeyError, TypeError) as err:
        raise ModelFileError(f"model {model_path}: {path} is unreadable ({err})") from None
    return metadata


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


def _litert_runner(path: Path, threads: int | None):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ModelFileError(f"model {path}: .tflite files run on LiteRT: pip install ai-edge-litert") from None
    try:
        runner = Interpreter(model_path=str(path), num_threads=threads).get_signature_runner(SIGNATURE)
    except (ValueError, RuntimeError) as err:
        raise ModelFileError(f"model {path}: is not a readable TFLite model of tfseg ({_one_line(err)})") from None
    first_call = True

    def run(images):
        # The signature runner resizes the input (and so the whole graph) to each batch's
        # shape. The first call creates the XNNPACK delegate, which announces itself on
        # file descriptor 2 ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU."):
        # kept out of the user's terminal unless the call fails.
        nonlocal first_call
        if not first_call:
            return runner(images=images)
        first_call = False
        with _stderr_shown_on_failure():
            return runner(images=images)

    return run


@contextlib.contextmanager
def _stderr_shown_on_failure():
    """File descriptor 2 sent to a temporary file for the block, and written out only if
    the block fails. (tfseg's ``quiet_import`` does the same for TensorFlow's import;
    this file stays self-contained.)"""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _onnx_runner(path: Path, threads: int | None):
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError(f"model {path}: .onnx files run on onnxruntime: pip install onnxruntime") from None
    options = onnxruntime.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
        raise ModelFileError(f"model {path}: is not a readable ONNX model of tfseg ({_one_line(err)})") from None
    names = [output.name for output in session.get_outputs()]
    return lambda images: dict(zip(names, session.run(None, {"images": images})))


# --- The folder, as `tfseg predict` names its outputs ---------------------------------

def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map, ``[num_colors, 3]`` uint8: what tfseg's masks use for the
    palette entries beyond the model's classes."""
    palette = np.zeros((num_colors, 3), np.uint8)
    for index in range(num_colors):
        value, rgb = index, [0, 0, 0]
        for shift in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((value >> channel) & 1) << shift
            value >>= 3
        palette[index] = rgb
    return palette


def output_names(images: list[Path], input_dir: Path) -> dict[Path, Path]:
    """Each image's output name without suffix: its stem, or ``stem_suffix`` where two
    images share a stem."""
    relative = {p: p.relative_to(input_dir) for p in images}
    counts = Counter(r.with_suffix("") for r in relative.values())
    return {p: r.with_suffix("") if counts[r.with_suffix("")] == 1
            else r.with_name(f"{r.stem}_{r.suffix.lstrip('.').lower()}") for p, r in relative.items()}


def probability_name(stem: str) -> str:
    """``um_000012`` -> ``um_road_000012``, the KITTI road benchmark's name; others as they are."""
    category, sep, number = stem.partition("_")
    if sep and category in ("um", "umm", "uu") and number.isdigit() and len(number) == 6:
        return f"{category}_road_{number}"
    return stem


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``, upright by its EXIF orientation; 16-bit values keep their
    high byte, alpha is dropped (as ``tfseg predict`` reads photos)."""
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            grey = (np.asarray(image, np.uint32) >> 8).astype(np.uint8)
            return np.repeat(grey[..., None], 3, axis=-1)
        return np.asarray(image.convert("RGB"))


def write_png(path: Path, array: np.ndarray, palette: np.ndarray | None = None) -> None:
    """A PNG written under a temporary name and renamed, with a normal file's mode."""
    from PIL import Image

    image = Image.fromarray(array, mode="P" if palette is not None else "L")
    if palette is not None:
        image.putpalette(palette.reshape(-1).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def predict_folder(model: LiteModel, input_dir: Path, output_dir: Path, probabilities: bool = False,
                   overwrite: bool = False) -> list[tuple[Path, str]]:
    """Segments every image of ``input_dir`` (not its sub-folders); returns the images that
    failed, with why."""
    if not input_dir.is_dir():
        raise ModelFileError(f"input {input_dir}: is not a folder")
    images = sorted(p for p in input_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not images:
        raise ModelFileError(f"input {input_dir}: holds no images ({', '.join(IMAGE_SUFFIXES)})")
    if probabilities and len(model.class_names) != 2:
        raise ModelFileError(f"--probabilities: model {model.path} has {len(model.class_names)} classes; "
                             "probability maps are written for two-class models")
    names = output_names(images, input_dir)
    masks = {p: output_dir / "masks" / f"{names[p]}.png" for p in images}
    maps = {p: output_dir / "probabilities" / names[p].with_name(f"{probability_name(names[p].name)}.png")
            for p in images} if probabilities else {}
    existing = [path for path in (*masks.values(), *maps.values()) if path.exists()]
    if existing and not overwrite:
        raise ModelFileError(f"output {output_dir}: {len(existing)} file(s) already exist (e.g. {existing[0]}); "
                             "pass --overwrite or choose another --output")
    palette = voc_palette()
    palette[:len(model.palette)] = model.palette
    failed = []
    for path in images:
        try:
            image = read_image(path)
        except (OSError, ValueError, SyntaxError) as err:  # Pillow's errors for broken files
            failed.append((path, f"cannot be read ({_one_line(err)})"))
            continue
        outputs = model.predict(image[np.newaxis])
        write_png(masks[path], outputs["classes"][0], palette)
        if probabilities:
            probability = outputs["probabilities"][0, ..., 1]
            write_png(maps[path], np.round(np.clip(probability, 0.0, 1.0) * 255.0).astype(np.uint8))
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Segment a folder of images with a tfseg .tflite or .onnx "
                                                 "model, without TensorFlow.")
    parser.add_argument("--model", required=True, help="model_*.tflite or model.onnx, with tfseg.json beside it")
    parser.add_argument("--input", required=True, help="the folder of images")
    parser.add_argument("--output", required=True, help="where masks/ (and probabilities/) go")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write the class-1 probability maps (two-class models)")
    parser.add_argument("--threads", type=int, help="the runtime's CPU threads (default: its choice)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    args = parser.parse_args(argv)
    try:
        model = LiteModel(args.model, args.threads)
        failed = predict_folder(model, Path(args.input), Path(args.output), args.probabilities, args.overwrite)
    except ModelFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: output {args.output}: cannot write ({err.strerror or err})", file=sys.stderr)
        return 2
    for path, reason in failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
