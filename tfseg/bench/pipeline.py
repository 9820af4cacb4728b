"""``tfseg bench pipeline``: how fast the tf.data input pipeline feeds a model on this machine.

The candidates do the same work on the same KITTI-sized PNG files (:mod:`.staging`), side
by side in one process and in alternating rounds (machines are shared and noisy, so only
ratios taken within a round mean much):

* **tfseg, first epoch** -- :func:`tfseg.data.pipeline.build_dataset` on a fresh dataset
  with ``cache: memory``: PNG decode (image and ground truth), resize, CLAHE, then the
  random flip, normalisation and batching. Inherently cold: graph tracing and iterator
  creation are kept off the clock and the process is warmed up on another dataset, but a
  fresh pipeline still pays a one-off start-up (function instantiation, first-call
  kernel creation: ~0.15 s of CPU) inside its first epoch.
* **tfseg, uncached steady state** -- ``cache: ""``, second epoch: the same decoding
  work per image without the start-up, i.e. the first epoch of a long training run.
* **tfseg, cached** -- the ``cache: memory`` iterator after its first pass: only shuffle,
  flip, normalisation and batching remain.
* **OpenCV loop** (:mod:`.reference`) -- a plain single-threaded loop doing that work image
  by image. It follows tfseg's order (resize before CLAHE), so both equalize the same
  number of pixels; its output is checked against tfseg's (labels identical, images within
  the few grey levels by which bilinear resizes round differently).

The tfseg rows (:mod:`.candidates`) are repeated for every CLAHE backend of the input
pipeline (``data.preprocess.clahe_backend``). Besides throughput, every candidate reports
the CPU time it spent per image (all threads): unlike images/s, that barely depends on
what else the machine is running, so it separates a slow pipeline from a starved one.

A last measurement (:mod:`.clahe_core`) runs in a subprocess pinned to one core: TF CLAHE
against OpenCV's on a full-size colour image.

:func:`bench_pipeline` returns (and optionally writes as JSON) every per-round number and
the medians; :func:`tfseg.bench.report.print_report` prints the table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
from pathlib import Path

import numpy as np

from tfseg.arguments import ArgumentParser, positive_int
from tfseg.bench.candidates import CLIP_LIMIT, TILE_GRID, TfsegCandidate, clahe_backends
from tfseg.bench.clahe_core import run_clahe_one_core
from tfseg.bench.host import describe_cpu, load_average
from tfseg.bench.reference import OpenCvLoop, check_equivalence
from tfseg.bench.report import print_report, write_json
from tfseg.bench.staging import KITTI_SIZE, find_kitti_sample, stage_kitti_tree, staged_pairs
from tfseg.bench.stats import ratio_summary, summary
from tfseg.fileio import check_writable

DEFAULT_RESIZE = (192, 624)


def bench_pipeline(data_dir: str | None = None, output_json: str | None = None,
                   num_images: int = 48, epochs: int = 3, rounds: int = 3, batch_size: int = 8,
                   resize: tuple[int, int] = DEFAULT_RESIZE, image_size: tuple[int, int] = KITTI_SIZE,
                   synthetic: bool = False, backends: list[str] | None = None,
                   clahe_rounds: int = 5, clahe_repeats: int = 20,
                   clahe_image_size: tuple[int, int] = KITTI_SIZE, seed: int = 0,
                   work_dir: str | None = None) -> dict:
    """Measures the tfseg input pipeline against a plain OpenCV loop; see the module doc.

    Args:
      data_dir: KITTI Road folder or ``data_road.zip`` whose labelled images are copied
        (repeated as needed) to ``num_images`` files; None uses the shared KITTI sample,
        or generated road scenes of ``image_size`` where the sample is missing.
      output_json: where to write the result (None: nowhere).
      num_images: files per epoch; rounded up to a multiple of ``batch_size``.
      epochs: epochs of the memory-cached tfseg dataset per round: one uncached (the
        first) and ``epochs - 1`` cached; at least 2.
      rounds: alternating rounds; each runs every candidate once (one OpenCV epoch).
      synthetic: generate road scenes even if real images are available.
      backends: CLAHE backends of the tfseg pipeline to measure (default: all it offers).
      clahe_*: the one-core CLAHE comparison (``clahe_rounds=0`` skips it).
      work_dir: where to stage the files (default: a temporary folder, deleted after).

    Returns the result dictionary (also written to ``output_json``).
    """
    if epochs < 2 or rounds < 1:
        raise ValueError("need epochs >= 2 (one uncached, at least one cached) and rounds >= 1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import tensorflow as tf

    backends = list(backends or clahe_backends())
    num_images = -(-max(num_images, batch_size) // batch_size) * batch_size
    device = describe_cpu()
    device["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    temp = tempfile.mkdtemp(prefix="tfseg-bench-", dir=work_dir)
    try:
        root, origin = stage_kitti_tree(Path(temp) / "data", num_images, data_dir, synthetic,
                                        image_size, seed)
        pairs = staged_pairs(root)
        # Warm the page cache so that every candidate decodes from memory, not from disk.
        for image_path, gt_path in pairs:
            Path(image_path).read_bytes(), Path(gt_path).read_bytes()
        sizes = sorted({cv2.imread(p, cv2.IMREAD_UNCHANGED).shape[:2] for p, _ in pairs})

        tfseg = [TfsegCandidate(b, str(root), resize, batch_size, epochs) for b in backends]
        loop = OpenCvLoop(pairs, resize, batch_size, seed)
        # Warm-up on a different, tiny dataset: first-use costs of the process (kernel
        # loading, thread pools, libpng, OpenCV) are not what an epoch of training pays.
        warm_root, _ = stage_kitti_tree(Path(temp) / "warmup", batch_size, data_dir, synthetic,
                                        image_size, seed + 1)
        for candidate in tfseg:
            TfsegCandidate(candidate.backend, str(warm_root), resize, batch_size, 2).run(seed)
        next(OpenCvLoop(staged_pairs(warm_root), resize, batch_size, seed).epoch())
        equivalence = check_equivalence(str(root), pairs, resize, backends)

        runs: dict[str, list[dict]] = {row: [] for c in tfseg for row in c.rows()}
        runs["opencv_loop"] = []
        setup: list[float] = []
        jobs = [*tfseg, loop]
        for r in range(rounds):
            # Alternate the order, so that a slow spell of the machine does not always
            # hit the same candidate.
            for job in (jobs if r % 2 == 0 else jobs[::-1]):
                if job is loop:
                    runs["opencv_loop"].append(loop.time_epoch())
                    continue
                measured = job.run(seed + r)
                setup.append(measured.pop("iterator_setup_s"))
                for row, rates in measured.items():
                    runs[row].append(rates)
    finally:
        shutil.rmtree(temp, ignore_errors=True)

    clahe_result = None
    if clahe_rounds > 0:
        sample = find_kitti_sample()
        image_path = None
        if not synthetic and tuple(clahe_image_size) == KITTI_SIZE and sample is not None:
            image_path = str(sorted((sample / "training" / "image_2").glob("*.png"))[0])
        clahe_result = run_clahe_one_core(clahe_image_size, clahe_rounds, clahe_repeats, image_path)

    def column(row, key):
        return [run[key] for run in runs[row]]

    ratios = {}
    for row in runs:
        if row == "opencv_loop":
            continue
        ratio = ratio_summary(column(row, "images_per_s"), column("opencv_loop", "images_per_s"))
        # OpenCV's CPU time per image over tfseg's: the work tfseg saves per image. Times
        # the usable cores it bounds the throughput ratio on an otherwise idle machine
        # (tfseg spreads over every core, the loop uses one).
        cpu_ratio = statistics.median(a / b for a, b in zip(column("opencv_loop", "cpu_ms_per_image"),
                                                            column(row, "cpu_ms_per_image")))
        ratios[row] = {**ratio, "cpu_time_ratio": cpu_ratio,
                       "bound_on_idle_cores": cpu_ratio * device["usable_cpus"]}
    device["load_average_at_end"] = load_average()
    result = {
        "benchmark": "tfseg pipeline",
        "device": device,
        "versions": {"tensorflow": tf.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
        "settings": {
            "data": origin, "num_images": num_images, "image_sizes": [list(s) for s in sizes],
            "batch_size": batch_size, "epochs_per_round": epochs, "rounds": rounds,
            "resize": list(resize), "clahe": {"clip_limit": CLIP_LIMIT, "tile_grid": list(TILE_GRID)},
            "clahe_backends": backends, "augment": "random horizontal flip",
            "opencv_threads": 1, "tf_threads": "default (all usable cores)",
        },
        "equivalence": equivalence,
        "images_per_s": {row: summary(column(row, "images_per_s")) for row in runs},
        "cpu_ms_per_image": {row: summary(column(row, "cpu_ms_per_image")) for row in runs},
        "cores_busy": {row: summary(column(row, "cores_busy")) for row in runs},
        # Creating a tfseg iterator, once per tfseg candidate and round. Not in the
        # first-epoch rates: paid once per training run, not per image.
        "tfseg_iterator_setup_s": summary(setup),
        "ratios_vs_opencv": ratios,
        "clahe_one_core": clahe_result,
    }
    if output_json:
        write_json(output_json, result)
    return result


def epochs_of_a_round(text: str) -> int:
    """An argparse type: at least 2 epochs, one uncached and at least one from the cache."""
    if text.strip().isdigit() and int(text) >= 2:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r}: at least 2 (one uncached epoch, then cached ones)")


def main(argv: list[str] | None = None) -> int:
    """``tfseg bench pipeline [options]``."""
    parser = ArgumentParser(prog="tfseg bench pipeline",
                                     description="Throughput of the tfseg input pipeline vs a plain OpenCV loop.")
    parser.add_argument("--data-dir", help="KITTI Road folder or data_road.zip (default: the shared sample)")
    parser.add_argument("--json", help="write the result to this JSON file")
    parser.add_argument("--images", type=positive_int, default=48, help="images per epoch (default 48)")
    parser.add_argument("--epochs", type=epochs_of_a_round, default=3, help="epochs of the cached tfseg dataset per round (default 3)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--synthetic", action="store_true", help="generated road scenes, not KITTI copies")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json, "--json")
    result = bench_pipeline(args.data_dir, args.json, num_images=args.images, epochs=args.epochs,
                            rounds=args.rounds, batch_size=args.batch_size, synthetic=args.synthetic)
    print_report(result)
    if args.json:
        print(f"wrote {args.json}")
    return 0
