"""``tfseg`` as the README tests run it: the user's command, with settings appended that
shrink a training to seconds (tiny images and models, one short epoch, no downloads).

The README's own commands stay as written; only ``train`` and ``demo`` get these
``--set`` lines after the user's, chosen by the preset's data source and model.
"""

import sys

from tfseg.cli import main
from tfseg.config import load_config

FEW_STEPS = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=2", "train.stages=[]"]
SCENES = "height: 32, width: 48, num_train: 8, num_val: 4, num_test: 4"
BY_SOURCE = {
    "synthetic": [f"data.synthetic={{{SCENES}}}"],
    "fgbg": [f"data.fgbg={{{SCENES}, foreground_size: 16}}", "data.resize=[32, 48]"],
    "kitti_road": ["data.resize=[64, 160]"],
    "voc2012": ["data.resize=[64, 64]", "data.augment.crop_size=[64, 64]"],
}
BY_MODEL = {
    "unet": ["model.options.depth=2", "model.options.base_filters=4"],
    # No ImageNet weights offline: the encoder starts from scratch, at a sixteenth of its width.
    "fcn8_vgg16": ["model.options.encoder_weights=null", "model.options.width_multiplier=0.0625",
                   "model.options.decoder_channels=16"],
}


def option_values(args: list[str], *names: str) -> list[str]:
    return [args[i + 1] for i, arg in enumerate(args[:-1]) if arg in names]


def shrunk(args: list[str]) -> list[str]:
    if not args or args[0] not in ("train", "demo"):
        return args
    preset = (option_values(args, "--config", "-c") or ["demo_unet"])[-1]
    config = load_config(preset, option_values(args, "--set"))
    extra = FEW_STEPS + BY_SOURCE[config.data.source] + BY_MODEL[config.model.name]
    return args + [arg for setting in extra for arg in ("--set", setting)]


if __name__ == "__main__":
    sys.exit(main(shrunk(sys.argv[1:])))
