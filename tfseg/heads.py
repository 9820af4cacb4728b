"""The model's outputs, by name.

A network ends in its heads. The class head is always there: ``logits`` float32
``[B, H, W, num_classes]``. A model with no other head returns the logits alone; one with
more returns a dict of them by name, e.g. ``{"logits": ..., "depth": float32 [B, H, W, 1]}``
(:func:`tfseg.models.blocks.heads`), and trains each extra head against the example's
target of the same name (:attr:`tfseg.data.sources.Source.targets`). Code that reads a
model's outputs goes through :func:`named_outputs`, which also reads models saved before
the outputs were named (they returned ``[logits, depth]``).

Adding a head: its layers (:func:`tfseg.models.blocks.heads`), its loss and metric
(:func:`tfseg.training.run.head_objectives`), a source that yields its target under its
name, and how it is served (:func:`tfseg.serving.graph.make_inference_fn`) and written
(:mod:`tfseg.predict`). The pipeline, augmentation, training loop, history and
evaluation carry every target by name and need no change.
"""

from __future__ import annotations

LOGITS = "logits"
DEPTH = "depth"
# What models saved before outputs were named returned, in order.
_POSITIONAL = (LOGITS, DEPTH)


def named_outputs(outputs) -> dict:
    """A model's outputs as ``{name: tensor}``, whichever form the model returns them in:
    the logits alone, a dict by name, or a list in the order of models saved before
    outputs were named (``[logits, depth]``)."""
    if isinstance(outputs, dict):
        return dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return dict(zip(_POSITIONAL, outputs, strict=False))
    return {LOGITS: outputs}


def output_names(model) -> tuple[str, ...]:
    """The names of a built model's outputs (:func:`named_outputs` of its symbolic outputs)."""
    return tuple(named_outputs(model.output))
