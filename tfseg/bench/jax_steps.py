"""tfseg models with Keras on JAX as benchmark candidates: a training step and an inference step.

The training step is Keras' own JAX training step without its bookkeeping: the model's
``stateless_call`` inside ``jax.value_and_grad``, tfseg's
:class:`~tfseg.losses.MaskedSparseCrossEntropy` plus any regularisation losses, and
``Adam.stateless_apply``, compiled by ``jax.jit`` (XLA) into one program. The model, the
optimizer and the loss are Keras'; only ``train_on_batch``'s per-call work (copying the
batch to the device, syncing every variable back into the model, metric trackers, a
Python float of the loss) is left out, so that a step is what a training loop that keeps
its batch on the device pays. Its first step, compared with ``train_on_batch``'s, gives
the same loss and weights (tested).

Import this only with Keras on JAX (:func:`tfseg.bench.model_step.use_jax_backend`).
"""

from __future__ import annotations

import time

import jax
import keras
import numpy as np

from tfseg.bench.batches import random_batch
from tfseg.bench.rounds import timed_steps
from tfseg.losses import MaskedSparseCrossEntropy
from tfseg.models import build_model
from tfseg.models.cost import model_cost


def build_under_policy(name: str, num_classes: int, options: dict, precision: str) -> keras.Model:
    """``build_model`` under the dtype policy ``precision``, which layers read when built.

    The global policy is restored afterwards, so that one benchmark does not change the
    next one's. The weights are Keras' default random initialisation, unseeded: a step
    takes as long whatever they are, and ``keras.utils.set_random_seed`` would import
    TensorFlow wherever it is installed.
    """
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(precision)
    try:
        return build_model(name, num_classes, **options)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def make_optimizer(precision: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """Adam, with a dynamic loss scale under ``mixed_float16`` (as ``Model.compile`` adds):
    float16 gradients would otherwise underflow."""
    optimizer = keras.optimizers.Adam(learning_rate)
    if precision == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def initial_state(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> tuple:
    """``(trainable, non_trainable, optimizer)`` variable values: the training step's state.

    The step donates this state, so the model's own variables must not be read after the
    first step (they would name freed buffers).
    """
    optimizer.build(model.trainable_variables)
    return ([v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables])


def train_step_function(model: keras.Model, optimizer: keras.optimizers.Optimizer, loss_fn):
    """A jitted ``step(state, images, labels) -> (loss, new_state)``.

    ``images``: float32 ``[B, H, W, C]``; ``labels``: int32 ``[B, H, W]``; ``loss``: a
    float32 scalar, before loss scaling. ``state`` (see :func:`initial_state`) is donated:
    XLA updates the weights in place instead of holding two copies.
    """

    def scaled_loss(trainable, non_trainable, optimizer_values, images, labels):
        logits, non_trainable, losses = model.stateless_call(
            trainable, non_trainable, images, training=True, return_losses=True)
        loss = loss_fn(labels, logits)
        for extra in losses:  # weight decay of the layers that have it
            loss = loss + extra
        # The loss scale is an optimizer variable: read it from the state, as Keras does.
        with keras.StatelessScope(state_mapping=list(zip(optimizer.variables, optimizer_values))):
            scaled = optimizer.scale_loss(loss)
        return scaled, (loss, non_trainable)

    gradients = jax.value_and_grad(scaled_loss, has_aux=True)

    def step(state, images, labels):
        trainable, non_trainable, optimizer_values = state
        (_, (loss, non_trainable)), grads = gradients(trainable, non_trainable, optimizer_values,
                                                      images, labels)
        trainable, optimizer_values = optimizer.stateless_apply(optimizer_values, grads, trainable)
        return loss, (trainable, non_trainable, optimizer_values)

    return jax.jit(step, donate_argnums=0)


def inference_function(model: keras.Model):
    """A jitted ``infer(trainable, non_trainable, images) -> logits``: float32 ``[B, H, W, K]``."""

    def infer(trainable, non_trainable, images):
        logits, _ = model.stateless_call(trainable, non_trainable, images, training=False)
        return logits

    return jax.jit(infer)


class KerasCandidate:
    """One task (``"train"`` or ``"inference"``) of one tfseg model, Keras on JAX.

    :meth:`prepare` builds, compiles and warms up (none of it timed as a step);
    :meth:`run` times steps, each until its results are ready on the device.
    """

    name = "keras_jax"

    def __init__(self, task: str, model_name: str, num_classes: int, options: dict,
                 precision: str, batch: int, height: int, width: int,
                 learning_rate: float = 1e-4, seed: int = 0):
        if task not in ("train", "inference"):
            raise ValueError(f"task must be 'train' or 'inference', got {task!r}")
        self.task, self.model_name, self.num_classes = task, model_name, num_classes
        self.options, self.precision, self.batch = dict(options), precision, batch
        self.height, self.width = height, width
        self.learning_rate, self.seed = learning_rate, seed
        self.state = self.function = self.images = self.labels = None

    def prepare(self, warmup: int) -> dict:
        """Builds the model and its step, runs the first (compiling) step and ``warmup``
        more. Returns the parameter count, forward GFLOPs per image, the input's channels
        and the set-up times."""
        start = time.perf_counter()
        model = build_under_policy(self.model_name, self.num_classes, self.options, self.precision)
        cost = model_cost(model, (self.height, self.width))
        channels = int(model.inputs[0].shape[-1])
        images, labels = random_batch(self.batch, self.height, self.width, channels,
                                      self.num_classes, self.seed)
        self.images = jax.device_put(images)
        if self.task == "train":
            optimizer = make_optimizer(self.precision, self.learning_rate)
            self.state = initial_state(model, optimizer)
            self.function = train_step_function(model, optimizer, MaskedSparseCrossEntropy())
            self.labels = jax.device_put(labels)
        else:
            self.state = ([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables])
            self.function = inference_function(model)
        build_s = time.perf_counter() - start
        times, out = timed_steps(self.step, 1 + warmup)
        first_step_s = times[0]
        self.check(out)
        return {"params": int(cost.params), "gflops_forward": cost.gflops, "input_channels": channels,
                "build_s": build_s, "first_step_s": first_step_s}

    def step(self):
        """One step, waited for; returns the loss (train) or the logits (inference)."""
        if self.task == "train":
            loss, self.state = self.function(self.state, self.images, self.labels)
            return jax.block_until_ready((loss, self.state))[0]
        return jax.block_until_ready(self.function(*self.state, self.images))

    def run(self, steps: int) -> list[float]:
        """Seconds of each of ``steps`` steps."""
        times, out = timed_steps(self.step, steps)
        self.check(out)
        return times

    def check(self, out) -> None:
        """Fails loudly on a NaN/inf loss or logits: a diverged step times nothing useful."""
        if out is not None and not bool(np.isfinite(np.asarray(out)).all()):
            raise FloatingPointError(f"{self.model_name} {self.task}: non-finite output")

    def release(self) -> None:
        self.state = self.function = self.images = self.labels = None
        keras.backend.clear_session()
