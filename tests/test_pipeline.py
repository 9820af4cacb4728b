import numpy as np
import pytest

from tfseg.data.augment import random_horizontal_flip
from tfseg.data.pipeline import build_dataset
from tfseg.config import PreprocessConfig
from tfseg.data.preprocess import normalize, preprocess
from tfseg.data.sources import make_source
from tfseg.data.synthetic import generate_example

from data_fixtures import KITTI_SAMPLE, needs_samples


def test_batches_have_the_promised_shapes_and_dtypes(tiny_config):
    source = make_source(tiny_config.data)
    images, labels = next(iter(build_dataset(source, "train", tiny_config.data, 4, training=True)))
    assert images.shape == (4, 32, 32, 3) and images.dtype.name == "float32"
    assert labels.shape == (4, 32, 32) and labels.dtype.name == "uint8"
    assert 0.0 <= float(np.min(images)) and float(np.max(images)) <= 1.0


def test_evaluation_split_is_one_ordered_pass(tiny_config):
    source = make_source(tiny_config.data)
    batches = list(build_dataset(source, "val", tiny_config.data, 3, training=False))
    assert [int(b[1].shape[0]) for b in batches] == [3, 3, 2]
    first_image, first_label = generate_example(3, "val", 0, 32, 32)
    np.testing.assert_array_equal(batches[0][1][0], first_label)
    np.testing.assert_allclose(batches[0][0][0], preprocess(first_image, PreprocessConfig()).numpy())


def test_training_stream_is_reproducible_for_a_seed(tiny_config):
    source = make_source(tiny_config.data)

    def first_batches(seed):
        ds = build_dataset(source, "train", tiny_config.data, 4, training=True, seed=seed)
        return [labels.numpy() for _, labels in ds.take(5)]

    a, b, c = first_batches(1), first_batches(1), first_batches(2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_flip_moves_image_and_mask_together():
    # A label computed from the image's own pixels must still match after the transform.
    image = np.random.default_rng(0).integers(0, 256, (9, 13, 3)).astype(np.float32)
    label = (image[..., 0] > 127).astype(np.uint8)
    outcomes = set()
    for seed in range(16):
        flipped_image, flipped_label = random_horizontal_flip(image, label, np.array([seed, 0]))
        flipped_image, flipped_label = np.asarray(flipped_image), np.asarray(flipped_label)
        np.testing.assert_array_equal(flipped_label, (flipped_image[..., 0] > 127).astype(np.uint8))
        assert flipped_label.dtype == np.uint8
        outcomes.add(np.array_equal(flipped_image, image[:, ::-1]))
    assert outcomes == {True, False}  # both branches happen


def test_imagenet_caffe_normalization_is_bgr_minus_mean():
    image = np.array([[[10, 20, 30]]], np.uint8)
    np.testing.assert_allclose(normalize(image, "imagenet_caffe").numpy()[0, 0],
                               [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


def _tiny_network(channels_out: int = 2):
    import keras

    inputs = keras.Input((None, None, 3))
    return keras.Model(inputs, keras.layers.Conv2D(channels_out, 1, dtype="float32")(inputs))


@needs_samples
@pytest.mark.parametrize("clahe_backend", ["tensorflow", "opencv"])
def test_saved_model_feeds_the_network_what_the_pipeline_does(tmp_path, clahe_backend):
    """No train/serve drift, with a KITTI preset's real geometry: resize, then CLAHE on the
    resized image, then caffe normalisation. The SavedModel's own `network_input` endpoint
    returns the very tensor the evaluation pipeline builds for the same image."""
    import tensorflow as tf

    from tfseg.config import load_config
    from tfseg.serving.export import export_saved_model

    config = load_config("kitti_unet_clahe", [
        f"data.data_dir={KITTI_SAMPLE}", "data.resize=[96, 320]",
        f"data.preprocess={{normalization: imagenet_caffe, clahe: true, clahe_backend: {clahe_backend}}}"])
    source = make_source(config.data)
    pipeline = build_dataset(source, "val", config.data, 1, training=False, stride=16)
    path = export_saved_model(_tiny_network(), tmp_path / "sm", data_config=config.data, stride=16,
                              class_names=["a", "b"], palette=[[0, 0, 0]] * 2)
    loaded = tf.saved_model.load(str(path))
    for (image, _), (fed, _) in zip(source.dataset("val").as_numpy_iterator(), pipeline.as_numpy_iterator()):
        assert image.shape[:2] != (96, 320)  # a real KITTI size, resized inside the model
        served = loaded.network_input(image[None]).numpy()
        assert served.shape == fed.shape == (1, 96, 320, 3)
        np.testing.assert_array_equal(served, fed)
    # CLAHE really ran: the plain resize differs.
    from tfseg.data.preprocess import resize_image

    plain = normalize(resize_image(image[None], [96, 320]), "imagenet_caffe").numpy()
    assert np.abs(plain - served).max() > 5


@pytest.mark.parametrize("size", [(375, 1242), (37, 61), (370, 1226)])
def test_saved_model_answers_at_the_input_size(tmp_path_factory, size):
    import tensorflow as tf

    from tfseg.config import load_config
    from tfseg.serving.export import export_saved_model

    config = load_config("kitti_unet_clahe", ["data.resize=[64, 208]"])
    path = export_saved_model(_tiny_network(), tmp_path_factory.mktemp("sm") / "sm", data_config=config.data,
                              stride=16, class_names=["a", "b"], palette=[[0, 0, 0]] * 2)
    loaded = tf.saved_model.load(str(path))
    image = np.random.default_rng(0).integers(0, 256, (2, *size, 3), dtype=np.uint8)
    outputs = loaded.serve(image)
    assert outputs["classes"].shape == (2, *size)
    assert outputs["probabilities"].shape == (2, *size, 2)
    assert loaded.network_input(image).shape == (2, 64, 208, 3)
