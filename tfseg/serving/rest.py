"""TF Serving's REST API, as bodies: requests to input arrays, outputs to responses.

What TF Serving's RESTful API documents for ``:predict``, ``GET /v1/models/NAME`` and
``.../metadata``, for the dtypes a tfseg export has (uint8 images, float32 network
inputs, encoded images as strings):

* ``{"signature_name": S, "instances": [...]}`` (row format): each instance is one item
  of the batch, a value when the signature has one input, else ``{input name: value}``;
  the response is ``{"predictions": [...]}``, one item per instance (a value for one
  output, else ``{output name: value}``).
* ``{"signature_name": S, "inputs": ...}`` (columnar): the batched value, or ``{input name:
  batched value}``; the response is ``{"outputs": ...}`` alike.
* A string input takes ``{"b64": "..."}`` (base64 of its bytes), as TF Serving decodes it.
* Errors are ``{"error": "one line"}`` with a 4xx status (:class:`RestError`).

The arrays go to the SavedModel's signature unchanged; this module knows nothing of tfseg's
model beyond the signatures' specs.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

# TF Serving's names of the dtypes a signature of a tfseg export uses.
DTYPE_NAMES = {"uint8": "DT_UINT8", "float32": "DT_FLOAT", "string": "DT_STRING", "int32": "DT_INT32",
               "int64": "DT_INT64"}
DEFAULT_SIGNATURE = "serving_default"


class RestError(Exception):
    """A request refused: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature: ``dtype`` ("uint8", "float32", "string") and
    ``shape`` (None for an unknown dimension)."""

    name: str
    dtype: str
    shape: tuple

    def as_json(self) -> dict:
        """TF Serving's ``TensorInfo`` in a metadata response."""
        return {"dtype": DTYPE_NAMES.get(self.dtype, self.dtype),
                "tensor_shape": {"dim": [{"size": str(-1 if size is None else size), "name": ""}
                                         for size in self.shape], "unknown_rank": False},
                "name": self.name}


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]

    def as_json(self) -> dict:
        return {"inputs": {k: v.as_json() for k, v in self.inputs.items()},
                "outputs": {k: v.as_json() for k, v in self.outputs.items()},
                "method_name": "tensorflow/serving/predict"}


@dataclass(frozen=True)
class PredictRequest:
    """A parsed ``:predict`` body: the signature, its inputs as arrays ``[N, ...]`` and
    whether the response is in row (``instances``) or columnar (``inputs``) form."""

    signature: Signature
    inputs: dict[str, np.ndarray]
    row_format: bool

    @property
    def batch_size(self) -> int:
        return len(next(iter(self.inputs.values())))


def parse_predict(body: bytes, signatures: dict[str, Signature]) -> PredictRequest:
    """A ``:predict`` request body -> :class:`PredictRequest`; anything malformed is a
    :class:`RestError` 400 saying what."""
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RestError(400, f"JSON Parse error: {err}") from None
    if not isinstance(request, dict):
        raise RestError(400, "the request body must be a JSON object")
    name = request.get("signature_name", DEFAULT_SIGNATURE)
    if name not in signatures:
        raise RestError(400, f"Serving signature name: \"{name}\" not found in signature def "
                             f"(have: {', '.join(sorted(signatures))})")
    signature = signatures[name]
    if ("instances" in request) == ("inputs" in request):
        raise RestError(400, "the request must have exactly one of \"instances\" (row format) or \"inputs\" "
                             "(columnar format)")
    if "instances" in request:
        columns = _columns_of_instances(request["instances"], signature)
    else:
        columns = _columns_of_inputs(request["inputs"], signature)
    inputs = {key: _as_array(value, signature.inputs[key]) for key, value in columns.items()}
    sizes = {len(value) for value in inputs.values()}
    if len(sizes) != 1:
        raise RestError(400, "the inputs have different batch sizes")
    if sizes == {0}:
        raise RestError(400, "the request holds no instance")
    return PredictRequest(signature, inputs, "instances" in request)


