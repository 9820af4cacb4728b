"""The fixed random batch that model benchmarks train on (numpy only, so every framework
gets the very same numbers)."""

from __future__ import annotations

import numpy as np

VOID = 255  # tfseg's ignore label (tfseg.data.labels.VOID), repeated to keep this numpy-only


def random_batch(batch: int, height: int, width: int, channels: int, num_classes: int,
                 seed: int = 0, void_fraction: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Images float32 ``[batch, height, width, channels]`` in [0, 1) and labels int32
    ``[batch, height, width]`` in ``[0, num_classes)``, ``void_fraction`` of them ``VOID``.

    A step's cost does not depend on the pixel values, but the void pixels make the loss
    do its masking as it does on real labels.
    """
    rng = np.random.default_rng(seed)
    images = rng.random((batch, height, width, channels), dtype=np.float32)
    labels = rng.integers(0, num_classes, size=(batch, height, width)).astype(np.int32)
    labels[rng.random(labels.shape) < void_fraction] = VOID
    return images, labels
