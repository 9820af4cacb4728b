"""Silence TensorFlow's C++ start-up log, whenever TensorFlow is first imported.

Importing TensorFlow writes lines such as "WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR" and the oneDNN notice straight to
file descriptor 2, before ``TF_CPP_MIN_LOG_LEVEL`` is read, and they differ from machine
to machine. :func:`silence_tensorflow_startup` sends that descriptor to a temporary file
for the duration of the import only, and shows what was captured if the import fails.
TensorFlow stays imported lazily: a command that refuses its arguments never loads it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import tempfile

MODULE = "tensorflow"


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader with file descriptor 2 sent to a temporary file."""

    def __init__(self, loader: importlib.abc.Loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                self._loader.exec_module(module)
            except BaseException:
                os.dup2(saved, 2)
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                raise
            finally:
                os.dup2(saved, 2)
                os.close(saved)

    def __getattr__(self, name):  # resources, is_package, ...: the real loader's
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds TensorFlow as the import system would, with a quiet loader; once."""

    def find_spec(self, fullname, path, target=None):
        if fullname != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_tensorflow_startup() -> None:
    """Makes the first import of TensorFlow in this process quiet on stderr (nothing if it
    is imported already). Python-level warnings and later C++ errors still show."""
    if MODULE in sys.modules or any(isinstance(finder, _QuietFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())
