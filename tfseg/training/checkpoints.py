"""Checkpoints for resuming a run at the step it stopped.

A checkpoint holds

* every variable of the model: weights, batch-norm statistics and the dropout layers'
  random-generator state;
* every variable of the optimizer: its step count (which is the learning-rate schedule's
  position) and its moments;
* the loop's position (epoch, step within it) and the number of epochs a time budget
  planned (0 without one).

The best validation score so far is not stored: it follows from ``history.csv``, whose
rows of finished epochs a resumed run keeps.

The input stream is not stored: the training pipeline is a pure function of the seed, the
epoch and the step (:func:`tfseg.data.pipeline.build_dataset`), so a resumed run replays
the data of the interrupted epoch up to its step (without the network) and goes on with
exactly the batches it would have seen. Not restored: the training metrics of an
unfinished epoch (the resumed epoch's ``loss``/``miou`` in ``history.csv`` cover the steps
after the resumption only) and the TensorBoard writers' files (new event files are added).

Writing is crash-safe: TensorFlow writes a checkpoint's files under temporary names and
renames them into place, then replaces the ``checkpoint`` index file atomically; a process
killed at any instant leaves the previous checkpoint complete and the index naming it.
The last two checkpoints are kept, and removed when the run has finished.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tfseg.errors import UserError
from tfseg.runs import CHECKPOINT_INDEX

KEEP = 2
START_AGAIN = "restore the folder as it was, or move it away to start the run again from its first step"


@dataclass(frozen=True)
class Position:
    """Where the training loop stands: ``step`` steps of ``epoch`` are done."""

    epoch: int
    step: int
    global_step: int


def all_finite(variables) -> bool:
    """Whether every floating-point variable holds only finite values."""
    checks = [tf.reduce_all(tf.math.is_finite(v.value)) for v in variables
              if keras.backend.is_float_dtype(v.dtype)]
    return bool(tf.reduce_all(tf.stack(checks))) if checks else True


class TrainingCheckpoints:
    """Saves and restores a run's model, optimizer and loop position in ``directory``.

    Under multi-worker training every worker must call :meth:`save` (saving reads
    distributed variables); only the writer (the chief) keeps what it wrote, the others
    write to a temporary folder that is removed again.
    """

    def __init__(self, directory: Path, model: keras.Model, optimizer: keras.optimizers.Optimizer,
                 is_writer: bool = True, budgeted_stages: int = 0):
        self.directory = Path(directory)
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        # A time budget's plan: the epochs in all, and with train.stages each stage's
        # epochs (0: not planned yet; kept only by such runs, so that older checkpoints,
        # which lack it, still restore).
        self.planned_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stage_epochs = tf.Variable(tf.zeros([budgeted_stages], tf.int64), trainable=False)
        stage_plan = {"stage_epochs": self.stage_epochs} if budgeted_stages else {}
        # Variables by position: the configuration (checked before any restore) fixes the
        # architecture, so the same model and optimizer list them in the same order.
        self._checkpoint = tf.train.Checkpoint(
            model=list(model.variables), optimizer=list(optimizer.variables),
            epoch=self._epoch, step=self._step, global_step=self._global_step,
            planned_epochs=self.planned_epochs, **stage_plan)
        # Checked before the manager reads the index: a damaged one would make it start
        # afresh and delete the checkpoints it no longer knows of.
        latest_checkpoint(self.directory)
        self._manager = self._make_manager(self.directory) if is_writer else None

    def _make_manager(self, directory: Path) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(self._checkpoint, str(directory), max_to_keep=KEEP)

    @property
    def latest(self) -> str | None:
        return latest_checkpoint(self.directory)

    def restore(self) -> Position | None:
        """Restores the latest checkpoint; returns its position, or None if there is none."""
        path = self.latest
        if path is None:
            return None
        try:
            self._checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, OSError) as err:
            reason = " ".join(str(getattr(err, "message", err)).split())[:200] or type(err).__name__
            raise UserError(f"checkpoint {path}: cannot be restored ({reason}); {START_AGAIN}") from None
        return Position(int(self._epoch.numpy()), int(self._step.numpy()), int(self._global_step.numpy()))

    def save(self, position: Position) -> None:
        """Writes a checkpoint of the current state at ``position``."""
        self._epoch.assign(position.epoch)
        self._step.assign(position.step)
        self._global_step.assign(position.global_step)
        if self._manager is not None:
            self._manager.save(checkpoint_number=position.global_step)
            return
        scratch = tempfile.mkdtemp(prefix="tfseg-worker-checkpoint-")
        try:
            self._make_manager(Path(scratch)).save(checkpoint_number=position.global_step)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def remove(self) -> None:
        """Deletes this run's step checkpoints and their index (nothing else in the folder)."""
        if self._manager is None:
            return
        for prefix in self._manager.checkpoints:
            for path in self.directory.glob(Path(prefix).name + ".*"):
                path.unlink()
        (self.directory / CHECKPOINT_INDEX).unlink(missing_ok=True)


def latest_checkpoint(directory: Path) -> str | None:
    """The prefix of the checkpoint the index in ``directory`` names, or None without an
    index. An index that cannot be read, or names a checkpoint whose files are gone, is a
    :class:`UserError`: resuming must not quietly start the run again."""
    index = directory / CHECKPOINT_INDEX
    if not index.exists():
        return None
    try:
        text = index.read_text(errors="replace")
    except OSError as err:
        raise UserError(f"{index}: cannot be read ({err.strerror}); {START_AGAIN}") from None
    match = re.search(r'^model_checkpoint_path:\s*"([^"]+)"', text, re.M)
    if match is None:
        raise UserError(f"{index}: damaged (it names no checkpoint); {START_AGAIN}")
    prefix = directory / match[1]  # relative, as TensorFlow writes it (an absolute path stays one)
    if not Path(f"{prefix}.index").is_file():
        raise UserError(f"{index}: names {match[1]}, whose files are not in {directory}; {START_AGAIN}")
    return str(prefix)
