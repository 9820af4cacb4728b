"""The ``tfseg`` command line: one entry point, one subcommand per job.

Every command keeps one contract with its user:

* exit 0: everything asked was done;
* exit 1: part of the work was done and the rest was not (images or frames that could not
  be read, a video that ended early): each skipped item is named on stderr; also an
  unexpected error, said in one line (``--verbose`` adds the traceback);
* exit 2: bad arguments, settings, paths or data (a :class:`~tfseg.errors.UserError`):
  one line on stderr that names the thing and what to do, before any long work;
* exit 130: interrupted (Ctrl-C, ``docker stop``); training resumes where it stopped.

Heavy imports (TensorFlow) happen inside the subcommands, after the arguments and the
configuration are checked, so ``tfseg --help`` is instant and a refusal fast.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from tfseg import __version__
from tfseg.arguments import ArgumentParser, non_negative_int, positive_float, positive_int
from tfseg.errors import UserError
from tfseg.fileio import check_writable, write_text
from tfseg.predictions import PREDICTION_FORMATS
from tfseg.quiet_import import silence_tensorflow_startup


def _add_config_args(parser: argparse.ArgumentParser, default_preset: str | None) -> None:
    parser.add_argument("--config", "-c", default=default_preset,
                        help="preset name (tfseg/configs/*.yaml) or path to a YAML file"
                             + (f" (default: {default_preset})" if default_preset else ""))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one setting, e.g. --set train.epochs=3 (repeatable)")


def _load(args, run_dir: str | None = None):
    from tfseg.config import load_config

    config = load_config(args.config, args.overrides)
    if run_dir:
        config.run_dir = run_dir
    return config


def cmd_train(args) -> int:
    config = _load(args, args.run_dir)  # settings are checked before TensorFlow is imported
    from tfseg.training.run import train

    path = train(config)
    print(f"best model: {path}")
    return 0


def cmd_evaluate(args) -> int:
    what = [name for name, value in (("--run-dir", args.run_dir), ("--model", args.model),
                                     ("--predictions", args.predictions)) if value]
    if len(what) != 1:
        raise UserError("evaluate needs exactly one of --run-dir, --model or --predictions"
                        + (f" (got {', '.join(what)})" if what else ""))
    tta = _test_time_augmentation(args)
    if args.run_dir:
        if args.dataset or args.data_dir or args.overrides:
            raise UserError("--run-dir scores the run's own data; --dataset, --data-dir and --set "
                            "go with --model or --predictions")
        from tfseg.runs import metrics_path

        # Scores with test-time augmentation go beside the plain ones, not over them.
        json_path = (Path(args.json) if args.json else
                     metrics_path(Path(args.run_dir), args.split + ("_tta" if tta.enabled else "")))
    else:
        if tta.enabled and args.predictions:
            raise UserError("--tta-flip/--tta-scales: --predictions are scored as they were made; test-time "
                            "augmentation goes with --model, --run-dir or in the export (tfseg export --tta-flip)")
        if not (args.dataset or args.config) or not (args.data_dir or args.config):
            raise UserError(f"{what[0]} needs the ground truth: --dataset NAME --data-dir DIR (or --config)")
        data_config = _data_config(args)
        json_path = Path(args.json) if args.json else None
    # Where the scores go is checked before the scoring, not after it.
    if args.json:
        check_writable(json_path, "--json")
    elif args.run_dir and Path(args.run_dir).is_dir():
        check_writable(json_path, "metrics file (--json writes them elsewhere)")
    worst = None
    if args.worst:
        if json_path is None:
            raise UserError("--worst draws its pictures beside the metrics: give --json too")
        folder = json_path.with_name(f"{json_path.stem}_worst")
        check_writable(folder, "--worst pictures", folder=True)
        if folder.is_dir() and any(folder.iterdir()):
            raise UserError(f"--worst pictures {folder}: exists and is not empty; move it away (nothing in it "
                            "is overwritten) or give another --json")
        from tfseg.evaluate import Worst

        worst = Worst(args.worst, folder)
    from tfseg import evaluate

    if args.run_dir:
        metrics = evaluate.evaluate_run(args.run_dir, args.split, worst=worst, tta=tta)
    elif args.model:
        metrics = evaluate.evaluate_saved_model(args.model, data_config, args.split, worst=worst, tta=tta)
    else:
        metrics = evaluate.evaluate_predictions(args.predictions, data_config, args.split, args.format, worst=worst)
    print(evaluate.format_report(metrics))
    if json_path:
        picture = evaluate.write_report(metrics, json_path)
        print(f"wrote {json_path} and {picture}")
    if "worst_images" in metrics:
        print(f"drew the {len(metrics['worst_images'])} image(s) with the lowest BEV F1 in {worst.folder}")
    elif worst is not None:
        print("--worst: no pictures (the data has no calib/ for the bird's-eye view)")
    return 0


def cmd_serve(args) -> int:
    import socket

    base = Path(args.model)
    if not base.is_dir():
        raise UserError(f"--model {base}: {'is a file' if base.exists() else 'not found'}; give the model base "
                        "folder `tfseg export` writes (e.g. runs/NAME/export)")
    if (base / "saved_model.pb").is_file():
        raise UserError(f"--model {base}: is one version; give the folder that holds the numbered versions "
                        f"({base.parent}), as TF Serving takes it")
    with socket.socket() as probe:  # a port in use is one line here, not a server log after the model loads
        try:
            probe.bind((args.host, args.port))
        except OSError as err:
            raise UserError(f"--host {args.host} --port {args.port}: cannot listen there ({err.strerror}); "
                            "choose another --port") from None
    from tfseg.serving.server import Limits, serve

    limits = Limits(max_body_bytes=int(args.max_body_mb * 2**20), max_pixels=args.max_pixels,
                    max_batch=args.max_batch, batch_timeout_ms=args.batch_timeout_ms)
    serve(base, args.name, args.host, args.port, limits, poll_seconds=args.poll_seconds)
    return 0


def cmd_export(args) -> int:
    from tfseg.runs import load_run
    from tfseg.serving.export import export_run

    tta = _test_time_augmentation(args)
    run = load_run(args.run_dir)
    base = Path(args.output) if args.output else run.directory / run.config.export.path
    check_writable(base, "export folder", folder=True)
    path = export_run(run, base, version=args.version, probabilities=args.probabilities, tta=tta)
    print(f"exported SavedModel to {path}")
    if args.tflite or args.onnx:
        from tfseg.serving.runtimes import export_runtimes, run_check_images

        check = run_check_images(run)
        print(f"checking the conversions on {check.description}")
        export_runtimes(path, args.tflite, args.onnx, check, lambda name, report: print(
            f"wrote {path / 'assets.extra' / name} ({report[name]['bytes']:,} bytes): "
            f"{runtime_summary(report[name], report.get('saved_model'))}", flush=True))
    return 0


def _test_time_augmentation(args):
    from tfseg.serving.test_time import TestTimeAugmentation

    return TestTimeAugmentation(flip=args.tta_flip, scales=tuple(args.tta_scales))


def _add_tta_args(parser, what: str) -> None:
    parser.add_argument("--tta-flip", action="store_true",
                        help=f"test-time augmentation: {what} also runs the network on the mirrored input and "
                             "averages the probabilities")
    parser.add_argument("--tta-scales", type=positive_float, nargs="+", default=[1.0], metavar="S",
                        help="test-time augmentation: network input scales whose probabilities are averaged, "
                             "e.g. 0.75 1 1.25 (default: 1)")


def runtime_summary(figures: dict, saved_model: dict | None) -> str:
    """One line of a converted file's check against the SavedModel."""
    if not figures["checked"]:
        return f"not checked: {figures['why']}"
    line = (f"classes agree on {100 * figures['class_agreement']:.3f} % of pixels, probabilities within "
            f"{figures['max_probability_difference']:.2g}")
    if saved_model is not None:
        line += (f"; MaxF {figures['max_f']:.4f} (SavedModel {saved_model['max_f']:.4f}), road IoU "
                 f"{figures['road_iou']:.4f} ({saved_model['road_iou']:.4f})")
    return line


