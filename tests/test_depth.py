"""Depth losses and metrics against NumPy, with pixels that have no depth."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.depth import DepthMetrics, MaskedL1, MaskedSSIM, depth_error_sums, depth_scores


def depth_batch(seed=0, shape=(2, 12, 16)):
    """Plausible depths (1..10 m) with holes: zeros, negatives and NaN mark no depth."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(1.0, 10.0, shape).astype(np.float32)
    holes = rng.random(shape)
    truth[holes < 0.1] = 0.0
    truth[(holes >= 0.1) & (holes < 0.15)] = -1.0
    truth[(holes >= 0.15) & (holes < 0.2)] = np.nan
    prediction = (np.nan_to_num(truth, nan=5.0).clip(0.5) * rng.uniform(0.7, 1.3, shape)).astype(np.float32)
    return truth, prediction


def numpy_ssim_loss(truth, prediction):
    valid = np.isfinite(truth) & (truth > 0)
    truth = np.where(valid, truth, prediction).astype(np.float64)
    prediction = prediction.astype(np.float64)
    scale = np.where(valid, truth, 0).max(axis=(1, 2), keepdims=True)
    x, y = prediction / scale, truth / scale

    def mean3(a):
        padded = np.pad(a, [(0, 0), (1, 1), (1, 1)], mode="reflect")
        height, width = a.shape[1:]
        return sum(padded[:, i:i + height, j:j + width] for i in range(3) for j in range(3)) / 9.0

    mx, my = mean3(x), mean3(y)
    vx, vy, cxy = mean3(x * x) - mx**2, mean3(y * y) - my**2, mean3(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return np.clip((1 - ssim) / 2, 0, 1)[valid].mean()


@pytest.mark.parametrize("seed", range(3))
def test_masked_l1_against_numpy(seed):
    truth, prediction = depth_batch(seed)
    valid = np.isfinite(truth) & (truth > 0)
    expected = np.abs(prediction - truth)[valid].mean()
    assert float(MaskedL1()(truth, prediction)) == pytest.approx(expected, rel=1e-5)
    assert float(MaskedL1()(truth[..., None], prediction[..., None])) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("seed", range(3))
def test_masked_ssim_against_numpy(seed):
    truth, prediction = depth_batch(seed)
    assert float(MaskedSSIM()(truth, prediction)) == pytest.approx(numpy_ssim_loss(truth, prediction), rel=1e-4)
    assert float(MaskedSSIM()(np.nan_to_num(truth).clip(1), np.nan_to_num(truth).clip(1))) == pytest.approx(0, abs=1e-6)


def test_no_valid_pixel_is_a_zero_loss_with_finite_gradients():
    truth = np.zeros((1, 8, 8), np.float32)
    prediction = tf.Variable(np.ones((1, 8, 8), np.float32))
    for loss in (MaskedL1(), MaskedSSIM()):
        with tf.GradientTape() as tape:
            value = loss(truth, prediction)
        assert float(value) == 0.0
        assert np.isfinite(tape.gradient(value, prediction).numpy()).all()


def test_losses_compile_under_xla():
    truth, prediction = depth_batch(4)
    for loss in (MaskedL1(), MaskedSSIM()):
        compiled = tf.function(lambda t, p, loss=loss: loss(t, p), jit_compile=True)
        assert float(compiled(truth, prediction)) == pytest.approx(float(loss(truth, prediction)), rel=1e-5)


def test_depth_metrics_stream_over_batches_like_numpy():
    batches = [depth_batch(seed) for seed in range(3)]
    metric = DepthMetrics()
    for truth, prediction in batches:
        metric.update_state(truth, prediction)
    truth = np.concatenate([t for t, _ in batches]).ravel()
    prediction = np.concatenate([p for _, p in batches]).ravel()
    valid = np.isfinite(truth) & (truth > 0)
    t, p = truth[valid].astype(np.float64), prediction[valid].astype(np.float64)
    result = {key: float(value) for key, value in metric.result().items()}
    assert result["depth_rmse"] == pytest.approx(np.sqrt(np.mean((p - t) ** 2)), rel=1e-6)
    assert result["depth_abs_rel"] == pytest.approx(np.mean(np.abs(p - t) / t), rel=1e-6)
    assert result["depth_delta1"] == pytest.approx(np.mean(np.maximum(p / t, t / p) < 1.25), rel=1e-6)
    # The NumPy form evaluation uses, image by image, gives the same scores.
    sums = sum(depth_error_sums(truth, prediction) for truth, prediction in batches)
    for key, value in depth_scores(sums).items():
        assert result[key] == pytest.approx(value, rel=1e-6), key
    assert depth_scores(np.zeros(4)) == {}
    metric.reset_state()
    assert all(np.isnan(float(v)) for v in metric.result().values())


def test_losses_survive_a_keras_round_trip():
    for loss in (MaskedL1(), MaskedSSIM()):
        copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        truth, prediction = depth_batch(5)
        assert float(copy(truth, prediction)) == pytest.approx(float(loss(truth, prediction)))
