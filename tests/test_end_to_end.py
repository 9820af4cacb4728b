"""Training, export and predict on tiny shapes: the product's spine, in seconds."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from tfseg.cli import main
from tfseg.config import DataConfig, load_config
from tfseg.data.preprocess import preprocess
from tfseg.errors import UserError
from tfseg.predict import predict_folder
from tfseg.viz import write_rgb
from tfseg.runs import load_trained_model
from tfseg.serving.client import SegmentationModel
from tfseg.serving.export import export_saved_model
from tfseg.training.run import train

# Trains through train.mixed_precision=auto: CI runs these under float32 and mixed_bfloat16.
pytestmark = pytest.mark.auto_precision

TINY = [
    "data.synthetic={height: 32, width: 32, num_train: 16, num_val: 8, num_test: 8, seed: 3}",
    "model.options={depth: 2, base_filters: 4, batch_norm: true}",
    "train.epochs=2", "train.batch_size=4",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("e2e") / "run"
    config = load_config("demo_unet", TINY + [f"run_dir={run_dir}"])
    train(config, verbose=0)
    return run_dir


@pytest.fixture(scope="module")
def exported(trained):
    model = load_trained_model(trained / "model.keras")
    path = export_saved_model(model, trained / "export", data_config=DataConfig(), stride=4,
                              class_names=["a", "b", "c", "d", "e"], palette=np.eye(5, 3, dtype=np.uint8) * 200)
    return model, path


def test_run_directory_holds_everything(trained):
    for name in ("config.yaml", "labels.json", "history.csv", "curves.png", "model.keras",
                 "checkpoints/best.keras", "tensorboard"):
        assert (trained / name).exists(), name
    # Step checkpoints serve resumption only: removed once the run finished.
    assert sorted(p.name for p in (trained / "checkpoints").iterdir()) == ["best.keras"]
    with open(trained / "history.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert {"loss", "miou", "pixel_accuracy", "val_loss", "val_miou"} <= set(rows[0])


def test_finished_run_is_never_overwritten(trained):
    config = load_config("demo_unet", TINY + [f"run_dir={trained}"])
    with pytest.raises(UserError, match="holds a finished run"):
        train(config, verbose=0)


@pytest.mark.slow
def test_interrupted_training_resumes(tmp_path):
    config = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.epochs=3"])

    def interrupt(position):
        if position.epoch == 2:  # the first step of the third epoch is done
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, after_step=interrupt)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint").exists()
    assert not (tmp_path / "run" / "model.keras").exists()

    changed = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.epochs=4"])
    with pytest.raises(UserError, match=r"other settings \(train.epochs\)"):
        train(changed, verbose=0)

    train(config, verbose=0)
    with open(tmp_path / "run" / "history.csv") as f:
        epochs = [row["epoch"] for row in csv.DictReader(f)]
    assert epochs == ["0", "1", "2"]  # the third epoch only: the first two were restored


@pytest.mark.parametrize("height, width", [(37, 61), (32, 32), (1, 5), (50, 3)])
def test_saved_model_matches_in_memory_model(exported, height, width):
    model, path = exported
    images = np.random.default_rng(height).integers(0, 256, (2, height, width, 3)).astype(np.uint8)
    served = SegmentationModel(path).predict(images)
    assert served["classes"].dtype == np.uint8
    assert served["classes"].shape == (2, height, width)
    assert served["probabilities"].shape == (2, height, width, 5)

    # The reference: the Keras model on an image padded by hand to the stride (4).
    x = preprocess(images, DataConfig().preprocess).numpy()
    pad_h, pad_w = -height % 4, -width % 4
    mode = "reflect" if pad_h < height and pad_w < width else "constant"
    x = np.pad(x, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)], mode=mode)
    logits = np.asarray(model(x, training=False))[:, :height, :width]
    np.testing.assert_array_equal(served["classes"], logits.argmax(-1))
    np.testing.assert_allclose(served["probabilities"].sum(-1), 1.0, rtol=1e-5)


def test_export_refuses_an_existing_path(exported):
    model, path = exported
    with pytest.raises(UserError, match="already exists"):
        export_saved_model(model, path, data_config=DataConfig(), stride=4,
                           class_names=["a"], palette=[[0, 0, 0]])


def test_predict_folder(exported, tmp_path):
    _, model_path = exported
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (37, 61)), ("b.jpg", (20, 20)), ("c.bmp", (8, 9))):
        write_rgb(images / name, rng.integers(0, 256, size + (3,)).astype(np.uint8))
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "notes.txt").write_text("not an image")

    summary = predict_folder(model_path, images, tmp_path / "out", progress=False)
    assert [p.name for p in summary.written] == ["a.png", "b.png", "c.png"]
    assert [(p.name, "not a readable image" in why) for p, why in summary.failed] == [("broken.png", True)]
    mask = Image.open(tmp_path / "out" / "masks" / "a.png")
    assert mask.mode == "P" and mask.size == (61, 37)
    assert set(np.unique(np.asarray(mask))) <= set(range(5))
    assert Image.open(tmp_path / "out" / "overlays" / "c.png").size == (9, 8)

    with pytest.raises(UserError, match="already exist"):
        predict_folder(model_path, images, tmp_path / "out", progress=False)
    assert len(predict_folder(model_path, images, tmp_path / "out", overwrite=True, progress=False).written) == 3


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_export_and_predict(trained, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "export", "--run-dir", str(trained), "--output", str(tmp_path / "sm"))
    assert code == 0 and "exported" in out
    metadata = json.loads((tmp_path / "sm" / "1" / "assets.extra" / "tfseg.json").read_text())
    assert metadata["class_names"][0] == "background" and metadata["stride"] == 4
    write_rgb(tmp_path / "in" / "x.png", np.zeros((10, 11, 3), np.uint8))
    code, out, _ = run_cli(capsys, "predict", "--model", str(tmp_path / "sm"), "-i", str(tmp_path / "in"),
                           "-o", str(tmp_path / "pred"))
    assert code == 0 and (tmp_path / "pred" / "masks" / "x.png").exists()
    code, out, _ = run_cli(capsys, "evaluate", "--run-dir", str(trained), "--split", "test")
    assert code == 0 and "miou" in out
    assert json.loads((trained / "metrics_test.json").read_text())["num_images"] == 8


@pytest.mark.parametrize("argv, message", [
    (["predict", "--model", "{model}", "-i", "{tmp}/missing", "-o", "{tmp}/o"], "does not exist"),
    (["predict", "--model", "{model}", "-i", "{tmp}/empty", "-o", "{tmp}/o"], "holds no images"),
    (["predict", "--model", "{model}", "-i", "{tmp}/in", "-o", "{tmp}/in"], "must not be the input folder"),
    (["predict", "--model", "{model}", "-i", "{tmp}/in", "-o", "{tmp}/in/sub"], "must not be the input folder"),
    (["predict", "--model", "{tmp}/nomodel", "-i", "{tmp}/in", "-o", "{tmp}/o"], "not a SavedModel"),
    (["train", "--config", "nope"], "unknown preset 'nope'"),
    (["train", "--set", "train.epochs"], "malformed --set"),
    (["train", "--set", "train.epochz=1"], "unknown key 'train.epochz'"),
    (["export", "--run-dir", "{tmp}/missing"], "run directory {tmp}/missing: not found"),
    (["export", "--run-dir", "{tmp}/empty"], "has no config.yaml"),
    (["evaluate", "--run-dir", "{tmp}/empty"], "has no config.yaml"),
    (["evaluate", "--model", "{model}"], "needs the ground truth"),
    (["evaluate"], "needs exactly one of --run-dir, --model or --predictions"),
])
def test_cli_bad_input_is_one_line_and_exit_2(exported, tmp_path, capsys, argv, message):
    (tmp_path / "empty").mkdir()
    write_rgb(tmp_path / "in" / "x.png", np.zeros((4, 4, 3), np.uint8))
    argv = [a.format(model=exported[1], tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message.format(tmp=tmp_path) in err and err.startswith("tfseg: error: ") and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_sigterm_stops_training_after_a_step_with_a_checkpoint(tmp_path):
    """What `docker stop` does: SIGTERM ends the run with status 130, its files consistent."""
    import os
    import signal
    import subprocess
    import sys
    import time

    run_dir = tmp_path / "run"
    argv = [sys.executable, "-m", "tfseg", "train", "--run-dir", str(run_dir)]
    for item in TINY + ["train.epochs=200"]:
        argv += ["--set", item]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        history = run_dir / "history.csv"  # created at the start, written after each epoch
        while not (history.exists() and history.stat().st_size) and time.time() < deadline:
            assert process.poll() is None, process.stderr.read()[-2000:]
            time.sleep(0.2)
        assert history.stat().st_size, "no epoch finished in time"
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert (run_dir / "checkpoints" / "checkpoint").is_file() and not (run_dir / "model.keras").exists()
    assert os.path.exists(run_dir / "checkpoints" / "best.keras")


@pytest.mark.slow
def test_mirrored_training_over_two_devices(tmp_path):
    """train.distribute=mirrored splits each batch over two (logical CPU) devices."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tfseg.config import DataConfig, load_config
        from tfseg.training.run import train
        config = load_config("demo_unet", {TINY!r} + ["run_dir={tmp_path / 'run'}",
                             "train.distribute=mirrored", "train.epochs=1"])
        train(config, verbose=0)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout
    assert (tmp_path / "run" / "model.keras").exists()


