"""Candidates timed side by side: prepared one after another, then run in alternating rounds.

A candidate is anything with ``name``, ``prepare(warmup) -> dict`` (build, compile, warm
up; untimed) and ``run(steps) -> list[float]`` (seconds per step). Machines are shared
and their speed drifts (clocks, temperature, neighbours), so every round runs each
candidate for the same number of steps, the order reversing from one round to the next,
and a comparison is the median of ratios taken within one round.
"""

from __future__ import annotations

import statistics
import time
import traceback
from typing import Callable


def timed_steps(step: Callable[[], object], steps: int) -> tuple[list[float], object]:
    """Seconds of each of ``steps`` calls of ``step`` (which must wait for its own work to
    finish), and the last call's result."""
    times, out = [], None
    for _ in range(steps):
        start = time.perf_counter()
        out = step()
        times.append(time.perf_counter() - start)
    return times, out


def error_text(err: BaseException, limit: int = 800) -> str:
    """One line naming the exception, shortened: XLA and Inductor errors span pages."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= limit else text[:limit] + " ..."


def run_rounds(candidates: list, rounds: int, steps: int, warmup: int,
               log: Callable[[str], None] = lambda message: None) -> list[dict]:
    """Prepares every candidate, then times ``rounds`` x ``steps`` steps of each.

    Returns one dict per candidate, in the given order: ``name``, ``status`` ("ok" or
    "error"), ``error``, ``info`` (what ``prepare`` returned), ``prepare_s`` and
    ``round_times`` (one list of step seconds per round it completed). A candidate that
    fails is recorded with its error and left out of the later rounds; the others go on.
    """
    rows = [{"name": c.name, "status": "ok", "error": None, "info": {}, "prepare_s": None,
             "round_times": []} for c in candidates]
    for candidate, row in zip(candidates, rows):
        start = time.perf_counter()
        try:
            row["info"] = candidate.prepare(warmup)
        except Exception as err:  # noqa: BLE001 - record it; the other candidates still run
            row.update(status="error", error=error_text(err))
            log(f"{row['name']}: FAILED to prepare: {row['error']}")
            log(traceback.format_exc(limit=-3))
            continue
        row["prepare_s"] = time.perf_counter() - start
        log(f"{row['name']}: prepared in {row['prepare_s']:.1f} s")
    pairs = list(zip(candidates, rows))
    for r in range(rounds):
        for candidate, row in (pairs if r % 2 == 0 else pairs[::-1]):
            if row["status"] != "ok":
                continue
            try:
                row["round_times"].append(candidate.run(steps))
            except Exception as err:  # noqa: BLE001
                row.update(status="error", error=error_text(err))
                log(f"{row['name']}: FAILED in round {r + 1}: {row['error']}")
        log(f"round {r + 1}/{rounds}: " + ", ".join(
            f"{row['name']} {1000 * statistics.median(row['round_times'][-1]):.1f} ms"
            for _, row in pairs if row["status"] == "ok" and len(row["round_times"]) == r + 1))
    return rows


def round_ratios(reference: list[list[float]], other: list[list[float]]) -> dict | None:
    """Speed of ``reference`` relative to ``other``: per round, other's median step time
    over reference's (> 1: reference is faster), and their median. None without a round
    that both completed."""
    ratios = [statistics.median(b) / statistics.median(a) for a, b in zip(reference, other)]
    if not ratios:
        return None
    return {"median": statistics.median(ratios), "rounds": ratios}
