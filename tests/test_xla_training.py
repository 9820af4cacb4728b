"""The GPU default path on CPU: tfseg's training compile (loss + streaming metrics) under XLA
and every mixed-precision policy, with the metrics checked against NumPy."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfseg.config import load_config
from tfseg.data.labels import VOID
from tfseg.losses import MaskedSparseCrossEntropy
from tfseg.metrics import batch_confusion_matrix, confusion_matrix, scores
from tfseg.models import build_model
from tfseg.training.loop import Trainer
from tfseg.training.schedules import make_optimizer

NUM_CLASSES = 3


def _data(count=8, size=(24, 40)):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (count, *size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, (count, *size)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.15] = VOID
    return images, labels


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_xla_train_step_logs_the_numpy_metrics(policy, tmp_path):
    """tfseg's train step, compiled with XLA, under each policy: it trains, and an epoch's
    streaming metrics equal NumPy's scores of the logits each step saw."""
    config = load_config("demo_unet", [f"run_dir={tmp_path}", "train.jit_compile=on"])
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model("unet", NUM_CLASSES, depth=2, base_filters=4)
        trainer = Trainer(model, make_optimizer(config.train, 2, 1, policy)[0], MaskedSparseCrossEntropy(), NUM_CLASSES,
                          tf.distribute.get_strategy(), jit_compile=True)
        images, labels = _data()
        before = [w.numpy().copy() for w in model.trainable_weights]
        # The reference logits, compiled the same way (bfloat16 roundings differ without XLA).
        forward = tf.function(lambda x: model(x, training=False), jit_compile=True)
        seen = []
        for batch in (slice(0, 4), slice(4, 8)):
            # Without batch norm or dropout the network computes the same in training and
            # inference: these are the logits the step's metrics count.
            seen.append(np.asarray(forward(images[batch]), np.float32).argmax(-1))
            assert np.isfinite(float(trainer.train_step((images[batch], labels[batch]))))
        assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
        expected = scores(confusion_matrix(labels, np.concatenate(seen), NUM_CLASSES))
        got = trainer.results()
        assert got["miou"] == pytest.approx(expected["miou"], abs=1e-6)
        assert got["pixel_accuracy"] == pytest.approx(expected["pixel_accuracy"], abs=1e-6)

        trainer.reset_metrics()
        seen = []
        for batch in (slice(0, 4), slice(4, 8)):
            trainer.eval_step((images[batch], labels[batch]))
            seen.append(np.asarray(forward(images[batch]), np.float32).argmax(-1))
        expected = scores(confusion_matrix(labels, np.concatenate(seen), NUM_CLASSES))
        assert trainer.results()["miou"] == pytest.approx(expected["miou"], abs=1e-6)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_batch_confusion_matrix_is_exact_beyond_float32_counts():
    # One image of 2**24 + 3 pixels of one class would stop at 2**24 in a float32 sum;
    # two images of 2**23 + 3 are counted exactly and summed in integers.
    size = 2**23 + 3
    labels = np.zeros((2, 1, size), np.uint8)
    logits = np.zeros((2, 1, size, 2), np.float32)
    logits[..., 0] = 1.0
    matrix = np.asarray(batch_confusion_matrix(labels, logits, 2))
    assert matrix.tolist() == [[2 * size, 0], [0, 0]]


def test_batch_confusion_matrix_ignores_void_and_unknown_labels():
    labels = np.array([[[0, 1, VOID, 7]]], np.uint8)
    logits = np.eye(2, dtype=np.float32)[[[[1, 1, 0, 0]]]]
    assert np.asarray(batch_confusion_matrix(labels, logits, 2)).tolist() == [[0, 1], [0, 1]]


def test_metrics_are_summed_across_replicas():
    """Under MirroredStrategy over two (logical CPU) devices each replica counts half of every
    batch; the reported scores must be those of the whole batches."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import json, keras, numpy as np
        from tfseg.metrics import confusion_matrix, scores
        from tfseg.training.loop import Trainer
        from tfseg.losses import MaskedSparseCrossEntropy
        from tfseg.models import build_model
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 1, (8, 24, 40, 3)).astype("float32")
        labels = rng.integers(0, 3, (8, 24, 40)).astype("uint8")
        labels[rng.random(labels.shape) < 0.15] = 255
        strategy = tf.distribute.MirroredStrategy()
        with strategy.scope():
            model = build_model("unet", 3, depth=2, base_filters=4)
            optimizer = keras.optimizers.Adam()
        trainer = Trainer(model, optimizer, MaskedSparseCrossEntropy(), 3, strategy, False)
        batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
        for batch in strategy.experimental_distribute_dataset(batches):
            trainer.eval_step(batch)
        got = trainer.results()
        expected = scores(confusion_matrix(labels, model.predict(images, batch_size=4, verbose=0).argmax(-1), 3))
        print(json.dumps([strategy.num_replicas_in_sync, got["miou"], expected["miou"],
                          got["pixel_accuracy"], expected["pixel_accuracy"]]))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    replicas, miou, expected_miou, accuracy, expected_accuracy = json.loads(result.stdout.strip().splitlines()[-1])
    assert replicas == 2
    assert miou == pytest.approx(expected_miou, abs=1e-6)
    assert accuracy == pytest.approx(expected_accuracy, abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_xla_steps_with_a_depth_head_log_the_numpy_depth_errors(policy, tmp_path):
    """Both heads in the XLA-compiled steps: the model trains, and the streaming depth
    errors equal NumPy's of the depths each evaluation step saw."""
    from tfseg.depth import DepthMetrics, make_depth_loss
    from tfseg.training.loop import HeadObjective

    config = load_config("demo_unet", [f"run_dir={tmp_path}", "train.jit_compile=on"])
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = build_model("unet", NUM_CLASSES, depth=2, base_filters=4, depth_head=True)
        trainer = Trainer(model, make_optimizer(config.train, 2, 1, policy)[0], MaskedSparseCrossEntropy(),
                          NUM_CLASSES, tf.distribute.get_strategy(), jit_compile=True,
                          heads={"depth": HeadObjective(make_depth_loss({"l1": 1.0, "ssim": 1.0}), DepthMetrics)})
        images, labels = _data()
        depth = np.random.default_rng(1).uniform(1, 9, labels.shape).astype(np.float32)
        depth[labels == VOID] = 0.0
        before = [w.numpy().copy() for w in model.trainable_weights]
        for batch in (slice(0, 4), slice(4, 8)):
            assert np.isfinite(float(trainer.train_step((images[batch], labels[batch], {"depth": depth[batch]}))))
        assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))
        assert np.isfinite(trainer.results()["depth_rmse"])

        trainer.reset_metrics()
        forward = tf.function(lambda x: model(x, training=False)["depth"], jit_compile=True)
        seen = []
        for batch in (slice(0, 4), slice(4, 8)):
            trainer.eval_step((images[batch], labels[batch], {"depth": depth[batch]}))
            seen.append(np.asarray(forward(images[batch]), np.float64)[..., 0])
        predicted, valid = np.concatenate(seen), depth > 0
        expected = np.sqrt(np.mean((predicted[valid] - depth[valid]) ** 2))
        assert trainer.results()["depth_rmse"] == pytest.approx(expected, rel=1e-4)
    finally:
        keras.mixed_precision.set_global_policy("float32")
