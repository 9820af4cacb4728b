"""The data section of the configuration: new fields, choices and unknown keys."""

from __future__ import annotations

import pytest

from tfseg.config import ConfigError, load_config
from tfseg.data.sources import SOURCES
from tfseg.errors import UserError


def test_nested_source_options_parse():
    config = load_config(None, ["data.source=kitti_road", "data.kitti.val_count=30",
                                "data.kitti.split_seed=7", "data.folder.mask_format=binary",
                                "data.voc.sbd_dir=/data/benchmark_RELEASE", "data.use_tfds=true",
                                "data.split_file=runs/x/split.json"])
    assert config.data.kitti.val_count == 30 and config.data.kitti.split_seed == 7
    assert config.data.folder.mask_format == "binary" and config.data.use_tfds is True
    assert config.data.voc.sbd_dir == "/data/benchmark_RELEASE"


@pytest.mark.parametrize("override,message", [
    ("data.kitti.val_cont=3", "unknown key 'data.kitti.val_cont'"),
    ("data.folder.mask_format=rgb", "data.folder.mask_format: 'rgb' is not one of"),
    ("data.kitti.val_fraction=1.5", "must lie strictly between 0 and 1"),
    ("data.kitti.val_count=-1", "must be >= 0"),
    ("data.kitti=3", "must be a mapping"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_every_source_is_registered_and_unknown_ones_are_errors():
    assert set(SOURCES) == {"synthetic", "fgbg", "kitti_road", "voc2012", "voc2007", "voc_aug", "folder"}
    with pytest.raises(UserError, match="data.source: 'cityscapes' is not one of synthetic, fgbg, kitti_road"):
        load_config(None, ["data.source=cityscapes"])
