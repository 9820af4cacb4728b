"""Training that survives: divergence, kills at any instant, bad data, and several workers."""

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.data_fixtures import save_png
from tfseg.cli import main
from tfseg.config import load_config
from tfseg.errors import UserError
from tfseg.runs import load_trained_model
from tfseg.training.loop import TrainingDiverged
from tfseg.training.run import train

TINY = [
    "data.synthetic={height: 32, width: 32, num_train: 16, num_val: 8, num_test: 8, seed: 3}",
    "model.options={depth: 2, base_filters: 4, batch_norm: true}",
    "train.epochs=2", "train.batch_size=4", "train.mixed_precision=off",
]


def history_of(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def all_weights_finite(path) -> bool:
    return all(np.isfinite(w).all() for w in load_trained_model(path).get_weights())


@pytest.mark.slow
def test_a_diverging_run_stops_naming_the_step_and_resumes_with_a_lower_learning_rate(tmp_path, capsys):
    run_dir = tmp_path / "run"
    settings = TINY + ["train.checkpoint_steps=2"]

    def interrupt(position):
        if position.global_step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # a healthy start, checkpointed at step 2
        train(load_config("demo_unet", settings + [f"run_dir={run_dir}"]), verbose=0, after_step=interrupt)

    argv = ["train", "--run-dir", str(run_dir)] + [a for item in settings for a in ("--set", item)]
    code = main(argv + ["--set", "train.learning_rate=1e10"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert re.search(r"training diverged: (the loss is nan|the weights hold NaN or infinite values) "
                     r"at step \d+ \(epoch 1, batch \d+\)", err)
    assert "resumes from the last good checkpoint (ckpt-2) with --set train.learning_rate=<lower>" in err
    assert not (run_dir / "model.keras").exists()
    best = run_dir / "checkpoints" / "best.keras"
    assert not best.exists() or all_weights_finite(best)  # never a NaN model as "best"

    # The same run, on with a lower learning rate, from its last good checkpoint.
    assert main(argv + ["--set", "train.learning_rate=1e-3"]) == 0
    out = capsys.readouterr().out
    assert "changed on resumption: train.learning_rate: 10000000000.0 -> 0.001" in out
    assert "resumed at epoch 1, step 2" in out
    assert all_weights_finite(run_dir / "model.keras")
    assert [row["epoch"] for row in history_of(run_dir)] == ["0", "1"]
    assert "# changed on resumption: train.learning_rate" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow
def test_divergence_before_any_checkpoint_starts_again_with_a_lower_learning_rate(tmp_path):
    config = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.learning_rate=1e10"])
    with pytest.raises(TrainingDiverged, match=r"at step \d+ \(epoch 1, batch \d+\).*no checkpoint was written"):
        train(config, verbose=0)
    train(load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}"]), verbose=0)
    assert all_weights_finite(tmp_path / "run" / "model.keras")


@pytest.mark.slow
def test_a_run_stopped_before_its_first_checkpoint_starts_again(tmp_path):
    config = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}"])

    def crash(position):
        raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError):
        train(config, verbose=0, after_step=crash)
    assert not (tmp_path / "run" / "checkpoints").exists()
    train(load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}"]), verbose=0)
    assert [row["epoch"] for row in history_of(tmp_path / "run")] == ["0", "1"]


def test_other_settings_cannot_resume_a_run(tmp_path):
    config = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.checkpoint_steps=1"])

    def interrupt(position):
        if position.global_step == 2:  # after the first step's checkpoint
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, after_step=interrupt)
    assert (tmp_path / "run" / "checkpoints" / "checkpoint").is_file()
    changed = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.batch_size=2"])
    with pytest.raises(UserError, match=r"other settings \(train.batch_size\)"):
        train(changed, verbose=0)


