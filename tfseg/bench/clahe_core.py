"""TensorFlow's CLAHE against OpenCV's on one core, in a fresh process.

TensorFlow's thread pools can only be sized before it initialises, so the measurement runs
in a subprocess (:func:`run_clahe_one_core`) pinned to one CPU (:func:`clahe_one_core_worker`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tfseg.bench.candidates import CLIP_LIMIT, TILE_GRID
from tfseg.bench.staging import KITTI_SIZE, synthetic_road_scene
from tfseg.bench.stats import ratio_summary, summary


def clahe_one_core_worker(image_size=KITTI_SIZE, rounds: int = 5, repeats: int = 20,
                          image_path: str | None = None, xla: bool = True) -> dict:
    """TF CLAHE vs OpenCV CLAHE on one core. Run it in a fresh process: it pins the process
    to one CPU and sizes TensorFlow's thread pools, which only works before TF initialises.

    Both equalize Y of YCrCb of an RGB image (uint8 ``[H, W, 3]``) and convert back
    (tfseg's colour CLAHE). ``repeats`` calls per candidate per round, alternating the
    candidates' order. Extra, informational rows: the TF CLAHE compiled by XLA (not
    bit-exact, see :mod:`tfseg.data.clahe`) and OpenCV's inside a graph.
    """
    if sys.platform.startswith("linux"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import cv2
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    cv2.setNumThreads(1)
    from tfseg.data import clahe as clahe_module

    if image_path:
        rgb = cv2.imread(image_path, cv2.IMREAD_COLOR)[..., ::-1]
        rgb = np.ascontiguousarray(rgb[:image_size[0], :image_size[1]])
    else:
        rgb = synthetic_road_scene(np.random.default_rng(0), *image_size)[0]
    height, width = rgb.shape[:2]
    cv_clahe = cv2.createCLAHE(CLIP_LIMIT, TILE_GRID)

    def opencv(x):
        y, cr, cb = cv2.split(cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb))
        return cv2.cvtColor(cv2.merge([cv_clahe.apply(y), cr, cb]), cv2.COLOR_YCrCb2RGB)

    spec = [tf.TensorSpec([height, width, 3], tf.uint8)]

    def graph(fn, **kwargs):
        return tf.function(lambda x: fn(x, CLIP_LIMIT, TILE_GRID), input_signature=spec, **kwargs)

    tensor = tf.constant(rgb)  # already a tensor, so the conversion is not timed
    functions = {"tensorflow": graph(clahe_module.clahe),
                 "opencv_in_graph": graph(clahe_module.clahe_opencv)}
    if xla:
        functions["tensorflow_xla"] = graph(clahe_module.clahe, jit_compile=True)
    candidates = {name: (lambda fn=fn: fn(tensor)) for name, fn in functions.items()}
    candidates["opencv"] = lambda: opencv(rgb)
    reference = opencv(rgb)
    exact = {name: bool(np.array_equal(fn(tensor).numpy(), reference)) for name, fn in functions.items()}
    names = list(candidates)
    for name in names:  # warm-up: tracing, kernel initialisation, caches
        for _ in range(3):
            candidates[name]()
    per_round = {name: [] for name in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            for _ in range(repeats):
                candidates[name]()
            per_round[name].append(repeats / (time.perf_counter() - start))
    return {"image_size": [height, width], "rounds": rounds, "repeats_per_round": repeats,
            "equals_opencv": exact,
            "cpu": sorted(os.sched_getaffinity(0)) if sys.platform.startswith("linux") else None,
            "images_per_s": {n: summary(v) for n, v in per_round.items()},
            "ratio_tf_vs_opencv": ratio_summary(per_round["tensorflow"], per_round["opencv"])}


def run_clahe_one_core(image_size=KITTI_SIZE, rounds: int = 5, repeats: int = 20,
                       image_path: str | None = None, timeout: float = 600) -> dict:
    """Runs :func:`clahe_one_core_worker` in a fresh Python process and returns its result."""
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [package_parent] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    code = ("import json, sys; from tfseg.bench.clahe_core import clahe_one_core_worker; "
            "print('RESULT ' + json.dumps(clahe_one_core_worker(**json.loads(sys.argv[1]))))")
    kwargs = {"image_size": list(image_size), "rounds": rounds, "repeats": repeats,
              "image_path": image_path}
    done = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], env=env,
                          capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"CLAHE benchmark subprocess failed (exit {done.returncode}):\n"
                       f"{done.stderr[-3000:]}")
