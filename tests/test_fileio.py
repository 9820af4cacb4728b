"""Outputs get the permissions a plain write would give them: others can read them."""

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tfseg.fileio import current_umask, write_text


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_atomic_writes_have_a_plain_writes_mode(tmp_path, umask):
    assert current_umask() == umask
    write_text(tmp_path / "atomic.txt", "x")
    (tmp_path / "plain.txt").write_text("x")
    assert stat.S_IMODE((tmp_path / "atomic.txt").stat().st_mode) == \
        stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o666 & ~umask


def test_an_exported_model_is_readable_by_another_user(tmp_path, umask):
    import keras

    from tfseg.config import DataConfig
    from tfseg.serving.export import export_saved_model

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    path = export_saved_model(model, tmp_path / "sm", data_config=DataConfig(), stride=1,
                              class_names=["a", "b"], palette=[[0, 0, 0]] * 2)
    (tmp_path / "plain").mkdir()
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    if umask & 0o004:
        return
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o004, name  # readable by others
    if os.geteuid() != 0:
        return
    # Really read as an unprivileged user (nobody), as a serving container would, from a
    # folder that user can reach (pytest's own temporary folders are private).
    shared = Path(tempfile.mkdtemp())
    try:
        os.chmod(shared, 0o755)
        exported = export_saved_model(model, shared / "sm", data_config=DataConfig(), stride=1,
                                      class_names=["a", "b"], palette=[[0, 0, 0]] * 2)
        result = subprocess.run(["cat", str(exported / "saved_model.pb"), str(exported / "assets.extra" / "tfseg.json")],
                                capture_output=True, user=65534, timeout=60)
        assert result.returncode == 0, result.stderr
        assert b'"class_names"' in result.stdout
    finally:
        shutil.rmtree(shared)  # our own temporary folder
