"""One contract for every data source in the registry, on tiny data of its own format:
what each yields, how many, of which types and shapes, and with which label values."""

import numpy as np
import pytest
from data_fixtures import make_kitti, make_voc, random_image, save_jpeg, save_png, save_sbd_mat

from tfseg.config import DataConfig, load_config
from tfseg.data.labels import VOID
from tfseg.data.sources import SOURCES, example_parts, make_source

SCENES = {"height": 24, "width": 32, "num_train": 4, "num_val": 2, "num_test": 2}


def tiny_data(name: str, root) -> DataConfig:
    """A DataConfig for a few examples of source ``name``, written under ``root`` if needed."""
    if name in ("synthetic", "fgbg"):
        extra = ", foreground_size: 12, inputs: pair, depth: true" if name == "fgbg" else ""
        scenes = ", ".join(f"{key}: {value}" for key, value in SCENES.items())
        return load_config(None, [f"data.source={name}", f"data.{name}={{{scenes}{extra}}}"]).data
    if name == "kitti_road":
        make_kitti(root / "data_road", {"um_000000": (20, 30), "umm_000001": (22, 30), "uu_000002": (20, 28)})
        return DataConfig(source=name, data_dir=str(root))
    if name in ("voc2012", "voc2007", "voc_aug"):
        year = "2007" if name == "voc2007" else "2012"
        make_voc(root / "VOCdevkit", year, {"train": {"a": (20, 24, [1]), "b": (22, 26, [2])},
                                            "val": {"c": (21, 25, [3])}})
        if name == "voc_aug":
            sbd = root / "benchmark_RELEASE" / "dataset"
            mask = np.zeros((16, 28), np.uint8)
            mask[2:10, 3:12] = 11
            save_sbd_mat(sbd / "cls" / "e.mat", mask)
            save_jpeg(sbd / "img" / "e.jpg", random_image(np.random.default_rng(0), 16, 28))
            (sbd / "train.txt").write_text("e\n")
            (sbd / "val.txt").write_text("")
        return DataConfig(source=name, data_dir=str(root))
    if name == "folder":
        rng = np.random.default_rng(0)
        for i in range(5):
            save_png(root / "images" / f"p{i}.png", random_image(rng, 18, 22))
            save_png(root / "masks" / f"p{i}.png", rng.integers(0, 3, (18, 22)).astype(np.uint8))
        (root / "classes.yaml").write_text("- {name: background, color: [0, 0, 0]}\n"
                                           "- {name: a, color: [255, 0, 0]}\n- {name: b, color: [0, 255, 0]}\n")
        return DataConfig(source=name, data_dir=str(root))
    raise AssertionError(f"no tiny data for source {name}: add it here")


@pytest.mark.parametrize("name", list(SOURCES))
def test_every_source_keeps_the_contract(name, tmp_path):
    source = make_source(tiny_data(name, tmp_path))
    num_classes = len(source.class_names)
    assert source.name == name and num_classes >= 2
    assert np.asarray(source.palette).shape == (num_classes, 3)
    assert source.input_groups and all(isinstance(group, str) for group in source.input_groups)
    channels = 3 * len(source.input_groups)
    labelled = [split for split in source.splits if split in ("train", "val")]
    assert labelled, source.splits
    for split in labelled:
        ids = source.ids(split)
        assert len(ids) == len(set(ids)) == source.num_examples(split) > 0, split
        examples = list(source.dataset(split).as_numpy_iterator())
        assert len(examples) == len(ids), split
        for example in examples:
            assert len(example) == (3 if source.targets else 2)
            image, label, targets = example_parts(example)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == channels
            assert label.dtype == np.uint8 and label.shape == image.shape[:2]
            assert set(np.unique(label).tolist()) <= set(range(num_classes)) | {VOID}
            assert tuple(targets) == source.targets
            for target in targets.values():
                assert target.dtype == np.float32 and target.shape == label.shape
