"""The table of ``tfseg bench model`` results: Markdown (also what is printed), and the
merge of several runs' JSON files into one result."""

from __future__ import annotations

import json
from pathlib import Path


def runs_of(result: dict) -> list[dict]:
    """The single runs in a result: itself, or those a merge collected."""
    return result["runs"] if "runs" in result else [result]


def merge(results: list[dict]) -> dict:
    """One result holding every run of ``results`` (merged results are flattened)."""
    return {"benchmark": "tfseg model", "runs": [run for r in results for run in runs_of(r)]}


def load(paths: list[str]) -> dict:
    """The merge of the results in the JSON files ``paths``."""
    return merge([json.loads(Path(p).read_text()) for p in paths])


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _run_header(index: int, run: dict) -> list[str]:
    e, s, peak = run["environment"], run["settings"], run["peak"]
    line = (f"Run {index}: {e['device']} ({e['platform']}); Keras {e['keras']} on JAX {e['jax']} "
            f"(jaxlib {e['jaxlib']}), XLA on (jax.jit), precision {s['precision']}; "
            f"{s['rounds']} rounds x {s['steps']} timed steps per candidate after {s['warmup']} "
            f"warm-up steps, candidates alternating")
    if peak:
        line += (f"; {peak['dtype']} matmul peak measured here: {peak['tflops']:.4g} TFLOP/s "
                 f"({peak['size']}^3)")
    lines = [line + "."]
    if e["torch_error"]:
        lines.append(f"PyTorch reference unavailable: {e['torch_error']}")
    if e["torch"]:
        t = e["torch"]
        cuda = f" (CUDA {t['cuda']}, cuDNN {t['cudnn']})" if t["cuda"] else ""
        lines.append(f"PyTorch reference: torch {t['torch']} on {t['device']}{cuda}, autocast to the "
                     "policy's compute dtype, channels_last, fused Adam, cross-entropy with "
                     "ignore_index=255; torch.compile (default mode) and eager.")
    return lines


def markdown(result: dict) -> str:
    """Every run's settings, then one table row per (case, candidate), then the failures.

    TFLOP/s: forward GFLOPs of one image (``tfseg.models.cost``) x batch, x 3 for a
    training step (forward and two backward passes), over the median step time; "of
    peak" divides that by the run's measured matmul peak. "Keras vs it": the Keras
    candidate's throughput over the row's, the median of per-round ratios (> 1: Keras is
    faster).
    """
    lines, failures = [], []
    runs = runs_of(result)
    for i, run in enumerate(runs, 1):
        lines += _run_header(i, run)
    lines += ["", "| run | model | input HxWxC | task | batch | candidate | img/s | p50 ms | p90 ms "
              "| TFLOP/s | of peak | Keras vs it | params | first step s |",
              "|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, run in enumerate(runs, 1):
        for case in run["cases"]:
            h, w, c = case["input"]
            for row in case["rows"]:
                ratio = row["keras_over_this"]
                lines.append(
                    f"| {i} | {case['model']} | {h}x{w}x{c} | {case['task']} | {case['batch']} | "
                    f"{row['candidate']} | {_fmt(row['images_per_s'], '.1f')} | "
                    f"{_fmt(row['p50_ms'], '.2f')} | {_fmt(row['p90_ms'], '.2f')} | "
                    f"{_fmt(row['tflops'], '.4g')} | {_fmt(row['fraction_of_peak'], '.1%')} | "
                    f"{'-' if ratio is None else format(ratio['median'], '.2f') + 'x'} | "
                    f"{_fmt(row['params'], ',')} | {_fmt(row['first_step_s'], '.1f')} |")
                if row["error"]:
                    failures.append(f"- run {i}, {case['model']} {case['task']}, "
                                    f"{row['candidate']}: {row['error']}")
            if case.get("note"):
                failures.append(f"- run {i}, {case['model']} {case['task']}: {case['note']}")
    if failures:
        lines += ["", "Notes and failures:", *failures]
    return "\n".join(lines) + "\n"
