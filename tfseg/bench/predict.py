"""``tfseg bench predict``: how much of the model's own speed ``tfseg predict`` delivers.

Two candidates, side by side in one process and in alternating rounds (machines are
shared and noisy, so the ratio taken within a round is the number to read):

* **model only** -- the SavedModel's ``serve`` on images already decoded in memory, in
  batches of same-size images, as predict batches them; nothing read or written;
* **tfseg predict** -- :func:`tfseg.predict.predict_folder` on the PNG files: listing,
  header reads, decoding, the model, and writing masks and overlays.

With ``--tta-flip``/``--tta-scales``, they are the SavedModel served plain and with that
test-time augmentation around it, one image at a time: its cost.

With ``--runtimes``, the candidates are instead the exported model on each runtime, one
image at a time as a camera delivers them: the SavedModel (TensorFlow), its TFLite files
(float32, float16, int8; LiteRT with XNNPACK) and its ONNX file (onnxruntime), each the
whole path from uint8 image to class map, CLAHE included. Files the export does not hold
yet are converted for the run (int8 calibrated on the staged images), unchecked.

The images are KITTI-sized PNGs (:mod:`.staging`: copies of real KITTI Road images where
a folder or the shared sample is found, else generated road scenes). The model is a
preset's network with random weights, exported with the preset's geometry and
preprocessing (the speed does not depend on the weights), or a given SavedModel.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tfseg.arguments import ArgumentParser, positive_float, positive_int
from tfseg.bench.host import describe_cpu, load_average
from tfseg.bench.report import write_json
from tfseg.bench.staging import stage_kitti_tree
from tfseg.bench.stats import ratio_summary, summary
from tfseg.fileio import check_writable
from tfseg.serving.test_time import TestTimeAugmentation


def export_preset_model(preset: str, path: Path, overrides: list[str] = (), probabilities: bool = True) -> Path:
    """The preset's network, random weights, exported as ``tfseg export`` would."""
    from tfseg.config import load_config
    from tfseg.data.sources import SOURCES
    from tfseg.models import build_model, model_stride
    from tfseg.serving.export import export_saved_model

    config = load_config(preset, overrides)
    if "encoder_weights" in config.model.options:  # pretrained weights need a download
        config.model.options["encoder_weights"] = None
    names = SOURCES[config.data.source].class_names
    model = build_model(config.model.name, len(names), **config.model.options)
    palette = np.zeros((len(names), 3), np.uint8)
    return export_saved_model(model, path, data_config=config.data,
                              stride=model_stride(config.model.name, **config.model.options),
                              class_names=names, palette=palette, probabilities=probabilities)


def model_only(model, arrays: list[np.ndarray], batch_size: int) -> float:
    """Seconds for ``serve`` over ``arrays``, in batches of same-size images."""
    by_size: dict[tuple, list[np.ndarray]] = {}
    for array in arrays:
        by_size.setdefault(array.shape, []).append(array)
    started = time.perf_counter()
    for group in by_size.values():
        for i in range(0, len(group), batch_size):
            model.serve(np.stack(group[i:i + batch_size]))["classes"].numpy()
    return time.perf_counter() - started


def bench_predict(model_path: str | None = None, preset: str = "kitti_unet", data_dir: str | None = None,
                  num_images: int = 100, rounds: int = 3, batch_size: int = 4, synthetic: bool = False,
                  output_json: str | None = None) -> dict:
    from tfseg.photos import read_photo
    from tfseg.predict import predict_folder
    from tfseg.serving.client import SegmentationModel

    work = Path(tempfile.mkdtemp(prefix="tfseg-bench-predict-"))
    try:
        root, origin = stage_kitti_tree(work / "kitti", num_images, data_dir=data_dir, synthetic=synthetic)
        images = root / "training" / "image_2"
        if model_path is None:
            model_path = str(export_preset_model(preset, work / "model"))
            model_label = f"{preset} (random weights)"
        else:
            model_label = model_path
        model = SegmentationModel(model_path)
        arrays = [read_photo(p).image for p in sorted(images.iterdir())]
        # Warm-up: every image size once through both paths (tracing, kernel selection).
        model_only(model, arrays[:batch_size], batch_size)
        predict_folder(model_path, images, work / "warmup", progress=False, batch_size=batch_size)
        model_rates, predict_rates = [], []
        for round_index in range(rounds):
            model_rates.append(len(arrays) / model_only(model, arrays, batch_size))
            summary_ = predict_folder(model_path, images, work / f"out{round_index}", progress=False,
                                      batch_size=batch_size)
            assert len(summary_.written) == len(arrays) and not summary_.failed
            predict_rates.append(len(arrays) / summary_.seconds)
        result = {
            "images": origin, "num_images": num_images, "model": model_label, "batch_size": batch_size,
            "host": describe_cpu(), "load_average": load_average(),
            "model_only_images_per_s": summary(model_rates),
            "predict_images_per_s": summary(predict_rates),
            "predict_over_model": ratio_summary(predict_rates, model_rates),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)  # this benchmark's own temporary folder
    if output_json:
        write_json(output_json, result)
    return result


