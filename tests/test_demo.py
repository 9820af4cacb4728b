"""The README's main job, `tfseg demo`, run exactly as a user runs it."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


@pytest.mark.slow
def test_demo_trains_exports_and_predicts(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "tfseg", "demo", "--output", str(out)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["num_images"] == 200
    assert metrics["miou"] >= 0.90
    assert metrics["pixel_accuracy"] >= 0.97
    for name in ("gallery.png", "curves.png", "model.keras", "export/1/saved_model.pb",
                 "export/1/assets.extra/tfseg.json", "history.csv", "config.yaml"):
        assert (out / name).exists(), name
    masks = sorted((out / "predictions" / "masks").glob("*.png"))
    assert len(masks) == 12 and len(list((out / "predictions" / "overlays").glob("*.png"))) == 12
    assert np.asarray(Image.open(masks[0])).shape == (96, 96)
    assert "miou" in result.stdout
