"""Summaries of repeated measurements, shared by the benchmarks.

Machines are shared and noisy: every benchmark repeats its measurements in rounds and
reports medians and spreads, and ratios taken within one round (under the same load).
"""

from __future__ import annotations

import statistics

import numpy as np


def summary(values: list[float]) -> dict:
    """Median, minimum, maximum and every value, in measurement order."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "rounds": values}


def ratio_summary(numerators: list[float], denominators: list[float]) -> dict:
    """Per-round ratios (both measured in the same round, so under the same load) and
    their median."""
    ratios = [a / b for a, b in zip(numerators, denominators)]
    return {"median": statistics.median(ratios), "rounds": ratios}


def rates(images: int, wall: float, cpu: float) -> dict:
    """Throughput, and the CPU time (all threads of this process) each image cost.

    CPU time per image barely depends on what else runs on a shared machine, unlike
    throughput, so it tells a slow pipeline from a starved one; ``cores_busy`` (CPU time
    over wall time) shows how much parallelism a candidate actually got.
    """
    return {"images_per_s": images / wall, "cpu_ms_per_image": 1000 * cpu / images,
            "cores_busy": cpu / wall}


def step_summary(step_times: list[float], images_per_step: int) -> dict:
    """Step-time percentiles (ms) and throughput of timed steps (seconds, one per step).

    ``images_per_s`` is ``images_per_step`` over the median step: a median ignores the
    odd step that a neighbour's job or a garbage collection slowed down.
    """
    times = np.asarray(step_times, np.float64)
    p50, p90 = np.percentile(times, [50, 90])
    return {"steps": len(step_times), "p50_ms": 1000 * float(p50), "p90_ms": 1000 * float(p90),
            "min_ms": 1000 * float(times.min()), "images_per_s": images_per_step / float(p50)}
