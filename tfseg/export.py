"""Export a trained model as a SavedModel that owns its whole inference path.

The serving signature takes ``uint8`` RGB images of any height and width and runs
:func:`tfseg.inference.make_inference_fn`: the training geometry and preprocessing
(resize to ``data.resize``, CLAHE, normalisation), padding to the network's stride, the
network, and the way back to the image's own size, softmax and argmax. Clients therefore
need neither tfseg nor any knowledge of normalisation, input size or stride. A second
endpoint, ``network_input``, returns the tensor the network is fed, for checking it
against the training pipeline. Class names and palette travel with the model in
``assets.extra/tfseg.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import keras

from tfseg.artifacts import METADATA_FILE
from tfseg.config import DataConfig, RunConfig
from tfseg.errors import UserError
from tfseg.fileio import publish_mode
from tfseg.inference import SERVING_INPUT, float32_model, make_inference_fn, make_network_input_fn
from tfseg.models import model_stride

def export_saved_model(model: keras.Model, path: str | os.PathLike, *,
                       data_config: DataConfig, stride: int, class_names, palette,
                       extra: dict | None = None) -> Path:
    """Writes the SavedModel to ``path``, which must not exist yet.

    The model is written into a temporary sibling directory and renamed into place, so
    ``path`` is either absent or a complete SavedModel, never a half-written one.
    """
    path = Path(path)
    if path.exists():
        raise UserError(f"export path {path}: already exists; choose another path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as err:
        raise UserError(f"export path {path}: cannot write there ({err.strerror})") from None
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", make_inference_fn(model, data_config, stride),
                             input_signature=[SERVING_INPUT])
        archive.add_endpoint("network_input", make_network_input_fn(data_config, stride),
                             input_signature=[SERVING_INPUT])
        archive.write_out(str(staging), verbose=False)
        metadata = {"class_names": list(class_names), "palette": [list(map(int, c)) for c in palette],
                    "resize": list(data_config.resize),
                    "preprocess": dataclasses.asdict(data_config.preprocess), "stride": stride,
                    **(extra or {})}
        (staging / METADATA_FILE).parent.mkdir(exist_ok=True)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        publish_mode(staging)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary directory only
        raise
    return path


def export_run(model: keras.Model, config: RunConfig, path: str | os.PathLike, class_names, palette) -> Path:
    """Exports a model trained with ``config``: its geometry, preprocessing and stride.

    The SavedModel computes in float32 whatever the training precision was.
    """
    model = float32_model(model, config.model, len(class_names))
    return export_saved_model(
        model, path, data_config=config.data,
        stride=model_stride(config.model.name, **config.model.options),
        class_names=class_names, palette=palette, extra={"model": config.model.name})