def test_predict_needs_no_model_code():
    import subprocess
    import sys

    code = "import sys, tfseg.predict; assert not any(m.startswith('tfseg.models') for m in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


SMALL_FCN = ["model.options.width_multiplier=0.0625", "model.options.encoder_weights=null"]


@pytest.mark.parametrize("preset, data_dir, extra", [
    ("kitti_unet", "kitti_road_sample", ["model.options={depth: 2, base_filters: 4}"]),
    ("kitti_unet_clahe", "kitti_road_sample", ["model.options={depth: 2, base_filters: 4}"]),
    ("voc_unet", "voc2012_sample", ["data.source=voc2012", "model.options={depth: 2, base_filters: 4}"]),
    ("kitti_fcn8", "kitti_road_sample", SMALL_FCN),
    ("voc_fcn8", "voc2012_sample", ["data.source=voc2012", "data.augment.crop_size=[64, 96]"] + SMALL_FCN),
])
@pytest.mark.slow
def test_real_presets_train_a_few_steps_on_the_samples(tmp_path, preset, data_dir, extra):
    """The shipped presets, shrunk to a few steps, on the real sample files."""
    import os

    from tests.conftest import SHARED_DATA

    root = os.path.join(SHARED_DATA, data_dir)
    config = load_config(preset, extra + [
        f"data.data_dir={root}", f"run_dir={tmp_path / 'run'}", "data.resize=[64, 160]",
        "data.augment.crop_size=[64, 96]", "train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2"])
    model_path = train(config, verbose=0)
    assert model_path.exists()
    if preset.startswith("kitti"):
        split = json.loads((tmp_path / "run" / "split.json").read_text())
        assert len(split["val"]) == 2 and len(split["train"]) == 8
        assert load_config(str(tmp_path / "run" / "config.yaml")).data.split_file.endswith("split.json")


