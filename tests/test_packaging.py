"""The files around the code: Docker, workflows, scripts, entry points."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tfseg.predict import write_rgb

ROOT = Path(__file__).resolve().parents[1]


def tool(name):
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (requirements-dev.txt has it)")
    return path


def test_dockerfile_is_hadolint_clean():
    result = subprocess.run([tool("hadolint"), "--no-color", "Dockerfile"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_are_actionlint_clean():
    workflows = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))
    assert len(workflows) == 2
    result = subprocess.run([tool("actionlint"), "-no-color", *workflows], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_workflow_runs_the_ci_script():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    steps = [step.get("run", "") for step in workflow["jobs"]["test"]["steps"]]
    assert "bash .ci/run" in steps
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_compose_file_parses_and_has_the_services():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    assert set(compose["services"]) == {"train", "tensorboard", "predict"}


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "scripts").glob("*.sh")))
def test_scripts_parse_and_have_a_usage_line(script):
    path = ROOT / "scripts" / script
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    assert "usage:" in path.read_text().splitlines()[1]


def test_dockerignore_keeps_data_runs_and_venvs_out():
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # deny by default, then allow what the image needs
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    assert not any(a.startswith((".venv", "runs", "data")) for a in allowed)


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "tfseg", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("tfseg ")


@pytest.mark.slow
def test_train_and_predict_scripts_run_end_to_end(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    tiny = ["--set", "data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4}",
            "--set", "model.options={depth: 2, base_filters: 4}", "--set", "train.epochs=1"]
    run_dir = tmp_path / "run"
    train = subprocess.run(["bash", str(ROOT / "scripts" / "train.sh"), "demo_unet", "", str(run_dir), *tiny],
                           env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    assert (run_dir / "export" / "1" / "saved_model.pb").exists() and (run_dir / "metrics_val.json").exists()
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(ROOT / "tests" / "conftest.py", images / "not_an_image.txt")
    write_rgb(images / "a.png", np.full((20, 30, 3), 128, np.uint8))
    predict = subprocess.run(["bash", str(ROOT / "scripts" / "predict.sh"), str(run_dir / "export"),
                              str(images), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                             timeout=300)
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert (tmp_path / "out" / "masks" / "a.png").exists()
