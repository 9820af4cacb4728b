"""Stopping training cleanly on Ctrl-C or ``docker stop``.

A signal can arrive anywhere, for instance half-way through writing a checkpoint. During
training the first SIGINT or SIGTERM is therefore only *noted*; the training loop stops
after the step in progress, once it has written a checkpoint, by raising
``KeyboardInterrupt``. The same command then resumes at that step. A second signal stops
at once (the previous checkpoint is still whole: see :mod:`tfseg.training.checkpoints`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """``requested`` names the first signal received inside :meth:`handling_signals`."""

    def __init__(self):
        self.requested: str | None = None

    def _note(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        print(f"\n{self.requested}: stopping after this step, once it is checkpointed "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def handling_signals(self):
        """Installs the signal handlers for the duration of the block (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._note) for s in SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
