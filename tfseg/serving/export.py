"""Export a trained model as a SavedModel that owns its whole inference path.

``tfseg export`` writes TF Serving's layout, one folder per version, never overwritten::

    export/                 the model base path (TF Serving's --model_base_path)
      1/  2/ ...            saved_model.pb  variables/  assets.extra/{tfseg.json, model.keras}

Signatures (endpoints):

* ``serving_default`` (also ``serve``): ``images`` uint8 ``[N, H, W, 3]`` RGB of any size
  (``[N, H, W, 3 k]`` for a model of k stacked RGB images, e.g. 6 for a background and a
  composite; ``tfseg.json``'s ``inputs`` names them in order);
* ``serve_bytes`` (models of one RGB image): ``image_bytes`` string ``[N]``, encoded
  PNG/JPEG decoded in the graph with its EXIF orientation applied (what a REST client
  sends, base64-encoded);
* ``network_input``: the tensor the network is fed, for checking it against training;
* ``network``: the network alone on such a tensor (logits), for segmenting in tiles.

Both serving signatures run :func:`tfseg.serving.graph.make_inference_fn`: the training
geometry and preprocessing (resize to ``data.resize``, CLAHE, normalisation), padding to
the network's stride, the network, the way back to the image's own size, softmax and
argmax; they return ``classes`` uint8 ``[N, H, W]`` and, unless exported without, the
``probabilities`` float32 ``[N, H, W, C]``; a model with a depth head also returns
``depth`` float32 ``[N, H, W]`` (metres). Clients need neither tfseg nor any knowledge
of normalisation, input size or stride. ``assets.extra/tfseg.json`` carries the class
names, palette, preprocessing, preset, dataset, scores, tfseg version and commit.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import keras

from tfseg.config import DataConfig
from tfseg.errors import UserError
from tfseg.fileio import publish_mode
from tfseg.heads import LOGITS, output_names
from tfseg.models import model_stride
from tfseg.runs import Run
from tfseg.serving.graph import (BYTES_INPUT, make_bytes_inference_fn, make_inference_fn, make_network_fn,
                                 make_network_input_fn, network_input_spec, serving_input)
from tfseg.serving.layout import KERAS_COPY, METADATA_FILE, next_version
from tfseg.serving.test_time import NO_TEST_TIME_AUGMENTATION, TestTimeAugmentation


def export_saved_model(model: keras.Model, path: str | os.PathLike, *,
                       data_config: DataConfig, stride: int, class_names, palette,
                       extra: dict | None = None, probabilities: bool = True,
                       keras_file: Path | None = None, input_groups=("image",),
                       tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION) -> Path:
    """Writes the SavedModel to ``path``, which must not exist yet.

    ``input_groups`` names the RGB images stacked in each input (3 channels each).
    ``tta``: test-time augmentation in both serving signatures (the ``network`` endpoint,
    which tiling uses, stays one pass); ``tfseg.json`` records it.

    The model is written into a temporary sibling directory and renamed into place, so
    ``path`` is either absent or a complete SavedModel, never a half-written one.
    ``keras_file``, if given, is copied to ``assets.extra/model.keras``.
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
        inference_fn = make_inference_fn(model, data_config, stride, probabilities, tta)
        # The first endpoint is also the signature "serving_default".
        channels = 3 * len(input_groups)
        archive.add_endpoint("serve", inference_fn, input_signature=[serving_input(channels)])
        if len(input_groups) == 1:  # an encoded file holds one RGB image
            archive.add_endpoint("serve_bytes", make_bytes_inference_fn(inference_fn),
                                 input_signature=[BYTES_INPUT])
        archive.add_endpoint("network_input", make_network_input_fn(data_config, stride),
                             input_signature=[serving_input(channels)])
        archive.add_endpoint("network", make_network_fn(model), input_signature=[network_input_spec(channels)])
        archive.write_out(str(staging), verbose=False)
        metadata = {"class_names": list(class_names), "palette": [list(map(int, c)) for c in palette],
                    "resize": list(data_config.resize),
                    "preprocess": dataclasses.asdict(data_config.preprocess), "stride": stride,
                    "outputs": (["classes"] + (["probabilities"] if probabilities else [])
                                + [name for name in output_names(model) if name != LOGITS]),
                    "inputs": list(input_groups), "test_time_augmentation": tta.metadata(), **(extra or {})}
        (staging / METADATA_FILE).parent.mkdir(exist_ok=True)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=1))
        if keras_file is not None:
            shutil.copyfile(keras_file, staging / KERAS_COPY)
        publish_mode(staging)
        staging.rename(path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # our own temporary directory only
        raise
    return path


def source_commit() -> str | None:
    """The git commit tfseg runs from: the HEAD of the checkout it lives in (only a
    checkout of tfseg itself: an installed copy may sit inside some other repository),
    else the image's build revision."""
    checkout = Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=checkout,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        result = None
    if result is not None and result.returncode == 0:
        toplevel, commit = result.stdout.split()
        if Path(toplevel).resolve() == checkout:
            return commit
    return os.environ.get("TFSEG_GIT_COMMIT") or None


def export_run(run: Run, base: str | os.PathLike | None = None, *, version: int | None = None,
               probabilities: bool = True, tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION) -> Path:
    """Exports the run's best model as a new version of a model base folder; returns the
    version folder.

    Args:
      run: the finished run (:func:`tfseg.runs.load_run`).
      base: the model base folder (default: the run's ``export.path``, ``RUN_DIR/export``).
      version: the version number (default: one more than the highest there); an existing
        version is never overwritten.
      probabilities: whether the signatures also return ``probabilities``.
      tta: test-time augmentation baked into the serving signatures (default: none).

    Everything the SavedModel needs comes from the run: its geometry, preprocessing and
    stride (config), class names and palette, stacked inputs, its ``model.keras`` (copied
    along) and the scores ``tfseg evaluate`` wrote. The SavedModel computes in float32
    whatever the training precision was (:meth:`Run.network`).
    """
    from tfseg import __version__

    base = Path(base) if base is not None else run.directory / run.config.export.path
    if base.exists() and not base.is_dir():
        raise UserError(f"export path {base}: exists and is not a folder")
    if (base / "saved_model.pb").exists():
        raise UserError(f"export path {base}: holds a SavedModel; give a folder for versions "
                        "(TF Serving's model base path)")
    version = next_version(base) if version is None else version
    if version < 1:
        raise UserError(f"--version {version}: versions are positive integers")
    if (base / str(version)).exists():
        raise UserError(f"export path {base / str(version)}: version {version} already exists; "
                        "versions are never overwritten (leave --version out for the next one)")
    config = run.config
    extra = {"model": config.model.name, "preset": config.name, "dataset": config.data.source,
             "version": version, "tfseg_version": __version__, "git_commit": source_commit(),
             "scores": run.scores()}
    return export_saved_model(
        run.network(), base / str(version), data_config=config.data,
        stride=model_stride(config.model.name, **config.model.options),
        class_names=run.class_names, palette=run.palette, extra=extra, probabilities=probabilities,
        keras_file=run.model_path, input_groups=run.input_groups, tta=tta)