def cmd_predict(args) -> int:
    from tfseg.predict import VIDEO_SUFFIXES, predict_folder, predict_video

    *stacked_with, main_input = args.input
    if len(args.input) == 1 and Path(main_input).suffix.lower() in VIDEO_SUFFIXES:
        summary = predict_video(args.model, main_input, args.output, overwrite=args.overwrite,
                                frame_masks=args.frame_masks, tta=_test_time_augmentation(args))
        for path, reason in summary.failed:
            print(f"incomplete {path}: {reason}", file=sys.stderr)
        print(f"wrote {len(summary.written)} segmented frame(s) to {args.output}")
        return 1 if summary.failed else 0
    summary = predict_folder(args.model, main_input, args.output, overwrite=args.overwrite,
                             probabilities=args.probabilities or args.kitti_submission, recursive=args.recursive,
                             tile=args.tile, batch_size=args.batch_size, stacked_with=stacked_with,
                             kitti_submission=args.kitti_submission, calib_dir=args.calib,
                             tta=_test_time_augmentation(args))
    for path, reason in summary.failed:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"{summary.report()}; outputs in {args.output}")
    return 1 if summary.failed else 0


def cmd_demo(args) -> int:
    from tfseg.demo import run_demo

    output = args.output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}"
    metrics = run_demo(_load(args, output))
    from tfseg.evaluate import format_report

    print(f"\nheld-out test split, {metrics['seconds']:.0f} s in all:")
    print(format_report(metrics))
    print(f"outputs in {output}: metrics.json gallery.png curves.png export/ predictions/")
    return 0


