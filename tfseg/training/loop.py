"""The training loop, one for every ``tf.distribute`` strategy.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585)
and resumes only at an epoch's start. This loop runs unchanged on one device, under
``MirroredStrategy`` and under ``MultiWorkerMirroredStrategy``, and resumes at the step::

    for each epoch, from the checkpoint's position:
        for each step: one distributed train step; a non-finite loss stops the run
            (TrainingDiverged); every checkpoint_steps steps a checkpoint, if the weights
            are finite; on SIGINT/SIGTERM a checkpoint, then KeyboardInterrupt
        one validation pass; a history row (CSV, TensorBoard scalars and images, curves.png)
        best.keras, when the score is finite and better and the weights are finite
        reduce-on-plateau, early stopping; after the first epoch (of each stage), a
        time budget's plan
        a checkpoint at the epoch's end

The train step mirrors Keras' own: each replica computes the loss on its share of the
global batch, divides it by the number of replicas (the optimizer sums the gradients over
replicas, so the update is the global batch's mean), and the per-replica function is
compiled with XLA when ``jit_compile`` is on. Metrics are streaming (sums of per-replica
confusion matrices), reset at each epoch's start.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tfseg.errors import UserError
from tfseg.fileio import atomic_path
from tfseg.heads import LOGITS, named_outputs
from tfseg.metrics import MaxF, MeanIoU, PixelAccuracy
from tfseg.training.checkpoints import Position, TrainingCheckpoints, all_finite
from tfseg.training.history import History, PredictionPanels
from tfseg.training.interrupts import StopRequest
from tfseg.training.schedules import Patience, Schedule, fit_epochs
from tfseg.training.stages import StageBudget, stage_index

# How many steps of an epoch, after its first (which traces and compiles), time the
# automatic checkpoint interval.
TIMING_STEPS = 5


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite."""


class InputError(Exception):
    """The input pipeline of ``split`` failed with ``error`` (a ``tf.errors.OpError``)."""

    def __init__(self, split: str, error: tf.errors.OpError):
        super().__init__(f"{split}: {error.message}")
        self.split, self.error = split, error


def batches_of(dataset, split: str):
    """Iterates over a (distributed) dataset, raising :class:`InputError` for its failures."""
    iterator = iter(dataset)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except tf.errors.OpError as err:
            raise InputError(split, err) from None


@dataclass
class LoopSettings:
    epochs: int
    steps_per_epoch: int
    checkpoint_steps: int  # 0: about checkpoint_minutes of work, timed on the first steps
    checkpoint_minutes: float
    verbose: int = 2
    plateau_patience: int = 0  # with a "plateau" schedule
    plateau_factor: float = 0.5
    early_stopping_patience: int = 0  # 0: never
    time_budget_minutes: float = 0.0  # 0: none
    stage_budget: StageBudget | None = None  # the time budget over train.stages
    best_metric: str = "val_miou"  # the logged validation score that picks the best model, or KEEP_LAST


# train.best_metric that keeps the last epoch's model (and needs no validation images).
KEEP_LAST = "last"


class EpochEnd:
    """What follows from each epoch's validation score (``best_metric``): reduce-on-plateau
    and early stopping.

    Both depend on the sequence of scores alone, so a resumed run replays its history.
    """

    def __init__(self, settings: LoopSettings, schedule: Schedule):
        self.schedule, self.factor = schedule, settings.plateau_factor
        self.plateau = Patience(settings.plateau_patience) if schedule.kind == "plateau" else None
        self.early = Patience(settings.early_stopping_patience) if settings.early_stopping_patience else None

    def update(self, score: float) -> bool:
        """Records a score; True when training should stop early."""
        if self.plateau is not None and self.plateau.update(score):
            self.schedule.scale.assign(self.schedule.scale.value * self.factor)
        return self.early is not None and self.early.update(score)


@dataclass(frozen=True)
class HeadObjective:
    """How a head beyond the classes trains: ``loss(target, output)`` against the batch's
    target of the head's name, added to the objective and logged as ``{name}_loss``, and a
    streaming metric of the same pair (``make_metric()`` builds it in the strategy's scope;
    its ``result()`` may be a dict of named values)."""

    loss: keras.losses.Loss
    make_metric: Callable[[], keras.metrics.Metric]


