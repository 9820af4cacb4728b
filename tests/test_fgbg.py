"""The foreground-on-background dataset: deterministic scenes, exact masks, disjoint pools."""

import cv2
import numpy as np
import pytest

from tfseg.config import ConfigError, load_config
from tfseg.data.fgbg import foreground, generate_scene
from tfseg.data.sources import make_source

SMALL = dict(height=48, width=64, foreground_size=24, backgrounds=4, foregrounds=6)


def test_deterministic_and_distinct():
    a, b = generate_scene(3, "train", 5, **SMALL), generate_scene(3, "train", 5, **SMALL)
    assert np.array_equal(a.composite, b.composite) and np.array_equal(a.mask, b.mask)
    for other in (generate_scene(3, "train", 6, **SMALL), generate_scene(3, "val", 5, **SMALL),
                  generate_scene(4, "train", 5, **SMALL)):
        assert not np.array_equal(a.composite, other.composite)


def test_the_composite_is_the_background_except_on_the_object_and_its_soft_edge():
    for index in range(20):
        scene = generate_scene(0, "train", index, **SMALL)
        assert scene.composite.shape == (48, 64, 3) and scene.mask.shape == (48, 64)
        assert scene.mask.dtype == np.uint8 and set(np.unique(scene.mask)) <= {0, 1}
        assert 0 < scene.mask.sum() <= 24 * 24
        # Anti-aliasing spreads alpha at most a pixel beyond the >= 0.5 mask.
        near = cv2.dilate(scene.mask, np.ones((5, 5), np.uint8)).astype(bool)
        assert np.array_equal(scene.composite[~near], scene.background[~near])
        # The mask fits in one pasted window.
        rows, cols = np.nonzero(scene.mask)
        assert rows.max() - rows.min() < 24 and cols.max() - cols.min() < 24


def test_a_foreground_has_soft_edges_and_an_opaque_inside():
    tile = foreground(0, "train", 2, 32)
    assert tile.shape == (32, 32, 4) and tile.dtype == np.float32
    alpha = tile[..., 3]
    assert alpha.min() == 0.0 and alpha.max() == 1.0
    assert ((alpha > 0) & (alpha < 1)).any()  # anti-aliased edge
    assert 0.1 < (alpha >= 0.5).mean() < 0.8


def test_mirrored_foregrounds_occur():
    """Some scenes hold their foreground mirrored: its mask is the mirror image of the tile's."""
    def cropped(mask):
        rows, cols = np.nonzero(mask)
        return mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(bool)

    def shape(seed):
        return cropped(foreground(seed, "train", 0, 24)[..., 3] >= 0.5)

    seed = next(s for s in range(50) if not np.array_equal(shape(s), shape(s)[:, ::-1]))  # not a disc
    kinds = set()
    for index in range(60):
        scene = generate_scene(seed, "train", index, height=48, width=64, foreground_size=24,
                               backgrounds=2, foregrounds=1)
        crop = cropped(scene.mask)
        kinds.add("plain" if np.array_equal(crop, shape(seed))
                  else "mirrored" if np.array_equal(crop, shape(seed)[:, ::-1]) else "?")
    assert kinds == {"plain", "mirrored"}


def test_validation_scenes_use_backgrounds_training_never_saw():
    def backgrounds(split):
        return {generate_scene(0, split, i, **SMALL).background.tobytes() for i in range(30)}

    train, val = backgrounds("train"), backgrounds("val")
    assert len(train) == 4 and len(val) == 4  # every pool member is drawn in 30 scenes
    assert not train & val


def test_the_source_yields_composites_and_masks():
    config = load_config(None, ["data.source=fgbg", "data.fgbg={height: 48, width: 64, foreground_size: 24, "
                                "num_train: 3, num_val: 2, num_test: 2}"])
    source = make_source(config.data)
    assert source.class_names == ("background", "foreground")
    examples = list(source.dataset("val").as_numpy_iterator())
    assert len(examples) == 2
    scene = generate_scene(0, "val", 1, height=48, width=64, foreground_size=24)
    assert np.array_equal(examples[1][0], scene.composite) and np.array_equal(examples[1][1], scene.mask)


def test_a_foreground_larger_than_the_scene_is_refused():
    with pytest.raises(ConfigError, match="data.fgbg.foreground_size: 96 does not fit in 64x64"):
        load_config(None, ["data.fgbg={height: 64, width: 64}"])


def test_the_depth_map_is_ground_behind_a_nearer_object():
    for index in range(10):
        scene = generate_scene(1, "train", index, **SMALL)
        depth, mask = scene.depth, scene.mask.astype(bool)
        assert depth.dtype == np.float32 and depth.shape == (48, 64) and (depth > 0).all()
        ground = np.where(mask, np.nan, depth)
        # The ground: one depth per row, farthest at the top, in the documented ranges.
        rows = np.nanmax(ground, axis=1)
        assert np.all(np.diff(rows[~np.isnan(rows)]) < 0)
        assert 8 <= rows[0] <= 12 and 1.5 <= rows[-1] <= 3
        # The object: nearer than the ground at its foot, within 60-90 % of it.
        foot = np.nonzero(mask)[0].max()
        assert depth[mask].max() <= 0.9 * rows[foot] + 1e-5
        assert depth[mask].min() >= 0.6 * 0.9 * rows[foot] - 1e-5