def cmd_models(args) -> int:
    import gc

    from tfseg.models import MODELS, build_model, model_stride
    from tfseg.models.cost import model_cost

    height, width = args.size
    names = list(dict.fromkeys(args.names)) or list(MODELS)
    unknown = [name for name in names if name not in MODELS]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}: choose among {', '.join(MODELS)}")
    smallest = max(model_stride(name) for name in names)
    if min(height, width) < smallest:
        raise UserError(f"--size {height} {width}: these models need at least {smallest} pixels each way "
                        "(their stride)")
    print(f"{'model':<16} {'parameters':>14} {f'GFLOPs at {height}x{width}':>20}   ({args.classes} classes)")
    for name in names:
        model = build_model(name, args.classes)
        print(f"{name:<16} {model.count_params():>14,} {model_cost(model, (height, width)).gflops:>20,.1f}")
        del model
        gc.collect()  # the FCNs hold half a gigabyte of weights each
    print_imagenet_weights()
    return 0


def print_imagenet_weights() -> None:
    """Which ImageNet weights files are in the Keras cache, and the presets that use them."""
    from tfseg.config import load_config, preset_names
    from tfseg.models.encoders import IMAGENET_FILES, keras_cache, weights_file

    users: dict[str, list[str]] = {}
    for preset in preset_names():
        model = load_config(preset).model
        if model.options.get("encoder_weights") == "imagenet":
            users.setdefault(weights_file(model.name), []).append(preset)
    cache = keras_cache()
    print(f"\nImageNet weights in {cache} (KERAS_HOME/models):")
    for file in sorted(set(IMAGENET_FILES.values())):
        state = "present" if (cache / file).is_file() else "missing"
        print(f"  {file:<52} {state:<8} {', '.join(users.get(file, [])) or '-'}")


BENCHMARKS = {"pipeline": "tfseg.bench.pipeline", "train": "tfseg.bench.train_step",
              "model": "tfseg.bench.model_step", "predict": "tfseg.bench.predict", "serve": "tfseg.bench.serve",
              "accuracy": "tfseg.bench.accuracy"}


def cmd_bench(args) -> int:
    import importlib

    return importlib.import_module(BENCHMARKS[args.which]).main(args.options)


def _data_config(args):
    """The data section named by --config/--set, with --dataset and --data-dir on top."""
    from tfseg.config import load_config

    overrides = list(args.overrides)
    if args.dataset:
        overrides.append(f"data.source={args.dataset}")
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    return load_config(args.config, overrides).data


def cmd_data_prepare(args) -> int:
    from tfseg.data.prepare import DATASETS, prepare

    dataset = args.dataset or _data_config(args).source
    if dataset not in DATASETS:
        raise UserError(f"--dataset {dataset}: nothing to download; prepare works for {', '.join(DATASETS)}")
    if not args.data_dir:
        raise UserError("--data-dir is required: where the archives go and are extracted")
    if args.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        raise UserError(f"--sha256 {args.sha256}: not a SHA-256 (64 hexadecimal digits)")
    if args.url and not re.match(r"https?://", args.url):
        raise UserError(f"--url {args.url}: give an http:// or https:// address (an archive you already "
                        "have goes into --data-dir)")
    if Path(args.data_dir).exists() and not Path(args.data_dir).is_dir():
        raise UserError(f"--data-dir {args.data_dir}: is a file; give the folder the dataset goes in")
    result = prepare(dataset, args.data_dir, sha256=args.sha256, url={dataset: args.url} if args.url else None,
                     extract=not args.no_extract, allow_unverified=args.allow_unverified)
    for name, digest in result.archives.items():
        print(f"{name}: sha256 {digest}, {result.extracted.get(name, 0)} file(s) extracted")
    for name, folder in result.found.items():
        print(f"{name}: already extracted in {folder}")
    if result.found:
        print(f"{result.dataset}: layout complete, {result.examples} examples (`tfseg data check` reads every file)")
    if args.tfds:
        from tfseg.data.tfds_builders import prepare_tfds

        config = _data_config(args)
        print(f"TFRecords in {prepare_tfds(dataset, args.data_dir, config.tfds_data_dir)}")
    print(f"ready: --set data.source={dataset} --set data.data_dir={result.directory}")
    return 0


