"""Inputs of several RGB images stacked along the channels (a background and a composite:
6 channels), end to end: augmentation, preprocessing, training, export and predict."""

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tfseg.cli import main
from tfseg.config import AugmentConfig, PreprocessConfig, load_config
from tfseg.data import augment as aug
from tfseg.data.fgbg import generate_scene
from tfseg.data.preprocess import equalize, normalize
from tfseg.errors import UserError
from tfseg.predict import predict_folder
from tfseg.runs import load_run
from tfseg.serving.client import SegmentationModel
from tfseg.training.run import train

# Trains through train.mixed_precision=auto: CI runs these under float32 and mixed_bfloat16.
pytestmark = pytest.mark.auto_precision

EVERY_AUGMENTATION = AugmentConfig(
    horizontal_flip=True, scale_range=[0.7, 1.4], crop_size=[40, 56], rotation_degrees=20,
    brightness=0.2, contrast=0.3, saturation=0.3, hue=0.05, clahe_probability=0.5)
PAIR_DATA = ["data.source=fgbg", "data.fgbg={height: 32, width: 48, foreground_size: 16, num_train: 16, "
             "num_val: 4, num_test: 4, inputs: pair}"]


def two_images(seed=0, height=48, width=64):
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    first = cv2.GaussianBlur(first, (7, 7), 2)  # some structure for CLAHE and contrast to act on
    second = 255 - first[:, ::-1]
    label = (first[..., 0] > 128).astype(np.uint8)
    return first, second, label


@pytest.mark.parametrize("seed", range(4))
def test_every_augmentation_moves_six_channels_as_it_moves_each_image(seed):
    """Each half of an augmented 6-channel input is its RGB image augmented alone with the
    same seed, and the label is the same: every channel stays aligned with the mask."""
    first, second, label = two_images(seed)
    key = tf.constant([seed, 11])
    stacked, stacked_label = aug.augment(tf.constant(np.concatenate([first, second], -1)), tf.constant(label),
                                         key, EVERY_AUGMENTATION)
    assert stacked.shape == (40, 56, 6)
    for half, image in ((slice(0, 3), first), (slice(3, 6), second)):
        alone, alone_label = aug.augment(tf.constant(image), tf.constant(label), key, EVERY_AUGMENTATION)
        np.testing.assert_allclose(stacked[..., half].numpy(), alone.numpy(), atol=1e-3)
        np.testing.assert_array_equal(stacked_label.numpy(), alone_label.numpy())


def test_preprocessing_treats_each_rgb_image_alone():
    first, second, _ = two_images(5)
    stacked = tf.constant(np.concatenate([first, second], -1))
    for normalization in ("unit", "imagenet_caffe", "imagenet_torch"):
        expected = np.concatenate([normalize(tf.constant(first), normalization),
                                   normalize(tf.constant(second), normalization)], -1)
        np.testing.assert_allclose(normalize(stacked, normalization).numpy(), expected, rtol=1e-6)
    config = PreprocessConfig(clahe=True)
    for backend in ("tensorflow", "opencv"):
        equalized = equalize(stacked, config, backend).numpy()
        for half, image in ((slice(0, 3), first), (slice(3, 6), second)):  # OpenCV, image by image
            y, cr, cb = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb))
            reference = cv2.cvtColor(cv2.merge([cv2.createCLAHE(2.0, (8, 8)).apply(y), cr, cb]),
                                     cv2.COLOR_YCrCb2RGB)
            np.testing.assert_array_equal(equalized[..., half], reference)


def test_the_pair_source_stacks_background_then_composite():
    from tfseg.data.sources import make_source

    source = make_source(load_config(None, PAIR_DATA).data)
    assert source.input_groups == ("background", "composite")
    image, mask = next(iter(source.dataset("val").as_numpy_iterator()))
    scene = generate_scene(0, "val", 0, height=32, width=48, foreground_size=16)
    assert image.shape == (32, 48, 6)
    np.testing.assert_array_equal(image[..., :3], scene.background)
    np.testing.assert_array_equal(image[..., 3:], scene.composite)
    np.testing.assert_array_equal(mask, scene.mask)


