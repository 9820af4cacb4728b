import keras
import numpy as np
import pytest

from tfseg.data.labels import VOID
from tfseg.losses import MaskedSparseCrossEntropy
from tfseg.metrics import MeanIoU, PixelAccuracy, confusion_matrix, scores


def reference_scores(labels, predictions, num_classes):
    """IoU by explicit set counting, class by class: written differently on purpose."""
    labels, predictions = labels.ravel(), predictions.ravel()
    keep = labels != VOID
    labels, predictions = labels[keep], predictions[keep]
    ious = []
    for c in range(num_classes):
        inter = np.sum((labels == c) & (predictions == c))
        union = np.sum((labels == c) | (predictions == c))
        if union:
            ious.append(inter / union)
    return np.mean(ious), np.mean(labels == predictions)


@pytest.fixture
def random_case():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(3, 17, 23)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.2] = VOID
    logits = rng.normal(size=(3, 17, 23, 4)).astype(np.float32)
    return labels, logits


def test_numpy_scores_match_reference(random_case):
    labels, logits = random_case
    predictions = logits.argmax(-1)
    result = scores(confusion_matrix(labels, predictions, 4))
    miou, accuracy = reference_scores(labels, predictions, 4)
    assert result["miou"] == pytest.approx(miou)
    assert result["pixel_accuracy"] == pytest.approx(accuracy)
    assert result["valid_pixels"] == int(np.sum(labels != VOID))


def test_absent_class_is_left_out_of_the_mean():
    labels = np.array([[0, 0, 1, 1]])
    result = scores(confusion_matrix(labels, labels, 3))
    assert result["iou_per_class"] == [1.0, 1.0, None]
    assert result["miou"] == 1.0


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match=r"\[7\] are outside 0..3"):
        confusion_matrix(np.array([7, 255, 1]), np.array([0, 0, 1]), 4)


def test_streaming_metrics_match_numpy(random_case):
    labels, logits = random_case
    miou, accuracy = MeanIoU(4), PixelAccuracy(4)
    for i in range(3):  # accumulated over several batches
        miou.update_state(labels[i:i + 1], logits[i:i + 1])
        accuracy.update_state(labels[i:i + 1], logits[i:i + 1])
    expected = scores(confusion_matrix(labels, logits.argmax(-1), 4))
    assert float(miou.result()) == pytest.approx(expected["miou"], rel=1e-6)
    assert float(accuracy.result()) == pytest.approx(expected["pixel_accuracy"], rel=1e-6)
    miou.reset_state()
    assert float(miou.result()) == 0.0


def test_loss_ignores_void_and_averages_valid_pixels(random_case):
    labels, logits = random_case
    loss = float(MaskedSparseCrossEntropy()(labels, logits))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    valid = labels != VOID
    picked = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None].astype(int), -1)[..., 0]
    assert loss == pytest.approx(-picked[valid].mean(), rel=1e-5)
    # Whatever the network says at void pixels changes nothing.
    scrambled = logits.copy()
    scrambled[~valid] = 100 * np.random.default_rng(1).normal(size=scrambled[~valid].shape)
    assert float(MaskedSparseCrossEntropy()(labels, scrambled)) == pytest.approx(loss, rel=1e-6)


def test_loss_of_all_void_batch_is_zero():
    labels = np.full((1, 4, 4), VOID, np.uint8)
    assert float(MaskedSparseCrossEntropy()(labels, np.zeros((1, 4, 4, 3), np.float32))) == 0.0


def test_loss_and_metrics_serialize():
    for obj in (MaskedSparseCrossEntropy(), MeanIoU(5), PixelAccuracy(5)):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert clone.get_config() == obj.get_config()


def test_streaming_max_f_is_the_devkits_max_f():
    """MaxF over batches equals the devkit's sweep (RoadCurve, NumPy) on the quantised
    probabilities, void pixels left out."""
    from tfseg.metrics import MaxF, RoadCurve
    from tfseg.predictions import quantize_probability

    rng = np.random.default_rng(1)
    metric, curve = MaxF(), RoadCurve()
    for _ in range(3):
        labels = rng.choice(np.array([0, 1, VOID], np.uint8), size=(2, 19, 31), p=[0.5, 0.4, 0.1])
        logits = rng.normal(size=(2, 19, 31, 2)).astype(np.float32)
        logits[..., 1] += 1.5 * (labels == 1)
        metric.update_state(labels, logits)
        road = np.exp(logits[..., 1]) / np.exp(logits).sum(-1)
        for label, probability in zip(labels, road):
            curve.add(label, quantize_probability(probability))
    expected = curve.scores()["max_f"]
    assert 0.6 < expected < 0.95
    assert float(metric.result()) == pytest.approx(expected, abs=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0