def cmd_data_check(args) -> int:
    config = _data_config(args)
    from tfseg.data.check import check
    from tfseg.data.sources import make_source

    problems = check(make_source(config), progress=True)
    for path, reason in problems:
        print(f"{path}: {reason}")
    print(f"{len(problems)} problem(s) found" if problems else "every image/mask pair is fine")
    return 1 if problems else 0


def cmd_data_stats(args) -> int:
    config = _data_config(args)
    if args.json:
        check_writable(args.json, "--json")
    from tfseg.data.sources import make_source
    from tfseg.data.stats import format_stats, stats

    result = stats(make_source(config), progress=True)
    print(format_stats(result))
    if args.json:
        write_text(args.json, json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json} (every count, per split)")
    return 0


def cmd_data_split(args) -> int:
    config = _data_config(args)
    check_writable(args.output, "--output")
    from tfseg.data.sources import make_source
    from tfseg.data.splits import write_split

    record = write_split(make_source(config), args.output, overwrite=args.overwrite)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in record.items() if isinstance(v, list))
    print(f"wrote {args.output} ({sizes}); use it with --set data.split_file={args.output}")
    return 0


def cmd_data_preview(args) -> int:
    config = _data_config(args)
    if Path(args.output).suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UserError(f"--output {args.output}: give a .png or .jpg file name")
    check_writable(args.output, "--output")
    from tfseg.data.preview import save_preview

    save_preview(config, args.output, count=args.count, seed=args.seed)
    print(f"wrote {args.output}")
    return 0


