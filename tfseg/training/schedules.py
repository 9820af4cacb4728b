"""Optimisers and learning-rate schedules, as ``train.*`` configures them.

Schedules (``train.schedule``), each after an optional linear warm-up of
``train.warmup_epochs`` from zero, ``t`` counting the steps after the warm-up:

* ``constant`` -- the base rate;
* ``cosine`` -- cosine decay to ``final_learning_rate_fraction`` of the base at the end;
* ``poly`` -- ``(1 - t / T) ** poly_power`` (the FCN/DeepLab schedule, power 0.9), down to
  ``final_learning_rate_fraction``;
* ``step`` -- times ``step_factor`` every ``step_every_epochs`` epochs;
* ``plateau`` -- constant, times ``plateau_factor`` whenever the validation mIoU has not
  improved for ``plateau_patience`` epochs (:class:`Patience`; applied by the training loop
  through :meth:`Schedule.scale`).

Every schedule is a function of the optimizer's step count alone, plus, for ``plateau``,
a scale that follows from the validation history: a resumed run recomputes both. With
``train.time_budget`` (minutes), the number of epochs, and with it the span cosine and poly
decay over, is fitted to the budget after the first epoch (:func:`fit_epochs`); the plan is
kept in the run's checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import ops

SCHEDULES = ("constant", "cosine", "poly", "step", "plateau")


@keras.saving.register_keras_serializable(package="tfseg")
class Schedule(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate at an optimizer step (see the module docstring)."""

    def __init__(self, kind: str, base: float, total_steps: int, warmup_steps: int = 0,
                 final_fraction: float = 0.0, power: float = 0.9, step_every: int = 1, step_factor: float = 0.1):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r}")
        self.kind, self.base, self.total_steps = kind, float(base), max(int(total_steps), 1)
        self.warmup_steps, self.final_fraction = int(warmup_steps), float(final_fraction)
        self.power, self.step_every, self.step_factor = float(power), max(int(step_every), 1), float(step_factor)
        # plateau: the factor applied so far, set by the training loop.
        self.scale = keras.Variable(1.0, dtype="float32", trainable=False, name="plateau_scale")
        # The steps cosine and poly decay over; a time budget refits it after the first epoch.
        self.total = keras.Variable(float(self.total_steps), dtype="float32", trainable=False, name="total_steps")

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(self.warmup_steps)
        ramp = ops.minimum((step + 1.0) / warmup, 1.0) if warmup else 1.0
        t = ops.maximum(step - warmup, 0.0)
        span = ops.maximum(self.total.value - warmup, 1.0)
        progress = ops.minimum(t / span, 1.0)
        floor = self.final_fraction
        if self.kind == "cosine":
            factor = floor + (1.0 - floor) * 0.5 * (1.0 + ops.cos(math.pi * progress))
        elif self.kind == "poly":
            factor = floor + (1.0 - floor) * ops.power(1.0 - progress, self.power)
        elif self.kind == "step":
            factor = ops.power(self.step_factor, ops.floor(t / self.step_every))
        elif self.kind == "plateau":
            factor = self.scale.value
        else:
            factor = 1.0
        return self.base * ramp * factor

    def get_config(self):
        return {"kind": self.kind, "base": self.base, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "final_fraction": self.final_fraction, "power": self.power,
                "step_every": self.step_every, "step_factor": self.step_factor}


def fit_epochs(budget_seconds: float, elapsed_seconds: float, epoch_seconds: float, epochs: int) -> int:
    """How many epochs in all fit a budget, ``elapsed`` of it spent on the first epoch, each
    further epoch taking ``epoch_seconds``; at least 1, at most ``epochs``."""
    remaining = budget_seconds - elapsed_seconds
    return max(1, min(epochs, 1 + int(remaining // max(epoch_seconds, 1e-9))))


@dataclass
class Patience:
    """Epochs since the best validation score, for reduce-on-plateau and early stopping."""

    patience: int
    best: float = -math.inf
    waited: int = 0

    def update(self, score: float) -> bool:
        """Records an epoch's score; True when ``patience`` epochs passed without a better one
        (the count then starts again)."""
        if math.isfinite(score) and score > self.best:
            self.best, self.waited = score, 0
            return False
        self.waited += 1
        if self.patience and self.waited >= self.patience:
            self.waited = 0
            return True
        return False


# train.optimizer -> the optimizer, from the TrainConfig, the schedule and the clipping
# arguments. Adam with weight decay is AdamW (decoupled decay, as Loshchilov and Hutter).
OPTIMIZERS = {
    "adam": lambda t, schedule, clip: (keras.optimizers.AdamW(schedule, weight_decay=t.weight_decay, **clip)
                                       if t.weight_decay else keras.optimizers.Adam(schedule, **clip)),
    "adamw": lambda t, schedule, clip: keras.optimizers.AdamW(schedule, weight_decay=t.weight_decay, **clip),
    "sgd": lambda t, schedule, clip: keras.optimizers.SGD(schedule, momentum=t.momentum, nesterov=t.nesterov,
                                                          weight_decay=t.weight_decay or None, **clip),
}


def make_optimizer(train, steps_per_epoch: int, total_epochs: int,
                   policy: str) -> tuple[keras.optimizers.Optimizer, Schedule]:
    """The optimizer ``train`` (a :class:`tfseg.config.TrainConfig`) describes, and its
    schedule; float16 training gets dynamic loss scaling."""
    schedule = Schedule(train.schedule, train.learning_rate, steps_per_epoch * total_epochs,
                        warmup_steps=round(train.warmup_epochs * steps_per_epoch),
                        final_fraction=train.final_learning_rate_fraction, power=train.poly_power,
                        step_every=train.step_every_epochs * steps_per_epoch, step_factor=train.step_factor)
    clip = {"global_clipnorm": train.clip_norm} if train.clip_norm else {}
    optimizer = OPTIMIZERS[train.optimizer](train, schedule, clip)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer, schedule
