"""`tfseg serve`: TF Serving's REST API against the SavedModel called in-process, versions
as TF Serving handles them, one-line refusals, load with faults mixed in, SIGTERM, and the
web page in a real browser."""

import base64
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from data_fixtures import KITTI_SAMPLE

from tfseg.serving.server import Limits, create_app

# A small exported model (fgbg, two classes, trained at 24x36 from 32x48 scenes).
EXPORT = Path(__file__).parent / "fixtures" / "runs_before_named_heads" / "plain_finished" / "export"


@pytest.fixture
def base(tmp_path):
    """A model base folder holding version 1."""
    base = tmp_path / "models" / "road"
    shutil.copytree(EXPORT / "1", base / "1")
    return base


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def images(count: int, height: int = 32, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3)).astype(np.uint8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(base: Path, limits: Limits = Limits(), poll_seconds: float = 0.2):
    """The app on uvicorn in a thread, on 127.0.0.1; yields (url, app)."""
    import uvicorn

    app = create_app(base, "road", limits, poll_seconds)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.config.port}", app
    finally:
        server.should_exit = True
        thread.join(60)


def call(url: str, body: bytes | dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    """(status, JSON) of a GET, or of a POST of ``body``."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def in_process(base: Path, version: int = 1):
    return tf.saved_model.load(str(base / str(version)))


# -- REST parity ------------------------------------------------------------------------------

def test_the_readme_request_and_both_formats_equal_the_saved_model_in_process(base):
    from starlette.testclient import TestClient

    loaded = in_process(base)
    batch = images(2)
    expected = {k: v.numpy() for k, v in loaded.serve(batch).items()}
    with TestClient(create_app(base, "road")) as client:
        # The README's body: a PNG, base64-encoded, to serve_bytes.
        body = {"signature_name": "serve_bytes",
                "instances": [{"image_bytes": {"b64": base64.b64encode(png_bytes(batch[0])).decode()}}]}
        prediction = client.post("/v1/models/road:predict", json=body).json()["predictions"][0]
        np.testing.assert_array_equal(prediction["classes"], expected["classes"][0])
        np.testing.assert_allclose(prediction["probabilities"], expected["probabilities"][0], atol=1e-6)

        rows = client.post("/v1/models/road:predict", json={"instances": batch.tolist()}).json()["predictions"]
        columns = client.post("/v1/models/road/versions/1:predict",
                              json={"signature_name": "serving_default", "inputs": {"images": batch.tolist()}}).json()
        for i in range(2):
            np.testing.assert_array_equal(rows[i]["classes"], expected["classes"][i])
            np.testing.assert_allclose(rows[i]["probabilities"], expected["probabilities"][i], atol=1e-6)
        np.testing.assert_array_equal(columns["outputs"]["classes"], expected["classes"])

        status = client.get("/v1/models/road").json()
        assert status == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                                    "status": {"error_code": "OK", "error_message": ""}}]}
        signatures = client.get("/v1/models/road/metadata").json()["metadata"]["signature_def"]["signature_def"]
        assert sorted(signatures) == ["serve", "serve_bytes", "serving_default"]
        assert signatures["serving_default"]["inputs"]["images"]["dtype"] == "DT_UINT8"
        assert [d["size"] for d in signatures["serving_default"]["inputs"]["images"]["tensor_shape"]["dim"]] == \
            ["-1", "-1", "-1", "3"]
        assert client.get("/healthz").json() == {"status": "ok", "model": "road", "version": 1}


GOOD_PNG = png_bytes(images(1)[0])
BAD_REQUESTS = [
    (b"{not json", 400, "JSON Parse error"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (json.dumps({"instances": []}).encode(), 400, "non-empty list"),
    (json.dumps({"instances": [[1]], "inputs": [[1]]}).encode(), 400, "exactly one of"),
    (json.dumps({"signature_name": "nope", "instances": [[1]]}).encode(), 400, "\"nope\" not found"),
    (json.dumps({"instances": [[[[1, 2]]]]}).encode(), 400, "does not fit [-1, -1, -1, 3]"),
    (json.dumps({"instances": [[[[1, 2, 300]]]]}).encode(), 400, "integers 0..255"),
    (json.dumps({"instances": [[[[1, 2, 3]]], [[[1, 2, 3], [4, 5, 6]]]]}).encode(), 400, "same shape"),
    (json.dumps({"signature_name": "serve_bytes", "instances": [{"b64": "@@@"}]}).encode(), 400, "not valid base64"),
    (json.dumps({"signature_name": "serve_bytes", "instances": [{"b64": base64.b64encode(b"hello").decode()}]}).encode(),
     400, "not a PNG or JPEG image"),
    (json.dumps({"signature_name": "serve_bytes",
                 "instances": [{"b64": base64.b64encode(GOOD_PNG[:len(GOOD_PNG) // 2]).decode()}]}).encode(),
     400, "a broken image"),
    (json.dumps({"signature_name": "serve_bytes", "instances": ["plain text"]}).encode(), 400, "{\"b64\""),
]


def test_bad_requests_get_one_line_and_the_server_goes_on(base):
    from starlette.testclient import TestClient

    with TestClient(create_app(base, "road", Limits(max_body_bytes=200_000, max_pixels=10_000))) as client:
        for body, status, message in BAD_REQUESTS:
            response = client.post("/v1/models/road:predict", content=body)
            error = response.json()["error"]
            assert response.status_code == status and message in error and "\n" not in error, (body[:60], error)
        big = client.post("/v1/models/road:predict", content=b" " * 300_000)
        assert big.status_code == 413 and "at most 200,000 are accepted" in big.json()["error"]
        large = client.post("/v1/models/road:predict", json={"instances": images(1, 120, 100).tolist()})
        assert large.status_code == 400 and "at most 10,000 pixels" in large.json()["error"]
        assert client.get("/v1/models/other").status_code == 404
        assert client.post("/v1/models/road/versions/9:predict", json={"instances": images(1).tolist()}).status_code == 404
        ok = client.post("/v1/models/road:predict", json={"instances": images(1).tolist()})
        assert ok.status_code == 200 and len(ok.json()["predictions"]) == 1


# -- versions ---------------------------------------------------------------------------------

def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_new_version_is_picked_up_and_a_broken_one_reported_while_the_last_good_serves(base):
    from starlette.testclient import TestClient

    with TestClient(create_app(base, "road", poll_seconds=0.1)) as client:
        broken = base / "2"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a protobuf")
        wait_for(lambda: len(client.get("/v1/models/road").json()["model_version_status"]) == 2)
        statuses = client.get("/v1/models/road").json()["model_version_status"]
        assert statuses[0]["version"] == "2" and statuses[0]["state"] == "END"
        assert statuses[0]["status"]["error_message"]
        assert statuses[1] == {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        assert client.post("/v1/models/road:predict", json={"instances": images(1).tolist()}).status_code == 200

        shutil.copytree(EXPORT / "1", base / ".3.partial")
        (base / ".3.partial").rename(base / "3")  # as tfseg export publishes a version
        wait_for(lambda: client.get("/healthz").json()["version"] == 3)
        assert client.post("/v1/models/road/versions/3:predict", json={"instances": images(1).tolist()}).status_code == 200
        assert client.post("/v1/models/road/versions/1:predict", json={"instances": images(1).tolist()}).status_code == 404


# -- load and faults --------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
def test_sixteen_clients_with_faults_mixed_in_and_a_new_version_mid_load(base):
    inputs = images(4, seed=7)
    loaded = in_process(base)  # kept referenced: it owns the variables
    expected = loaded.serve(inputs)["classes"].numpy()
    bad = [body for body, _, _ in BAD_REQUESTS]
    plan = [("bad", i % len(bad)) if i % 5 == 4 else ("good", i % 4) for i in range(400)]
    results = [None] * len(plan)
    with running(base, Limits(max_batch=8, batch_timeout_ms=20), poll_seconds=0.2) as (url, app):
        def client(index):
            kind, which = plan[index]
            if index == len(plan) // 2:  # a new version, exported mid-load
                shutil.copytree(EXPORT / "1", base / ".2.partial")
                (base / ".2.partial").rename(base / "2")
            body = bad[which] if kind == "bad" else {"instances": [inputs[which].tolist()]}
            results[index] = call(f"{url}/v1/models/road:predict", body)

        call(f"{url}/v1/models/road:predict", {"instances": [inputs[0].tolist()]})  # warm up
        before = rss_bytes()
        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(client, range(len(plan))))
        seconds = time.monotonic() - started
        grown = rss_bytes() - before
        wait_for(lambda: call(f"{url}/healthz")[1]["version"] == 2)
        batcher = app.state.batcher
    assert all(result is not None for result in results)  # no request lost
    for (kind, which), (status, body) in zip(plan, results):
        if kind == "good":
            assert status == 200, body
            np.testing.assert_array_equal(body["predictions"][0]["classes"], expected[which])
        else:
            assert 400 <= status < 500 and "\n" not in body["error"]
    assert batcher.runs < batcher.requests  # concurrent requests were batched
    assert grown < 300 * 2**20, f"the server grew by {grown / 2**20:.0f} MiB over {len(plan)} requests"
    assert seconds < 300


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(base, tmp_path):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tfseg", "serve", "--model", str(base), "--name", "road",
                               "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _healthy(port), timeout=120)
        big = {"instances": images(8, 256, 384).tolist()}  # a request that takes a moment
        with ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(call, f"http://127.0.0.1:{port}/v1/models/road:predict", big)
            time.sleep(0.3)
            server.send_signal(signal.SIGTERM)
            status, body = in_flight.result(timeout=120)
        assert status == 200 and len(body["predictions"]) == 8
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert "stopped after" in server.stdout.read()


def _healthy(port: int) -> bool:
    try:
        return call(f"http://127.0.0.1:{port}/healthz", timeout=5)[0] == 200
    except (urllib.error.URLError, ConnectionError):
        return False


def test_serve_refuses_what_is_not_a_model_base_in_one_line(base, tmp_path, capsys):
    from tfseg.cli import main

    assert main(["serve", "--model", str(tmp_path / "missing")]) == 2
    assert main(["serve", "--model", str(base / "1")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "not found" in err[0] and "is one version; give the folder that holds the numbered versions" in err[1]


# -- the page, in a real browser --------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_the_page_shows_the_overlay_tfseg_predict_draws(base, tmp_path):
    from playwright.sync_api import sync_playwright

    from tfseg.cli import main

    photo = KITTI_SAMPLE / "training" / "image_2" / "um_000000.png"
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photo, folder)
    assert main(["predict", "--model", str(base), "-i", str(folder), "-o", str(tmp_path / "out")]) == 0
    expected = np.asarray(Image.open(tmp_path / "out" / "overlays" / "um_000000.png").convert("RGB")).astype(int)
    artefacts = Path(os.environ.get("TFSEG_TEST_ARTEFACTS", tmp_path))
    artefacts.mkdir(parents=True, exist_ok=True)
    with running(base) as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url + "/")
        page.wait_for_selector("input[type=file]")
        assert "road, version 1" in page.inner_text("#model")
        page.set_input_files("input[type=file]", str(photo))
        page.wait_for_selector("#overlay[data-ready='1']", timeout=60_000)
        shown = page.evaluate("document.getElementById('overlay').toDataURL('image/png')")
        legend = page.inner_text("#legend")
        page.screenshot(path=str(artefacts / "serve_page.png"), full_page=True)
        browser.close()
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))).convert("RGB")).astype(int)
    assert drawn.shape == expected.shape
    # The canvas blends in 8 bits as Chromium rounds: within 2 levels of predict's overlay.
    assert np.abs(drawn - expected).max() <= 2
    assert (np.abs(drawn - expected) > 0).mean() < 0.5
    assert "background" in legend and "%" in legend
    assert (artefacts / "serve_page.png").stat().st_size > 10_000


@pytest.mark.slow
def test_bench_serve_reports_both_candidates_and_their_ratio(base, tmp_path):
    from tfseg.bench.serve import bench_serve, format_result

    result = bench_serve(str(base), concurrencies=(1, 2), requests=4, rounds=1, num_images=2,
                         output_json=str(tmp_path / "bench.json"))
    assert json.loads((tmp_path / "bench.json").read_text()) == json.loads(json.dumps(result))
    for level in ("1", "2"):
        for name in ("direct", "served"):
            measured = result["concurrency"][level][name]
            assert measured["requests_per_s"]["median"] > 0
            assert 0 < measured["p50_ms"]["median"] <= measured["p90_ms"]["median"] <= measured["p99_ms"]["median"]
        ratio = result["concurrency"][level]["served_over_direct"]
        assert ratio["median"] == pytest.approx(result["concurrency"][level]["served"]["requests_per_s"]["median"]
                                                / result["concurrency"][level]["direct"]["requests_per_s"]["median"])
    assert "served / direct" in format_result(result)
