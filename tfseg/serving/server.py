"""``tfseg serve``: TF Serving's REST API and a web page over an exported model.

One process, an ASGI app (Starlette on uvicorn):

    GET  /v1/models/NAME[/versions/N]            version status, as TF Serving
    GET  /v1/models/NAME[/versions/N]/metadata   the signatures
    POST /v1/models/NAME[/versions/N]:predict    row ("instances") or columnar ("inputs")
    GET  /healthz                                200 once a version serves
    GET  /                                       the page: drop an image, see its overlay
    GET  /page/model, POST /page/segment         what the page asks (not TF Serving's)

**Versions** follow TF Serving's default policy: ``BASE/<N>/`` folders are polled every
``poll_seconds``; the highest that loads is served, a newer one replaces it once loaded,
and one that fails to load is reported in the status while the last good one keeps
serving. **Batching**: concurrent requests of one signature whose instances share a shape
are run together, up to ``max_batch`` instances or ``batch_timeout_ms`` after the first,
as TF Serving's batching does; the model runs in one worker thread, off the event loop.
**Limits**: bodies beyond ``max_body_bytes`` get 413, images beyond ``max_pixels`` 400,
and every malformed request a one-line 4xx; the server goes on serving.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfseg.serving.layout import METADATA_FILE, model_versions
from tfseg.serving.rest import (PredictRequest, RestError, Signature, TensorInfo, json_bytes, metadata_response,
                                parse_predict, predict_response, version_status)

PAGE = Path(__file__).with_name("page.html")
# Endpoints of an export that are not for clients (the tiling path's pieces).
INTERNAL_SIGNATURES = ("network", "network_input")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000  # per image: a 7000x5700 photo
    max_batch: int = 8
    batch_timeout_ms: float = 5.0


class LoadedVersion:
    """One version of the model, loaded: its signatures and ``tfseg.json``."""

    def __init__(self, version: int, path: Path):
        import tensorflow as tf

        self.version, self.path = version, path
        self._loaded = tf.saved_model.load(str(path))  # kept referenced: it owns the variables
        self.metadata = json.loads((path / METADATA_FILE).read_text())
        self.functions = {name: fn for name, fn in self._loaded.signatures.items()
                          if name not in INTERNAL_SIGNATURES}
        self.signatures = {name: signature_of(name, fn) for name, fn in self.functions.items()}

    def run(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The signature on a batch of inputs -> its outputs as NumPy arrays."""
        import tensorflow as tf

        tensors = {key: tf.constant(list(value) if value.dtype == object else value) for key, value in inputs.items()}
        return {key: value.numpy() for key, value in self.functions[signature](**tensors).items()}


def signature_of(name: str, function) -> Signature:
    _, inputs = function.structured_input_signature
    outputs = function.structured_outputs

    def info(key, spec):
        return TensorInfo(key, spec.dtype.name, tuple(spec.shape.as_list()))

    return Signature(name, {k: info(k, v) for k, v in inputs.items()}, {k: info(k, v) for k, v in outputs.items()})


class ModelRepository:
    """The versions under ``base``: the one served, and why others failed to load."""

    def __init__(self, base: Path):
        self.base = base
        self.serving: LoadedVersion | None = None
        self.failed: dict[int, str] = {}
        self._lock = threading.Lock()

    def poll(self) -> None:
        """Loads a version higher than the one served, if one appeared (blocking: call it
        off the event loop). A version that fails to load is recorded and not retried."""
        with self._lock:
            current = self.serving.version if self.serving else -1
            for version, path in sorted(model_versions(self.base), reverse=True):
                if version <= current or version in self.failed:
                    continue
                try:
                    self.serving = LoadedVersion(version, path)
                except Exception as err:  # a half-written or broken SavedModel: report, keep serving
                    self.failed[version] = " ".join(str(err).split())[:300] or type(err).__name__
                    continue
                break

    def status(self) -> dict[int, str | None]:
        versions = dict(self.failed)
        if self.serving is not None:
            versions[self.serving.version] = None
        return versions

    def get(self, version: int | None) -> LoadedVersion:
        serving = self.serving
        if serving is None or (version is not None and version != serving.version):
            wanted = "latest" if version is None else f"Specific({version})"
            raise RestError(404, f"Servable not found for request: {wanted} of this model")
        return serving


