"""The model registry: shapes at any size, mixed precision, saving, XLA, FCN specifics.

Registry-wide tests build every model small (``TINY`` options); the full 134M-parameter
FCN-8s is built once per session (``full_fcn8``) and only run at 224x224.
"""

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfseg.errors import UserError  # noqa: E402
from tfseg.losses import MaskedSparseCrossEntropy  # noqa: E402
from tfseg.metrics import MeanIoU, PixelAccuracy  # noqa: E402
from tfseg.models import MODELS, build_model, check_options, model_stride  # noqa: E402
from tfseg.models.cost import model_cost  # noqa: E402
from tfseg.models.custom_layers import BilinearUpsample2D, BilinearUpsampling  # noqa: E402
from tfseg.models.encoders import VGG16_CONV_LAYERS  # noqa: E402
from tfseg.models.fcn import fcn_vgg16  # noqa: E402

MODELS_DIR = Path(__file__).resolve().parents[1] / "tfseg" / "models"
NUM_CLASSES = 3
# Small versions of every registered model: the FCNs keep their architecture at 1/16 width.
TINY = {
    "unet": dict(depth=2, base_filters=4),
    "unet_vgg16": dict(decoder_filters=(8, 8, 8, 8, 8)),
    "unet_resnet50": dict(decoder_filters=(8, 8, 8, 8, 8)),
    "fcn32_vgg16": dict(width_multiplier=1 / 16),
    "fcn16_vgg16": dict(width_multiplier=1 / 16),
    "fcn8_vgg16": dict(width_multiplier=1 / 16),
    "fcn_baseline": dict(base_filters=4),
}
FCNS = ("fcn32_vgg16", "fcn16_vgg16", "fcn8_vgg16")


@pytest.fixture
def policy():
    """Sets a global dtype policy for one test and restores float32 afterwards."""
    def set_policy(name):
        keras.mixed_precision.set_global_policy(name)
    yield set_policy
    keras.mixed_precision.set_global_policy("float32")


def tiny(name, **extra):
    return build_model(name, NUM_CLASSES, **TINY[name], **extra)


def odd_size(name):
    """37x61 for models that take any size; an odd multiple of the stride otherwise."""
    stride = model_stride(name, **TINY[name])
    return (37, 61) if stride == 1 else (stride, 3 * stride)


def images(size, batch=1, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, *size, 3)).astype("float32")


