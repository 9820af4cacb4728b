"""Benchmark candidates that live in another Python process, driven over a pipe.

The PyTorch reference runs beside Keras on JAX in its own process: the two frameworks
never share an address space (each brings its own CUDA libraries and allocator), a crash
of one cannot take the other down, and this process never imports torch. Only one side
works at a time: the parent waits while the worker runs its steps, so rounds can
alternate between the two as they do within one process.

Protocol: one JSON object per line, each way. A request ``{"cmd": ..., ...}`` gets
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


class WorkerError(RuntimeError):
    """The worker reported an error, or died."""


class Worker:
    """A ``python -m MODULE`` child process answering requests on stdin/stdout.

    Its stderr is this process's, so its warnings and tracebacks show in the log.
    """

    def __init__(self, module: str, env: dict | None = None):
        package_parent = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ if env is None else env)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        env["PYTHONUNBUFFERED"] = "1"
        self.module = module
        self.process = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env)

    def call(self, cmd: str, **fields) -> dict:
        """Sends one request and returns the answer's fields; raises :class:`WorkerError`."""
        if self.process.poll() is not None:
            raise WorkerError(f"{self.module} exited with status {self.process.returncode}")
        try:
            self.process.stdin.write(json.dumps({"cmd": cmd, **fields}) + "\n")
            self.process.stdin.flush()
        except OSError as err:  # it died before reading: a broken pipe
            raise WorkerError(f"{self.module} exited with status {self.process.wait()}") from err
        line = self.process.stdout.readline()
        if not line:
            raise WorkerError(f"{self.module} exited with status {self.process.wait()} "
                              f"while answering {cmd!r}")
        answer = json.loads(line)
        if not answer.pop("ok"):
            raise WorkerError(answer["error"])
        return answer

    def close(self, timeout: float = 60) -> None:
        """Asks the worker to quit; kills it if it does not within ``timeout`` seconds."""
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.process.stdin.close()
                self.process.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


class RemoteCandidate:
    """A candidate of :mod:`tfseg.bench.rounds` whose steps run in a :class:`Worker`.

    ``spec`` is whatever the worker needs to build it (JSON-serialisable).
    """

    def __init__(self, worker: Worker, name: str, spec: dict):
        self.worker, self.name, self.spec = worker, name, spec

    def prepare(self, warmup: int) -> dict:
        return self.worker.call("prepare", name=self.name, spec=self.spec, warmup=warmup)["info"]

    def run(self, steps: int) -> list[float]:
        return self.worker.call("run", name=self.name, steps=steps)["times"]

    def release(self) -> None:
        self.worker.call("release", name=self.name)