def test_a_run_stopped_before_its_first_checkpoint_starts_again_with_new_settings(tmp_path):
    config = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}"])

    def interrupt(position):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, after_step=interrupt)
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint").exists()
    changed = load_config("demo_unet", TINY + [f"run_dir={tmp_path / 'run'}", "train.batch_size=2"])
    train(changed, verbose=0)
    assert load_config(str(tmp_path / "run" / "config.yaml")).train.batch_size == 2


# -- bad data ----------------------------------------------------------------------------------

def folder_dataset(root, rng, bad):
    """A folder dataset of 8 train + 4 val pairs; ``bad`` spoils one training file."""
    stems = {"train": [f"t{i}" for i in range(8)], "val": [f"v{i}" for i in range(4)]}
    for split, names in stems.items():
        (root / "splits").mkdir(parents=True, exist_ok=True)
        (root / "splits" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for stem in names:
            save_png(root / "images" / f"{stem}.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
            save_png(root / "masks" / f"{stem}.png", rng.integers(0, 2, (24, 32), dtype=np.uint8))
    (root / "classes.yaml").write_text("- {name: background}\n- {name: thing}\n")
    if bad == "truncated":
        path = root / "images" / "t5.png"
        path.write_bytes(path.read_bytes()[:200])
    else:
        path = root / "masks" / "t3.png"
        save_png(path, np.zeros((20, 32), np.uint8))
    return path


@pytest.mark.parametrize("bad, reason", [("truncated", "not a readable image"), ("mask size", "mask is 20x32")])
def test_bad_training_data_is_one_line_naming_the_file(tmp_path, capsys, bad, reason):
    root = tmp_path / "data"
    path = folder_dataset(root, np.random.default_rng(0), bad)
    argv = ["train", "--run-dir", str(tmp_path / "run"), "--set", "data.source=folder",
            "--set", f"data.data_dir={root}",
            "--set", "model.options={depth: 2, base_filters: 4}", "--set", "train.epochs=1",
            "--set", "train.batch_size=4"]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert str(path) in err and reason in err and "tfseg data check" in err
    assert "Traceback" not in err


# -- kills at any instant ----------------------------------------------------------------------

RESUMABLE_RUN = TINY + [
    "model.options={depth: 2, base_filters: 4, batch_norm: true, dropout: 0.5}",
    # 6 steps of 4 images from 16: each epoch wraps around the split within itself.
    "train.epochs=3", "train.steps_per_epoch=6", "train.checkpoint_steps=1", "train.deterministic=true",
]


def train_command(run_dir, settings):
    argv = [sys.executable, "-m", "tfseg", "train", "--run-dir", str(run_dir)]
    for item in settings:
        argv += ["--set", item]
    return argv


def latest_checkpoint_step(run_dir) -> int:
    index = run_dir / "checkpoints" / "checkpoint"
    try:
        first = index.read_text().splitlines()[0]
    except (OSError, IndexError):
        return -1
    return int(first.rsplit("-", 1)[1].strip('"'))


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(train_command(reference, RESUMABLE_RUN), check=True, capture_output=True, timeout=300)

    process = subprocess.Popen(train_command(killed, RESUMABLE_RUN), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        # Step 8 is the second step of epoch 2; a checkpoint is written at every step, so
        # the kill lands while one is being written about as often as not.
        while latest_checkpoint_step(killed) < 8 and time.time() < deadline:
            assert process.poll() is None, process.stderr.read()[-2000:]
            time.sleep(0.01)
        assert latest_checkpoint_step(killed) >= 8, "no checkpoint in time"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.keras").exists()

    resumed = subprocess.run(train_command(killed, RESUMABLE_RUN), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed at epoch 2, step" in resumed.stdout

    expected, got = load_trained_model(reference / "model.keras"), load_trained_model(killed / "model.keras")
    for want, have in zip(expected.get_weights(), got.get_weights(), strict=True):
        np.testing.assert_array_equal(have, want)
    for want, have in zip(history_of(reference), history_of(killed), strict=True):
        assert [have[k] for k in ("epoch", "val_loss", "val_miou")] == [want[k] for k in ("epoch", "val_loss", "val_miou")]


# -- several workers ---------------------------------------------------------------------------

def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


# Each worker runs `tfseg train` and, for the test only, saves the weights it ended with.
WORKER = """
import sys
import numpy as np
import tfseg.training.run
from tfseg.cli import main

run_loop = tfseg.training.run.run_loop
def keep_weights(trainer, *args, **kwargs):
    run_loop(trainer, *args, **kwargs)
    np.savez(sys.argv[1], *trainer.model.get_weights())
tfseg.training.run.run_loop = keep_weights
raise SystemExit(main(sys.argv[2:]))
"""


def start_workers(tmp_path, settings, count=2):
    ports = free_ports(count)
    workers = []
    for index in range(count):
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
                     "task": {"type": "worker", "index": index}}
        env = dict(os.environ, TF_CONFIG=json.dumps(tf_config))
        argv = [sys.executable, "-c", WORKER, str(tmp_path / f"weights{index}.npz"), "train",
                "--run-dir", str(tmp_path / "run")]
        for item in settings:
            argv += ["--set", item]
        workers.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return workers


def finish(workers, timeout):
    outputs = []
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=timeout))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    return outputs


@pytest.mark.slow
def test_two_workers_on_loopback_end_with_identical_weights(tmp_path):
    workers = start_workers(tmp_path, TINY + ["train.distribute=multi_worker"])
    outputs = finish(workers, timeout=300)
    for worker, (out, err) in zip(workers, outputs):
        assert worker.returncode == 0, err[-3000:]
        assert "2 replica(s)" in out
    first, second = np.load(tmp_path / "weights0.npz"), np.load(tmp_path / "weights1.npz")
    assert len(first.files) == len(second.files) > 0
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name])
    # Only the chief (worker 0) wrote the run directory; its model is what both trained.
    saved = load_trained_model(tmp_path / "run" / "model.keras")
    assert len(history_of(tmp_path / "run")) == 2
    assert any(np.array_equal(w, first[name]) for w, name in zip(saved.get_weights(), first.files))