def _columns_of_instances(instances, signature: Signature) -> dict[str, list]:
    if not isinstance(instances, list) or not instances:
        raise RestError(400, "\"instances\" must be a non-empty list")
    names = list(signature.inputs)
    columns: dict[str, list] = {name: [] for name in names}
    for index, instance in enumerate(instances):
        named = isinstance(instance, dict) and set(instance) <= set(names) and "b64" not in instance
        if named:
            missing = set(names) - set(instance)
            if missing:
                raise RestError(400, f"instance {index} lacks input {sorted(missing)[0]!r}")
            for name in names:
                columns[name].append(instance[name])
        elif len(names) == 1:
            columns[names[0]].append(instance)
        else:
            raise RestError(400, f"instance {index} must be an object with the inputs {', '.join(names)}")
    return columns


def _columns_of_inputs(inputs, signature: Signature) -> dict:
    names = list(signature.inputs)
    if isinstance(inputs, dict) and "b64" not in inputs:
        unknown = set(inputs) - set(names)
        if unknown:
            raise RestError(400, f"input {sorted(unknown)[0]!r} is not in signature {signature.name!r} "
                                 f"(its inputs: {', '.join(names)})")
        missing = set(names) - set(inputs)
        if missing:
            raise RestError(400, f"\"inputs\" lacks {sorted(missing)[0]!r}")
        return inputs
    if len(names) != 1:
        raise RestError(400, f"\"inputs\" must be an object with the inputs {', '.join(names)}")
    return {names[0]: inputs}


def _as_array(value, info: TensorInfo) -> np.ndarray:
    """A batched JSON value -> the array the signature takes, its dtype and shape checked."""
    if info.dtype == "string":
        items = value if isinstance(value, list) else None
        if items is None:
            raise RestError(400, f"input {info.name!r}: expected a list of {{\"b64\": ...}} values")
        return np.array([_bytes_of(item, info.name) for item in items], dtype=object)
    try:
        array = np.asarray(value)
    except ValueError:
        raise RestError(400, f"input {info.name!r}: the instances do not all have the same shape") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise RestError(400, f"input {info.name!r}: expected numbers in nested lists of one shape")
    if array.ndim != len(info.shape) or any(want is not None and want != got
                                            for want, got in zip(info.shape, array.shape)):
        wanted = "[" + ", ".join("-1" if s is None else str(s) for s in info.shape) + "]"
        raise RestError(400, f"input {info.name!r}: shape {list(array.shape)} does not fit {wanted}")
    if info.dtype == "uint8":
        if not np.issubdtype(array.dtype, np.integer) or array.min() < 0 or array.max() > 255:
            raise RestError(400, f"input {info.name!r}: uint8 values must be integers 0..255")
        return array.astype(np.uint8)
    return array.astype(info.dtype)


def _bytes_of(item, name: str) -> bytes:
    if not (isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str)):
        raise RestError(400, f"input {name!r}: binary values are sent as {{\"b64\": \"<base64>\"}}")
    try:
        return base64.b64decode(item["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise RestError(400, f"input {name!r}: \"b64\" is not valid base64") from None


def predict_response(request: PredictRequest, outputs: dict[str, np.ndarray]) -> dict:
    """The outputs ``{name: [N, ...]}`` in the request's format, values still NumPy arrays
    (:func:`json_bytes` writes them)."""
    outputs = {key: np.ascontiguousarray(outputs[key]) for key in request.signature.outputs}
    if request.row_format:
        rows = [{key: value[i] for key, value in outputs.items()} for i in range(request.batch_size)]
        return {"predictions": [row[next(iter(row))] if len(row) == 1 else row for row in rows]}
    return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}


def json_bytes(body: dict) -> bytes:
    """A response as JSON text, NumPy arrays written as nested lists (by orjson: a class
    map of a KITTI image takes half a millisecond, not the 30 of ``tolist`` and ``json``)."""
    import orjson

    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def version_status(versions: dict[int, str | None]) -> dict:
    """``GET /v1/models/NAME``: ``versions`` maps each version to None (serving) or why it
    failed to load."""
    return {"model_version_status": [
        {"version": str(version), "state": "AVAILABLE" if error is None else "END",
         "status": {"error_code": "OK" if error is None else "UNKNOWN", "error_message": error or ""}}
        for version, error in sorted(versions.items(), reverse=True)]}


def metadata_response(name: str, version: int, signatures: dict[str, Signature]) -> dict:
    """``GET /v1/models/NAME/metadata``."""
    return {"model_spec": {"name": name, "signature_name": "", "version": str(version)},
            "metadata": {"signature_def": {"signature_def": {key: s.as_json() for key, s in signatures.items()},
                                           "@type": "type.googleapis.com/tensorflow.serving.SignatureDefMap"}}}
