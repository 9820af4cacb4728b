"""The command line's contract, command by command, over a table of bad inputs.

Each case runs a command as a user would, against a small world of files made once (a
trained run, its export, image folders, datasets, broken copies of each), and checks:
the exit status (2: refused, 1: part of the work done), exactly one line on stderr that
says what is wrong (a refusal), no traceback, and that nothing of the user's was changed
or removed (outputs only in the case's own new folder). Bad inputs found later go in the
table.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data_fixtures import KITTI_SAMPLE, VOC_SAMPLE, needs_samples
from tfseg.cli import main

TINY_RUN = ["data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
            "model.options={depth: 2, base_filters: 4}", "train.epochs=1", "train.batch_size=4",
            "train.mixed_precision=off"]


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: kind, size, modification time and mode."""
    state = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        state[str(path.relative_to(root))] = (path.is_dir(), 0 if path.is_dir() else info.st_size,
                                              0 if path.is_dir() else info.st_mtime_ns, info.st_mode)
    return state


def write_video(path: Path, frames: int, size=(48, 32)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A user's files: a finished run and its export, images, data, and broken copies."""
    root = tmp_path_factory.mktemp("world")
    assert main(["train", "--run-dir", str(root / "run"), *[a for s in TINY_RUN for a in ("--set", s)]]) == 0
    assert main(["export", "--run-dir", str(root / "run")]) == 0
    rng = np.random.default_rng(0)
    for folder in ("images", "broken_images"):
        (root / folder).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")
    (root / "broken_images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (root / "empty").mkdir()
    for folder in ("images", "masks"):
        (root / "empty_dataset" / folder).mkdir(parents=True)
    (root / "empty_dataset" / "classes.yaml").write_text("- {name: background, color: [0, 0, 0]}\n"
                                                         "- {name: thing, color: [255, 0, 0]}\n")
    (root / "a_file.txt").write_text("not a folder\n")
    (root / "empty.yaml").write_text("")
    (root / "bad.yaml").write_text("train: {epochs: [1\n")
    for name, edit in (("labels_edited", "labels"), ("config_edited", "config")):
        copy = root / name
        copy.mkdir()
        for file in ("config.yaml", "labels.json", "model.keras"):
            shutil.copy2(root / "run" / file, copy / file)
        if edit == "labels":
            labels = json.loads((copy / "labels.json").read_text())
            labels["class_names"], labels["palette"] = labels["class_names"][:3], labels["palette"][:3]
            (copy / "labels.json").write_text(json.dumps(labels))
        else:
            text = (copy / "config.yaml").read_text()
            (copy / "config.yaml").write_text(text.replace("base_filters: 4", "base_filters: 8"))
    video = write_video(root / "clip.avi", 40)
    data = video.read_bytes()
    (root / "cut.avi").write_bytes(data[: len(data) // 2])  # cut in half, as an interrupted copy
    if VOC_SAMPLE.is_dir():
        voc = shutil.copytree(VOC_SAMPLE, root / "voc_stray")
        mask_path = sorted((voc / "SegmentationClass").glob("*.png"))[0]
        mask = Image.open(mask_path)
        indices = np.asarray(mask).copy()
        indices[:4, :4] = 100  # a class index VOC does not have
        stray = Image.fromarray(indices, "P")
        stray.putpalette(mask.getpalette())
        stray.save(mask_path)
    if KITTI_SAMPLE.is_dir():  # 0/1 class maps of the KITTI sample's val split, from its truth
        from tfseg.config import load_config
        from tfseg.data.sources import make_source

        source = make_source(load_config("kitti_unet", [f"data.data_dir={KITTI_SAMPLE}"]).data)
        (root / "class_maps").mkdir()
        for image_id, example in zip(source.ids("val"), source.dataset("val").as_numpy_iterator(), strict=True):
            Image.fromarray((example[1] == 1).astype(np.uint8)).save(root / "class_maps" / f"{image_id}.png")
    return root


# command -> [(arguments, with {w} for the world folder; exit status; a phrase of the one line)]
CASES = {
    "train": [
        (["train", "--set", "train.epochz=3"], 2, "unknown key 'train.epochz'"),
        (["train", "--config", "nosuch"], 2, "unknown preset 'nosuch'"),
        (["train", "--config", "{w}/empty.yaml"], 2, "empty.yaml: empty"),
        (["train", "--config", "{w}/bad.yaml"], 2, "bad.yaml: not valid YAML"),
        (["train", "--config", "{w}/a_file.txt"], 2, "a_file.txt"),
        (["train", "--set", "train.epochs=0"], 2, "train.epochs"),
        (["train", "--set", "train.batch_size=-1"], 2, "train.batch_size"),
        (["train", "--set", "train.epochs"], 2, "train.epochs"),
        (["train", "--run-dir", "{w}/run"], 2, "holds a finished run"),
        (["train", "--run-dir", "{w}/a_file.txt"], 2, "exists and is not a directory"),
        (["train", "--run-dir", "{w}/a_file.txt/run"], 2, "run directory"),
        (["train", "--run-dir", "{w}/images"], 2, "is not empty and holds no run"),
        (["train", "--config", "kitti_unet", "--set", "data.data_dir={w}/nowhere"], 2, "nowhere"),
        (["train", "--set", "model.options.depth=0", "--run-dir", "{w}/out/r"], 2, "depth must be at least 1"),
        (["train", "--set", "model.options.batch_norm=maybe"], 2, "model.options.batch_norm: 'maybe'; give true"),
        (["train", "--set", "data.cache=/proc/nowhere/cache"], 2, "data.cache /proc/nowhere/cache_train"),
        (["train", "--config", "voc_unet_focal_tversky", "--set", "data.source=voc2012",
          "--set", "data.data_dir={w}/voc_stray", "--set", "data.resize=[32, 32]", "--set",
          "data.augment.crop_size=[32, 32]", "--set", "model.options={depth: 2, base_filters: 4}",
          "--set", "train.epochs=1", "--set", "train.mixed_precision=off", "--run-dir", "{w}/out/voc"],
         2, "pixel(s) with class index outside 0..20 and 255: 100"),
    ],
    "evaluate": [
        (["evaluate"], 2, "exactly one of --run-dir, --model or --predictions"),
        (["evaluate", "--run-dir", "{w}/nowhere"], 2, "nowhere: not found"),
        (["evaluate", "--run-dir", "{w}/run", "--json", "{w}/images"], 2, "--json {w}/images: is a folder"),
        (["evaluate", "--run-dir", "{w}/run", "--json", "{w}/a_file.txt/m.json"], 2, "lies under"),
        (["evaluate", "--model", "{w}/run/export", "--dataset", "kitti_road", "--data-dir", str(KITTI_SAMPLE),
          "--worst", "2"], 2, "--worst draws its pictures beside the metrics: give --json too"),
        (["evaluate", "--run-dir", "{w}/run", "--split", "nosuch"], 2, "nosuch"),
        (["evaluate", "--run-dir", "{w}/labels_edited"], 2, "labels.json names 3 classes but model.keras"),
        (["evaluate", "--run-dir", "{w}/config_edited"], 2, "config.yaml (model unet"),
        (["evaluate", "--run-dir", "{w}/run", "--dataset", "synthetic"], 2, "scores the run's own data"),
        (["evaluate", "--model", "{w}/run/export/1"], 2, "needs the ground truth"),
        (["evaluate", "--run-dir", "{w}/run", "--json", "/proc/nowhere.json"], 2, "--json /proc/nowhere.json"),
        (["evaluate", "--model", "{w}/nowhere", "--dataset", "synthetic", "--data-dir", "{w}"], 2, "nowhere"),
        (["evaluate", "--predictions", "{w}/class_maps", "--dataset", "kitti_road", "--data-dir",
          str(KITTI_SAMPLE), "--format", "probability"], 2, "class ids rather than probabilities"),
        (["evaluate", "--predictions", "{w}/images", "--dataset", "kitti_road", "--data-dir",
          str(KITTI_SAMPLE)], 2, "predictions {w}/images"),
    ],
    "export": [
        (["export"], 2, "the following arguments are required: --run-dir"),
        (["export", "--run-dir", "{w}/nowhere"], 2, "nowhere: not found"),
        (["export", "--run-dir", "{w}/empty"], 2, "has no config.yaml"),
        (["export", "--run-dir", "{w}/run", "--output", "{w}/a_file.txt"], 2, "is not a folder"),
        (["export", "--run-dir", "{w}/run", "--version", "0"], 2, "a whole number of at least 1"),
        (["export", "--run-dir", "{w}/run", "--version", "1"], 2, "version 1 already exists"),
        (["export", "--run-dir", "{w}/run", "--output", "{w}/run/export/1"], 2, "holds a SavedModel"),
        (["export", "--run-dir", "{w}/labels_edited", "--output", "{w}/out/e"], 2, "labels.json names 3"),
        (["export", "--run-dir", "{w}/config_edited", "--output", "{w}/out/e"], 2, "does not build the model"),
    ],
    "predict": [
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-o", "{w}/out/p", "--batch-size", "0"],
         2, "--batch-size: '0': a whole number of at least 1"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-o", "{w}/out/p", "--batch-size", "-3"],
         2, "--batch-size"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-o", "{w}/out/p", "--tile", "8"],
         2, "--tile"),
        (["predict", "--model", "{w}/nowhere", "-i", "{w}/images", "-o", "{w}/out/p"], 2, "nowhere"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/nowhere", "-o", "{w}/out/p"], 2, "nowhere"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/empty", "-o", "{w}/out/p"], 2, "{w}/empty"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-o", "{w}/a_file.txt"], 2, "a_file.txt"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-o", "{w}/images"], 2, "{w}/images"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-i", "{w}/images", "-o", "{w}/out/p"],
         2, "takes image stacked"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/a_file.txt", "-o", "{w}/out/p"], 2, "a_file.txt"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/images", "-o", "{w}/out/p", "--kitti-submission"],
         2, "--kitti-submission: model {w}/run/export/1 has 5 classes"),
        # Part of the work done: the rest is named, exit 1.
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/broken_images", "-o", "{w}/out/broken"],
         1, "skipped {w}/broken_images/corrupt.png"),
        (["predict", "--model", "{w}/run/export/1", "-i", "{w}/cut.avi", "-o", "{w}/out/cut"],
         1, "incomplete {w}/cut.avi: stopped decoding after frame"),
    ],
    "demo": [
        (["demo", "--config", "kitti_unet", "--output", "{w}/out/demo"], 2, "must be downloaded"),
        (["demo", "--set", "train.epochs=-1", "--output", "{w}/out/demo"], 2, "train.epochs"),
    ],
    "data": [
        (["data", "check", "--dataset", "voc2012", "--data-dir", "{w}/nowhere"], 2, "nowhere"),
        (["data", "stats", "--dataset", "kitti_road", "--data-dir", str(KITTI_SAMPLE), "--json", "{w}/images"],
         2, "--json {w}/images: is a folder"),
        (["data", "split", "--dataset", "kitti_road", "--data-dir", str(KITTI_SAMPLE), "-o",
          "{w}/a_file.txt/split.json"], 2, "lies under"),
        (["data", "split", "--dataset", "kitti_road", "--data-dir", str(KITTI_SAMPLE), "-o", "{w}/a_file.txt"],
         2, "a_file.txt"),
        (["data", "preview", "--dataset", "kitti_road", "--data-dir", str(KITTI_SAMPLE), "-o", "{w}/p.png",
          "--count", "0"], 2, "--count"),
        (["data", "prepare", "--dataset", "kitti_road"], 2, "--data-dir is required"),
        (["data", "prepare", "--dataset", "synthetic", "--data-dir", "{w}/out/d"], 2, "nothing to download"),
        (["data", "nosuch"], 2, "invalid choice: 'nosuch'"),
        (["data", "check", "--dataset", "folder", "--data-dir", "{w}/empty_dataset"], 2, "holds no image/mask pairs"),
        (["data", "split", "--dataset", "folder", "--data-dir", "{w}/empty_dataset", "-o", "{w}/out/s.json"],
         2, "holds no images to split"),
        (["data", "preview", "--dataset", "kitti_road", "--data-dir", str(KITTI_SAMPLE), "-o", "{w}/out/p.txt"],
         2, "give a .png or .jpg file name"),
        (["data", "prepare", "--dataset", "kitti_road", "--data-dir", "{w}/out/k", "--sha256", "xyz"],
         2, "not a SHA-256"),
        (["data", "prepare", "--dataset", "kitti_road", "--data-dir", "{w}/out/k", "--url", "{w}/a_file.txt"],
         2, "give an http:// or https:// address"),
        (["data", "prepare", "--dataset", "kitti_road", "--data-dir", "{w}/a_file.txt"], 2, "is a file"),
    ],
    "models": [
        (["models", "nosuch"], 2, "nosuch"),
        (["models", "--size", "0", "64"], 2, "--size"),
        (["models", "--classes", "0"], 2, "--classes"),
        (["models", "unet", "--size", "1", "1"], 2, "at least 16 pixels each way"),
    ],
    "serve": [
        (["serve"], 2, "the following arguments are required: --model"),
        (["serve", "--model", "{w}/nowhere"], 2, "--model {w}/nowhere: not found"),
        (["serve", "--model", "{w}/a_file.txt"], 2, "a_file.txt: is a file"),
        (["serve", "--model", "{w}/run/export/1"], 2, "is one version; give the folder that holds"),
        (["serve", "--model", "{w}/run/export", "--port", "0"], 2, "--port"),
        (["serve", "--model", "{w}/run/export", "--max-batch", "x"], 2, "--max-batch"),
        (["serve", "--model", "{w}/run/export", "--host", "203.0.113.7"], 2, "cannot listen there"),
    ],
    "bench": [
        (["bench", "nosuch"], 2, "invalid choice: 'nosuch'"),
        (["bench", "train", "--nosuch"], 2, "unrecognized arguments: --nosuch"),
        (["bench", "predict", "--rounds", "x"], 2, "--rounds"),
        (["bench", "train", "--models", "nonet"], 2, "invalid choice: 'nonet'"),
        (["bench", "train", "--height", "-32"], 2, "--height"),
        (["bench", "train", "--options", "nope"], 2, "--options"),
        (["bench", "train", "--options", '{"unet": {"depth": "x"}}'], 2, "model.options.depth: 'x'"),
        (["bench", "train", "--json", "{w}/images"], 2, "--json {w}/images: is a folder"),
        (["bench", "pipeline", "--epochs", "1"], 2, "at least 2"),
        (["bench", "model", "--report", "{w}/a_file.txt"], 2, "not results of `tfseg bench model --json`"),
    ],
}
ALL_CASES = [pytest.param(command, args, code, phrase, id=f"{command}-{i}")
             for command, cases in CASES.items() for i, (args, code, phrase) in enumerate(cases)]


