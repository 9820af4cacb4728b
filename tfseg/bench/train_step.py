"""Time of one training step (forward + backward + Adam update) per model and configuration.

Every model is measured in four configurations: {float32, mixed_bfloat16} x {XLA off,
XLA on}. Each configuration gets its own model instance (a dtype policy applies when
layers are built), compiled with Adam and tfseg's :class:`MaskedSparseCrossEntropy`, and
trained with ``model.train_on_batch`` on one fixed in-memory batch (no input pipeline).

Method, for a machine shared with other jobs:

* the four instances of one model are built, compiled and warmed up first (the first
  call traces and compiles; ``warmup`` more steps follow); none of that is timed;
* then ``rounds`` timing rounds run over the configurations in turn (round-robin, the
  starting configuration rotating each round), ``steps`` timed steps per configuration
  per round, so that load from other jobs hits every configuration alike;
* each step is timed on its own (``train_on_batch`` returns the loss as a Python float,
  which waits for the step to finish); the median over all timed steps is reported.

A configuration that fails (a kernel missing for bfloat16 or XLA, say) is recorded with
its error and skipped; the others go on. Models are measured one after another and
released in between (``keras.backend.clear_session`` and ``gc``).

FLOPs: ``model_cost(model, (H, W)).gflops`` (forward, batch 1, 2 x multiply-adds of the
convolutions) x batch x 3, the usual estimate of forward + backward (input and weight
gradients). Achieved GFLOP/s = that / median step time.

    >>> result = bench_train_step(("unet",), height=192, width=624, batch=2)
    >>> print(format_results(result))

Command line: ``tfseg bench train --models fcn8_vgg16 unet --height 192 --width 624``.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time

import keras
import numpy as np

from tfseg.arguments import ArgumentParser, json_object, non_negative_int, positive_float, positive_int
from tfseg.losses import MaskedSparseCrossEntropy
from tfseg.models import build_model
from tfseg.models.cost import model_cost

PRECISIONS = ("float32", "mixed_bfloat16")
XLA = (False, True)
CONFIGS = tuple((precision, xla) for precision in PRECISIONS for xla in XLA)
BASELINE = ("float32", False)


def _error_text(err: BaseException, limit: int = 600) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    text = " ".join(text.split())  # XLA errors span many lines
    return text if len(text) <= limit else text[:limit] + " ..."


def _batch(batch: int, height: int, width: int, channels: int, num_classes: int,
           ignore_index: int, void_fraction: float, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, height, width, channels), dtype=np.float32)
    y = rng.integers(0, num_classes, size=(batch, height, width)).astype(np.int32)
    y[rng.random(y.shape) < void_fraction] = ignore_index
    return x, y


def _environment() -> dict:
    env = {"keras": keras.__version__, "backend": keras.backend.backend(),
           "python": platform.python_version(), "cpu_count": os.cpu_count(),
           "machine": platform.machine()}
    if env["backend"] == "tensorflow":
        import tensorflow as tf  # only for the record; the benchmark itself is Keras

        env["tensorflow"] = tf.__version__
        env["gpus"] = len(tf.config.list_physical_devices("GPU"))
        env["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
        env["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    return env


def _build(name: str, num_classes: int, options: dict, precision: str, xla: bool,
           learning_rate: float, seed: int) -> keras.Model:
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        keras.utils.set_random_seed(seed)
        model = build_model(name, num_classes, **options)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                      loss=MaskedSparseCrossEntropy(), jit_compile=xla)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model


def _step(model: keras.Model, x, y) -> float:
    """One optimizer step; returns the loss (a float, so the step has finished)."""
    loss = float(model.train_on_batch(x, y))  # the loss alone: compiled without metrics
    if not np.isfinite(loss):
        raise FloatingPointError(f"loss is {loss}")
    return loss


def bench_train_step(models=("fcn8_vgg16", "unet"), height: int = 192, width: int = 624,
                     batch: int = 2, steps: int = 2, rounds: int = 3, warmup: int = 1,
                     num_classes: int = 2, model_options: dict | None = None,
                     configs=CONFIGS, learning_rate: float = 1e-4, void_fraction: float = 0.05,
                     max_seconds: float | None = None, seed: int = 0, verbose: bool = False) -> dict:
    """Median time of one training step per model and configuration.

    Args:
      models: registry names (``tfseg.models.build_model``).
      height, width, batch: the input batch ``[batch, height, width, C]``; height and
        width must suit every model's stride.
      steps: timed steps per configuration per round; rounds: timing rounds.
      warmup: untimed steps after the first (tracing/compiling) call.
      model_options: ``{model name: {option: value}}`` passed to ``build_model``
        (default: the registry's defaults).
      configs: ``(policy name, jit_compile)`` pairs; the first of them that is
        ``("float32", False)`` is the baseline of the speed-up column.
      max_seconds: per model, no new timing round starts after this many seconds of
        timing (at least one round always runs).

    Returns ``{"settings", "environment", "models", "rows"}``: ``models`` maps each name
    to its ``params``, ``gflops_forward`` (per image) and ``gflops_per_step``; ``rows``
    holds one dict per (model, configuration) with ``model, precision, xla, status``
    ("ok" or "error"), ``error``, ``build_s``, ``first_step_s`` (trace + compile + one
    step), ``step_times`` (seconds, in order), ``median_s``, ``min_s``, ``images_per_s``,
    ``speedup`` (the baseline's median / this median: > 1 is faster) and ``gflops_per_s``.
    """
    model_options = dict(model_options or {})
    configs = tuple((str(p), bool(j)) for p, j in configs)
    result = {
        "settings": {"models": list(models), "height": height, "width": width, "batch": batch,
                     "steps": steps, "rounds": rounds, "warmup": warmup, "num_classes": num_classes,
                     "model_options": {m: dict(model_options.get(m, {})) for m in models},
                     "configs": [list(c) for c in configs], "optimizer": f"Adam({learning_rate})",
                     "loss": "MaskedSparseCrossEntropy", "max_seconds": max_seconds},
        "environment": _environment(),
        "models": {},
        "rows": [],
    }
    log = print if verbose else (lambda *a, **k: None)
    original_policy = keras.mixed_precision.global_policy().name
    for name in models:
        options = dict(model_options.get(name, {}))
        info = {"params": None, "gflops_forward": None, "gflops_per_step": None, "error": None}
        result["models"][name] = info
        rows, instances, data, model = [], {}, None, None
        for precision, xla in configs:
            row = {"model": name, "precision": precision, "xla": xla, "status": "ok", "error": None,
                   "build_s": None, "first_step_s": None, "step_times": [], "median_s": None,
                   "min_s": None, "images_per_s": None, "speedup": None, "gflops_per_s": None}
            rows.append(row)
            try:
                t0 = time.perf_counter()
                model = _build(name, num_classes, options, precision, xla, learning_rate, seed)
                row["build_s"] = time.perf_counter() - t0
                if info["gflops_forward"] is None:
                    cost = model_cost(model, (height, width))
                    info.update(params=int(cost.params), gflops_forward=cost.gflops,
                                gflops_per_step=cost.gflops * batch * 3)
                if data is None:
                    data = _batch(batch, height, width, int(model.inputs[0].shape[-1]),
                                  num_classes, MaskedSparseCrossEntropy().ignore_index,
                                  void_fraction, seed)
                t0 = time.perf_counter()
                _step(model, *data)
                row["first_step_s"] = time.perf_counter() - t0
                for _ in range(warmup):
                    _step(model, *data)
                instances[(precision, xla)] = model
                log(f"{name} {precision} xla={xla}: built in {row['build_s']:.1f} s, "
                    f"first step {row['first_step_s']:.1f} s")
            except Exception as err:  # noqa: BLE001 - record and go on
                row.update(status="error", error=_error_text(err))
                log(f"{name} {precision} xla={xla}: FAILED {row['error']}")
                model = None
                gc.collect()
        active = [r for r in rows if r["status"] == "ok"]
        start = time.perf_counter()
        for k in range(rounds):
            if k and max_seconds is not None and time.perf_counter() - start > max_seconds:
                log(f"{name}: time budget spent after {k} round(s)")
                break
            for i in range(len(active)):
                row = active[(i + k) % len(active)]  # rotate the starting configuration
                if row["status"] != "ok":
                    continue
                model = instances[(row["precision"], row["xla"])]
                try:
                    for _ in range(steps):
                        t0 = time.perf_counter()
                        _step(model, *data)
                        row["step_times"].append(time.perf_counter() - t0)
                except Exception as err:  # noqa: BLE001
                    row.update(status="error", error=_error_text(err))
            log(f"{name}: round {k + 1}/{rounds} done "
                + ", ".join(f"{r['precision']}/{'xla' if r['xla'] else 'noxla'} "
                            f"{r['step_times'][-1]:.2f}s" for r in active if r["step_times"]))
        for row in rows:
            if row["status"] == "ok" and row["step_times"]:
                row["median_s"] = statistics.median(row["step_times"])
                row["min_s"] = min(row["step_times"])
                row["images_per_s"] = batch / row["median_s"]
                if info["gflops_per_step"] is not None:
                    row["gflops_per_s"] = info["gflops_per_step"] / row["median_s"]
        base = next((r for r in rows if (r["precision"], r["xla"]) == BASELINE and r["median_s"]), None)
        for row in rows:
            if base is not None and row["median_s"]:
                row["speedup"] = base["median_s"] / row["median_s"]
        result["rows"].extend(rows)
        del instances, model, data
        keras.backend.clear_session()
        gc.collect()
    keras.mixed_precision.set_global_policy(original_policy)
    return result


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def format_results(result: dict) -> str:
    """A Markdown table of ``bench_train_step``'s result, with the failures below it."""
    s = result["settings"]
    lines = [f"One training step (forward + backward + Adam), batch {s['batch']} x "
             f"{s['height']}x{s['width']}, {s['num_classes']} classes; median of "
             f"{s['rounds']} round(s) x {s['steps']} step(s), interleaved; speed-up vs "
             "float32/XLA off of the same model (> 1 is faster).", "",
             "| model | params | GFLOP/step | precision | XLA | median s/step | min s | img/s "
             "| speed-up | GFLOP/s | first step s |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    failures = []
    for row in result["rows"]:
        info = result["models"][row["model"]]
        params = "-" if info["params"] is None else f"{info['params'] / 1e6:.3g}M"
        status = _fmt(row["median_s"], ".3f") if row["status"] == "ok" else "FAILED"
        lines.append(
            f"| {row['model']} | {params} | {_fmt(info['gflops_per_step'], '.4g')} | "
            f"{row['precision']} | {'on' if row['xla'] else 'off'} | {status} | "
            f"{_fmt(row['min_s'], '.3f')} | {_fmt(row['images_per_s'], '.2f')} | "
            f"{_fmt(row['speedup'], '.2f')}x | {_fmt(row['gflops_per_s'], '.4g')} | "
            f"{_fmt(row['first_step_s'], '.1f')} |")
        if row["error"]:
            failures.append(f"- {row['model']} {row['precision']} XLA "
                            f"{'on' if row['xla'] else 'off'}: {row['error']}")
    if failures:
        lines += ["", "Failures:", *failures]
    return "\n".join(lines)


def print_results(result: dict) -> None:
    print(format_results(result))


def main(argv=None) -> int:
    import json

    from tfseg.errors import UserError
    from tfseg.fileio import check_writable, write_text
    from tfseg.models import MODELS, check_options

    parser = ArgumentParser(prog="tfseg bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fcn8_vgg16", "unet"], choices=tuple(MODELS),
                        metavar="MODEL")
    parser.add_argument("--height", type=positive_int, default=192)
    parser.add_argument("--width", type=positive_int, default=624)
    parser.add_argument("--batch", type=positive_int, default=2)
    parser.add_argument("--steps", type=positive_int, default=2)
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--warmup", type=non_negative_int, default=1)
    parser.add_argument("--num-classes", type=positive_int, default=2)
    parser.add_argument("--options", type=json_object, default={}, help='JSON: {"unet": {"base_filters": 32}}')
    parser.add_argument("--max-seconds", type=positive_float, default=None)
    parser.add_argument("--json", help="also write the full result here")
    args = parser.parse_args(argv)
    for name, options in args.options.items():
        if name not in MODELS:
            raise UserError(f"--options: unknown model {name!r}: choose among {', '.join(MODELS)}")
        check_options(name, options)
    if args.json:
        check_writable(args.json, "--json")
    result = bench_train_step(tuple(args.models), height=args.height, width=args.width,
                              batch=args.batch, steps=args.steps, rounds=args.rounds,
                              warmup=args.warmup, num_classes=args.num_classes,
                              model_options=args.options,
                              max_seconds=args.max_seconds, verbose=True)
    print_results(result)
    if args.json:
        write_text(args.json, json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    failed = [row for row in result["rows"] if row["status"] != "ok"]
    for row in failed:  # measured what it could: the rest is named, and the exit status says so
        print(f"failed {row['model']} {row['precision']} xla={row['xla']}: {row['error']}", file=sys.stderr)
    return 1 if failed else 0
