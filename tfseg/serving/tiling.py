"""Segmenting a big image in overlapping tiles, with bounded memory, as the whole image would be.

The image is prepared whole (resize, CLAHE and normalisation look at the whole image, so
they cannot be tiled) and padded to the network's stride, exactly as the SavedModel's
``serve`` does. Then the *network* runs on windows of that tensor: each window is a core
plus a margin of context on every side, and only the core's output is kept. Cores
partition the image; windows and cores start at multiples of the stride, so every
pooling grid lines up with the whole image's. Where the network's receptive field fits in
the margin, the result equals the whole image's (up to float rounding; tested).

Without ``data.resize`` the network runs at the image's own size: each core's softmax and
argmax go straight into the output, and no full-size logits are ever held. With it, the
network input is the (small) training size; the stitched logits are resized back to the
image's size, as ``serve`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Window:
    core: tuple[slice, slice]  # the output this window decides, in the padded input
    window: tuple[slice, slice]  # what the network sees
    offset: tuple[int, int]  # the core's start inside the window


def round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def tile_windows(height: int, width: int, tile: int, margin: int, stride: int) -> list[Window]:
    """Windows of at most ``tile`` x ``tile`` over a ``height`` x ``width`` input (multiples of
    ``stride``), with cores ``tile - 2 margin`` wide; sizes are rounded to the stride."""
    margin = round_up(margin, stride)
    core = max(round_up(tile, stride) - 2 * margin, stride)
    windows = []
    for top in range(0, height, core):
        for left in range(0, width, core):
            bottom, right = min(top + core, height), min(left + core, width)
            y0, x0 = max(top - margin, 0), max(left - margin, 0)
            y1, x1 = min(bottom + margin, height), min(right + margin, width)
            windows.append(Window((slice(top, bottom), slice(left, right)), (slice(y0, y1), slice(x0, x1)),
                                  (top - y0, left - x0)))
    return windows


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(-1, keepdims=True)


def segment_in_tiles(network_input: Callable[[np.ndarray], np.ndarray],
                     network: Callable[[np.ndarray], np.ndarray],
                     image: np.ndarray, *, resize: list[int], stride: int, tile: int, margin: int,
                     num_classes: int, resize_logits: Callable | None = None,
                     probability_of: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``image`` uint8 ``[H, W, 3]`` -> ``(classes uint8 [H, W], probability float32 [H, W] of
    class ``probability_of``, or None)``.

    ``network_input`` and ``network`` are the SavedModel's endpoints (batch of one);
    ``resize_logits(logits [h, w, C], (H, W))`` resizes logits bilinearly as ``serve`` does.
    """
    height, width = image.shape[:2]
    x = network_input(image[np.newaxis])[0]  # [h', w', 3], padded to the stride
    net_height, net_width = (resize[0], resize[1]) if resize else (height, width)
    windows = tile_windows(x.shape[0], x.shape[1], tile, margin, stride)
    if resize:
        logits = np.zeros((x.shape[0], x.shape[1], num_classes), np.float32)
    classes = np.zeros((x.shape[0], x.shape[1]), np.uint8)
    probability = np.zeros(classes.shape, np.float32) if probability_of is not None else None
    for w in windows:
        out = network(x[w.window][np.newaxis])[0]
        rows, cols = w.core[0].stop - w.core[0].start, w.core[1].stop - w.core[1].start
        core = out[w.offset[0]:w.offset[0] + rows, w.offset[1]:w.offset[1] + cols]
        if resize:
            logits[w.core] = core
            continue
        classes[w.core] = core.argmax(-1)
        if probability is not None:
            probability[w.core] = softmax(core)[..., probability_of]
    if resize:
        full = resize_logits(logits[:net_height, :net_width], (height, width))
        classes = full.argmax(-1).astype(np.uint8)
        probability = softmax(full)[..., probability_of] if probability_of is not None else None
        return classes, probability
    return classes[:height, :width], probability[:height, :width] if probability is not None else None
