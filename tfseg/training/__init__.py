"""Training: from a run's configuration to its ``model.keras``.

``run.train`` is the composition root: it builds the data, the model, the loss, the
optimizer and the strategy, then hands them to ``loop.run_loop``. Around the loop:
``checkpoints`` (crash-safe step checkpoints), ``history`` (the per-epoch record, curves,
TensorBoard), ``schedules`` and ``stages`` (learning rate, progressive resizing),
``interrupts`` (Ctrl-C and SIGTERM), ``tracking`` (Weights & Biases) and ``devices``
(precision, XLA and the ``tf.distribute`` strategy resolved for the machine).

Training does not import :mod:`tfseg.serving`.
"""
