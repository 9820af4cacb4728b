"""Parity of the TensorFlow CLAHE with cv2.createCLAHE, and its behaviour in graphs.

The contract is "within one grey level of OpenCV on at least 99.9% of pixels"; the
implementation is in fact bit-exact outside XLA, so most tests also demand 99.9% exact
pixels, which catches a wrong padding, clip or interpolation detail long before the
contract breaks.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfseg.data.clahe import _bin_limit, _rgb_to_ycrcb, _ycrcb_to_rgb, clahe  # noqa: E402

KITTI_DIR = Path(__file__).resolve().parents[2] / "shared/data/kitti_road_sample/training/image_2"
KITTI_IMAGES = sorted(KITTI_DIR.glob("*.png"))


def cv2_clahe(gray: np.ndarray, clip_limit=2.0, grid=(8, 8)) -> np.ndarray:
    return cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=grid).apply(gray)


def cv2_clahe_rgb(rgb: np.ndarray, clip_limit=2.0, grid=(8, 8)) -> np.ndarray:
    """The reference colour pipeline: RGB2YCrCb, CLAHE on Y, YCrCb2RGB."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    ycrcb[..., 0] = cv2_clahe(np.ascontiguousarray(ycrcb[..., 0]), clip_limit, grid)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def assert_parity(out, ref, exact=0.999, within_one=0.999, max_diff=255):
    """Fails unless enough pixels of ``out`` equal / are within 1 of ``ref``."""
    out = np.asarray(out)
    assert out.dtype == np.uint8 and out.shape == ref.shape
    diff = np.abs(out.astype(np.int32) - ref.astype(np.int32))
    same, close = np.mean(diff == 0), np.mean(diff <= 1)
    assert same >= exact, f"only {same:.5%} of pixels equal OpenCV's (max diff {diff.max()})"
    assert close >= within_one, f"only {close:.5%} of pixels within 1 of OpenCV's"
    assert diff.max() <= max_diff, f"max diff {diff.max()}"


def random_image(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


# Sizes: divisible by the grids, odd, thinner than a tile grid in one or both dimensions
# (padding wider than the image exercises repeated reflection), and KITTI's.
SIZES = [(64, 64), (37, 61), (100, 7), (7, 100), (5, 3), (1, 1), (2, 9), (48, 40), (375, 1242)]
CLIPS = [1.0, 2.0, 4.0, 40.0]
GRIDS = [(8, 8), (4, 6), (2, 2)]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("clip_limit", CLIPS)
@pytest.mark.parametrize("size", SIZES)
def test_random_images_match_cv2(size, clip_limit, grid):
    image = random_image(size, seed=size[0] * 1000 + size[1])
    assert_parity(clahe(image, clip_limit, grid), cv2_clahe(image, clip_limit, grid))


@pytest.mark.parametrize("size", [(64, 64), (37, 61), (5, 3)])
def test_no_clipping_matches_cv2(size):
    image = random_image(size)
    assert_parity(clahe(image, 0.0), cv2_clahe(image, 0.0))


def test_smooth_image_with_clipping_matches_cv2():
    # Random noise barely clips; a smooth gradient piles counts into few bins per tile.
    y, x = np.mgrid[0:120, 0:200]
    image = ((x + 0.5 * y) % 256).astype(np.uint8)
    for clip_limit in CLIPS:
        assert_parity(clahe(image, clip_limit, (5, 3)), cv2_clahe(image, clip_limit, (5, 3)))


@pytest.mark.parametrize("value", [0, 1, 77, 128, 254, 255])
@pytest.mark.parametrize("size", [(64, 64), (37, 61), (3, 2)])
def test_flat_images_match_cv2(value, size):
    image = np.full(size, value, np.uint8)
    for clip_limit in (1.0, 2.0, 40.0):
        assert_parity(clahe(image, clip_limit), cv2_clahe(image, clip_limit))


@pytest.mark.skipif(not KITTI_IMAGES, reason=f"no KITTI sample images in {KITTI_DIR}")
@pytest.mark.parametrize("path", KITTI_IMAGES, ids=lambda p: p.stem)
def test_kitti_grey_matches_cv2(path):
    gray = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2GRAY)
    for clip_limit, grid in ((2.0, (8, 8)), (40.0, (8, 8)), (4.0, (4, 6))):
        assert_parity(clahe(gray, clip_limit, grid), cv2_clahe(gray, clip_limit, grid))