def _add_data_parsers(commands) -> None:
    from tfseg.config import SOURCE_NAMES

    data = commands.add_parser("data", help="prepare, check, describe and preview datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="DATA_COMMAND")

    def add(name, func, help_text):
        parser = data_commands.add_parser(name, help=help_text)
        parser.add_argument("--dataset", choices=SOURCE_NAMES, help="the data source (default: the config's)")
        parser.add_argument("--data-dir", help="the dataset's folder (or KITTI's zip)")
        _add_config_args(parser, None)
        parser.set_defaults(func=func)
        return parser

    prepare = add("prepare", cmd_data_prepare, "download (resumable, checksummed) and extract a dataset")
    prepare.add_argument("--sha256", help="expected SHA-256 of the archive (overrides the built-in one)")
    prepare.add_argument("--url", help="download from this address instead (a mirror)")
    prepare.add_argument("--no-extract", action="store_true", help="keep the archive packed")
    prepare.add_argument("--allow-unverified", action="store_true",
                         help="accept an archive that has no known checksum (its SHA-256 is printed)")
    prepare.add_argument("--tfds", action="store_true", help="also write tensorflow-datasets TFRecords")
    add("check", cmd_data_check, "verify every image/mask pair; exit 1 if any is bad")
    stats = add("stats", cmd_data_stats, "images per split, sizes, class frequencies, class weights")
    stats.add_argument("--json", help="write the statistics to this JSON file")
    split = add("split", cmd_data_split, "write the seeded train/val split to a file")
    split.add_argument("--output", "-o", required=True, help="the split JSON file to write")
    split.add_argument("--overwrite", action="store_true")
    preview = add("preview", cmd_data_preview, "a grid of augmented training pairs, as the network sees them")
    preview.add_argument("--output", "-o", required=True, help="PNG file to write")
    preview.add_argument("--count", type=positive_int, default=8, help="number of pairs (default 8)")
    preview.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    from tfseg.config import SOURCE_NAMES

    parser = ArgumentParser(prog="tfseg", description="Semantic segmentation with TensorFlow/Keras.")
    parser.add_argument("--version", action="version", version=f"tfseg {__version__}")
    parser.add_argument("--verbose", action="store_true",
                        help="also show TensorFlow's own start-up log and the traceback of an unexpected error")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="train, evaluate, export and predict on generated data "
                                            "(presets on synthetic or fgbg data)")
    demo.add_argument("--output", "-o", help="run directory (default: runs/demo-<time>)")
    _add_config_args(demo, "demo_unet")
    demo.set_defaults(func=cmd_demo)

    train = commands.add_parser("train", help="train a model; resumes an interrupted run")
    _add_config_args(train, "demo_unet")
    train.add_argument("--run-dir", help="where checkpoints and logs go (default: the config's run_dir)")
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser(
        "evaluate", help="score a run, a SavedModel or a folder of predictions at the labels' own resolution")
    evaluate.add_argument("--run-dir", help="a finished run: its model, served as exported, on its own data")
    evaluate.add_argument("--model", help="an exported SavedModel, or its .tflite or .onnx file (with --dataset and "
                                          "--data-dir)")
    evaluate.add_argument("--predictions", help="a folder of PNGs named <image id>.png (KITTI: also "
                                                "um_road_000000.png), with --dataset and --data-dir")
    evaluate.add_argument("--format", choices=PREDICTION_FORMATS, default="auto",
                          help="what the prediction PNGs hold (default: told by their values)")
    evaluate.add_argument("--split", default="val", help="val, test, train or all (default: val)")
    evaluate.add_argument("--json", help="write the metrics here, and a confusion-matrix PNG beside it "
                                         "(default with --run-dir: RUN_DIR/metrics_SPLIT.json)")
    evaluate.add_argument("--worst", type=non_negative_int, default=0, metavar="N",
                          help="KITTI Road with calib/: draw the N images with the lowest bird's-eye-view F1, "
                               "errors coloured in perspective and BEV, into JSON_STEM_worst/ beside the metrics")
    evaluate.add_argument("--dataset", choices=SOURCE_NAMES, help="the ground truth's data source")
    evaluate.add_argument("--data-dir", help="the ground truth's folder (or KITTI's zip)")
    _add_config_args(evaluate, None)
    _add_tta_args(evaluate, "--run-dir's model, or --model's SavedModel,")
    evaluate.set_defaults(func=cmd_evaluate)

    serve = commands.add_parser("serve", help="serve exported versions with TF Serving's REST API and a web page")
    serve.add_argument("--model", required=True, help="the model base folder `tfseg export` writes (its numbered "
                                                      "versions; the highest serves)")
    serve.add_argument("--name", default="tfseg", help="the model's name in the REST paths (default: tfseg)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this "
                                                           "machine only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=positive_int, default=8501, help="default: 8501, TF Serving's REST port")
    serve.add_argument("--max-batch", type=positive_int, default=8,
                       help="instances of concurrent requests run together, at most (default: 8)")
    serve.add_argument("--batch-timeout-ms", type=positive_float, default=5.0,
                       help="how long the first request of a batch waits for others (default: 5)")
    serve.add_argument("--max-body-mb", type=positive_float, default=64.0,
                       help="larger request bodies get 413 (default: 64)")
    serve.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                       help="larger images get 400 (default: 40000000 per image)")
    serve.add_argument("--poll-seconds", type=positive_float, default=2.0,
                       help="how often new versions are looked for (default: 2)")
    serve.set_defaults(func=cmd_serve)

    export = commands.add_parser("export", help="write a SavedModel version for TF Serving: uint8 images or "
                                                "encoded PNG/JPEG of any size in, class maps out")
    export.add_argument("--run-dir", required=True)
    export.add_argument("--output", help="the model base folder; the SavedModel goes to OUTPUT/<version>/ "
                                         "(default: RUN_DIR/export)")
    export.add_argument("--version", type=positive_int, help="version number (default: one more than the highest "
                                                    "there); an existing version is never overwritten")
    export.add_argument("--tflite", action="store_true",
                        help="also write TFLite models (float32, float16, int8 calibrated on training images) "
                             "beside it, each checked against the SavedModel on the run's validation images")
    export.add_argument("--onnx", action="store_true",
                        help="also write an ONNX model (needs tf2onnx; checked with onnxruntime if installed)")
    export.add_argument("--no-probabilities", dest="probabilities", action="store_false",
                        help="return the class map only (smaller responses); predict --probabilities and "
                             "two-class evaluate scores then need another export")
    _add_tta_args(export, "the SavedModel (and its tfseg.json says so)")
    export.set_defaults(func=cmd_export)

    predict = commands.add_parser("predict", help="segment a folder of images, or a video, with a SavedModel")
    predict.add_argument("--model", required=True, help="SavedModel directory from `tfseg export`, or its .tflite "
                                                        "or .onnx file (assets.extra/, beside tfseg.json)")
    predict.add_argument("--input", "-i", required=True, action="append",
                         help="folder of .png/.jpg/.jpeg/.bmp images, or a .mp4/.avi/.mov/.mkv video; "
                              "for a model of stacked images (e.g. background + composite), once per "
                              "image in the model's order: files are paired by name")
    predict.add_argument("--output", "-o", required=True,
                         help="folder for masks/ and overlays/ (images) or <name>_overlay.mp4 (video)")
    predict.add_argument("--overwrite", action="store_true", help="replace existing output files")
    predict.add_argument("--probabilities", action="store_true",
                         help="two-class models: also write OUT/probabilities/<name>.png, the class-1 "
                              "probability as 0..255 (KITTI road: named um_road_000000.png, the "
                              "benchmark's submission format)")
    predict.add_argument("--kitti-submission", action="store_true",
                         help="KITTI Road test images: with --probabilities, also write the road maps in the "
                              "benchmark's bird's-eye view (OUT/bev/um_road_000000.png) and pack them into "
                              "OUT/kitti_road_bev.zip, the file to upload")
    predict.add_argument("--calib", metavar="DIR",
                         help="the images' KITTI calibration files <id>.txt (default: calib/ beside --input)")
    predict.add_argument("--recursive", "-r", action="store_true",
                         help="also segment the images in sub-folders; the outputs mirror them")
    predict.add_argument("--tile", type=_tile_setting, default="auto",
                         help="segment big images in overlapping tiles of N pixels with bounded memory: "
                              "auto (images whose network input exceeds 2048x2048, tiles of 1024), "
                              "off, or N for every image (default auto)")
    predict.add_argument("--batch-size", type=positive_int, default=4,
                         help="images of one size segmented together (default 4)")
    predict.add_argument("--frame-masks", action="store_true",
                         help="video: also write each frame's mask to <name>_masks/NNNNNN.png")
    _add_tta_args(predict, "a SavedModel exported without it")
    predict.set_defaults(func=cmd_predict)

    models = commands.add_parser("models", help="list the models with parameter counts and FLOPs")
    models.add_argument("names", nargs="*", help="models to list (default: all)")
    models.add_argument("--size", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"),
                        help="input size for the FLOPs (default 512 512)")
    models.add_argument("--classes", type=positive_int, default=21, help="number of classes (default 21)")
    models.set_defaults(func=cmd_models)

    bench = commands.add_parser("bench", help="benchmarks: input pipeline vs OpenCV; train step by "
                                              "precision/XLA; model steps on Keras/JAX (vs PyTorch); "
                                              "predict vs the model alone; tfseg serve vs the model in-process; "
                                              "accuracy per minute of training, presets vs a plain script")
    bench.add_argument("which", choices=tuple(BENCHMARKS))
    bench.add_argument("options", nargs=argparse.REMAINDER,
                       help="see tfseg bench pipeline|train|model|predict|serve|accuracy --help")
    bench.set_defaults(func=cmd_bench)

    _add_data_parsers(commands)
    return parser


