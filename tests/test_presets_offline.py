"""Every preset, as shipped, on a machine with no network and no W&B login: it trains for a
step on the real samples (or generated data), or exits 2 with one line saying what it needs."""

import socket
import urllib.error
import urllib.request

import pytest

from tests.conftest import SHARED_DATA
from tfseg.cli import main
from tfseg.config import load_config, preset_names

KITTI = f"{SHARED_DATA}/kitti_road_sample"
VOC = f"{SHARED_DATA}/voc2012_sample"
FEW_STEPS = ["train.epochs=1", "train.steps_per_epoch=1", "train.batch_size=2", "train.stages=[]"]
SCENES = "height: 32, width: 48, num_train: 4, num_val: 2, num_test: 2"
# Data source -> the settings that put a preset on the samples at a tiny size (the VOC 2012
# sample stands in for VOC 2007, whose layout is the same). It holds no SBD: those presets
# must say so.
ON_SAMPLES = {
    "synthetic": [f"data.synthetic={{{SCENES}}}", "data.resize=[]"],
    "fgbg": [f"data.fgbg={{{SCENES}, foreground_size: 16}}", "data.resize=[32, 48]"],
    "kitti_road": [f"data.data_dir={KITTI}", "data.resize=[64, 160]"],
    "voc2012": [f"data.data_dir={VOC}", "data.resize=[64, 64]", "data.augment.crop_size=[64, 64]"],
    "voc2007": [f"data.data_dir={VOC}", "data.resize=[64, 64]"],
    "voc_aug": [f"data.data_dir={VOC}", "data.resize=[64, 64]", "data.augment.crop_size=[64, 64]"],
}
# Model -> a size that trains in seconds; models with ImageNet weights keep their size,
# which the weights need.
SMALL_MODELS = {"unet": ["model.options.depth=2", "model.options.base_filters=4"],
                "fcn_baseline": ["model.options.base_filters=4"],
                "unet_resnet50": ["model.options.decoder_filters=[8, 8, 8, 8, 8]"],
                "fcn8_vgg16": ["model.options.width_multiplier=0.0625", "model.options.decoder_channels=16"]}
WEIGHTS_LINE = ("encoder weights imagenet: {file} is not in {cache} and cannot be downloaded ({reason}); put it "
                "there (KERAS_HOME sets the folder), or --set model.options.encoder_weights=PATH to a local copy, "
                "or =null to train from scratch")
# preset -> what it needs beyond the samples (None: it trains).
NEEDS = {
    "kitti_fcn8": "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    "kitti_fcn8_512": "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    "voc_fcn8": "SBD",
    "voc_resnet_unet_dice": "SBD",
    "voc_unet": "SBD",
    "voc_unet_focal_tversky": "SBD",
    "voc2007_resnet_frozen": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network (every URL fails as an unknown host), an empty Keras cache, no W&B login."""
    def no_network(*args, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    return tmp_path / "keras" / "models"


def test_the_table_names_every_preset():
    assert set(NEEDS) <= set(preset_names())


@pytest.mark.slow
@pytest.mark.parametrize("preset", preset_names())
def test_each_preset_trains_offline_or_says_in_one_line_what_it_needs(preset, offline, tmp_path, capsys):
    config = load_config(preset)
    weights = config.model.options.get("encoder_weights")
    settings = ON_SAMPLES[config.data.source] + FEW_STEPS + ([] if weights else SMALL_MODELS[config.model.name])
    run_dir = tmp_path / "run"
    code = main(["train", "--config", preset, "--run-dir", str(run_dir),
                 *[arg for setting in settings for arg in ("--set", setting)]])
    err = capsys.readouterr().err.strip()
    needs = NEEDS.get(preset)
    if needs is None:
        assert code == 0, err
        assert (run_dir / "model.keras").is_file()
        return
    assert code == 2 and len(err.splitlines()) == 1, err
    assert needs in err
    if needs.endswith(".h5"):
        assert err == "tfseg: error: " + WEIGHTS_LINE.format(file=needs, cache=offline,
                                                              reason="[Errno -2] Name or service not known")
    assert not (run_dir / "model.keras").exists()


def test_models_lists_the_imagenet_files_where_tfseg_looks(tmp_path, monkeypatch, capsys):
    from tfseg.cli import print_imagenet_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels.h5").write_bytes(b"weights")
    print_imagenet_weights()
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"ImageNet weights in {tmp_path / 'models'} (KERAS_HOME/models):"
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows["vgg16_weights_tf_dim_ordering_tf_kernels.h5"] == ["present", "kitti_fcn8,", "kitti_fcn8_512,",
                                                                   "voc_fcn8"]
    assert rows["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"] == ["missing", "voc2007_resnet_frozen,",
                                                                        "voc_resnet_unet_dice"]