def test_colour_conversions_match_cv2():
    rgb = random_image((256, 256, 3))
    rgb[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                  [255, 255, 0], [0, 255, 255], [255, 0, 255]]  # saturated corners
    y, cr, cb = (t.numpy() for t in _rgb_to_ycrcb(tf.constant(rgb)))
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb).astype(np.int32)
    np.testing.assert_array_equal(np.stack([y, cr + 128, cb + 128], -1), ycrcb)

    ycrcb = random_image((256, 256, 3), seed=1)
    planes = [tf.constant(ycrcb[..., i].astype(np.float32)) for i in range(3)]
    back = _ycrcb_to_rgb(planes[0], planes[1] - 128, planes[2] - 128)
    np.testing.assert_array_equal(back, cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB))


def load_rgb(source) -> np.ndarray:
    """"random" or the path of an image file -> uint8 RGB [H, W, 3]."""
    if source == "random":
        return random_image((120, 200, 3))
    return cv2.cvtColor(cv2.imread(str(source)), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("source", ["random", *KITTI_IMAGES[:3]], ids=lambda s: Path(s).stem)
@pytest.mark.parametrize("clip_limit", [2.0, 40.0])
def test_colour_equalizes_luminance_like_cv2(source, clip_limit):
    rgb = load_rgb(source)
    out = clahe(rgb, clip_limit).numpy()
    # The whole colour pipeline agrees with cv2's RGB2YCrCb -> CLAHE(Y) -> YCrCb2RGB.
    assert_parity(out, cv2_clahe_rgb(rgb, clip_limit), max_diff=2)

    # Luminance of the result is cv2's CLAHE of cv2's luminance. Only where converting back
    # to RGB did not saturate a channel: there the clipping changes Y (for cv2 too).
    y_ref = cv2_clahe(np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)[..., 0]),
                      clip_limit)
    y_out = cv2.cvtColor(out, cv2.COLOR_RGB2YCrCb)[..., 0]
    unsaturated = ((out > 0) & (out < 255)).all(axis=-1)
    assert unsaturated.mean() > 0.5
    assert_parity(y_out[unsaturated], y_ref[unsaturated], exact=0.99)


def test_colour_keeps_grey_pixels_grey():
    grey = random_image((40, 60, 1))
    out = clahe(np.repeat(grey, 3, axis=-1)).numpy()
    np.testing.assert_array_equal(out, np.repeat(out[..., :1], 3, axis=-1))
    np.testing.assert_array_equal(out[..., 0], cv2_clahe(grey[..., 0]))


@pytest.mark.parametrize("shape", [(37, 61), (37, 61, 1), (37, 61, 3), (4, 37, 61, 1),
                                   (4, 37, 61, 3)])
def test_dtype_and_shape_preserved(shape):
    out = clahe(tf.constant(random_image(shape)))
    assert out.dtype == tf.uint8 and out.shape == shape


@pytest.mark.parametrize("channels", [1, 3])
def test_batch_equals_per_image(channels):
    images = random_image((3, 45, 70, channels))
    batched = clahe(images, 3.0, (4, 6)).numpy()
    for image, out in zip(images, batched):
        np.testing.assert_array_equal(out, clahe(image, 3.0, (4, 6)))
    if channels == 1:
        np.testing.assert_array_equal(batched[0, ..., 0], clahe(images[0, ..., 0], 3.0, (4, 6)))


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        clahe(tf.zeros([8, 8], tf.float32))
    with pytest.raises(ValueError):
        clahe(tf.zeros([8, 8, 2], tf.uint8))
    with pytest.raises(ValueError):
        clahe(tf.zeros([8, 8], tf.uint8), tile_grid_size=(0, 8))


