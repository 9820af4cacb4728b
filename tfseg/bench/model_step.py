"""``tfseg bench model``: training and inference steps of tfseg's models with Keras on JAX.

Runs where TensorFlow is absent (a GPU machine with JAX, say): Keras is switched to its
JAX backend before it is first imported (:func:`use_jax_backend`) and nothing here
imports TensorFlow (tested). For every model and task (``train``: forward, backward and
Adam update with masked sparse cross-entropy ignoring label 255; ``inference``: forward
to logits) one jitted step runs on a fixed random batch kept on the device
(:mod:`.jax_steps`). Set-up is untimed: building, the first step (XLA compiles and, on a
GPU, autotunes: ~50 s for a U-Net on an H200) and ``warmup`` more steps. Then every step
is timed on its own, until its results are ready on the device.

With ``--reference torch``, the U-Net is also timed in PyTorch (:mod:`.torch_reference`,
in its own process, :mod:`.remote`), compiled and eager, alternating with the Keras
candidate in rounds (:mod:`.rounds`); the report gives Keras' throughput over each.

Reported per model and task: images/s (batch over the median step), step-time p50 and
p90 in ms, TFLOP/s (``tfseg.models.cost.model_cost`` forward GFLOPs of one image x batch,
x 3 for training) and its fraction of a bf16 matmul peak measured in the same run
(:mod:`.peak`); with the device, the JAX and Keras versions and the precision policy.
XLA is always on: JAX compiles every jitted step.

    python -m tfseg.cli bench model --models unet --height 576 --width 576 --channels 1 \\
        --batch 8 --inference-batch 16 --reference torch --json unet.json
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
import time

from tfseg.arguments import ArgumentParser, json_object, non_negative_int, positive_int
from tfseg.bench.model_report import load, markdown, merge
from tfseg.bench.remote import RemoteCandidate, Worker, WorkerError
from tfseg.bench.rounds import error_text, round_ratios, run_rounds
from tfseg.bench.stats import step_summary
from tfseg.errors import UserError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
TASKS = ("train", "inference")
TORCH_MODES = ("compile", "eager")
# Models the PyTorch reference reproduces.
TORCH_MODELS = ("unet",)
# Without it JAX takes 75% of a GPU's memory up front, leaving too little for the
# PyTorch reference beside it.
REFERENCE_JAX_MEMORY_FRACTION = "0.5"


def use_jax_backend(share_gpu: bool = False) -> None:
    """Makes Keras run on JAX. Must come before Keras is first imported.

    ``share_gpu``: cap JAX's up-front GPU allocation (unless ``XLA_PYTHON_CLIENT_MEM_FRACTION``
    is set), so that another process can use the same GPU.
    """
    keras = sys.modules.get("keras")
    if keras is not None and keras.backend.backend() != "jax":
        raise UserError(f"Keras was already imported with the {keras.backend.backend()} backend; "
                        "run the model benchmark in a fresh process (tfseg bench model)")
    os.environ["KERAS_BACKEND"] = "jax"
    if share_gpu:
        os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", REFERENCE_JAX_MEMORY_FRACTION)


def _stderr_log(start: float):
    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", file=sys.stderr, flush=True)
    return log


def _environment() -> dict:
    import jax
    import jaxlib
    import keras

    from tfseg.bench.host import describe_cpu

    first = jax.devices()[0]
    host = describe_cpu()
    return {"device": host["cpu_model"] if first.platform == "cpu" else first.device_kind,
            "platform": first.platform, "device_count": jax.device_count(),
            "backend": keras.backend.backend(), "keras": keras.__version__, "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "python": platform.python_version(), "xla": True,
            "xla_flags": os.environ.get("XLA_FLAGS"),
            "jax_memory_fraction": os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION"),
            "host": host, "torch": None, "torch_error": None}


def summarize_row(name: str, row: dict, images: int, tflop_per_step: float | None,
                  peak_tflops: float | None, keras_rounds: list | None) -> dict:
    """A report row from a :func:`run_rounds` row: percentiles, throughput, TFLOP/s, and
    the Keras candidate's speed over this one (``keras_rounds``: its round times; None
    for the Keras row itself)."""
    times = [t for round_times in row["round_times"] for t in round_times]
    out = {"candidate": name, "status": row["status"], "error": row["error"],
           "params": row["info"].get("params"), "first_step_s": row["info"].get("first_step_s"),
           "prepare_s": row["prepare_s"], "step_times": times, "steps": len(times),
           "p50_ms": None, "p90_ms": None, "min_ms": None, "images_per_s": None,
           "tflops": None, "fraction_of_peak": None, "keras_over_this": None}
    if times:
        out.update(step_summary(times, images))
        if tflop_per_step:
            out["tflops"] = tflop_per_step / (out["p50_ms"] / 1000)
            if peak_tflops:
                out["fraction_of_peak"] = out["tflops"] / peak_tflops
        if keras_rounds is not None:
            out["keras_over_this"] = round_ratios(keras_rounds, row["round_times"])
    return out


def bench_model(models=("unet",), height: int = 576, width: int = 576, channels: int | None = None,
                num_classes: int = 2, batch: int = 8, precision: str = "mixed_bfloat16",
                steps: int = 10, rounds: int = 3, warmup: int = 3, tasks=TASKS,
                inference_batch: int = 16, model_options: dict | None = None,
                reference: str | None = None, torch_modes=TORCH_MODES, peak_size: int = 8192,
                learning_rate: float = 1e-4, seed: int = 0, log=None) -> dict:
    """Times training and inference steps of ``models``; see the module doc.

    Args:
      models: registry names (``tfseg.models.MODELS``).
      height, width: the input's size; must suit every model's stride.
      channels: input channels (the ``input_channels`` option); None: each model's default.
      batch: images per training step; inference_batch: per inference step.
      precision: the Keras dtype policy (float32, mixed_bfloat16, mixed_float16).
      steps, rounds: ``steps`` timed steps per candidate in each of ``rounds`` rounds.
      warmup: untimed steps after the first (compiling) one.
      model_options: ``{model name: {option: value}}`` for ``build_model``.
      reference: "torch" adds the PyTorch U-Net (``torch_modes``: "compile", "eager").
      peak_size: side of the bf16 matmul that measures the peak (0: not measured).
      log: called with progress lines (default: stderr, with the time since the start).

    Returns ``{"benchmark", "environment", "settings", "peak", "cases"}``; each case (a
    model and a task) has ``params``, ``gflops_forward``, ``tflop_per_step`` and one row
    per candidate (see :func:`tfseg.bench.model_report.markdown` for the columns).
    """
    use_jax_backend(share_gpu=reference is not None)
    from tfseg.models import MODELS, model_stride

    log = log or _stderr_log(time.perf_counter())
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)}: choose from {', '.join(MODELS)}")
    if reference not in (None, "torch"):
        raise UserError(f"--reference {reference}: the only reference is torch")
    if reference and importlib.util.find_spec("torch") is None:
        raise UserError("--reference torch needs PyTorch, which is not installed here")
    options = {m: dict((model_options or {}).get(m, {})) for m in models}
    for name in models:
        if channels is not None:
            options[name].setdefault("input_channels", channels)
        stride = model_stride(name, **options[name])
        if height % stride or width % stride:
            raise UserError(f"{name} needs height and width that are multiples of {stride}; "
                            f"got {height}x{width}")
    from tfseg.bench.peak import matmul_peak

    worker = None
    if reference and any(m in TORCH_MODELS for m in models):
        worker = Worker("tfseg.bench.torch_reference")  # imports torch while JAX starts
    try:
        environment = _environment()
        log(f"{environment['device']} ({environment['platform']}), Keras {environment['keras']} "
            f"on JAX {environment['jax']}")
        peak = None
        if peak_size:
            peak = matmul_peak(peak_size)
            log(f"bf16 matmul peak: {peak['tflops']:.4g} TFLOP/s")
        if worker is not None:
            try:
                environment["torch"] = worker.call("describe")
                log(f"torch {environment['torch']['torch']} on {environment['torch']['device']}")
            except WorkerError as err:  # torch cannot start here: Keras is measured alone
                environment["torch_error"] = error_text(err)
                log(f"PyTorch reference unavailable: {environment['torch_error']}")
                worker.close()
                worker = None
        cases = []
        for name in models:
            for task in tasks:
                images = batch if task == "train" else inference_batch
                cases.append(_bench_case(name, task, images, height, width, num_classes,
                                         options[name], precision, steps, rounds, warmup,
                                         learning_rate, seed, worker, torch_modes, peak, log))
    finally:
        if worker is not None:
            worker.close()
    return {"benchmark": "tfseg model", "environment": environment,
            "settings": {"models": list(models), "height": height, "width": width,
                         "channels": channels, "num_classes": num_classes, "batch": batch,
                         "inference_batch": inference_batch, "precision": precision,
                         "steps": steps, "rounds": rounds, "warmup": warmup, "tasks": list(tasks),
                         "model_options": options, "reference": reference,
                         "torch_modes": list(torch_modes) if worker else [],
                         "optimizer": f"Adam({learning_rate})",
                         "loss": "MaskedSparseCrossEntropy (ignores 255)", "seed": seed},
            "peak": peak, "cases": cases}


def _bench_case(name, task, images, height, width, num_classes, options, precision, steps,
                rounds, warmup, learning_rate, seed, worker, torch_modes, peak, log) -> dict:
    """One model and task: the Keras candidate, and the torch ones where they apply."""
    from tfseg.bench.jax_steps import KerasCandidate

    keras_candidate = KerasCandidate(task, name, num_classes, options, precision, images,
                                     height, width, learning_rate, seed)
    candidates, note = [keras_candidate], None
    if worker is not None and name in TORCH_MODELS:
        spec = {"task": task, "num_classes": num_classes, "options": options,
                "precision": precision, "batch": images, "height": height, "width": width,
                "learning_rate": learning_rate, "seed": seed}
        candidates += [RemoteCandidate(worker, f"torch_{mode}", {**spec, "compiled": mode == "compile"})
                       for mode in torch_modes]
    elif worker is not None:
        note = f"no PyTorch reference for {name} (only for {', '.join(TORCH_MODELS)})"
    log(f"{name} {task}, batch {images}: {', '.join(c.name for c in candidates)}")
    rows = run_rounds(candidates, rounds, steps, warmup,
                      log=lambda message: log(f"{name} {task}: {message}"))
    for candidate, row in zip(candidates, rows):
        try:
            candidate.release()
        except Exception as err:  # noqa: BLE001 - a worker that died has nothing to release
            log(f"{name} {task}: releasing {row['name']}: {err}")
    info = rows[0]["info"]
    tflop = info["gflops_forward"] * images * (3 if task == "train" else 1) / 1000 if info else None
    keras_rounds = rows[0]["round_times"] if rows[0]["status"] == "ok" else None
    peak_tflops = peak["tflops"] if peak else None
    return {"model": name, "task": task, "batch": images,
            "input": [height, width, info.get("input_channels")],
            "num_classes": num_classes, "options": options, "params": info.get("params"),
            "gflops_forward": info.get("gflops_forward"), "tflop_per_step": tflop, "note": note,
            "rows": [summarize_row(row["name"], row, images, tflop, peak_tflops,
                          None if i == 0 else keras_rounds) for i, row in enumerate(rows)]}


def main(argv: list[str] | None = None) -> int:
    """``tfseg bench model [options]``."""
    parser = ArgumentParser(
        prog="tfseg bench model",
        description="Training and inference steps of tfseg models with Keras on JAX (no TensorFlow), "
                    "optionally beside a PyTorch U-Net.")
    parser.add_argument("--models", nargs="+", default=["unet"], help="registry names (default: unet)")
    parser.add_argument("--height", type=positive_int, default=576)
    parser.add_argument("--width", type=positive_int, default=576)
    parser.add_argument("--channels", type=positive_int, help="input channels (default: each model's, 3)")
    parser.add_argument("--classes", type=positive_int, default=2, help="number of classes (default 2)")
    parser.add_argument("--batch", type=positive_int, default=8, help="images per training step (default 8)")
    parser.add_argument("--inference-batch", type=positive_int, default=16,
                        help="images per inference step (default 16)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--precision", choices=PRECISIONS, default="mixed_bfloat16")
    parser.add_argument("--steps", type=positive_int, default=10, help="timed steps per candidate per round (default 10)")
    parser.add_argument("--rounds", type=positive_int, default=3, help="alternating rounds (default 3)")
    parser.add_argument("--warmup", type=non_negative_int, default=3, help="untimed steps after the compiling one (default 3)")
    parser.add_argument("--options", type=json_object, default={}, help='JSON: {"unet": {"base_filters": 32}}')
    parser.add_argument("--reference", choices=("torch",), help="also time the PyTorch U-Net")
    parser.add_argument("--torch-modes", nargs="+", choices=TORCH_MODES, default=list(TORCH_MODES))
    parser.add_argument("--peak-size", type=positive_int, default=8192,
                        help="side of the bf16 matmul measuring the peak; 0 skips it (default 8192)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the result to this JSON file")
    parser.add_argument("--markdown", help="write the table to this Markdown file")
    parser.add_argument("--report", nargs="+", metavar="JSON",
                        help="measure nothing: merge these results and print (and write) their table")
    args = parser.parse_args(argv)
    from tfseg.fileio import check_writable, write_text

    for option, path in (("--json", args.json), ("--markdown", args.markdown)):
        if path:
            check_writable(path, option)  # before the measurement, not after it
    if args.report:
        try:
            result = load(args.report)
            table = markdown(result)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"--report {' '.join(args.report)}: not results of `tfseg bench model --json` "
                            f"({type(err).__name__}: {' '.join(str(err).split())[:200]})") from None
    else:
        result = bench_model(tuple(args.models), args.height, args.width, args.channels,
                             args.classes, args.batch, args.precision, args.steps, args.rounds,
                             args.warmup, tuple(args.tasks), args.inference_batch, args.options,
                             args.reference, tuple(args.torch_modes), args.peak_size, seed=args.seed)
        table = markdown(result)
    print(table, end="")
    if args.json:
        write_text(args.json, json.dumps(merge([result]) if args.report else result, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.markdown:
        write_text(args.markdown, table)
        print(f"wrote {args.markdown}")
    return 0