@needs_samples
@pytest.mark.parametrize("command, args, code, phrase", ALL_CASES)
def test_a_bad_input_is_one_line_and_changes_nothing(world, command, args, code, phrase, capsys):
    args = [arg.replace("{w}", str(world)) for arg in args]
    before = snapshot(world)
    status = run_main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == code, err
    assert "Traceback" not in err
    assert phrase.replace("{w}", str(world)) in err, err
    if code == 2:
        assert len(lines) == 1, err
    # Nothing the user had is changed or gone; new files only in the case's own output
    # folder under out/ (partial predictions, or a run directory training had begun).
    after = snapshot(world)
    assert {k: after.get(k) for k in before} == before
    assert all(Path(k).parts[0] == "out" for k in set(after) - set(before))


def test_the_table_covers_every_command():
    from tfseg.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(CASES) == set(commands)


@pytest.mark.parametrize("args", [["train", "--set", "train.epochz=3"], ["train", "--config", "nosuch"],
                                  ["demo", "--config", "voc_fcn8"], ["evaluate"],
                                  ["data", "check", "--set", "data.resize=[1]"],
                                  ["predict", "--model", "m", "-i", "x", "-o", "y", "--batch-size", "0"]])
def test_settings_and_arguments_are_refused_before_tensorflow_is_imported(args):
    """A refusal is fast because it comes before the 3-6 s TensorFlow import."""
    program = ("import sys\nfrom tfseg.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
               "except SystemExit as exit_:\n    code = exit_.code\nprint(code, 'tensorflow' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, timeout=120)
    assert result.stdout.split() == ["2", "False"], result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def run_main(args: list[str]) -> int:
    """``tfseg ARGS`` in this process: its exit status."""
    try:
        return main(args)
    except SystemExit as exit_:  # argparse refuses its arguments by exiting
        return exit_.code


def test_a_refused_run_leaves_nothing_that_stops_the_corrected_one(tmp_path, capsys):
    """A training refused before its first checkpoint runs, corrected, in the same folder."""
    run_dir = tmp_path / "run"
    settings = [a for s in TINY_RUN for a in ("--set", s)]
    assert main(["train", "--run-dir", str(run_dir), *settings, "--set", "model.options.depth=0"]) == 2
    assert main(["train", "--run-dir", str(run_dir), *settings]) == 0
    assert (run_dir / "model.keras").is_file()