def randomize(model, seed=0):
    """Random weights everywhere (FCN's zero-initialised scores would hide mistakes)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
        else:
            w.assign((rng.standard_normal(w.shape) * 0.1).astype(w.dtype))


def test_tiny_options_cover_the_registry():
    assert set(TINY) == set(MODELS)
    for name, options in TINY.items():
        check_options(name, options)


def test_models_import_no_tensorflow():
    for path in MODELS_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "tensorflow" for n in names), path.name


@pytest.mark.parametrize("name", sorted(MODELS))
def test_output_has_input_size(name):
    size = odd_size(name)
    model = tiny(name)
    logits = model(images(size), training=False)
    assert tuple(logits.shape) == (1, *size, NUM_CLASSES)
    assert logits.dtype == "float32"


@pytest.mark.parametrize("alignment", ["pad32", "pad100"])
@pytest.mark.parametrize("size", [(1, 1), (37, 61), (375, 1242)])
def test_fcn_takes_any_size(alignment, size):
    model = tiny("fcn8_vgg16", alignment=alignment)
    assert tuple(model(images(size), training=False).shape) == (1, *size, NUM_CLASSES)


@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_logits_are_float32_under_mixed_precision(name, dtype_policy, policy):
    policy(dtype_policy)
    model = tiny(name)
    logits = model(images(odd_size(name)), training=False)
    assert logits.dtype == "float32" and model.outputs[0].dtype == "float32"
    assert np.all(np.isfinite(logits))
    if name in ("fcn16_vgg16", "fcn8_vgg16"):
        assert model.get_layer("block1_conv1").compute_dtype == dtype_policy.split("_")[1]
        assert model.get_layer("scale_pool4").compute_dtype == "float32"
        assert model.get_layer("score_pool4").compute_dtype == "float32"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_keras_file_round_trip(name, tmp_path):
    model = tiny(name)
    randomize(model)
    x = images(odd_size(name), batch=2)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_xla_training_step(name):
    # keras.applications encoders are frozen: XLA compiles their backward pass slowly on
    # CPU (~40 s for ResNet50), and what needs checking here is tfseg's own layers.
    model = tiny(name, **({"freeze_encoder": True} if name in ("unet_vgg16", "unet_resnet50") else {}))
    # tfseg's own loss and streaming metrics compile into the same XLA step.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedSparseCrossEntropy(),
                  metrics=[MeanIoU(NUM_CLASSES), PixelAccuracy(NUM_CLASSES)], jit_compile=True)
    size = odd_size(name)
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, (2, *size))
    before = [w.numpy().copy() for w in model.trainable_weights]
    loss, miou, _ = model.train_on_batch(images(size, batch=2), labels)
    assert np.isfinite(loss) and 0.0 <= miou <= 1.0
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


def test_fcn_variants_and_options():
    fcn8 = tiny("fcn8_vgg16")
    names = {layer.name for layer in fcn8.layers}
    assert {"fc6", "fc7", "drop6", "drop7", "score_fr", "upscore2", "scale_pool4", "score_pool4",
            "fuse_pool4", "upscore_pool4", "scale_pool3", "score_pool3", "fuse_pool3",
            "upscore8", "logits"} <= names
    assert fcn8.get_layer("scale_pool4").scale == 0.01
    assert fcn8.get_layer("scale_pool3").scale == 0.0001
    assert fcn8.get_layer("drop6").rate == 0.5
    assert fcn8.get_layer("fc6").kernel_size == (7, 7)
    assert not fcn8.get_layer("upscore8").weights  # the final upsampling is fixed
    assert tiny("fcn8_vgg16", pool3_scale=0.001).get_layer("scale_pool3").scale == 0.001
    staged = {layer.name for layer in tiny("fcn8_vgg16", scale_skips=False).layers}
    assert "scale_pool4" not in staged and "scale_pool3" not in staged
    assert "score_pool4" in {layer.name for layer in tiny("fcn16_vgg16").layers}
    assert "score_pool4" not in {layer.name for layer in tiny("fcn32_vgg16").layers}

    kitti = tiny("fcn8_vgg16", decoder_channels=32, weight_decay=1e-3)
    assert kitti.get_layer("score_fr").filters == 32
    assert kitti.get_layer("upscore2").filters == 32
    assert kitti.get_layer("score").filters == NUM_CLASSES
    init = kitti.get_layer("score_pool3").kernel_initializer
    assert isinstance(init, keras.initializers.TruncatedNormal) and init.stddev == 0.01
    assert len(kitti.losses) == 6  # L2 on score_fr/_pool4/_pool3, score, the two 2x upsamplings
    with pytest.raises(UserError, match="alignment"):
        tiny("fcn8_vgg16", alignment="center")


def test_fcn8_kitti_decoder_layers():
    model = tiny("fcn8_vgg16", decoder="kitti", decoder_channels=24, pool3_scale=0.001,
                 weight_decay=1e-3)
    pool4, pool3 = (model.get_layer(name).output.shape[-1] for name in ("block4_pool", "block3_pool"))
    # (kernel, strides, input channels, output channels) of each learned decoder layer.
    expected = {"fc7_1x1": ((1, 1), (1, 1), 256, 24), "up_pool4": ((4, 4), (2, 2), 24, pool4),
                "up_pool3": ((8, 8), (2, 2), pool4, pool3),
                "upscore8": ((16, 16), (8, 8), pool3, NUM_CLASSES)}
    for name, (kernel, strides, channels_in, channels_out) in expected.items():
        layer = model.get_layer(name)
        assert (layer.kernel_size, layer.strides, layer.padding) == (kernel, strides, "same"), name
        assert layer.use_bias and layer.compute_dtype == "float32", name
        assert isinstance(layer.kernel_initializer, keras.initializers.TruncatedNormal), name
        assert layer.kernel_initializer.stddev == 0.01, name
        assert layer.input.shape[-1] == channels_in and layer.output.shape[-1] == channels_out, name
    assert model.get_layer("scale_pool4").scale == 0.01
    assert model.get_layer("scale_pool3").scale == 0.001
    # The skips are the pooled features themselves: no 1x1 scores, no fixed upsampling.
    names = {layer.name for layer in model.layers}
    assert not names & {"score_pool4", "score_pool3", "score_fr", "upscore2", "score"}
    assert len(model.losses) == 4  # L2 on the four decoder kernels
    with pytest.raises(UserError, match="pad32"):
        tiny("fcn8_vgg16", decoder="kitti", alignment="pad100")
    with pytest.raises(ValueError, match="FCN-8s"):
        fcn_vgg16(NUM_CLASSES, 16, decoder="kitti", width_multiplier=1 / 16)
    with pytest.raises(UserError, match="decoder must be"):
        tiny("fcn8_vgg16", decoder="bilinear")


def test_fcn8_kitti_decoder_equals_keras_layers_on_the_raw_skips():
    """The decoder recomputed with Keras' own layers from fc7, pool4 and pool3: 1x1 conv,
    4x4/2 transposed conv + 0.01 x pool4, 8x8/2 + 0.001 x pool3, 16x16/8, cropped."""
    model = tiny("fcn8_vgg16", decoder="kitti", decoder_channels=24, pool3_scale=0.001)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # random biases too, so that a dropped bias shows
        if layer.name in ("fc7_1x1", "up_pool4", "up_pool3", "upscore8"):
            layer.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in layer.get_weights()])
    x = images((37, 61), batch=2)
    features = keras.Model(model.input, [model.get_layer(name).output
                                         for name in ("drop7", "block4_pool", "block3_pool")])
    fc7, pool4, pool3 = features(x, training=False)

    def keras_layer(name, cls, **kwargs):
        source = model.get_layer(name)
        layer = cls(source.filters, source.kernel_size, strides=source.strides, padding="same", **kwargs)
        layer.build(source.input.shape)
        layer.set_weights(source.get_weights())
        return layer

    y = keras_layer("fc7_1x1", keras.layers.Conv2D)(fc7)
    y = keras_layer("up_pool4", keras.layers.Conv2DTranspose)(y) + 0.01 * pool4
    y = keras_layer("up_pool3", keras.layers.Conv2DTranspose)(y) + 0.001 * pool3
    y = keras_layer("upscore8", keras.layers.Conv2DTranspose)(y)[:, :37, :61]
    np.testing.assert_allclose(np.asarray(model(x, training=False)), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("alignment", ["pad32", "pad100"])
@pytest.mark.parametrize("path, stride", [("score_fr", 32), ("score_pool4", 16), ("score_pool3", 8)])
def test_fcn_alignment(alignment, path, stride):
    """A bright pixel's response peaks at the centre of the cell of ``stride`` holding it.

    All convolutions pass channel 0 through their centre tap and only the score layer of
    one path is on, so the logits are that path's map, upsampled; their centroid must sit
    on the centre of the cell, in input coordinates (the paper's crop offsets for pad100).
    """
    model = build_model("fcn8_vgg16", 2, width_multiplier=1 / 64, alignment=alignment)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel = np.zeros(layer.kernel.shape, "float32")
            if layer.name.startswith(("block", "fc")) or layer.name == path:
                kernel[kernel.shape[0] // 2, kernel.shape[1] // 2, 0, 0] = 1
            layer.set_weights([kernel, np.zeros(layer.bias.shape, "float32")])
    shift = 0 if alignment == "pad32" else 99  # conv1_1's output index of input pixel 0
    centre = lambda v: stride * ((v + shift) // stride) + (stride - 1) / 2 - shift  # noqa: E731
    for y, x in [(100, 117), (77, 131)]:
        image = np.zeros((1, 200, 230, 3), "float32")
        image[0, y, x, 0] = 1
        response = np.maximum(np.asarray(model(image, training=False))[0, :, :, 0], 0)
        rows, cols = np.indices(response.shape)
        got = ((rows * response).sum() / response.sum(), (cols * response).sum() / response.sum())
        np.testing.assert_allclose(got, (centre(y), centre(x)), atol=1e-3)


@pytest.mark.parametrize("factor", [2, 8, 32])
@pytest.mark.parametrize("layer_kind", ["learned", "fixed"])
def test_bilinear_upsampling_matches_resize(factor, layer_kind):
    channels = 2
    if layer_kind == "learned":
        layer = keras.layers.Conv2DTranspose(channels, 2 * factor, strides=factor, padding="same",
                                             use_bias=False, kernel_initializer=BilinearUpsampling())
    else:
        layer = BilinearUpsample2D(factor)
    rows, cols = np.meshgrid(np.arange(9), np.arange(11), indexing="ij")
    smooth = np.stack([np.sin(rows / 3.0) + np.cos(cols / 4.0), rows * 0.3 - cols * 0.2], -1)
    x = smooth[None].astype("float32")
    got = np.asarray(layer(x))
    want = tf.image.resize(x, (9 * factor, 11 * factor), "bilinear").numpy()
    assert got.shape == want.shape
    inner = (slice(None), slice(factor, -factor), slice(factor, -factor))
    np.testing.assert_allclose(got[inner], want[inner], atol=1e-5)
    if layer_kind == "learned":
        kernel = layer.kernel.numpy()
        assert np.all(kernel[:, :, 0, 1] == 0) and np.all(kernel[:, :, 1, 0] == 0)


# The full FCN-8s, initialised from a file of a full random VGG16 (fc1/fc2 included).

@pytest.fixture(scope="module")
def vgg16_full():
    keras.utils.set_random_seed(0)
    return keras.applications.VGG16(include_top=True, weights=None)


def save_legacy_weights(model, path):
    """Writes ``model``'s weights as a Keras 2 weights-only HDF5 file (the format of the
    keras.applications ImageNet downloads), or as .weights.h5 where Keras cannot."""
    try:
        import h5py
        from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
    except ImportError:
        path = path.with_name(path.stem + ".weights.h5")
        model.save_weights(path)
        return path
    with h5py.File(path, "w") as f:
        save_weights_to_hdf5_group(f, model)
    return path


@pytest.fixture(scope="module")
def full_fcn8(vgg16_full, tmp_path_factory):
    path = save_legacy_weights(vgg16_full, tmp_path_factory.mktemp("vgg16") / "vgg16_full.h5")
    model = build_model("fcn8_vgg16", 21, encoder_weights=str(path))
    path.unlink()
    return model


@pytest.mark.slow
def test_fcn_parameter_counts(full_fcn8):
    assert full_fcn8.count_params() == 134_376_863
    # The other two differ in the decoder only (built at full size: a few seconds each).
    counts = {name: build_model(name, 21).count_params() for name in ("fcn32_vgg16", "fcn16_vgg16")}
    assert counts == {"fcn32_vgg16": 134_346_581, "fcn16_vgg16": 134_364_410}
    for count in [full_fcn8.count_params(), *counts.values()]:
        assert 134.3e6 <= count <= 134.5e6
    # The KITTI decoder, layer by layer (weights + biases): fc7 1x1 to 512, 4x4 512->512,
    # 8x8 512->256, 16x16 256->2; the encoder and fc6/fc7 are the 134,260,544 of the rest.
    decoder = (4096 * 512 + 512) + (4 * 4 * 512 * 512 + 512) + (8 * 8 * 512 * 256 + 256) + (16 * 16 * 256 * 2 + 2)
    kitti = build_model("fcn8_vgg16", 2, decoder="kitti")
    assert kitti.count_params() == 134_260_544 + decoder == 149_072_962


def test_fcn_loads_full_vgg16_weights(full_fcn8, vgg16_full):
    for name in VGG16_CONV_LAYERS:
        for got, want in zip(full_fcn8.get_layer(name).get_weights(), vgg16_full.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)
    fc1_kernel, fc1_bias = vgg16_full.get_layer("fc1").get_weights()
    fc6_kernel, fc6_bias = full_fcn8.get_layer("fc6").get_weights()
    assert np.array_equal(fc6_kernel, fc1_kernel.reshape(7, 7, 512, 4096))  # 100M values: fast path
    assert np.array_equal(fc6_bias, fc1_bias)


def test_convolutionalized_fc7_equals_dense_fc2(full_fcn8, vgg16_full):
    x = np.random.default_rng(0).uniform(-120, 120, (1, 224, 224, 3)).astype("float32")
    dense = lambda layer: keras.Model(vgg16_full.input, vgg16_full.get_layer(layer).output)  # noqa: E731
    fc2 = np.asarray(dense("fc2")(x))[0]
    pool5 = dense("block5_pool")(x)
    tol = dict(rtol=1e-4, atol=1e-4 * np.abs(fc2).max())

    # 'valid' fc6 on the 7x7 pool5 map: a 1x1 map, VGG16's fc2 activation.
    fc6, fc7 = full_fcn8.get_layer("fc6"), full_fcn8.get_layer("fc7")
    h = keras.ops.relu(keras.ops.conv(pool5, fc6.kernel, padding="valid") + fc6.bias)
    h = keras.ops.relu(keras.ops.conv(h, fc7.kernel) + fc7.bias)
    assert tuple(h.shape) == (1, 1, 1, 4096)
    np.testing.assert_allclose(np.asarray(h)[0, 0, 0], fc2, **tol)

    # The model's own ('same') fc7 at 224x224: its centre sees exactly VGG16's input window.
    fcn_fc7 = keras.Model(full_fcn8.input, fc7.output)(x, training=False)
    assert tuple(fcn_fc7.shape) == (1, 7, 7, 4096)
    np.testing.assert_allclose(np.asarray(fcn_fc7)[0, 3, 3], fc2, **tol)


@pytest.fixture(scope="module")
def vgg16_notop_files(tmp_path_factory):
    """Random VGG16 (no top) weights as a Keras 3 .weights.h5 and as a legacy Keras 2 .h5."""
    folder = tmp_path_factory.mktemp("vgg16_notop")
    keras.utils.set_random_seed(1)
    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    model.save_weights(folder / "notop.weights.h5")
    model.save(folder / "notop.h5")  # the legacy HDF5 model format
    return model, [folder / "notop.weights.h5", folder / "notop.h5"]


@pytest.mark.parametrize("which", [0, 1], ids=["weights.h5", "legacy.h5"])
def test_unet_vgg16_loads_local_weights(vgg16_notop_files, which):
    source, paths = vgg16_notop_files
    model = build_model("unet_vgg16", 2, encoder_weights=str(paths[which]), freeze_encoder=True,
                        **TINY["unet_vgg16"])
    for name in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(model.get_layer(name).kernel.numpy(),
                                      source.get_layer(name).kernel.numpy())
    assert not model.get_layer("block1_conv1").trainable
    assert model.get_layer("decoder0_conv1").trainable


def test_fcn_loads_notop_weights(vgg16_notop_files):
    source, paths = vgg16_notop_files
    model = build_model("fcn32_vgg16", 21, encoder_weights=str(paths[1]), freeze_encoder=True)
    np.testing.assert_array_equal(model.get_layer("block1_conv1").kernel.numpy(),
                                  source.get_layer("block1_conv1").kernel.numpy())
    assert not model.get_layer("fc6").trainable and model.get_layer("score_fr").trainable
    assert model.count_params() - sum(int(np.prod(w.shape)) for w in model.trainable_weights) \
        == 134_260_544  # VGG16's convolutions, fc6 and fc7 are frozen


def test_unet_resnet50_loads_local_weights(tmp_path):
    keras.utils.set_random_seed(2)
    source = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(None, None, 3))
    randomize(source)
    path = tmp_path / "resnet50_notop.weights.h5"
    source.save_weights(path)
    model = build_model("unet_resnet50", 2, encoder_weights=str(path), **TINY["unet_resnet50"])
    for name in ("conv1_conv", "conv5_block3_3_bn"):
        for got, want in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want)


def test_missing_weights_file_is_a_user_error(tmp_path):
    from tfseg.errors import UserError

    with pytest.raises(UserError, match="no such file"):
        build_model("unet_vgg16", 2, encoder_weights=str(tmp_path / "missing.weights.h5"))


def test_model_cost_counts_flops_by_hand():
    inputs = keras.Input((None, None, 3))
    a = keras.layers.Conv2D(8, 3, padding="same")(inputs)           # 10x12 x 8 x 27
    b = keras.layers.Conv2D(4, 3, strides=2, padding="same")(a)     # 5x6 x 4 x 72
    c = keras.layers.Conv2DTranspose(3, 4, strides=2, padding="same")(b)  # 5x6 x 4x4x3x4
    d = BilinearUpsample2D(2)(b)                                      # 5x6 x 4 x 4x4
    e = keras.layers.Dense(5)(c)                                      # 10x12 x 3x5
    model = keras.Model(inputs, [d, e])
    cost = model_cost(model, (10, 12))
    assert dict(cost.layers) == {
        model.layers[1].name: 2 * 120 * 8 * 27, model.layers[2].name: 2 * 30 * 4 * 72,
        model.layers[3].name: 2 * 30 * 192, model.layers[4].name: 2 * 30 * 4 * 16,
        model.layers[5].name: 2 * 120 * 15}
    assert cost.params == model.count_params()


def test_model_cost_of_vgg16_and_fcn():
    vgg = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    assert model_cost(vgg, (224, 224)).flops == 30_693_261_312  # 15.35 G multiply-adds
    fcn = tiny("fcn8_vgg16")
    # Any size is padded to a multiple of 32 inside the model: 37x61 costs what 64x64 does.
    assert model_cost(fcn, (37, 61)).flops == model_cost(fcn, (64, 64)).flops


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_models_run_on_jax():
    code = (
        "import sys, numpy as np\n"
        "from tfseg.models import build_model\n"
        f"TINY = {TINY!r}\n"
        "for name, size in [('fcn8_vgg16', (37, 61)), ('unet_resnet50', (32, 96))]:\n"
        "    y = build_model(name, 3, **TINY[name])(np.zeros((1, *size, 3), 'float32'))\n"
        "    assert tuple(y.shape) == (1, *size, 3), y.shape\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("dtype_policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", ["unet", "fcn8_vgg16", "fcn_baseline"])
def test_trains_under_mixed_precision(name, dtype_policy, policy):
    """One optimizer step with tfseg's loss; mixed_float16 brings Keras' loss scaling."""
    from tfseg.losses import MaskedSparseCrossEntropy

    policy(dtype_policy)
    model = tiny(name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=MaskedSparseCrossEntropy())
    size = odd_size(name)
    labels = np.random.default_rng(2).integers(0, NUM_CLASSES, (2, *size)).astype("uint8")
    labels[:, :2] = 255
    before = [w.numpy().copy() for w in model.trainable_weights]
    assert np.isfinite(model.train_on_batch(images(size, batch=2), labels))
    assert any(not np.array_equal(b, w.numpy()) for b, w in zip(before, model.trainable_weights))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_exported_saved_model_matches_the_keras_model(name, tmp_path):
    """Every model exports; the SavedModel's classes equal the in-memory model's on 37x61."""
    import tensorflow as tf

    from tfseg.config import DataConfig
    from tfseg.serving.export import export_saved_model

    model = tiny(name)
    randomize(model)
    stride = model_stride(name, **TINY[name])
    path = export_saved_model(model, tmp_path / "sm", data_config=DataConfig(), stride=stride,
                              class_names=["a", "b", "c"], palette=[[0, 0, 0]] * 3)
    image = np.random.default_rng(3).integers(0, 256, (1, 37, 61, 3)).astype("uint8")
    loaded = tf.saved_model.load(str(path))  # kept referenced: it owns the variables
    served = loaded.serve(image)["classes"].numpy()
    padded = np.pad(image / 255.0, [(0, 0), (0, -37 % stride), (0, -61 % stride), (0, 0)], mode="reflect")
    expected = np.asarray(model(padded.astype("float32"), training=False))[:, :37, :61].argmax(-1)
    np.testing.assert_array_equal(served, expected)


@pytest.mark.parametrize("name", ["unet_vgg16", "unet_resnet50"])
def test_encoder_unet_without_skip_connections_is_a_plain_decoder(name):
    with_skips, plain = tiny(name), tiny(name, skip_connections=False)
    assert any(isinstance(layer, keras.layers.Concatenate) for layer in with_skips.layers)
    assert not any(isinstance(layer, keras.layers.Concatenate) for layer in plain.layers)
    # Each decoder level reads only its upsampling's 8 channels: nothing from the encoder.
    for level in range(5):
        assert plain.get_layer(f"decoder{level}_conv1").input.shape[-1] == 8
    assert plain(images((32, 64))).shape == (1, 32, 64, NUM_CLASSES)


def test_unet_batch_norm_momentum():
    default = tiny("unet", batch_norm=True)
    fast = tiny("unet", batch_norm=True, batch_norm_momentum=0.9)
    norms = [layer for layer in fast.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and {layer.momentum for layer in norms} == {0.9}
    assert {layer.momentum for layer in default.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}
