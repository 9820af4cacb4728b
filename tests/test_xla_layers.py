"""tfseg's Conv2DTranspose (sub-pixel) and MaxPooling2D (reshape + max): the same operators
as Keras' layers, with the same weights, computed in forms XLA lowers to fast kernels."""

import importlib.util
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tfseg.models import build_model
from tfseg.models.custom_layers import Conv2DTranspose, MaxPooling2D

CASES = [  # (kernel, strides, padding): the U-Net's, FCN's learned 2x and final 8x, the KITTI
    # FCN-8s' 8x8 stride 2, others
    (2, 2, "same"), (2, 2, "valid"), (4, 2, "same"), (4, 2, "valid"), (8, 2, "same"), (16, 8, "same"),
    (16, 8, "valid"), (6, 3, "same"), ((4, 2), (2, 1), "same"), (3, 2, "same"),
]


def _pair(kernel, strides, padding, input_shape, seed=0, **kwargs):
    reference = keras.layers.Conv2DTranspose(5, kernel, strides=strides, padding=padding, **kwargs)
    fast = Conv2DTranspose(5, kernel, strides=strides, padding=padding, **kwargs)
    reference.build(input_shape)
    fast.build(input_shape)
    rng = np.random.default_rng(seed)
    reference.set_weights([rng.normal(size=w.shape).astype("float32") for w in reference.get_weights()])
    fast.set_weights(reference.get_weights())
    return reference, fast


@pytest.mark.parametrize("kernel, strides, padding", CASES)
@pytest.mark.parametrize("size", [(5, 7), (1, 1), (4, 6)])
def test_equals_conv2d_transpose(kernel, strides, padding, size):
    x = np.random.default_rng(1).normal(size=(2, *size, 3)).astype("float32")
    reference, fast = _pair(kernel, strides, padding, x.shape)
    assert [w.shape for w in fast.weights] == [w.shape for w in reference.weights]
    expected = np.asarray(reference(x))
    np.testing.assert_allclose(np.asarray(fast(x)), expected, rtol=1e-5, atol=1e-5)


def test_other_configurations_fall_back_to_the_parent():
    x = np.random.default_rng(2).normal(size=(1, 5, 6, 3)).astype("float32")
    reference, fast = _pair(3, 2, "same", x.shape, output_padding=1)
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(reference(x)), rtol=1e-5, atol=1e-5)


def test_gradients_equal_conv2d_transpose():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(3).normal(size=(2, 6, 5, 3)).astype("float32"))
    reference, fast = _pair(4, 2, "same", x.shape)
    grads = []
    for layer in (reference, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.sin(layer(x)))
        grads.append(tape.gradient(loss, [x, *layer.trainable_weights]))
    for a, b in zip(*grads):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)


def test_checkpoints_of_plain_conv2d_transpose_models_load(tmp_path, monkeypatch):
    """A U-Net saved when its up-sampling was keras.layers.Conv2DTranspose: its weights
    load into today's model, which then computes the same."""
    unet_module = importlib.import_module("tfseg.models.unet")  # the package's `unet` is the function
    options = dict(depth=2, base_filters=4)
    monkeypatch.setattr(unet_module, "Conv2DTranspose", keras.layers.Conv2DTranspose)
    old = build_model("unet", 3, **options)
    assert any(type(layer) is keras.layers.Conv2DTranspose for layer in old.layers)
    rng = np.random.default_rng(4)
    old.set_weights([rng.normal(size=w.shape).astype("float32") * 0.3 for w in old.get_weights()])
    old.save(tmp_path / "old.keras")
    monkeypatch.undo()

    new = build_model("unet", 3, **options)
    assert any(type(layer) is Conv2DTranspose for layer in new.layers)
    new.load_weights(tmp_path / "old.keras")
    x = rng.uniform(size=(2, 16, 24, 3)).astype("float32")
    np.testing.assert_allclose(new.predict(x, verbose=0), old.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    reloaded = keras.saving.load_model(tmp_path / "old.keras")  # the old file as it is, too
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), old.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_xla_compiles_it():
    import tensorflow as tf

    x = np.random.default_rng(5).normal(size=(2, 5, 7, 3)).astype("float32")
    reference, fast = _pair(16, 8, "same", x.shape)
    compiled = tf.function(fast, jit_compile=True)
    np.testing.assert_allclose(compiled(x).numpy(), np.asarray(reference(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_equals_conv2d_transpose_on_jax():
    code = (
        "import numpy as np, keras\n"
        "from tfseg.models.custom_layers import Conv2DTranspose\n"
        f"for kernel, strides, padding in {CASES!r}:\n"
        "    x = np.random.default_rng(0).normal(size=(2, 5, 7, 3)).astype('float32')\n"
        "    a = keras.layers.Conv2DTranspose(4, kernel, strides=strides, padding=padding)\n"
        "    b = Conv2DTranspose(4, kernel, strides=strides, padding=padding)\n"
        "    a.build(x.shape); b.build(x.shape)\n"
        "    a.set_weights([np.random.default_rng(1).normal(size=w.shape).astype('float32') for w in a.get_weights()])\n"
        "    b.set_weights(a.get_weights())\n"
        "    np.testing.assert_allclose(np.asarray(b(x)), np.asarray(a(x)), rtol=1e-4, atol=1e-4)\n"
        "from tfseg.models.custom_layers import MaxPooling2D\n"
        "for padding in ('valid', 'same'):\n"
        "    x = np.random.default_rng(2).normal(size=(2, 9, 11, 3)).astype('float32')\n"
        "    np.testing.assert_array_equal(np.asarray(MaxPooling2D(2, padding=padding)(x)),\n"
        "                                  np.asarray(keras.layers.MaxPooling2D(2, padding=padding)(x)))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("size", [(8, 12), (9, 11), (3, 2)])
def test_max_pooling_equals_keras(padding, size):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(6).normal(size=(2, *size, 3)).astype("float32"))
    reference = keras.layers.MaxPooling2D(2, padding=padding)
    fast = MaxPooling2D(2, padding=padding)
    grads = []
    for layer in (reference, fast):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.sin(y))
        grads.append((y.numpy(), tape.gradient(loss, x).numpy()))
    (y_ref, g_ref), (y_fast, g_fast) = grads
    assert y_fast.shape == y_ref.shape
    np.testing.assert_array_equal(y_fast, y_ref)
    np.testing.assert_allclose(g_fast, g_ref, rtol=1e-6, atol=1e-6)  # no ties in random data
    compiled = tf.function(fast, jit_compile=True)
    np.testing.assert_array_equal(compiled(x).numpy(), y_ref)


def test_other_pools_fall_back_to_the_parent():
    x = np.random.default_rng(7).normal(size=(1, 9, 9, 2)).astype("float32")
    np.testing.assert_array_equal(np.asarray(MaxPooling2D(3, strides=2)(x)),
                                  np.asarray(keras.layers.MaxPooling2D(3, strides=2)(x)))