def test_cli_models_lists_parameters_and_flops(capsys):
    code, out, _ = run_cli(capsys, "models", "unet", "fcn_baseline", "--size", "64", "64", "--classes", "2")
    assert code == 0
    assert "31,031,810" in out  # the paper's U-Net for two classes
    assert "fcn_baseline" in out
    code, _, err = run_cli(capsys, "models", "segformer")
    assert code == 2 and "unknown model(s) segformer" in err


def test_predict_video(exported, tmp_path, capsys):
    import cv2

    _, model_path = exported
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 12, (61, 37))
    rng = np.random.default_rng(0)
    for _ in range(7):
        writer.write(rng.integers(0, 256, (37, 61, 3)).astype(np.uint8))
    writer.release()

    code, out, _ = run_cli(capsys, "predict", "--model", str(model_path), "-i", str(video),
                           "-o", str(tmp_path / "out"), "--frame-masks")
    assert code == 0 and "7 segmented frame(s)" in out
    result = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    frames = []
    while True:
        ok, frame = result.read()
        if not ok:
            break
        frames.append(frame)
    ok, source_frame = cv2.VideoCapture(str(video)).read()  # MJPG itself may round sizes down
    height, width = source_frame.shape[:2]
    assert len(frames) == 7 and frames[0].shape == (height + height % 2, width + width % 2, 3)
    assert result.get(cv2.CAP_PROP_FPS) == 12
    masks = sorted((tmp_path / "out" / "clip_masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:06d}.png" for i in range(7)]
    assert np.asarray(Image.open(masks[0])).shape == (height, width)

    code, _, err = run_cli(capsys, "predict", "--model", str(model_path), "-i", str(video), "-o", str(tmp_path / "out"))
    assert code == 2 and "already exists" in err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    code, _, err = run_cli(capsys, "predict", "--model", str(model_path), "-i", str(tmp_path / "broken.mp4"),
                           "-o", str(tmp_path / "out2"))
    assert code == 2 and "broken.mp4" in err


def test_tensorboard_shows_predictions_of_fixed_validation_images(trained):
    import tensorflow as tf

    events = sorted((trained / "tensorboard" / "validation").glob("events.out.tfevents.*"))
    images = {}
    for path in events:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.tag == "predictions":
                    images[event.step] = tf.make_ndarray(value.tensor)
    assert sorted(images) == [0, 1]  # every epoch
    encoded = images[1][2:]  # width, height, then the encoded panels
    assert len(encoded) == 4
    panel = tf.io.decode_png(encoded[0]).numpy()
    assert panel.shape == (32, 96, 3)  # image | truth | prediction, 32x32 each
    assert panel[:, 32:64].any()  # the ground truth in colour
