import pytest

from tfseg import config as config_lib
from tfseg.config import ConfigError, load_config, parse_override


def test_defaults_and_preset_layering():
    config = load_config("demo_unet", ["train.epochs=3", "data.synthetic.num_train=10"])
    assert config.name == "demo_unet"
    assert config.train.epochs == 3
    assert config.data.synthetic.num_train == 10
    assert config.data.synthetic.num_val == 200  # from the preset, untouched by the override
    assert config.train.final_learning_rate_fraction == 0.05  # dataclass default


def test_override_values_are_yaml_typed():
    config = load_config(None, ["train.learning_rate=1e-4", "data.augment.horizontal_flip=false",
                                "model.options={depth: 2}", "model.options.base_filters=8"])
    assert config.train.learning_rate == pytest.approx(1e-4)
    assert config.data.augment.horizontal_flip is False
    assert config.model.options == {"depth": 2, "base_filters": 8}


def test_int_accepted_for_float_but_not_the_reverse():
    assert load_config(None, ["train.learning_rate=1"]).train.learning_rate == 1.0
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_config(None, ["train.epochs=2.5"])


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown key 'train.epoch'"),
    ("nope=1", "unknown key 'nope'"),
    ("train=3", "train must be a mapping"),
    ("train.batch_size=abc", "train.batch_size: expected int"),
    ("train.mixed_precision=fp8", "train.mixed_precision: 'fp8' is not one of"),
    ("train.epochs=0", "train.epochs: must be positive"),
    ("data.resize=[100]", "data.resize: expected two positive integers"),
    ("data.augment.crop_size=[10.5, 20]", "data.augment.crop_size: expected two positive integers"),
    ("data.augment.scale_range=[2.0, 0.5]", "low must not exceed high"),
    ("data.source=imagenet", "data.source: 'imagenet' is not one of"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


@pytest.mark.parametrize("text", ["train.epochs", "=3", "train..epochs=3", "train.epochs=[1"])
def test_malformed_set(text):
    with pytest.raises(ConfigError, match="malformed --set"):
        parse_override(text)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*demo_unet"):
        load_config("nope")


def test_yaml_file_errors(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match="not found"):
        load_config(str(missing))
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(str(broken))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=f"{unknown}: unknown key 'train.epochz'"):
        load_config(str(unknown))


def test_dump_round_trips(tmp_path):
    """What a run directory's config.yaml holds loads back as the same configuration."""
    config = load_config("demo_unet", ["train.epochs=4", "model.options.dropout=0.5", "data.resize=[64, 96]"])
    (tmp_path / "config.yaml").write_text(config_lib.dump(config))
    assert load_config(str(tmp_path / "config.yaml")) == config


def test_every_preset_loads():
    for name in config_lib.preset_names():
        load_config(name)


@pytest.mark.parametrize("typed, expected", [
    ("on", "on"), ("off", "off"), ("true", "on"), ("false", "off"), ("yes", "on"),
    ("no", "off"), ('"on"', "on"), ("auto", "auto"), ("On", "on")])
def test_switches_accept_the_words_people_type(typed, expected):
    config = load_config(None, [f"train.jit_compile={typed}", f"train.mixed_precision={typed}"])
    assert config.train.jit_compile == expected
    assert config.train.mixed_precision == expected


@pytest.mark.parametrize("setting, gpus, cpu_bf16, policy", [
    ("auto", [(9, 0)], False, "mixed_bfloat16"),       # H100/H200
    ("auto", [(8, 0), (7, 0)], False, "mixed_float16"),  # an A100 beside a V100
    ("auto", [(7, 5)], True, "mixed_float16"),          # T4
    ("auto", [], True, "mixed_bfloat16"),               # CPU with AVX512_BF16 / AMX
    ("auto", [], False, "float32"),
    ("on", [], False, "mixed_bfloat16"),
    ("off", [(9, 0)], True, "float32"),
    ("mixed_float16", [], True, "mixed_float16"),
])
def test_precision_by_device(setting, gpus, cpu_bf16, policy):
    from tfseg.training.devices import choose_precision

    assert choose_precision(setting, gpus, cpu_bf16) == policy