@pytest.mark.slow
def test_a_lost_worker_ends_the_others_with_one_line(tmp_path):
    workers = start_workers(tmp_path, TINY + ["train.distribute=multi_worker", "train.epochs=500",
                                              "train.worker_timeout_seconds=30"])
    history = tmp_path / "run" / "history.csv"
    deadline = time.time() + 240
    while not history.exists() and time.time() < deadline:
        for index, worker in enumerate(workers):
            if worker.poll() is not None:  # say why, for a machine too loaded to keep the 30 s timeout
                stderr = finish(workers, timeout=60)[index][1]
                pytest.fail(f"worker {index} exited ({worker.returncode}) before an epoch ended: {stderr[-2000:]}")
        time.sleep(0.2)
    assert history.exists(), "the workers did not finish an epoch in time"
    workers[1].kill()
    lost = time.time()
    (_, err), _ = finish(workers, timeout=120)
    assert workers[0].returncode == 2
    assert time.time() - lost < 90
    message = [line for line in err.splitlines() if line.startswith("tfseg: error:")]
    assert len(message) == 1 and "lost a worker" in message[0], err[-3000:]


def test_multi_worker_needs_tf_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    config = load_config("demo_unet", TINY + [f"run_dir={tmp_path}", "train.distribute=multi_worker"])
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        train(config, verbose=0)


def test_tf_config_counts_workers():
    from tfseg.training.devices import tf_config_workers

    assert tf_config_workers({}) == 0
    cluster = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]}, "task": {"type": "chief", "index": 0}}
    assert tf_config_workers({"TF_CONFIG": json.dumps(cluster)}) == 3
    with pytest.raises(UserError, match="TF_CONFIG"):
        tf_config_workers({"TF_CONFIG": "[1, 2"})