class Batcher:
    """Runs requests of one key (version, signature, instance shape) together: up to
    ``max_batch`` instances, or what arrived ``timeout`` seconds after the first."""

    def __init__(self, executor: ThreadPoolExecutor, max_batch: int, timeout: float):
        self.executor, self.max_batch, self.timeout = executor, max_batch, timeout
        self.pending: dict[tuple, list] = {}
        self.runs = self.requests = 0  # model calls and the requests they answered (batching's effect)

    async def run(self, model: LoadedVersion, request: PredictRequest) -> dict[str, np.ndarray]:
        loop = asyncio.get_running_loop()
        if request.batch_size >= self.max_batch or any(v.dtype == object for v in request.inputs.values()):
            # Large requests, and encoded images (whose sizes are known only once decoded), run alone.
            self.runs, self.requests = self.runs + 1, self.requests + 1
            return await loop.run_in_executor(self.executor, model.run, request.signature.name, request.inputs)
        key = (id(model), request.signature.name,
               tuple((k, v.shape[1:], v.dtype.str) for k, v in sorted(request.inputs.items())))
        done = loop.create_future()
        queue = self.pending.setdefault(key, [])
        queue.append((request, done))
        if sum(r.batch_size for r, _ in queue) >= self.max_batch:
            self._flush(key, model)
        elif len(queue) == 1:
            loop.call_later(self.timeout, self._flush, key, model)
        return await done

    def _flush(self, key: tuple, model: LoadedVersion) -> None:
        queue = self.pending.pop(key, None)
        if queue:
            asyncio.ensure_future(self._run_batch(model, queue))

    async def _run_batch(self, model: LoadedVersion, queue: list) -> None:
        requests = [request for request, _ in queue]
        self.runs, self.requests = self.runs + 1, self.requests + len(requests)
        names = list(requests[0].inputs)
        batch = {name: np.concatenate([r.inputs[name] for r in requests]) for name in names}
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(
                self.executor, model.run, requests[0].signature.name, batch)
        except Exception as err:
            for _, done in queue:
                if not done.done():
                    done.set_exception(err)
            return
        start = 0
        for request, done in queue:
            end = start + request.batch_size
            if not done.done():
                done.set_result({key: value[start:end] for key, value in outputs.items()})
            start = end