SAVED_MODEL = "SavedModel"


def runtime_files(version_dir: Path, calibration: list[np.ndarray]) -> dict[str, Path]:
    """The export's converted files (:mod:`tfseg.serving.runtimes`), those missing
    converted now, without the export's check."""
    import tensorflow as tf

    from tfseg.serving.runtimes import ONNX_FILE, TFLITE_TYPES, convert_onnx, convert_tflite, tflite_file

    converters = {tflite_file(dtype): lambda d=dtype: convert_tflite(version_dir, d, calibration)
                  for dtype in TFLITE_TYPES}
    converters[ONNX_FILE] = lambda: convert_onnx(tf.saved_model.load(str(version_dir)))
    files = {}
    for name, convert in converters.items():
        path = version_dir / "assets.extra" / name
        if not path.is_file():
            path.write_bytes(convert())
        files[name] = path
    return files


def bench_runtimes(model_path: str | None = None, preset: str = "kitti_unet", data_dir: str | None = None,
                   num_images: int = 20, rounds: int = 3, threads: int | None = None, synthetic: bool = False,
                   output_json: str | None = None) -> dict:
    """Images/s and latency of the exported model on each runtime, batch 1, alternating."""
    import os

    from tfseg.photos import read_photo
    from tfseg.serving.client import ConvertedModel, SegmentationModel
    from tfseg.serving.layout import saved_model_dir

    threads = threads or os.cpu_count()
    work = Path(tempfile.mkdtemp(prefix="tfseg-bench-runtimes-"))
    try:
        root, origin = stage_kitti_tree(work / "kitti", num_images, data_dir=data_dir, synthetic=synthetic)
        arrays = [read_photo(p).image for p in sorted((root / "training" / "image_2").iterdir())]
        if model_path is None:
            version_dir = export_preset_model(preset, work / "model")
            model_label = f"{preset} (random weights)"
        else:  # a copy: files converted for the bench do not land in the user's export
            version_dir = work / "model"
            shutil.copytree(saved_model_dir(Path(model_path)), version_dir)
            model_label = model_path
        files = runtime_files(version_dir, arrays[:8])
        candidates = {SAVED_MODEL: SegmentationModel(version_dir)}
        candidates.update({name: ConvertedModel(path, threads) for name, path in files.items()})
        rates, latencies = alternating_rounds(candidates, arrays, rounds)
        sizes = {SAVED_MODEL: sum(p.stat().st_size for p in (version_dir / "variables").iterdir())
                 + (version_dir / "saved_model.pb").stat().st_size}
        sizes.update({name: path.stat().st_size for name, path in files.items()})
        result = {
            "images": origin, "num_images": num_images, "model": model_label, "threads": threads,
            "image_sizes": sorted({f"{a.shape[0]}x{a.shape[1]}" for a in arrays}),
            "host": describe_cpu(), "load_average": load_average(),
            "runtimes": {name: {"images_per_s": summary(rates[name]),
                                "latency_ms_median": 1000 * float(np.median(latencies[name])),
                                "bytes": sizes[name],
                                "over_saved_model": ratio_summary(rates[name], rates[SAVED_MODEL])}
                         for name in candidates},
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)  # this benchmark's own temporary folder
    if output_json:
        write_json(output_json, result)
    return result