@pytest.mark.parametrize("message, gist", [
    ("Collective ops is aborted by: Error reported from /job:worker/task:1: The following tasks are unhealthy "
     "(stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.",
     "/job:worker/replica:0/task:1 stopped sending heartbeats"),
    ("Graph execution error:\n\nDetected at node x\nSocket closed\nAdditional GRPC error information from remote "
     "target /job:worker/replica:0/task:1 while calling /tensorflow.WorkerService/RecvBuf:\n:UNKNOWN:Error received "
     "from peer  {grpc_status:14, grpc_message:\"Socket closed\"}\n\t [[{{node adam/CollectiveReduceV2}}]]",
     "/job:worker/replica:0/task:1: Socket closed"),
    ("Graph execution error:\n\nDetected at node x\nsomething else went wrong\n\t [[{{node y}}]]",
     "something else went wrong"),
])
def test_a_lost_worker_is_named_without_the_graph_trace(message, gist):
    from tfseg.training.run import worker_loss

    assert worker_loss(message) == gist


def test_the_file_named_is_the_one_that_failed_not_one_with_stray_values(tmp_path, capsys):
    """A mask with values the classes do not have still trains (they become void) and is
    not the file to blame for a truncated image elsewhere in the split."""
    root = tmp_path / "data"
    path = folder_dataset(root, np.random.default_rng(0), "truncated")
    stray = np.zeros((24, 32), np.uint8)
    stray[0, 0] = 7
    save_png(root / "masks" / "t1.png", stray)
    code = main(["train", "--run-dir", str(tmp_path / "run"), "--set", "data.source=folder",
                 "--set", f"data.data_dir={root}", "--set", "model.options={depth: 2, base_filters: 4}",
                 "--set", "train.epochs=1", "--set", "train.batch_size=4"])
    err = capsys.readouterr().err
    assert code == 2 and str(path) in err and "t1.png" not in err, err


@pytest.mark.parametrize("damage", ["garbage index", "index names a missing checkpoint", "truncated data",
                                    "empty checkpoint index file"])
def test_a_damaged_checkpoint_is_one_line_and_nothing_is_deleted(damage, tmp_path, capsys):
    """Resuming must not quietly start again over the user's checkpoints and best model."""
    from tfseg.cli import main

    run_dir = tmp_path / "run"
    args = ["train", "--run-dir", str(run_dir), *[a for s in TINY for a in ("--set", s)],
            "--set", "train.checkpoint_steps=1"]
    stop_after = {"steps": 0}

    def interrupt(position):
        stop_after["steps"] += 1
        if stop_after["steps"] == 3:
            raise KeyboardInterrupt

    from tfseg.config import load_config
    from tfseg.training.run import train

    with pytest.raises(KeyboardInterrupt):
        train(load_config("demo_unet", [f"run_dir={run_dir}", *TINY, "train.checkpoint_steps=1"]),
              verbose=0, after_step=interrupt)
    checkpoints = run_dir / "checkpoints"
    index = checkpoints / "checkpoint"
    if damage == "garbage index":
        index.write_text(" garbage\n")
    elif damage == "index names a missing checkpoint":
        index.write_text('model_checkpoint_path: "ckpt-999"\nall_model_checkpoint_paths: "ckpt-999"\n')
    elif damage == "truncated data":
        [data] = sorted(checkpoints.glob("ckpt-*.data-*"))[-1:]
        data.write_bytes(data.read_bytes()[:100])
    else:
        [index_file] = sorted(checkpoints.glob("ckpt-*.index"))[-1:]
        index_file.write_bytes(b"")
    before = {p.name: p.read_bytes() for p in checkpoints.iterdir()}
    capsys.readouterr()
    assert main(args) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "restore the folder as it was, or move it away" in err[0], err
    assert {p.name: p.read_bytes() for p in checkpoints.iterdir()} == before