@pytest.fixture(scope="module")
def pair_export(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("pair") / "run"
    train(load_config("fgbg_unet", PAIR_DATA + [
        f"run_dir={run_dir}", "data.resize=[]", "train.stages=[]", "train.epochs=1", "train.batch_size=4",
        "model.options={depth: 2, base_filters: 4}", "data.preprocess.clahe=true"]), verbose=0)
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_the_run_and_its_export_take_six_channels(pair_export):
    run_dir = pair_export
    assert load_config(str(run_dir / "config.yaml")).model.options["input_channels"] == 6
    model = SegmentationModel(run_dir / "export")
    assert model.inputs == ["background", "composite"]
    assert "serve_bytes" not in model._loaded.signatures  # an encoded file is one RGB image
    # The SavedModel against the run's float32 network (whatever precision "auto" trained it
    # in) on the same preprocessed pixels.
    keras_model = load_run(run_dir).network()
    scenes = [generate_scene(0, "test", i, height=32, width=48, foreground_size=16) for i in range(3)]
    images = np.stack([np.concatenate([s.background, s.composite], -1) for s in scenes])
    served = model.predict(images)
    x = normalize(equalize(tf.constant(images), PreprocessConfig(clahe=True)), "unit")
    logits = keras_model(x, training=False).numpy()
    np.testing.assert_allclose(served["probabilities"], tf.nn.softmax(logits).numpy(), atol=1e-5)
    np.testing.assert_array_equal(served["classes"], logits.argmax(-1))


def test_evaluate_scores_a_pair_run_like_numpy(pair_export, tmp_path):
    import json

    assert main(["evaluate", "--run-dir", str(pair_export), "--split", "test", "--json", str(tmp_path / "m.json")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    model = SegmentationModel(pair_export / "export")
    scenes = [generate_scene(0, "test", i, height=32, width=48, foreground_size=16) for i in range(4)]
    predicted = model.predict(np.stack([np.concatenate([s.background, s.composite], -1) for s in scenes]))["classes"]
    truth = np.stack([s.mask for s in scenes])
    ious = [((predicted == c) & (truth == c)).sum() / max(((predicted == c) | (truth == c)).sum(), 1) for c in (0, 1)]
    assert report["miou"] == pytest.approx(np.mean(ious), abs=1e-6)


def test_predict_pairs_files_from_two_folders_by_name(pair_export, tmp_path, capsys):
    model = SegmentationModel(pair_export / "export")
    backgrounds, composites = tmp_path / "backgrounds", tmp_path / "composites"
    backgrounds.mkdir()
    composites.mkdir()
    scenes = {f"scene{i}": generate_scene(0, "test", i, height=32, width=48, foreground_size=16) for i in range(3)}
    for name, scene in scenes.items():
        Image.fromarray(scene.background).save(backgrounds / f"{name}.png")
        Image.fromarray(scene.composite).save(composites / f"{name}.png")
    Image.fromarray(scenes["scene0"].composite).save(composites / "lonely.png")  # no background
    Image.fromarray(scenes["scene0"].background).save(backgrounds / "alone.png")  # no composite
    Image.fromarray(scenes["scene0"].background[:16]).save(backgrounds / "short.png")
    Image.fromarray(scenes["scene0"].composite).save(composites / "short.png")

    code = main(["predict", "--model", str(pair_export / "export"), "-i", str(backgrounds), "-i", str(composites),
                 "-o", str(tmp_path / "out")])
    assert code == 1  # three files skipped, the others segmented
    err = capsys.readouterr().err
    assert f"skipped {composites / 'lonely.png'}: no image lonely.* in {backgrounds} to stack with it" in err
    assert f"skipped {backgrounds / 'alone.png'}: no image alone.* in {composites} to stack with it" in err
    assert f"skipped {composites / 'short.png'}: is 32x48 but its partner in {backgrounds} is 16x48" in err
    for name, scene in scenes.items():
        expected = model.predict(np.concatenate([scene.background, scene.composite], -1)[None])["classes"][0]
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "masks" / f"{name}.png")), expected)
        overlay = np.asarray(Image.open(tmp_path / "out" / "overlays" / f"{name}.png"))
        background = expected == 0  # class 0 stays clear: the composite itself
        np.testing.assert_array_equal(overlay[background], scene.composite[background])

    with pytest.raises(UserError, match=r"takes background \+ composite stacked: give one --input folder for each"):
        predict_folder(pair_export / "export", composites, tmp_path / "out2")
    with pytest.raises(UserError, match="must not be an input folder or inside one"):
        predict_folder(pair_export / "export", composites, backgrounds / "out", stacked_with=[backgrounds])