class Trainer:
    """Distributed train and evaluation steps of one model, with streaming metrics.

    Build it inside nothing: it enters ``strategy.scope()`` itself. ``loss(labels, logits)``
    returns the mean over the valid pixels of a replica's batch. ``heads`` name the model's
    outputs beyond the logits (:mod:`tfseg.heads`) and how each trains: batches are then
    ``(images, labels, {name: target})``, and the objective is the sum of every loss.
    ``max_f`` (two classes) also streams the MaxF of class 1 (:class:`~tfseg.metrics.MaxF`),
    logged as ``max_f`` and ``val_max_f``.
    """

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, loss,
                 num_classes: int, strategy: tf.distribute.Strategy, jit_compile: bool,
                 heads: dict[str, HeadObjective] | None = None, max_f: bool = False):
        self.model, self.optimizer, self.loss, self.strategy = model, optimizer, loss, strategy
        self.heads = dict(heads or {})
        with strategy.scope():
            optimizer.build(model.trainable_variables)
            self.metrics = {"loss": keras.metrics.Mean(name="loss"),
                            "miou": MeanIoU(num_classes), "pixel_accuracy": PixelAccuracy(num_classes)}
            if max_f:
                self.metrics["max_f"] = MaxF()
            for name, head in self.heads.items():
                self.metrics[f"{name}_loss"] = keras.metrics.Mean(name=f"{name}_loss")
                self.metrics[name] = head.make_metric()
        train_replica = tf.function(self._replica_train_step, jit_compile=jit_compile, reduce_retracing=True)
        eval_replica = tf.function(self._replica_eval_step, jit_compile=jit_compile, reduce_retracing=True)
        self.train_step = tf.function(lambda batch: self._run(train_replica, batch), reduce_retracing=True)
        self.eval_step = tf.function(lambda batch: self._run(eval_replica, batch), reduce_retracing=True)

    def _run(self, replica_step, batch):
        per_replica = self.strategy.run(replica_step, args=batch)
        return self.strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    def _objective_and_metrics(self, outputs, labels, targets):
        """The replica's loss of ``outputs`` against ``labels`` and ``targets`` (by head
        name); updates the metrics with them."""
        outputs = named_outputs(outputs)
        logits = outputs[LOGITS]
        loss = self.loss(labels, logits)
        for name, head in self.heads.items():
            head_loss = head.loss(targets[name], outputs[name])
            loss = loss + head_loss
            self.metrics[f"{name}_loss"].update_state(head_loss)
            self.metrics[name].update_state(targets[name], outputs[name])
        if self.model.losses:  # weight regularisers
            loss = loss + tf.cast(tf.add_n(self.model.losses), loss.dtype)
        self.metrics["loss"].update_state(loss)
        self.metrics["miou"].update_state(labels, logits)
        self.metrics["pixel_accuracy"].update_state(labels, logits)
        if "max_f" in self.metrics:
            self.metrics["max_f"].update_state(labels, logits)
        return loss

    def _replica_train_step(self, images, labels, targets=None):
        with tf.GradientTape() as tape:
            outputs = self.model(images, training=True)
            loss = self._objective_and_metrics(outputs, labels, targets)
            scaled = loss / self.strategy.num_replicas_in_sync
            if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
                scaled = self.optimizer.scale_loss(scaled)
        gradients = tape.gradient(scaled, self.model.trainable_variables)
        self.optimizer.apply(gradients, self.model.trainable_variables)
        return loss

    def _replica_eval_step(self, images, labels, targets=None):
        return self._objective_and_metrics(self.model(images, training=False), labels, targets)

    def sync_statistics(self) -> None:
        """Gives every replica the mean of the replicas' non-trainable statistics.

        Batch-norm moving averages are updated by each replica from its own share of the
        batch, so the replicas' copies drift apart. The update is linear, so their mean is
        the moving average of the whole batches' statistics; it is taken before validating
        and before saving anything.
        """
        if self.strategy.num_replicas_in_sync > 1:
            self._sync_statistics()

    @tf.function
    def _sync_statistics(self):
        statistics = [v for v in self.model.non_trainable_variables if keras.backend.is_float_dtype(v.dtype)]

        def replica_fn():
            context = tf.distribute.get_replica_context()
            for variable in statistics:
                variable.assign(context.all_reduce(tf.distribute.ReduceOp.MEAN, tf.identity(variable.value)))

        self.strategy.run(replica_fn)

    def reset_metrics(self) -> None:
        for metric in self.metrics.values():
            metric.reset_state()

    def results(self, prefix: str = "") -> dict[str, float]:
        results = {}
        for name, metric in self.metrics.items():
            value = metric.result()
            for key, number in (value.items() if isinstance(value, dict) else [(name, value)]):
                results[prefix + key] = float(number)
        return results

    def learning_rate(self) -> float:
        return float(keras.ops.convert_to_numpy(self.optimizer.learning_rate))