def create_app(base: str | Path, name: str = "tfseg", limits: Limits = Limits(), poll_seconds: float = 2.0):
    """The ASGI app serving the model base folder ``base`` under ``name``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Route

    repository = ModelRepository(Path(base))
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tfseg-model")
    batcher = Batcher(executor, limits.max_batch, limits.batch_timeout_ms / 1000)

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RestError(413, f"the request body is {int(declared):,} bytes; at most "
                                 f"{limits.max_body_bytes:,} are accepted")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RestError(413, f"the request body exceeds {limits.max_body_bytes:,} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def model_and_version(request: Request) -> int | None:
        if request.path_params["model"] != name:
            raise RestError(404, f"Servable not found for request: model {request.path_params['model']!r} "
                                 f"(this server serves {name!r})")
        version = request.path_params.get("version")
        return int(version) if version is not None else None

    def refusing(handler):
        async def wrapped(request: Request):
            try:
                return await handler(request)
            except RestError as err:
                return error(err.status, err.message)
        return wrapped

    @refusing
    async def status(request: Request):
        version = model_and_version(request)
        versions = repository.status()
        if version is not None:
            if version not in versions:
                raise RestError(404, f"Servable not found for request: Specific({name}, {version})")
            versions = {version: versions[version]}
        if not versions:
            raise RestError(404, f"Servable not found for request: Latest({name}): no version loaded yet")
        return JSONResponse(version_status(versions))

    @refusing
    async def metadata(request: Request):
        model = repository.get(model_and_version(request))
        return JSONResponse(metadata_response(name, model.version, model.signatures))

    async def run_model(model: LoadedVersion, parsed: PredictRequest) -> dict[str, np.ndarray]:
        try:
            return await batcher.run(model, parsed)
        except Exception as err:  # TensorFlow's InvalidArgumentError (a truncated PNG...), one line
            raise RestError(400, tensorflow_reason(err)) from None

    @refusing
    async def predict(request: Request):
        model = repository.get(model_and_version(request))
        body = await body_of(request)
        parsed = parse_predict(body, model.signatures)
        check_pixels(parsed, limits.max_pixels)
        outputs = await run_model(model, parsed)
        return Response(json_bytes(predict_response(parsed, outputs)), media_type="application/json")

    async def healthz(request: Request):
        model = repository.serving
        if model is None:
            return error(503, "no version of the model is loaded")
        return JSONResponse({"status": "ok", "model": name, "version": model.version})

    async def page(request: Request):
        return FileResponse(PAGE, media_type="text/html")

    @refusing
    async def page_model(request: Request):
        model = repository.get(None)
        meta = model.metadata
        return JSONResponse({"name": name, "version": model.version, "class_names": meta["class_names"],
                             "palette": meta["palette"], "inputs": meta.get("inputs", ["image"]),
                             "outputs": meta.get("outputs", ["classes"])})

    @refusing
    async def page_segment(request: Request):
        model = repository.get(None)
        try:
            sent = json.loads(await body_of(request))
            encoded = [base64.b64decode(item, validate=True) for item in sent["images"]]
        except (ValueError, KeyError, TypeError):
            raise RestError(400, "expected {\"images\": [\"<base64 of an image file>\", ...]}") from None
        images = decode_page_images(encoded, model.metadata.get("inputs", ["image"]), limits.max_pixels)
        parsed = PredictRequest(model.signatures["serving_default"], {"images": images[np.newaxis]}, True)
        outputs = await run_model(model, parsed)
        return JSONResponse(page_result(outputs, np.asarray(model.metadata["palette"], np.uint8),
                                         model.metadata["class_names"]))

    async def poll_forever():
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(None, repository.poll)
            await asyncio.sleep(poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(None, repository.poll)
        if repository.serving is None:
            found = sorted(repository.failed.items())
            why = f"; version {found[-1][0]}: {found[-1][1]}" if found else ""
            print(f"tfseg serve: no version under {base} loads yet{why}; waiting for one", flush=True)
        poller = asyncio.ensure_future(poll_forever())
        yield
        poller.cancel()
        executor.shutdown(wait=True)

    routes = [Route("/v1/models/{model}", status), Route("/v1/models/{model}/versions/{version:int}", status),
              Route("/v1/models/{model}/metadata", metadata),
              Route("/v1/models/{model}/versions/{version:int}/metadata", metadata),
              Route("/v1/models/{model}:predict", predict, methods=["POST"]),
              Route("/v1/models/{model}/versions/{version:int}:predict", predict, methods=["POST"]),
              Route("/healthz", healthz), Route("/", page), Route("/page/model", page_model),
              Route("/page/segment", page_segment, methods=["POST"])]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.repository, app.state.batcher = repository, batcher
    return app


def check_pixels(request: PredictRequest, max_pixels: int) -> None:
    """Refuses images beyond ``max_pixels`` before any work: arrays by their shape, encoded
    images by their header."""
    for name, value in request.inputs.items():
        if value.dtype == object:
            for data in value:
                check_encoded(data, name, max_pixels)
        elif value.ndim == 4 and value.shape[1] * value.shape[2] > max_pixels:
            raise RestError(400, f"input {name!r}: images of {value.shape[2]}x{value.shape[1]} pixels; at most "
                                 f"{max_pixels:,} pixels are accepted")


def check_encoded(data: bytes, name: str, max_pixels: int) -> None:
    """Refuses an encoded image that is not a whole PNG or JPEG, or has over ``max_pixels``."""
    width, height = encoded_size(data, name)
    if width * height > max_pixels:
        raise RestError(400, f"input {name!r}: an image of {width}x{height} pixels; at most "
                             f"{max_pixels:,} pixels are accepted")


def encoded_size(data: bytes, name: str) -> tuple[int, int]:
    """(width, height) from an encoded image's header; not an image is a 400."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("PNG", "JPEG"):
                raise RestError(400, f"input {name!r}: a {image.format} image; PNG or JPEG is expected")
            size = image.size
            image.verify()  # a truncated or corrupt PNG is found here (its chunks' checksums)
            return size
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        kind = "not a PNG or JPEG image" if isinstance(err, UnidentifiedImageError) else f"a broken image ({err})"
        raise RestError(400, f"input {name!r}: {kind}") from None