def test_dynamic_shape_graph():
    grey = tf.function(lambda x: clahe(x, 2.0, (4, 6)),
                       input_signature=[tf.TensorSpec([None, None], tf.uint8)])
    colour = tf.function(lambda x: clahe(x, 2.0, (4, 6)),
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    assert grey.get_concrete_function().structured_outputs.shape.as_list() == [None, None]
    for seed, size in enumerate([(37, 61), (64, 48), (5, 3), (120, 33)]):
        image = random_image(size, seed)
        assert_parity(grey(image), cv2_clahe(image, 2.0, (4, 6)))
        rgb = random_image((2, *size, 3), seed)
        np.testing.assert_array_equal(colour(rgb), clahe(rgb, 2.0, (4, 6)))


def test_clip_limit_can_be_a_tensor():
    fn = tf.function(lambda x, c: clahe(x, c),
                     input_signature=[tf.TensorSpec([None, None], tf.uint8),
                                      tf.TensorSpec([], tf.float32)])
    image = random_image((37, 61))
    for clip_limit in (0.0, 1.0, 4.0):
        assert_parity(fn(image, clip_limit), cv2_clahe(image, clip_limit))


def test_dataset_map():
    images = [random_image((30, 50, 3), seed) for seed in range(4)]
    dataset = tf.data.Dataset.from_tensor_slices(np.stack(images)).map(
        lambda x: clahe(x, 2.0, (4, 4)), num_parallel_calls=2)
    for out, image in zip(dataset.as_numpy_iterator(), images):
        assert_parity(out, cv2_clahe_rgb(image, 2.0, (4, 4)))


def test_xla_static_shape():
    # XLA contracts multiply-adds into FMAs, so exact rounding ties may move by one level.
    fn = tf.function(lambda x: clahe(x, 2.0), jit_compile=True)
    for size in [(375, 1242), (37, 61), (5, 3)]:
        image = random_image(size)
        assert_parity(fn(tf.constant(image)), cv2_clahe(image), max_diff=1)
    rgb = random_image((2, 37, 61, 3))
    assert_parity(fn(tf.constant(rgb)), clahe(rgb, 2.0).numpy(), max_diff=1)


def test_saved_model_takes_any_size(tmp_path):
    module = tf.Module()
    module.equalize = tf.function(lambda x: clahe(x),
                                  input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    tf.saved_model.save(module, str(tmp_path))
    loaded = tf.saved_model.load(str(tmp_path))
    for size in [(37, 61, 3), (64, 80, 3)]:
        rgb = random_image(size)
        assert_parity(loaded.equalize(rgb), cv2_clahe_rgb(rgb))


@pytest.mark.parametrize("clip_limit", [0.01, 0.1, 0.3, 0.5, 1.0, 1.5, 2.0, 2.5, 2.7, 3.0, 4.0, 40.0, 300.0])
def test_bin_limit_equals_opencvs_double_arithmetic(clip_limit):
    # OpenCV: int(clipLimit * tileArea / 256) in double, at least 1. Every tile area of an
    # 8x8 grid on images up to 4K (480 x 270 pixels per tile) and well beyond.
    area = np.arange(1, 1 << 18, dtype=np.int64)
    expected = np.maximum((clip_limit * area.astype(np.float64) / 256).astype(np.int64), 1)
    limit = _bin_limit(clip_limit, tf.constant(area, tf.int32)).numpy()
    # A limit at or above the area clips nothing, so only that much of it has to agree.
    np.testing.assert_array_equal(np.minimum(limit, area), np.minimum(expected, area))
