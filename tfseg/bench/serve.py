"""``tfseg bench serve``: how much of the SavedModel's own throughput ``tfseg serve`` delivers.

Two candidates at each concurrency (1, 4, 16 clients by default), in alternating rounds:

* **direct** -- the SavedModel's ``serve_bytes`` called in this process by that many
  threads, one encoded image a call;
* **tfseg serve** -- the same model behind ``tfseg serve`` (a subprocess on 127.0.0.1),
  that many clients each sending the README's request (one PNG, base64, to
  ``serve_bytes``) and reading the JSON response.

Each prints requests/s and p50/p90/p99 latency; the ratio served/direct is taken within a
round. The images are KITTI-sized PNGs (:mod:`.staging`); the model is a preset's network
with random weights exported without probabilities (what a client of class maps asks
for), or a given model base folder.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tfseg.arguments import ArgumentParser, positive_int
from tfseg.bench.host import describe_cpu, load_average
from tfseg.bench.report import write_json
from tfseg.bench.staging import stage_kitti_tree
from tfseg.bench.stats import ratio_summary, summary
from tfseg.fileio import check_writable


def latencies(call, payloads: list, concurrency: int, requests: int) -> tuple[float, list[float]]:
    """(seconds for all, each request's seconds): ``requests`` calls of ``call(payload)``
    by ``concurrency`` threads, cycling through ``payloads``."""
    def timed(index):
        started = time.perf_counter()
        call(payloads[index % len(payloads)])
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        each = list(pool.map(timed, range(requests)))
    return time.perf_counter() - started, each


def describe(seconds: float, each: list[float]) -> dict:
    ms = np.asarray(each) * 1000
    return {"requests_per_s": len(each) / seconds, "p50_ms": float(np.percentile(ms, 50)),
            "p90_ms": float(np.percentile(ms, 90)), "p99_ms": float(np.percentile(ms, 99))}


def start_server(base: Path, max_batch: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tfseg", "serve", "--model", str(base), "--port", str(port),
                               "--max-batch", str(max_batch)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5):
                return server, url
        except (urllib.error.URLError, ConnectionError):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"tfseg serve did not start: {server.stderr.read().decode()[-500:]}") from None
            time.sleep(0.2)


def bench_serve(model_base: str | None = None, preset: str = "kitti_unet", data_dir: str | None = None,
                concurrencies: tuple[int, ...] = (1, 4, 16), requests: int = 48, rounds: int = 3,
                num_images: int = 8, output_json: str | None = None) -> dict:
    import tensorflow as tf

    from tfseg.bench.predict import export_preset_model

    work = Path(tempfile.mkdtemp(prefix="tfseg-bench-serve-"))
    server = None
    try:
        root, origin = stage_kitti_tree(work / "kitti", num_images, data_dir=data_dir)
        pngs = [p.read_bytes() for p in sorted((root / "training" / "image_2").iterdir())]
        if model_base is None:
            export_preset_model(preset, work / "model" / "1", probabilities=False)
            base, label = work / "model", f"{preset} (random weights, no probabilities)"
        else:
            base, label = Path(model_base), model_base
        version = max(int(p.name) for p in base.iterdir() if p.name.isdigit())
        loaded = tf.saved_model.load(str(base / str(version)))  # kept referenced: it owns the variables
        server, url = start_server(base, max_batch=max(concurrencies))
        bodies = [json.dumps({"signature_name": "serve_bytes",
                              "instances": [{"image_bytes": {"b64": base64.b64encode(png).decode()}}]}).encode()
                  for png in pngs]

        def direct(png):
            loaded.serve_bytes(tf.constant([png]))["classes"].numpy()

        def served(body):
            request = urllib.request.Request(url + "/v1/models/tfseg:predict", data=body, method="POST")
            with urllib.request.urlopen(request, timeout=600) as response:
                prediction = json.loads(response.read())["predictions"][0]
                # One output (no probabilities): TF Serving's rows are then the values themselves.
                np.asarray(prediction["classes"] if isinstance(prediction, dict) else prediction, np.uint8)

        for concurrency in concurrencies:  # warm-up: tracing, kernels, connections
            latencies(direct, pngs, concurrency, concurrency)
            latencies(served, bodies, concurrency, concurrency)
        levels = {}
        for concurrency in concurrencies:
            direct_rounds, served_rounds = [], []
            for _ in range(rounds):
                direct_rounds.append(describe(*latencies(direct, pngs, concurrency, requests)))
                served_rounds.append(describe(*latencies(served, bodies, concurrency, requests)))
            levels[str(concurrency)] = {
                "direct": {key: summary([r[key] for r in direct_rounds]) for key in direct_rounds[0]},
                "served": {key: summary([r[key] for r in served_rounds]) for key in served_rounds[0]},
                "served_over_direct": ratio_summary([r["requests_per_s"] for r in served_rounds],
                                                    [r["requests_per_s"] for r in direct_rounds]),
            }
        result = {"model": label, "images": origin, "requests_per_level": requests, "rounds": rounds,
                  "host": describe_cpu(), "load_average": load_average(), "concurrency": levels}
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)  # this benchmark's own temporary folder
    if output_json:
        write_json(output_json, result)
    return result


def format_result(result: dict) -> str:
    lines = [f"tfseg bench serve: model {result['model']}, images {result['images']}, "
             f"{result['requests_per_level']} requests x {result['rounds']} rounds per level",
             f"{'clients':>7} {'candidate':<12} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"]
    for concurrency, level in result["concurrency"].items():
        for name in ("direct", "served"):
            m = level[name]
            lines.append(f"{concurrency:>7} {name:<12} {m['requests_per_s']['median']:>8.2f} "
                         f"{m['p50_ms']['median']:>8.0f} {m['p90_ms']['median']:>8.0f} {m['p99_ms']['median']:>8.0f}")
        ratio = level["served_over_direct"]
        lines.append(f"{'':>7} served / direct: {ratio['median']:.3f} (per round: "
                     f"{', '.join(f'{r:.3f}' for r in ratio['rounds'])})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="tfseg bench serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a model base folder from `tfseg export` (default: the preset's network)")
    parser.add_argument("--preset", default="kitti_unet", help="whose network and geometry (default kitti_unet)")
    parser.add_argument("--data-dir", help="KITTI Road folder or data_road.zip to copy images from")
    parser.add_argument("--concurrency", type=positive_int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=positive_int, default=48, help="requests per level and round")
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--json", help="also write the result as JSON")
    args = parser.parse_args(argv)
    if args.json:
        check_writable(args.json, "--json")
    result = bench_serve(args.model, args.preset, args.data_dir, tuple(args.concurrency), args.requests,
                         args.rounds, output_json=args.json)
    print(format_result(result))
    return 0