def tensorflow_reason(err: Exception) -> str:
    """One line for an error raised while running the model: TensorFlow's own reason
    (e.g. "Invalid PNG data, size 60"), without the graph's trace around it."""
    import tensorflow as tf

    if not isinstance(err, tf.errors.OpError):
        return f"{type(err).__name__}: {err}"[:300]
    lines = [line.strip() for line in err.message.splitlines()]
    reasons = [line for line in lines if line and "[[" not in line
               and not line.startswith(("Graph execution error", "Detected at node"))]
    return (reasons[-1] if reasons else lines[0])[:300]


def decode_page_images(encoded: list[bytes], inputs: list[str], max_pixels: int) -> np.ndarray:
    """The page's files -> one uint8 ``[H, W, 3 k]`` input (upright, as ``tfseg predict``
    reads photos), its images stacked in the model's order."""
    from tfseg.photos import PhotoError, decode_photo

    if len(encoded) != len(inputs):
        raise RestError(400, f"the model takes {' + '.join(inputs)}: send {len(inputs)} image(s), in that order")
    images = []
    for data, group in zip(encoded, inputs):
        check_encoded(data, group, max_pixels)
        try:
            images.append(decode_photo(data, group).image)
        except PhotoError as err:
            raise RestError(400, f"{group}: {err}") from None
    if len({image.shape for image in images}) != 1:
        raise RestError(400, "the stacked images must have the same size")
    return np.concatenate(images, axis=-1)


def png_base64(array: np.ndarray) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def page_result(outputs: dict[str, np.ndarray], palette: np.ndarray, class_names: list[str]) -> dict:
    """What the page draws, for one image: the class colours to blend over it (RGBA; class
    0 and void clear), the mask to download (a palette PNG of class ids), each class's
    share, and for two classes a heat map of class 1, for a depth head its preview."""
    import cv2
    from PIL import Image

    from tfseg.data.labels import full_palette
    from tfseg.viz import depth_preview

    classes = outputs["classes"][0]
    colours = np.zeros(classes.shape + (4,), np.uint8)
    painted = (classes != 0) & (classes < len(palette))
    colours[painted, :3] = palette[classes[painted]]
    colours[painted, 3] = 255
    mask = Image.fromarray(classes, mode="P")
    mask.putpalette(full_palette(palette).flatten().tolist())
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    counts = np.bincount(classes.ravel(), minlength=len(class_names))[:len(class_names)]
    result = {"height": int(classes.shape[0]), "width": int(classes.shape[1]), "colours": png_base64(colours),
              "mask": base64.b64encode(buffer.getvalue()).decode("ascii"),
              "shares": {n: float(c / classes.size) for n, c in zip(class_names, counts)}}
    if "probabilities" in outputs and len(class_names) == 2:
        heat = np.round(outputs["probabilities"][0, ..., 1] * 255).astype(np.uint8)
        result["heatmap"] = png_base64(cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB))
    if "depth" in outputs:
        result["depth"] = png_base64(depth_preview(outputs["depth"][0]))
    return result


def serve(base: str | Path, name: str, host: str, port: int, limits: Limits, poll_seconds: float = 2.0) -> None:
    """Runs the server until SIGINT/SIGTERM (in-flight requests finish first)."""
    import uvicorn

    app = create_app(base, name, limits, poll_seconds)
    print(f"tfseg serve: model {name!r} from {base} on http://{host}:{port}/ (REST: /v1/models/{name})", flush=True)
    started = time.perf_counter()
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)
    print(f"tfseg serve: stopped after {time.perf_counter() - started:.0f} s", flush=True)
