"""The client of an exported SavedModel that ``predict`` and ``evaluate`` share.

It needs the SavedModel and its ``assets.extra/tfseg.json`` only: neither the model code
nor the training configuration.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfseg.errors import UserError
from tfseg.heads import DEPTH
from tfseg.serving.layout import METADATA_FILE, saved_model_dir


class SegmentationModel:
    """An exported tfseg SavedModel: ``model(image uint8 [H, W, 3]) -> classes uint8 [H, W]``.

    ``path`` is a SavedModel folder or a model base folder of versions (the highest is used).
    """

    def __init__(self, path: str | Path):
        path = saved_model_dir(Path(path))
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            raise UserError(f"model {path}: has no {METADATA_FILE}; was it written by `tfseg export`?")
        import tensorflow as tf

        try:
            self.metadata = json.loads(metadata_path.read_text())
            self.class_names = self.metadata["class_names"]
            self.palette = np.asarray(self.metadata["palette"], np.uint8)
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"model {path}: {METADATA_FILE} is unreadable ({err})") from None
        self.path = path
        self.has_probabilities = "probabilities" in self.metadata.get("outputs", ["probabilities"])
        self.has_depth = DEPTH in self.metadata.get("outputs", [])
        try:
            self._loaded = tf.saved_model.load(str(path))  # kept referenced: it owns the variables
        except Exception as err:  # protobuf's DecodeError, TensorFlow's errors, OSError...
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            raise UserError(f"model {path}: cannot be loaded as a SavedModel ({reason})") from None
        self.serve = self._loaded.serve
        self.stride = int(self.metadata.get("stride", 1))
        self.resize = list(self.metadata.get("resize") or [])
        # The RGB images stacked in each input, in order (exports before stacked inputs: one).
        self.inputs = list(self.metadata.get("inputs", ["image"]))

    def network_pixels(self, height: int, width: int) -> int:
        """How many pixels the network sees for an image of ``height`` x ``width``."""
        return self.resize[0] * self.resize[1] if self.resize else height * width

    def segment_tiled(self, image: np.ndarray, tile: int, probability_of: int | None = None):
        """``image`` uint8 ``[H, W, 3]`` in overlapping tiles (:mod:`tfseg.serving.tiling`) ->
        ``(classes uint8 [H, W], probability float32 [H, W] or None)``."""
        import tensorflow as tf

        from tfseg.serving.tiling import segment_in_tiles

        network = getattr(self._loaded, "network", None)
        if network is None:
            raise UserError(f"model {self.path}: has no `network` endpoint for tiling; export it again")
        return segment_in_tiles(
            lambda x: self._loaded.network_input(x).numpy(), lambda x: network(x).numpy(), image,
            resize=self.resize, stride=self.stride, tile=tile, margin=tile // 4,
            num_classes=len(self.class_names), probability_of=probability_of,
            resize_logits=lambda logits, size: tf.image.resize(logits, size, method="bilinear").numpy())

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` uint8 ``[N, H, W, 3]`` -> ``{"classes": uint8 [N, H, W],
        "probabilities": float32 [N, H, W, num_classes]}``."""
        return {key: value.numpy() for key, value in self.serve(images).items()}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One image ``[H, W, 3]`` uint8 -> its class map ``[H, W]`` uint8."""
        return self.serve(image[np.newaxis])["classes"].numpy()[0]