def timed_interval(seconds_per_step: float, minutes: float) -> int:
    return max(1, round(minutes * 60 / max(seconds_per_step, 1e-9)))


def run_loop(trainer: Trainer, settings: LoopSettings, *, schedule: Schedule,
             train_batches: Callable[[int, int], tf.data.Dataset], val_batches: tf.data.Dataset | None,
             checkpoints: TrainingCheckpoints, history: History, best_path: Path, is_writer: bool,
             stop: StopRequest, panels: PredictionPanels | None = None,
             after_step: Callable[[Position], None] | None = None) -> None:
    """Trains from the latest checkpoint (or the start) to the last epoch, or until early
    stopping.

    Args:
      trainer: the model, optimizer, losses and strategy, with the compiled steps.
      settings: epochs, steps per epoch, checkpoint interval, patience, time budget.
      schedule: the learning-rate schedule (the plateau rule scales it).
      train_batches: ``train_batches(epoch, skip)``, the epoch's batch stream from step
        ``skip`` on (a resumed epoch replays its data from the seed).
      val_batches: the validation batches, scored at every epoch's end (None: there are
        none, and ``settings.best_metric`` is ``KEEP_LAST``).
      checkpoints: where the step checkpoints are restored from and written.
      history: the per-epoch record (history.csv, curves, TensorBoard, W&B).
      best_path: where the best epoch's model is written (``checkpoints/best.keras``).
      is_writer: whether this process writes files (the chief of several workers).
      stop: the interrupt request (Ctrl-C, SIGTERM) the loop polls after every step.
      panels: validation images drawn with their prediction into TensorBoard (writer only).
      after_step: called with the loop's position after every step (tests interrupt runs).
    """
    strategy, model = trainer.strategy, trainer.model
    restored = checkpoints.restore()
    position = restored or Position(0, 0, 0)
    history.keep_epochs_before(position.epoch)
    best = history.best(settings.best_metric)  # of the finished epochs, whose rows a resumed run keeps
    epoch_end = EpochEnd(settings, schedule)
    for row in history.rows:  # a resumed run: the plateau scale and patience so far
        epoch_end.update(float(row.get(settings.best_metric) or "nan"))
    if restored:
        say(settings, f"resumed at epoch {position.epoch + 1}, step {position.step} "
                      f"(global step {position.global_step}) from {checkpoints.latest}")
    interval = settings.checkpoint_steps
    epochs = int(checkpoints.planned_epochs.numpy()) or settings.epochs
    if checkpoints.planned_epochs.numpy():  # a time budget's plan, made before the resumption
        schedule.total.assign(epochs * settings.steps_per_epoch)
    started_training = time.perf_counter()

    def check_finite(at: Position) -> None:
        if not all_finite(model.variables):
            raise diverged(at, "the weights hold NaN or infinite values", checkpoints)

    def save_within_epoch(at: Position) -> None:
        trainer.sync_statistics()
        check_finite(at)
        checkpoints.save(at)

    epoch = position.epoch
    while epoch < epochs:
        first_step = position.step if epoch == position.epoch else 0
        trainer.reset_metrics()
        started = time.perf_counter()
        batches = batches_of(strategy.experimental_distribute_dataset(train_batches(epoch, first_step)), "train")
        step_seconds = []
        for step in range(first_step, settings.steps_per_epoch):
            tick = time.perf_counter()
            loss = float(trainer.train_step(next(batches)))
            step_seconds.append(time.perf_counter() - tick)
            position = Position(epoch, step + 1, position.global_step + 1)
            if not math.isfinite(loss):
                raise diverged(position, f"the loss is {loss}", checkpoints)
            if not interval and len(step_seconds) > TIMING_STEPS:
                interval = agree(strategy, timed_interval(min(step_seconds[1:]), settings.checkpoint_minutes))
                say(settings, f"checkpoints every {interval} steps (about {settings.checkpoint_minutes:g} min)")
            if after_step:
                after_step(position)
            due = interval and position.global_step % interval == 0 and position.step < settings.steps_per_epoch
            if due or stop.requested:
                save_within_epoch(position)
            if stop.requested:
                raise KeyboardInterrupt
        logs = {"learning_rate": trainer.learning_rate(), **trainer.results()}
        trainer.reset_metrics()
        trainer.sync_statistics()
        validation_started = time.perf_counter()
        if val_batches is not None:
            for batch in batches_of(strategy.experimental_distribute_dataset(val_batches), "val"):
                trainer.eval_step(batch)
            logs.update(trainer.results("val_"))
        validation_seconds = time.perf_counter() - validation_started
        history.append(epoch, logs)
        if panels is not None:
            history.predictions(epoch, panels.render(model))
        # Once for best.keras and the epoch's checkpoint (statistics were synced above).
        check_finite(position)
        score = math.nan if settings.best_metric == KEEP_LAST else logs[settings.best_metric]
        if settings.best_metric == KEEP_LAST or (math.isfinite(score) and score > best):
            best = score
            if is_writer:
                with atomic_path(best_path) as tmp:
                    model.save(tmp, include_optimizer=False)
        stop_early = epoch_end.update(score)
        if settings.time_budget_minutes and step_seconds:
            # A steady epoch: the median step (the first traces and compiles) and validation.
            train_seconds = statistics.median(step_seconds) * settings.steps_per_epoch
            planned = plan_time_budget(settings, checkpoints, strategy, epoch, time.perf_counter() - started_training,
                                       train_seconds, validation_seconds)
            if planned:
                epochs = planned
                checkpoints.planned_epochs.assign(epochs)
                schedule.total.assign(epochs * settings.steps_per_epoch)
        position = Position(epoch + 1, 0, position.global_step)
        checkpoints.save(position)
        say(settings, f"epoch {epoch + 1}/{epochs} - {time.perf_counter() - started:.1f}s - "
                      + " - ".join(f"{key} {value:.4g}" for key, value in logs.items()))
        if stop.requested:
            raise KeyboardInterrupt
        if stop_early:
            say(settings, f"early stopping: no better {settings.best_metric} for "
                          f"{settings.early_stopping_patience} epochs")
            return
        epoch += 1


