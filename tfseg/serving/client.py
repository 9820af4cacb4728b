"""The client of an exported model that ``predict`` and ``evaluate`` share: a SavedModel,
or one of its conversions (``model_*.tflite``, ``model.onnx``; :mod:`tfseg.serving.runtimes`).

It needs the model and its ``assets.extra/tfseg.json`` only: neither the model code nor
the training configuration. :func:`load_model` picks the kind from the path.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfseg.errors import UserError
from tfseg.heads import DEPTH
from tfseg.serving.layout import METADATA_FILE, saved_model_dir
from tfseg.serving.lite import MODEL_SUFFIXES, LiteModel, ModelFileError
from tfseg.serving.test_time import TestTimeAugmentation


def load_model(path: str | Path) -> SegmentationModel | ConvertedModel:
    """The exported model at ``path``: a ``.tflite`` or ``.onnx`` file, else a SavedModel
    folder or a model base folder of versions."""
    path = Path(path)
    if path.suffix.lower() in MODEL_SUFFIXES:
        return ConvertedModel(path)
    return SegmentationModel(path)


class ExportedModel:
    """What ``tfseg.json`` says about an export, for every kind of model file.

    Subclasses provide ``serve(images uint8 [N, H, W, C]) -> {"classes": uint8 [N, H, W],
    "probabilities": float32 [N, H, W, num_classes], ...}`` (NumPy arrays or tensors), and
    ``segment_tiled`` where ``can_tile``.
    """

    can_tile = False  # whether the model has the endpoints that segmenting in tiles needs

    def __init__(self, path: Path, metadata: dict):
        self.path = path
        self.metadata = metadata
        try:
            self.class_names = list(metadata["class_names"])
            self.palette = np.asarray(metadata["palette"], np.uint8)
        except (KeyError, TypeError, ValueError) as err:
            raise UserError(f"model {path}: {METADATA_FILE.name} is unreadable ({err})") from None
        self.has_probabilities = "probabilities" in metadata.get("outputs", ["probabilities"])
        self.has_depth = DEPTH in metadata.get("outputs", [])
        self.stride = int(metadata.get("stride", 1))
        self.resize = list(metadata.get("resize") or [])
        # The RGB images stacked in each input, in order (exports before stacked inputs: one).
        self.inputs = list(metadata.get("inputs", ["image"]))

    @property
    def test_time_augmentation(self) -> TestTimeAugmentation:
        """The test-time augmentation baked into the export (none for older exports)."""
        baked = self.metadata.get("test_time_augmentation") or {}
        return TestTimeAugmentation(flip=bool(baked.get("flip", False)), scales=tuple(baked.get("scales", [1.0])))

    def with_test_time_augmentation(self, tta: TestTimeAugmentation) -> None:
        """Serves with ``tta`` from now on: a SavedModel only (:class:`SegmentationModel`)."""
        if tta.enabled:
            raise UserError(f"model {self.path}: a converted file runs as it was exported; for test-time "
                            "augmentation in it, export with --tta-flip/--tta-scales and convert that")

    def network_pixels(self, height: int, width: int) -> int:
        """How many pixels the network sees for an image of ``height`` x ``width``."""
        return self.resize[0] * self.resize[1] if self.resize else height * width

    def predict(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """``images`` uint8 ``[N, H, W, 3]`` -> ``{"classes": uint8 [N, H, W],
        "probabilities": float32 [N, H, W, num_classes]}``."""
        return {key: np.asarray(value) for key, value in self.serve(images).items()}

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """One image ``[H, W, 3]`` uint8 -> its class map ``[H, W]`` uint8."""
        return np.asarray(self.serve(image[np.newaxis])["classes"])[0]


class ConvertedModel(ExportedModel):
    """A ``.tflite`` file (run by LiteRT) or ``.onnx`` file (onnxruntime) written by
    ``tfseg export``, with its ``tfseg.json`` beside it (the export's ``assets.extra/``)."""

    def __init__(self, path: Path, threads: int | None = None):
        try:
            self.runtime = LiteModel(path, threads)
        except ModelFileError as err:
            raise UserError(str(err)) from None
        super().__init__(path, self.runtime.metadata)
        if self.has_depth or len(self.inputs) != 1:
            raise UserError(f"model {path}: converted files hold one-image segmentation models only")
        self.serve = self.runtime.predict


class SegmentationModel(ExportedModel):
    """An exported tfseg SavedModel: ``model(image uint8 [H, W, 3]) -> classes uint8 [H, W]``.

    ``path`` is a SavedModel folder or a model base folder of versions (the highest is used).
    """

    can_tile = True

    def __init__(self, path: str | Path):
        path = saved_model_dir(Path(path))
        metadata_path = path / METADATA_FILE
        if not metadata_path.is_file():
            raise UserError(f"model {path}: has no {METADATA_FILE}; was it written by `tfseg export`?")
        import tensorflow as tf

        try:
            metadata = json.loads(metadata_path.read_text())
        except ValueError as err:
            raise UserError(f"model {path}: {METADATA_FILE} is unreadable ({err})") from None
        super().__init__(path, metadata)
        try:
            self._loaded = tf.saved_model.load(str(path))  # kept referenced: it owns the variables
        except Exception as err:  # protobuf's DecodeError, TensorFlow's errors, OSError...
            reason = " ".join(str(err).split())[:200] or type(err).__name__
            raise UserError(f"model {path}: cannot be loaded as a SavedModel ({reason})") from None
        self.serve = self._loaded.serve

    def with_test_time_augmentation(self, tta: TestTimeAugmentation) -> None:
        """Serves with ``tta`` from now on: the passes averaged around the export's
        ``network_input`` and ``network`` endpoints by the function an export with ``tta``
        bakes in (:func:`tfseg.serving.graph.passes_inference_fn`), so the same scores."""
        if not tta.enabled:
            return
        if self.test_time_augmentation.enabled:
            raise UserError(f"model {self.path}: was exported with test-time augmentation "
                            f"{self.test_time_augmentation.metadata()} already; leave --tta-* out")
        if self.has_depth:
            raise UserError(f"model {self.path}: has a depth head, whose map does not survive test-time "
                            "augmentation; leave --tta-* out")
        network = self._endpoint("network", "test-time augmentation")
        import tensorflow as tf

        from tfseg.heads import LOGITS
        from tfseg.serving.graph import passes_inference_fn, serving_input

        def preprocess(images):  # the endpoint pads to the stride; the passes pad themselves
            size = self.resize or [tf.shape(images)[1], tf.shape(images)[2]]
            return self._loaded.network_input(images)[:, :size[0], :size[1], :]

        self.serve = tf.function(
            passes_inference_fn(preprocess, lambda x: {LOGITS: network(x)}, self.stride, resized=bool(self.resize),
                                probabilities=self.has_probabilities, tta=tta),
            input_signature=[serving_input(3 * len(self.inputs))])
        self.can_tile = False  # tiles would be one plain pass each

    def segment_tiled(self, image: np.ndarray, tile: int, probability_of: int | None = None):
        """``image`` uint8 ``[H, W, 3]`` in overlapping tiles (:mod:`tfseg.serving.tiling`) ->
        ``(classes uint8 [H, W], probability float32 [H, W] or None)``."""
        import tensorflow as tf

        from tfseg.serving.tiling import segment_in_tiles

        network = self._endpoint("network", "tiling")
        return segment_in_tiles(
            lambda x: self._loaded.network_input(x).numpy(), lambda x: network(x).numpy(), image,
            resize=self.resize, stride=self.stride, tile=tile, margin=tile // 4,
            num_classes=len(self.class_names), probability_of=probability_of,
            resize_logits=lambda logits, size: tf.image.resize(logits, size, method="bilinear").numpy())

    def _endpoint(self, name: str, purpose: str):
        endpoint = getattr(self._loaded, name, None)  # exports older than the endpoint lack it
        if endpoint is None:
            raise UserError(f"model {self.path}: has no `{name}` endpoint for {purpose}; export it again")
        return endpoint