@pytest.mark.parametrize("pinned", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_tfseg_auto_precision_pins_what_auto_resolves_to(pinned, monkeypatch):
    from tfseg.training.devices import resolve_precision

    monkeypatch.setenv("TFSEG_AUTO_PRECISION", pinned)
    assert resolve_precision(load_config(None, ["train.mixed_precision=auto"]).train) == pinned
    # Only "auto" is pinned: an explicit setting is the user's.
    assert resolve_precision(load_config(None, ["train.mixed_precision=off"]).train) == "float32"


def test_a_bad_tfseg_auto_precision_is_one_line(monkeypatch):
    from tfseg.errors import UserError
    from tfseg.training.devices import resolve_precision

    monkeypatch.setenv("TFSEG_AUTO_PRECISION", "bf16")
    with pytest.raises(UserError, match="TFSEG_AUTO_PRECISION=bf16: not one of float32, mixed_bfloat16"):
        resolve_precision(load_config(None).train)


def test_cpu_bf16_flag_detection(tmp_path):
    from tfseg.training.devices import cpu_has_bf16

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert cpu_has_bf16(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not cpu_has_bf16(info)
    assert not cpu_has_bf16(tmp_path / "missing")


def test_cpu_bf16_is_measured_not_assumed():
    from tfseg.training.devices import cpu_bf16_speedup

    speedup = cpu_bf16_speedup()
    assert 0.05 < speedup < 20.0
    assert cpu_bf16_speedup() is speedup  # measured once per process


def test_a_preset_starts_from_its_base_and_says_what_differs(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train: {epochs: 7, batch_size: 3}\nmodel: {name: unet, options: {depth: 2}}\n")
    step = tmp_path / "step.yaml"
    step.write_text(f"base: {base}\ntrain: {{epochs: 9}}\nmodel: {{options: {{base_filters: 4}}}}\n")
    config = load_config(str(step))
    assert (config.train.epochs, config.train.batch_size) == (9, 3)
    assert config.model.options == {"depth": 2, "base_filters": 4}
    # Another model's options start afresh: unet's depth means nothing to fcn_baseline.
    other = tmp_path / "other.yaml"
    other.write_text(f"base: {base}\nmodel: {{name: fcn_baseline, options: {{base_filters: 8}}}}\n")
    assert load_config(str(other)).model.options == {"base_filters": 8}
    assert load_config(str(base), ["model.name=fcn_baseline"]).model.options == {}

    loop = tmp_path / "loop.yaml"
    loop.write_text(f"base: {loop}\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_config(str(loop))
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [voc_unet]\n")
    with pytest.raises(ConfigError, match="base must be a preset name"):
        load_config(str(bad))


def test_a_relative_base_is_read_beside_the_yaml_that_names_it(tmp_path, monkeypatch):
    (tmp_path / "cfg" / "sub").mkdir(parents=True)
    (tmp_path / "cfg" / "base.yaml").write_text("train: {epochs: 7}\n")
    (tmp_path / "cfg" / "sub" / "child.yaml").write_text("base: ../base.yaml\ntrain: {batch_size: 3}\n")
    monkeypatch.chdir(tmp_path)  # not the YAML's folder
    config = load_config("cfg/sub/child.yaml")
    assert (config.train.epochs, config.train.batch_size) == (7, 3)
    # Two files naming each other, by relative paths: a loop, said as one.
    (tmp_path / "cfg" / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "cfg" / "b.yaml").write_text("base: ./a.yaml\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_config("cfg/a.yaml")


@pytest.mark.parametrize("palette", [[[0, 255]], [[0, 256, 0]], [[0, 1.5, 0]], [[True, 0, 0]], ["red"]])
def test_palette_colours_are_checked(palette):
    with pytest.raises(ConfigError, match=r"data.palette: each colour must be \[r, g, b\]"):
        load_config(None, [f"data.palette={palette}"])
