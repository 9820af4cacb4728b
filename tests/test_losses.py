"""Every segmentation loss against a NumPy reference on random data with void pixels."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.config import LossConfig, load_config
from tfseg.losses import (CombinedLoss, DiceLoss, FocalLoss, JaccardLoss, LovaszSoftmaxLoss, MaskedSparseCrossEntropy,
                          TverskyLoss, make_loss)

VOID = 255


def data(num_classes=4, seed=0, shape=(2, 9, 11)):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape).astype(np.uint8)
    labels[rng.random(shape) < 0.2] = VOID
    logits = rng.normal(0, 2, shape + (num_classes,)).astype(np.float32)
    return labels, logits


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def reference_pixel(labels, logits, gamma=0.0, weights=None):
    valid = labels != VOID
    p = softmax(logits.astype(np.float64))[valid]
    y = labels[valid].astype(int)
    p_true = p[np.arange(len(y)), y]
    per_pixel = -np.log(p_true) * (1 - p_true) ** gamma
    w = np.ones(len(y)) if weights is None else np.asarray(weights, np.float64)[y]
    return (per_pixel * w).sum() / w.sum()


def reference_region(labels, logits, kind, classes="all", smooth=1.0, alpha=0.3, beta=0.7, gamma=1.0):
    valid = labels != VOID
    p = softmax(logits.astype(np.float64))[valid]
    y = np.eye(logits.shape[-1])[labels[valid].astype(int)]
    start = 1 if classes == "foreground" else 0
    scores = []
    for c in range(start, logits.shape[-1]):
        tp, fp, fn = (p[:, c] * y[:, c]).sum(), (p[:, c] * (1 - y[:, c])).sum(), ((1 - p[:, c]) * y[:, c]).sum()
        if kind == "dice":
            scores.append(1 - (2 * tp + smooth) / (2 * tp + fp + fn + smooth))
        elif kind == "jaccard":
            scores.append(1 - (tp + smooth) / (tp + fp + fn + smooth))
        else:
            scores.append((1 - (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)) ** gamma)
    return float(np.mean(scores))


def reference_lovasz(labels, logits, classes="all"):
    """The Lovasz extension from its definition: sum over k of the k-th largest error times
    how much the set function ``1 - IoU`` grows when that pixel joins the set of errors
    (the IoU of the truth with the truth minus the wrong pixels, as sets)."""
    valid = labels != VOID
    p = softmax(logits.astype(np.float64))[valid]
    y = np.eye(logits.shape[-1])[labels[valid].astype(int)]
    losses = []
    for c in range(1 if classes == "foreground" else 0, logits.shape[-1]):
        truth = y[:, c] > 0
        if not truth.any():
            continue
        errors = np.abs(y[:, c] - p[:, c])

        def iou_loss(wrong):  # the prediction that gets exactly the pixels in `wrong` wrong
            predicted = truth ^ wrong
            return 1 - (truth & predicted).sum() / (truth | predicted).sum()

        wrong, before, total = np.zeros(len(errors), bool), 0.0, 0.0
        for index in np.argsort(-errors, kind="stable"):
            wrong[index] = True
            after = iou_loss(wrong)
            total += errors[index] * (after - before)
            before = after
        losses.append(total)
    return float(np.mean(losses))


@pytest.mark.parametrize("seed", [0, 1])
def test_pixel_losses(seed):
    labels, logits = data(seed=seed)
    weights = [0.5, 2.0, 1.0, 3.0]
    assert float(MaskedSparseCrossEntropy()(labels, logits)) == pytest.approx(reference_pixel(labels, logits), rel=1e-5)
    assert float(MaskedSparseCrossEntropy(class_weights=weights)(labels, logits)) == pytest.approx(
        reference_pixel(labels, logits, weights=weights), rel=1e-5)
    assert float(FocalLoss(2.0)(labels, logits)) == pytest.approx(reference_pixel(labels, logits, 2.0), rel=1e-5)
    assert float(FocalLoss(0.5, class_weights=weights)(labels, logits)) == pytest.approx(
        reference_pixel(labels, logits, 0.5, weights), rel=1e-5)


@pytest.mark.parametrize("classes", ["all", "foreground"])
@pytest.mark.parametrize("num_classes", [2, 5])
def test_region_losses(classes, num_classes):
    labels, logits = data(num_classes, seed=num_classes)
    assert float(DiceLoss(classes)(labels, logits)) == pytest.approx(
        reference_region(labels, logits, "dice", classes), rel=1e-5)
    assert float(JaccardLoss(classes, smooth=0.1)(labels, logits)) == pytest.approx(
        reference_region(labels, logits, "jaccard", classes, smooth=0.1), rel=1e-5)
    assert float(TverskyLoss(0.2, 0.8, 1.0, classes)(labels, logits)) == pytest.approx(
        reference_region(labels, logits, "tversky", classes, alpha=0.2, beta=0.8), rel=1e-5)
    assert float(TverskyLoss(0.3, 0.7, 0.75, classes)(labels, logits)) == pytest.approx(
        reference_region(labels, logits, "tversky", classes, gamma=0.75), rel=1e-5)


@pytest.mark.parametrize("classes", ["all", "foreground"])
@pytest.mark.parametrize("num_classes", [2, 5])
def test_lovasz_softmax_against_its_definition(classes, num_classes):
    labels, logits = data(num_classes, seed=num_classes, shape=(2, 7, 9))
    if num_classes > 2:
        labels[labels == num_classes - 1] = 0  # a class absent from the batch does not count
    assert float(LovaszSoftmaxLoss(classes)(labels, logits)) == pytest.approx(
        reference_lovasz(labels, logits, classes), rel=1e-5)


def test_lovasz_softmax_is_one_minus_iou_for_hard_predictions():
    labels, logits = data(2, seed=3)
    predicted = np.random.default_rng(4).integers(0, 2, labels.shape)
    hard = np.where(predicted[..., None] == np.arange(2), 30.0, -30.0).astype(np.float32)
    valid = labels != VOID
    truth, guess = labels[valid] == 1, predicted[valid] == 1
    iou = (truth & guess).sum() / (truth | guess).sum()
    assert float(LovaszSoftmaxLoss("foreground")(labels, hard)) == pytest.approx(1 - iou, abs=1e-6)


def test_two_class_cross_entropy_is_the_binary_cross_entropy_of_class_1():
    labels, logits = data(2)
    valid = labels != VOID
    p1 = softmax(logits.astype(np.float64))[..., 1][valid]
    y = labels[valid]
    bce = -(y * np.log(p1) + (1 - y) * np.log(1 - p1)).mean()
    assert float(MaskedSparseCrossEntropy()(labels, logits)) == pytest.approx(bce, rel=1e-5)


def test_void_pixels_do_not_count():
    labels, logits = data()
    other = logits.copy()
    other[labels == VOID] = 100.0  # anything at void pixels
    for loss in (MaskedSparseCrossEntropy(), FocalLoss(), DiceLoss(), JaccardLoss(), TverskyLoss(), LovaszSoftmaxLoss()):
        assert float(loss(labels, logits)) == pytest.approx(float(loss(labels, other)), rel=1e-6)


def test_config_builds_weighted_sums():
    labels, logits = data(2)
    config = LossConfig(terms={"cross_entropy": 1.0, "dice": 0.5}, region_classes="foreground")
    loss = make_loss(config, 2)
    assert isinstance(loss, CombinedLoss)
    expected = reference_pixel(labels, logits) + 0.5 * reference_region(labels, logits, "dice", "foreground")
    assert float(loss(labels, logits)) == pytest.approx(expected, rel=1e-5)
    single = make_loss(LossConfig(terms={"focal_tversky": 1.0}), 2)
    assert isinstance(single, TverskyLoss) and single.gamma == 0.75


@pytest.mark.parametrize("terms", [{"cross_entropy": 1.0, "tversky": 1.0}, {"focal": 1.0}, {"jaccard": 2.0},
                                   {"cross_entropy": 1.0, "lovasz": 0.5}])
def test_keras_round_trip_and_xla(tmp_path, terms):
    labels, logits = data(3)
    loss = make_loss(LossConfig(terms=terms), 3, class_weights=[1.0, 2.0, 0.5])
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    model.compile(optimizer="adam", loss=loss)
    model.optimizer.build(model.trainable_variables)
    model.save(tmp_path / "m.keras")
    from tfseg.runs import load_trained_model

    restored = load_trained_model(tmp_path / "m.keras").loss
    assert float(restored(labels, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-6)
    compiled = tf.function(lambda y, p: loss(y, p), jit_compile=True)
    assert float(compiled(labels, logits)) == pytest.approx(float(loss(labels, logits)), rel=1e-5)


def test_training_with_median_frequency_weights_and_a_combined_loss(tmp_path):
    from tfseg.data.sources import make_source
    from tfseg.data.stats import stats
    from tfseg.training.run import train

    tiny = ["data.synthetic={height: 32, width: 32, num_train: 8, num_val: 4, num_test: 4, seed: 3}",
            "model.options={depth: 2, base_filters: 4}", "train.epochs=1", "train.batch_size=4",
            "loss.terms={cross_entropy: 1.0, dice: 1.0}", "loss.class_weights=median_frequency",
            f"run_dir={tmp_path / 'run'}"]
    config = load_config("demo_unet", tiny)
    train(config, verbose=0)
    saved = json.loads((tmp_path / "run" / "class_weights.json").read_text())
    expected = stats(make_source(config.data), ["train"])["class_weights"]
    assert saved["method"] == "median_frequency"
    np.testing.assert_allclose(saved["class_weights"], expected)


def test_class_weight_list_must_match_the_classes(tmp_path):
    from tfseg.errors import UserError
    from tfseg.training.run import train

    config = load_config("demo_unet", ["loss.class_weights=[1.0, 2.0]", f"run_dir={tmp_path / 'run'}",
                                       "data.synthetic={num_train: 4, num_val: 2, num_test: 2}"])
    with pytest.raises(UserError, match="2 weights for 5 classes"):
        train(config, verbose=0)