def _tile_setting(text: str) -> str | int:
    if text in ("auto", "off"):
        return text
    if text.isdigit() and int(text) >= 64:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: auto, off, or a tile size of at least 64 pixels")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # TensorFlow's C++ start-up chatter differs by machine and buries tfseg's own lines; a
    # user who set TF_CPP_MIN_LOG_LEVEL, or asks for --verbose, sees TensorFlow's log.
    if not args.verbose and "TF_CPP_MIN_LOG_LEVEL" not in os.environ:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        silence_tensorflow_startup()
    if not args.verbose:  # FFmpeg's own lines about a damaged video: tfseg names the file itself
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    # SIGTERM (``docker stop``) stops a run the same clean way as Ctrl-C. In a container
    # tfseg is process 1, which the kernel spares from signals it has no handler for:
    # without this, ``docker stop`` would wait and then SIGKILL the run.
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main_thread else None
    try:
        return args.func(args)
    except UserError as err:
        print(f"tfseg: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tfseg: interrupted; training resumes from its last checkpoint "
              "when the same command runs again", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, or a failure tfseg does not know yet: say what, then how to see more
        summary = (str(err).strip().splitlines() or [""])[0][:300]
        print(f"tfseg: error: {args.command} failed unexpectedly: {type(err).__name__}: {summary}"
              + ("" if args.verbose else " (run it again with `tfseg --verbose` for the traceback)"),
              file=sys.stderr)
        if args.verbose:
            traceback.print_exc()
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
