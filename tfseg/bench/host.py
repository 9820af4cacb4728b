"""What a CPU benchmark ran on: processor, usable cores, load."""

from __future__ import annotations

import os
import platform
import sys


def usable_cpus() -> int:
    """The cores this process may run on (its affinity on Linux, else all of them)."""
    return len(os.sched_getaffinity(0)) if sys.platform.startswith("linux") else os.cpu_count()


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None on Windows, which has none)."""
    return None if sys.platform == "win32" else list(os.getloadavg())


def describe_cpu() -> dict:
    """CPU model, logical and usable cores, platform, Python and the load at the start."""
    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((line.split(":", 1)[1].strip() for line in f
                              if line.startswith("model name")), cpu_model)
    except OSError:  # no /proc: not Linux
        pass
    return {"cpu_model": cpu_model, "logical_cpus": os.cpu_count(), "usable_cpus": usable_cpus(),
            "platform": platform.platform(), "python": platform.python_version(),
            "load_average_at_start": load_average()}
