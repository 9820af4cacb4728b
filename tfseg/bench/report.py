"""The printed table and the JSON file of a ``tfseg bench pipeline`` result."""

from __future__ import annotations

import json
import sys

ROW_LABELS = {"first_epoch": "first epoch (cold, uncached)",
              "uncached_steady": "uncached, steady state",
              "cached": "later epochs (cached)"}


def write_json(path, result: dict) -> None:
    """Writes ``result`` as indented JSON (atomically, as every tfseg output)."""
    from tfseg.fileio import write_text

    write_text(path, json.dumps(result, indent=1) + "\n")


def row_label(row: str) -> str:
    """The reader's name of a result row (``tfseg_cached`` -> ``tfseg: later epochs (cached)``)."""
    if row == "opencv_loop":
        return "OpenCV loop, 1 thread"
    for suffix, text in ROW_LABELS.items():
        if row.endswith("_" + suffix):
            prefix = row[: -len(suffix) - 1]
            name = "tfseg" if prefix == "tfseg" else f"tfseg+{prefix.removeprefix('tfseg_clahe_')} CLAHE"
            return f"{name}: {text}"
    return row


def print_report(result: dict, file=None) -> None:
    """The human-readable table of a :func:`tfseg.bench.pipeline.bench_pipeline` result."""
    out = file or sys.stdout
    s, d = result["settings"], result["device"]
    load = ""
    if d["load_average_at_start"] and d["load_average_at_end"]:
        load = f", load {d['load_average_at_start'][0]:.2f} -> {d['load_average_at_end'][0]:.2f}"
    print(f"device: {d['cpu_model']}, {d['usable_cpus']} usable CPU(s){load}; "
          f"TensorFlow {result['versions']['tensorflow']}, OpenCV {result['versions']['opencv']}", file=out)
    print(f"data: {s['data']}; sizes {s['image_sizes']}, resize {s['resize']}, batch {s['batch_size']}, "
          f"{s['rounds']} round(s)", file=out)
    print(f"{'candidate':<50}{'images/s':>9}{'min':>8}{'max':>8}{'CPU ms/img':>11}{'cores':>7}"
          f"{'vs OpenCV':>11}{'CPU bound':>11}", file=out)
    for row, v in result["images_per_s"].items():
        cpu, busy = result["cpu_ms_per_image"][row]["median"], result["cores_busy"][row]["median"]
        r = result["ratios_vs_opencv"].get(row)
        ratio = f"{r['median']:.2f}x" if r else ""
        bound = f"{r['bound_on_idle_cores']:.2f}x" if r else ""
        print(f"{row_label(row):<50}{v['median']:>9.1f}{v['min']:>8.1f}{v['max']:>8.1f}"
              f"{cpu:>11.2f}{busy:>7.2f}{ratio:>11}{bound:>11}", file=out)
    print("(vs OpenCV: median of per-round throughput ratios; CPU bound: OpenCV's CPU ms/img over "
          f"the row's, times {d['usable_cpus']} cores = the ratio an idle machine would allow)", file=out)
    print(f"tfseg iterator set-up (once per run, not in the rates): "
          f"{result['tfseg_iterator_setup_s']['median']:.3f} s", file=out)
    e = result["equivalence"]
    for backend in s["clahe_backends"]:
        b = e[backend]
        print(f"same output [{backend} CLAHE vs OpenCV loop]: labels identical {b['labels_identical']}, "
              f"image max |diff| {b['image_max_abs_diff']}, mean {b['image_mean_abs_diff']:.3f}", file=out)
    if len(s["clahe_backends"]) > 1:
        print(f"CLAHE backends give identical images: {e['backends_identical']}", file=out)
    c = result["clahe_one_core"]
    if c:
        print(f"CLAHE on one core, {c['image_size'][0]}x{c['image_size'][1]} RGB:", file=out)
        for name, v in c["images_per_s"].items():
            exact = c["equals_opencv"].get(name)
            note = "" if exact is None else f"  (equals OpenCV: {exact})"
            print(f"  {name:<48}{v['median']:>9.1f}{v['min']:>8.1f}{v['max']:>8.1f}{note}", file=out)
        print(f"  TF / OpenCV: {c['ratio_tf_vs_opencv']['median']:.3f}x", file=out)