def alternating_rounds(candidates: dict, arrays: list[np.ndarray], rounds: int
                       ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each candidate model over every image, one at a time, candidate after candidate in
    each round, after a warm-up of every image size: ``(images/s of each round, seconds of
    each image)`` by candidate."""
    for model in candidates.values():
        for shape in {a.shape for a in arrays}:
            model.predict(next(a for a in arrays if a.shape == shape)[np.newaxis])
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    latencies: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, model in candidates.items():
            started = time.perf_counter()
            for array in arrays:
                begun = time.perf_counter()
                model.predict(array[np.newaxis])
                latencies[name].append(time.perf_counter() - begun)
            rates[name].append(len(arrays) / (time.perf_counter() - started))
    return rates, latencies


def bench_tta(tta, model_path: str | None = None, preset: str = "kitti_unet", data_dir: str | None = None,
              num_images: int = 20, rounds: int = 3, synthetic: bool = False, output_json: str | None = None) -> dict:
    """What test-time augmentation ``tta`` costs: the SavedModel served plain and with
    ``tta`` around it, one image at a time, alternating."""
    from tfseg.photos import read_photo
    from tfseg.serving.client import SegmentationModel

    work = Path(tempfile.mkdtemp(prefix="tfseg-bench-tta-"))
    try:
        root, origin = stage_kitti_tree(work / "kitti", num_images, data_dir=data_dir, synthetic=synthetic)
        arrays = [read_photo(p).image for p in sorted((root / "training" / "image_2").iterdir())]
        if model_path is None:
            model_path, model_label = export_preset_model(preset, work / "model"), f"{preset} (random weights)"
        else:
            model_label = model_path
        augmented = SegmentationModel(model_path)
        augmented.with_test_time_augmentation(tta)
        rates, latencies = alternating_rounds({"plain": SegmentationModel(model_path), "tta": augmented},
                                              arrays, rounds)
        plain_ms, tta_ms = (1000 * float(np.median(latencies[name])) for name in ("plain", "tta"))
        result = {
            "images": origin, "num_images": num_images, "model": model_label, "tta": tta.metadata(),
            "host": describe_cpu(), "load_average": load_average(),
            "plain_images_per_s": summary(rates["plain"]), "tta_images_per_s": summary(rates["tta"]),
            "plain_ms_median": plain_ms, "tta_ms_median": tta_ms, "added_ms_per_image": tta_ms - plain_ms,
            "tta_time_over_plain": ratio_summary(rates["plain"], rates["tta"]),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)  # this benchmark's own temporary folder
    if output_json:
        write_json(output_json, result)
    return result


def format_tta(result: dict) -> str:
    ratio = result["tta_time_over_plain"]
    return "\n".join([
        f"tfseg bench predict --tta: {result['num_images']} images ({result['images']}), model {result['model']}, "
        f"batch 1, test-time augmentation {result['tta']}",
        f"plain: {result['plain_ms_median']:.1f} ms per image (median), {result['plain_images_per_s']['median']:.2f} img/s",
        f"tta:   {result['tta_ms_median']:.1f} ms per image (median), {result['tta_images_per_s']['median']:.2f} img/s",
        f"tta takes {ratio['median']:.2f}x the plain time, {result['added_ms_per_image']:+.1f} ms per image (per round: "
        f"{', '.join(f'{r:.2f}x' for r in ratio['rounds'])})"])


def format_runtimes(result: dict) -> str:
    lines = [f"tfseg bench predict --runtimes: {result['num_images']} images ({result['images']}; "
             f"{', '.join(result['image_sizes'])}), model {result['model']}, batch 1, "
             f"{result['threads']} thread(s) for LiteRT and onnxruntime",
             f"{'runtime':<22} {'img/s':>7} {'ms/img':>8} {'x SavedModel':>13} {'MB':>8}   img/s per round"]
    for name, figures in result["runtimes"].items():
        rates = figures["images_per_s"]
        lines.append(f"{name:<22} {rates['median']:>7.2f} {figures['latency_ms_median']:>8.1f} "
                     f"{figures['over_saved_model']['median']:>13.2f} {figures['bytes'] / 1e6:>8.1f}   "
                     f"{', '.join(f'{v:.2f}' for v in rates['rounds'])}")
    return "\n".join(lines)


def format_result(result: dict) -> str:
    lines = [f"tfseg bench predict: {result['num_images']} images ({result['images']}), model {result['model']}, "
             f"batch {result['batch_size']}",
             f"{'candidate':<16} {'img/s (median)':>15} {'rounds':>30}"]
    for key, label in (("model_only_images_per_s", "model only"), ("predict_images_per_s", "tfseg predict")):
        values = result[key]
        lines.append(f"{label:<16} {values['median']:>15.2f} {', '.join(f'{v:.2f}' for v in values['rounds']):>30}")
    ratio = result["predict_over_model"]
    lines.append(f"tfseg predict / model only: {ratio['median']:.3f} (per round: "
                 f"{', '.join(f'{r:.3f}' for r in ratio['rounds'])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="tfseg bench predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a SavedModel from `tfseg export` (default: the preset's network)")
    parser.add_argument("--preset", default="kitti_unet", help="whose network and geometry (default kitti_unet)")
    parser.add_argument("--data-dir", help="KITTI Road folder or data_road.zip to copy images from")
    parser.add_argument("--synthetic", action="store_true", help="generated road scenes instead of KITTI images")
    parser.add_argument("--num-images", type=positive_int, default=100)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--runtimes", action="store_true",
                        help="compare the SavedModel with its TFLite (float32, float16, int8) and ONNX files, "
                             "batch 1, instead")
    parser.add_argument("--threads", type=positive_int,
                        help="--runtimes: threads for LiteRT and onnxruntime (default: every core)")
    parser.add_argument("--tta-flip", action="store_true",
                        help="compare the SavedModel served plain and with flip test-time augmentation, batch 1, "
                             "instead")
    parser.add_argument("--tta-scales", type=positive_float, nargs="+", default=[1.0], metavar="S",
                        help="... and with these network input scales averaged (default: 1)")
    parser.add_argument("--json", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json, "--json")
    tta = TestTimeAugmentation(flip=args.tta_flip, scales=tuple(args.tta_scales))
    if tta.enabled:
        print(format_tta(bench_tta(tta, args.model, args.preset, args.data_dir, args.num_images, args.rounds,
                                   args.synthetic, args.json)))
        return 0
    if args.runtimes:
        print(format_runtimes(bench_runtimes(args.model, args.preset, args.data_dir, args.num_images, args.rounds,
                                             args.threads, args.synthetic, args.json)))
        return 0
    result = bench_predict(args.model, args.preset, args.data_dir, args.num_images, args.rounds,
                           args.batch_size, args.synthetic, args.json)
    print(format_result(result))
    return 0