def plan_time_budget(settings: LoopSettings, checkpoints: TrainingCheckpoints, strategy: tf.distribute.Strategy,
                     epoch: int, elapsed_seconds: float, train_seconds: float, validation_seconds: float) -> int | None:
    """The run's epochs in all, where the epoch just timed plans them: the first epoch, or
    under ``train.stages`` each stage's first (its count is then kept in the checkpoints);
    None after any other epoch."""
    steady = train_seconds + validation_seconds
    budget = settings.stage_budget
    if budget is None:
        if checkpoints.planned_epochs.numpy():
            return None
        epochs = agree(strategy, fit_epochs(settings.time_budget_minutes * 60, elapsed_seconds, steady,
                                            settings.epochs))
        say(settings, f"time budget {settings.time_budget_minutes:g} min: {epochs} epoch(s) of about "
                      f"{steady:.0f} s; the schedule spans them")
        return epochs
    counts = [int(count) for count in checkpoints.stage_epochs.numpy()]
    stage = stage_index(counts, epoch)
    if counts[stage]:
        return None
    counts[stage] = agree(strategy, budget.fit(stage, elapsed_seconds, steady))
    checkpoints.stage_epochs.assign(counts)
    epochs = agree(strategy, budget.estimated_total(counts, stage, train_seconds, validation_seconds))
    say(settings, f"time budget {settings.time_budget_minutes:g} min, stage {stage + 1}/{len(counts)} "
                  f"(until {budget.deadline(stage) / 60:.3g} min): {counts[stage]} epoch(s) of about {steady:.0f} s; "
                  f"{epochs} epoch(s) in all{' so far' if 0 in counts else ''}, which the schedule spans")
    return epochs


def agree(strategy: tf.distribute.Strategy, value: int) -> int:
    """The mean of every replica's ``value``: one number that all workers go by together."""
    if strategy.num_replicas_in_sync == 1:
        return value
    mean = tf.function(lambda: strategy.reduce(
        tf.distribute.ReduceOp.MEAN, strategy.run(lambda: tf.constant(value, tf.float64)), axis=None))
    return max(1, round(float(mean())))


def diverged(at: Position, what: str, checkpoints: TrainingCheckpoints) -> TrainingDiverged:
    latest = checkpoints.latest
    resume = (f"the same command resumes from the last good checkpoint ({Path(latest).name}) with "
              "--set train.learning_rate=<lower>" if latest else
              "no checkpoint was written yet; the same command with --set train.learning_rate=<lower> "
              "starts again")
    return TrainingDiverged(f"training diverged: {what} at step {at.global_step} "
                            f"(epoch {at.epoch + 1}, batch {at.step}); nothing was saved from it; {resume}")


def say(settings: LoopSettings, text: str) -> None:
    if settings.verbose:
        print(text, file=sys.stdout, flush=True)
