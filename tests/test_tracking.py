"""Weights & Biases tracking: optional, offline-testable, resumable."""

import csv
import importlib.util
import json

import pytest

from tfseg.config import load_config
from tfseg.runs import WANDB_RUN_ID_FILE
from tfseg.training.history import PREVIEW_IMAGES
from tfseg.training.run import train

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def tiny_run(tmp_path, *extra):
    return load_config("demo_unet", [
        f"run_dir={tmp_path / 'run'}",
        "data.synthetic={height: 32, width: 32, num_train: 16, num_val: 8, num_test: 8, seed: 3}",
        "model.options={depth: 2, base_filters: 4}", "train.epochs=2", "train.batch_size=8",
        "train.wandb_project=tfseg-test", *extra])


def test_without_wandb_installed_the_run_says_so_and_trains(tmp_path, monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "wandb" else real_find_spec(name, *args))
    train(tiny_run(tmp_path), verbose=0)
    out = capsys.readouterr().out
    assert "train.wandb_project tfseg-test: wandb is not installed (pip install wandb)" in out
    assert not (tmp_path / "run" / "wandb").exists()
    assert (tmp_path / "run" / "model.keras").is_file()


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_offline_run_logs_every_epoch_and_the_prediction_panels(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tiny_run(tmp_path, "train.wandb_mode=offline"), verbose=0)
    run_dir = tmp_path / "run"
    run_id = (run_dir / WANDB_RUN_ID_FILE).read_text().strip()
    [offline] = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    # The panels of both epochs, at steps 0 and 1 (wandb names media KEY_STEP_HASH.png).
    panels = sorted(p.name for p in (offline / "files" / "media" / "images").glob("predictions_*.png"))
    assert [name.split("_")[1] for name in panels] == ["0"] * PREVIEW_IMAGES + ["1"] * PREVIEW_IMAGES
    # Every epoch's scores, as history.csv has them, are in the run's record.
    record = next(offline.glob("run-*.wandb")).read_bytes()
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in ("loss", "val_miou", "val_pixel_accuracy", "learning_rate"):
            assert key.encode() in record
            assert json.dumps(float(row[key])).encode() in record, (row["epoch"], key)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_online_without_credentials_is_one_line(tmp_path, monkeypatch):
    from tfseg.errors import UserError

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # no stored login
    monkeypatch.setenv("WANDB_SILENT", "true")
    with pytest.raises(UserError, match="wandb could not start a run in project tfseg-test .*"
                                        "--set train.wandb_mode=offline"):
        train(tiny_run(tmp_path, "train.wandb_mode=online"), verbose=0)


@pytest.mark.skipif(importlib.util.find_spec("wandb") is None, reason="wandb is not installed")
def test_without_credentials_the_run_goes_offline_in_one_line(tmp_path, monkeypatch, capsys):
    """A preset with a W&B project trains for anyone: no login means an offline W&B run."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))  # no stored login
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(tiny_run(tmp_path), verbose=0)
    lines = [line for line in capsys.readouterr().out.splitlines() if "wandb" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("train.wandb_project tfseg-test: W&B is not reachable")
    assert "logging offline to" in lines[0]
    run_id = (tmp_path / "run" / WANDB_RUN_ID_FILE).read_text().strip()
    [offline] = (tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}")
    assert next(offline.glob("run-*.wandb")).stat().st_size > 0
    assert (tmp_path / "run" / "model.keras").is_file()
