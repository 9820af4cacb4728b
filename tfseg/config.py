"""Run configuration: typed dataclasses, YAML presets and ``--set a.b=value`` overrides.

A run is described by one :class:`RunConfig` tree. It is resolved in three layers,
later layers winning: the dataclass defaults, a YAML preset (a name from
``tfseg/configs/`` or a path), then command-line ``--set section.key=value`` pairs.
A preset may start from another with ``base: <name or path>`` and say only what differs;
naming another ``model.name`` starts that model's ``options`` afresh.
Unknown keys and values of the wrong type are :class:`ConfigError` s that name the key.
The resolved tree is written to ``run_dir/config.yaml`` before training starts, so a run
can always be reproduced from its own directory.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tfseg.errors import UserError


class ConfigError(UserError):
    """A preset, YAML file or override that does not describe a valid configuration."""


@dataclass
class SyntheticConfig:
    """The built-in synthetic dataset (see :mod:`tfseg.data.synthetic`)."""

    height: int = 96
    width: int = 96
    num_train: int = 2000
    num_val: int = 200
    num_test: int = 24
    seed: int = 0


@dataclass
class FgbgConfig:
    """The built-in foreground-on-background dataset (see :mod:`tfseg.data.fgbg`)."""

    height: int = 192
    width: int = 192
    foreground_size: int = 96
    # The size of each split's pools of backgrounds and foregrounds.
    backgrounds: int = 100
    foregrounds: int = 100
    num_train: int = 4000
    num_val: int = 200
    num_test: int = 200
    seed: int = 0
    # The network's input: "composite" (3 channels) or "pair" (background and composite
    # stacked: 6 channels).
    inputs: str = "composite"
    # Also give each scene's depth map (metres), for models with a depth head.
    depth: bool = False


@dataclass
class PreprocessConfig:
    """Deterministic preprocessing, shared by training and the exported model."""

    # "unit": x / 255; "imagenet_caffe": BGR minus the ImageNet mean (VGG16 weights);
    # "imagenet_torch": RGB / 255 minus mean, divided by std (ResNet-style weights).
    normalization: str = "unit"
    # CLAHE on the luminance (Y of YCrCb) of every image, in training and serving alike.
    clahe: bool = False
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: list = field(default_factory=lambda: [8, 8])  # tile columns, rows
    # Who equalizes in the tf.data input pipeline: "tensorflow" (tfseg.data.clahe) or
    # "opencv" (cv2.createCLAHE through tf.numpy_function: the same pixels, ~5x less CPU).
    # The exported model always uses the TensorFlow CLAHE, which matches OpenCV bit for bit.
    clahe_backend: str = "tensorflow"


@dataclass
class AugmentConfig:
    """Random joint image/mask augmentation, applied to the training split only.

    Each is off at its zero/empty value. Geometric ones move mask and image together and
    fill uncovered label pixels with void (255).
    """

    horizontal_flip: bool = True
    scale_range: list = field(default_factory=list)  # [low, high], e.g. [0.5, 2.0]
    crop_size: list = field(default_factory=list)  # [height, width]: random crop, void-padded
    rotation_degrees: float = 0.0  # uniform in [-d, d]
    brightness: float = 0.0  # max delta, as a fraction of the full range
    contrast: float = 0.0  # factor in [1 - c, 1 + c]
    saturation: float = 0.0  # factor in [1 - s, 1 + s]
    hue: float = 0.0  # max delta, as a fraction of the colour circle (<= 0.5)
    # CLAHE as a random augmentation (instead of preprocess.clahe, not on top of it).
    clahe_probability: float = 0.0
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: list = field(default_factory=lambda: [8, 8])


@dataclass
class KittiConfig:
    """KITTI Road (:mod:`tfseg.data.kitti_road`): how the validation images are held out."""

    # Images held out for validation, stratified over the um/umm/uu categories (0: none,
    # with train.best_metric: last). Small copies of the data hold out at most
    # ``val_fraction`` of their images instead.
    val_count: int = 48
    val_fraction: float = 0.17
    split_seed: int = 0


@dataclass
class VocConfig:
    """PASCAL VOC sources (:mod:`tfseg.data.voc`): voc2012, voc2007 and voc_aug."""

    # The SBD ``benchmark_RELEASE`` folder for voc_aug; "" looks for it in data_dir.
    sbd_dir: str = ""


@dataclass
class FolderConfig:
    """A folder of images and masks (:mod:`tfseg.data.folder`)."""

    images_subdir: str = "images"
    masks_subdir: str = "masks"
    # "index": a grey (L) or palette (P) PNG whose values are class ids; "palette": a
    # palette PNG only, its indices are the class ids; "binary": 0 = background, 255 =
    # foreground; "color": RGB masks painted in the class colours of classes_file.
    mask_format: str = "index"
    # YAML list of {name, color}; relative paths are inside data_dir.
    classes_file: str = "classes.yaml"
    # splits/train.txt, splits/val.txt (one stem a line) when present; else a seeded split.
    splits_subdir: str = "splits"
    val_fraction: float = 0.1
    split_seed: int = 0


@dataclass
class DataConfig:
    source: str = "synthetic"
    data_dir: str = ""
    # JSON file of a seeded train/val split (kitti_road, folder without split lists), as
    # written by :func:`tfseg.data.splits.write_split`; "" computes the split from its seed.
    split_file: str = ""
    # Read the TFRecords prepared by the tensorflow-datasets builders instead of raw files.
    use_tfds: bool = False
    # tensorflow-datasets' data_dir; "" uses its default (~/tensorflow_datasets).
    tfds_data_dir: str = ""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    fgbg: FgbgConfig = field(default_factory=FgbgConfig)
    kitti: KittiConfig = field(default_factory=KittiConfig)
    voc: VocConfig = field(default_factory=VocConfig)
    folder: FolderConfig = field(default_factory=FolderConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # [height, width]: resize every image (bilinear) and mask (nearest) before caching.
    resize: list = field(default_factory=list)
    # [[r, g, b], ...], one per class: the colours of predicted masks, overlays and the
    # TensorBoard panels, kept in the run and the export; [] keeps the source's own.
    palette: list = field(default_factory=list)
    # "memory" caches decoded, preprocessed examples in RAM; "" disables caching;
    # any other value is a file prefix for tf.data's on-disk cache.
    cache: str = "memory"
    shuffle_buffer: int = 1000


@dataclass
class ModelConfig:
    name: str = "unet"
    # Keyword arguments of the model's builder; checked against its signature.
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    learning_rate: float = 1e-3
    # adam, adamw or sgd (with momentum, optionally Nesterov); adam with weight_decay > 0
    # is AdamW. See tfseg.training.schedules.
    optimizer: str = "adam"
    momentum: float = 0.9
    nesterov: bool = False
    # constant, cosine, poly, step or plateau, after warmup_epochs of linear warm-up.
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    # cosine and poly end at this fraction of the start value.
    final_learning_rate_fraction: float = 0.05
    poly_power: float = 0.9
    step_every_epochs: int = 10
    step_factor: float = 0.1
    # plateau: times plateau_factor after plateau_patience epochs without a better val mIoU.
    plateau_patience: int = 3
    plateau_factor: float = 0.5
    # Clip gradients to this global norm (0: no clipping).
    clip_norm: float = 0.0
    # Stop after this many epochs without a better val mIoU (0: never).
    early_stopping_patience: int = 0
    # The validation score that picks the best epoch's model and that reduce-on-plateau and
    # early stopping watch: val_miou, or val_max_f (two classes: the MaxF of class 1 that
    # the KITTI Road benchmark ranks by, at the training geometry; tfseg.metrics.MaxF);
    # or last: the last epoch's model is kept, with or without validation images (training
    # on every labelled image, data.kitti.val_count: 0, with train.epochs chosen before).
    best_metric: str = "val_miou"
    weight_decay: float = 0.0
    # "auto": mixed_bfloat16 on GPUs of compute capability >= 8.0 and on CPUs with native
    # bfloat16, mixed_float16 (with loss scaling) on older GPUs, float32 elsewhere;
    # "on" / "off" (or true / false); or a Keras policy name. See tfseg.training.devices.
    mixed_precision: str = "auto"
    # "auto" compiles the train step with XLA on GPU only (no speed-up on CPU); on / off.
    jit_compile: str = "auto"
    seed: int = 0
    # TensorFlow's deterministic kernels (slower): the same seed then gives the same weights
    # bit for bit, and a resumed run equals an uninterrupted one.
    deterministic: bool = False
    # 0 means one full pass over the training split per epoch.
    steps_per_epoch: int = 0
    # "auto": MultiWorkerMirroredStrategy when TF_CONFIG names several workers, else
    # MirroredStrategy over all GPUs when there are several; "mirrored": always (all GPUs, or
    # the CPU); "multi_worker": MultiWorkerMirroredStrategy (TF_CONFIG, see README); "none":
    # the default strategy. batch_size is the global batch, split over all replicas.
    distribute: str = "auto"
    # Multi-worker training stops with an error when a worker has not answered for this long.
    worker_timeout_seconds: int = 300
    # Checkpoints for resuming (tfseg.training.checkpoints) are written at each epoch end and every
    # checkpoint_steps steps; 0 sets checkpoint_steps, from the first steps' speed, to about
    # checkpoint_minutes of training.
    checkpoint_steps: int = 0
    checkpoint_minutes: float = 5.0
    # Minutes to finish in (0: no limit): after the first epoch, the number of epochs (at
    # most train.epochs) and the span of the cosine or poly decay are fitted to it.
    time_budget: float = 0.0
    # Progressive resizing: [{size: [h, w], epochs: n}, ...], small images first. A stage's
    # size replaces data.resize (data.augment.crop_size scaled alike) or, without a resize,
    # the crop size; the epochs add up to train.epochs, or with train.time_budget are each
    # stage's share of the budget. Validation and export keep the configured geometry.
    # See tfseg.training.stages.
    stages: list = field(default_factory=list)
    # Weights & Biases (tfseg.training.tracking): a project name logs every epoch's scores and
    # prediction panels there when wandb is installed; mode "" leaves it to wandb
    # (WANDB_MODE, else online), "offline" writes RUN_DIR/wandb for a later `wandb sync`.
    wandb_project: str = ""
    wandb_mode: str = ""


@dataclass
class LossConfig:
    """The training loss (tfseg.losses): a weighted sum of terms."""

    # term -> weight; terms: cross_entropy, focal, dice, jaccard, tversky, focal_tversky,
    # lovasz.
    # E.g. {cross_entropy: 1.0, dice: 1.0} (for two classes: BCE + Dice).
    terms: dict = field(default_factory=lambda: {"cross_entropy": 1.0})
    # Weights of the pixel terms per class: null, median_frequency, inverse_frequency (both
    # computed on the training split, as `tfseg data stats` does, and kept in the run
    # directory), or a list with one number per class.
    class_weights: str | list | None = None
    focal_gamma: float = 2.0
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    focal_tversky_gamma: float = 0.75
    # Region terms over "all" classes, or "foreground" (all but class 0: the binary form
    # for two classes); smooth keeps classes absent from a batch finite.
    region_classes: str = "all"
    smooth: float = 1.0
    # Models with a depth head (model.options.depth_head): term -> weight of the depth
    # losses added to the segmentation loss; terms: l1 (masked L1), ssim. E.g.
    # {l1: 1.0, ssim: 1.0}. See tfseg.depth.
    depth_terms: dict = field(default_factory=dict)


@dataclass
class ExportConfig:
    # Relative paths are resolved inside the run directory.
    path: str = "export"


@dataclass
class RunConfig:
    name: str = "run"
    run_dir: str = "runs/run"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

SOURCE_NAMES = ("synthetic", "fgbg", "kitti_road", "voc2012", "voc2007", "voc_aug", "folder")
# The sources whose examples tfseg generates itself: nothing to download.
GENERATED_SOURCE_NAMES = ("synthetic", "fgbg")

CHOICES = {
    "data.source": SOURCE_NAMES,
    "data.preprocess.normalization": ("unit", "imagenet_caffe", "imagenet_torch"),
    "data.preprocess.clahe_backend": ("tensorflow", "opencv"),
    "train.mixed_precision": ("auto", "on", "off", "float32", "mixed_float16", "mixed_bfloat16"),
    "train.jit_compile": ("auto", "on", "off"),
    "train.distribute": ("auto", "mirrored", "multi_worker", "none"),
    "data.folder.mask_format": ("index", "palette", "binary", "color"),
    "loss.region_classes": ("all", "foreground"),
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("constant", "cosine", "poly", "step", "plateau"),
    "train.best_metric": ("val_miou", "val_max_f", "last"),
    "train.wandb_mode": ("", "online", "offline", "disabled"),
    "data.fgbg.inputs": ("composite", "pair"),
}


# Settings that are words but also switches: YAML reads on/off/yes/no/true/false as
# booleans, and people type any of them, so they all map to "on" / "off".
SWITCHES = ("train.mixed_precision", "train.jit_compile")
SWITCH_WORDS = {"on": "on", "true": "on", "yes": "on", "off": "off", "false": "off", "no": "off"}


def _switch(value: Any) -> Any:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        return SWITCH_WORDS.get(value.strip().lower(), value)
    return value


def preset_names() -> list[str]:
    """Names of the YAML presets shipped in ``tfseg/configs``."""
    folder = resources.files("tfseg") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: str) -> tuple[dict, str]:
    """Returns the mapping in a preset name or YAML path, and a label for error messages."""
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {source}: not found")
        try:
            text, label = path.read_text(), str(path)
        except UnicodeDecodeError:
            raise ConfigError(f"config file {source}: not a text file") from None
        except OSError as err:
            raise ConfigError(f"config file {source}: cannot be read ({err.strerror})") from None
    else:
        preset = resources.files("tfseg") / "configs" / f"{source}.yaml"
        if not preset.is_file():
            raise ConfigError(
                f"unknown preset {source!r}: choose one of {', '.join(preset_names())} "
                "or give a path to a YAML file"
            )
        text, label = preset.read_text(), f"preset {source}"
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{label}: not valid YAML ({' '.join(str(err).split())})") from None
    if mapping is None:  # an empty file would silently train on every default
        raise ConfigError(f"{label}: empty; give at least a base preset (base: demo_unet) or one setting")
    if not isinstance(mapping, dict):
        raise ConfigError(f"{label}: expected a mapping at the top level")
    return mapping, label


def _merge_preset(config: RunConfig, source: str, derived: tuple[str, ...]) -> None:
    """Merges a preset into ``config``, its ``base`` preset (name or path) first. A relative
    ``base`` path is read from the folder of the YAML file that names it."""
    mapping, label = _read_yaml(source)
    base = mapping.pop("base", None)
    if base is not None:
        if not isinstance(base, str):
            raise ConfigError(f"{label}: base must be a preset name or a YAML path, got {base!r}")
        if _is_path(source) and _is_path(base) and not Path(base).is_absolute():
            base = str(Path(source).parent / base)
        if _same_preset(base, (*derived, source)):
            raise ConfigError(f"{label}: base {base!r} leads back to itself")
        _merge_preset(config, base, (*derived, source))
    _merge(config, mapping, "", label)


def _is_path(source: str) -> bool:
    """Whether a --config or base value names a YAML file rather than a shipped preset."""
    return source.endswith((".yaml", ".yml")) or Path(source).exists()


def _same_preset(source: str, seen: tuple[str, ...]) -> bool:
    """Whether ``source`` is one of ``seen``: the same preset name, or the same file."""
    if not _is_path(source):
        return source in seen
    resolved = Path(source).resolve()
    return any(_is_path(other) and Path(other).resolve() == resolved for other in seen)


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Checks ``value`` against a field's type; ints are accepted where floats are expected."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: {value!r} is not a valid {annotation}")
    if annotation is type(None):
        if value is None:
            return None
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if not math.isfinite(number):  # YAML reads .nan and .inf; Python float() nan, inf
                raise ConfigError(f"{key}: must be a finite number, got {value!r}")
            return number
    elif annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif annotation is list or origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:  # pragma: no cover - a new field type needs a rule here
        raise TypeError(f"{key}: unsupported field type {annotation}")
    type_name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{key}: expected {type_name}, got {value!r}")


def _merge(node: Any, mapping: dict, prefix: str, label: str) -> None:
    """Writes ``mapping`` into the dataclass ``node`` in place, checking every key."""
    hints = typing.get_type_hints(type(node))
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if key not in hints:
            known = ", ".join(f"{prefix}{name}" for name in hints)
            raise ConfigError(f"{label}: unknown key {dotted!r} (known: {known})")
        current = getattr(node, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{label}: {dotted} must be a mapping, got {value!r}")
            if isinstance(current, ModelConfig) and value.get("name", current.name) != current.name:
                current.options = {}  # options belong to a model: another one starts afresh
            _merge(current, value, dotted + ".", label)
        elif key == "options" and isinstance(current, dict) and isinstance(value, dict):
            current.update(value)  # model options merge key by key, like sections do
        else:
            if dotted in SWITCHES:
                value = _switch(value)
            try:
                setattr(node, key, _coerce(value, hints[key], dotted))
            except ConfigError as err:
                raise ConfigError(f"{label}: {err}") from None


def parse_override(text: str) -> dict:
    """Turns ``"a.b.c=value"`` into ``{"a": {"b": {"c": value}}}``; the value is YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(f"malformed --set {text!r}: expected section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise ConfigError(f"malformed --set {text!r}: the value is not valid YAML") from None
    nested: Any = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def validate(config: RunConfig) -> None:
    """Checks values that types alone cannot: choices and ranges."""
    flat = to_dict(config)
    for dotted, allowed in CHOICES.items():
        section, *rest = dotted.split(".")
        value = flat[section]
        for part in rest:
            value = value[part]
        if value not in allowed:
            raise ConfigError(f"{dotted}: {value!r} is not one of {', '.join(allowed)}")
    positive = {
        "train.epochs": config.train.epochs,
        "train.batch_size": config.train.batch_size,
        "train.learning_rate": config.train.learning_rate,
        "train.checkpoint_minutes": config.train.checkpoint_minutes,
        "train.poly_power": config.train.poly_power,
        "train.step_every_epochs": config.train.step_every_epochs,
        "train.step_factor": config.train.step_factor,
        "train.plateau_patience": config.train.plateau_patience,
        "train.plateau_factor": config.train.plateau_factor,
        "train.worker_timeout_seconds": config.train.worker_timeout_seconds,
        "data.synthetic.height": config.data.synthetic.height,
        "data.synthetic.width": config.data.synthetic.width,
        "data.synthetic.num_train": config.data.synthetic.num_train,
        "data.synthetic.num_val": config.data.synthetic.num_val,
        **{f"data.fgbg.{key}": getattr(config.data.fgbg, key)
           for key in ("height", "width", "foreground_size", "backgrounds", "foregrounds", "num_train", "num_val")},
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    pairs = {  # key: (value, element type)
        "data.resize": (config.data.resize, int),
        "data.augment.crop_size": (config.data.augment.crop_size, int),
        "data.augment.scale_range": (config.data.augment.scale_range, (int, float)),
        "data.preprocess.clahe_tile_grid": (config.data.preprocess.clahe_tile_grid, int),
        "data.augment.clahe_tile_grid": (config.data.augment.clahe_tile_grid, int),
    }
    for key, (value, kind) in pairs.items():
        if value and (len(value) != 2 or not all(isinstance(v, kind) and not isinstance(v, bool) and v > 0
                                                 for v in value)):
            noun = "integers" if kind is int else "numbers"
            raise ConfigError(f"{key}: expected two positive {noun} or [], got {value!r}")
    fgbg = config.data.fgbg
    if fgbg.foreground_size > min(fgbg.height, fgbg.width):
        raise ConfigError(f"data.fgbg.foreground_size: {fgbg.foreground_size} does not fit in "
                          f"{fgbg.height}x{fgbg.width} scenes")
    for colour in config.data.palette:
        if not (isinstance(colour, list) and len(colour) == 3
                and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in colour)):
            raise ConfigError(f"data.palette: each colour must be [r, g, b] of integers 0..255, got {colour!r}")
    if config.data.augment.scale_range and config.data.augment.scale_range[0] > config.data.augment.scale_range[1]:
        raise ConfigError("data.augment.scale_range: low must not exceed high")
    if not 0.0 <= config.data.augment.hue <= 0.5:
        raise ConfigError("data.augment.hue: must lie in [0, 0.5]")
    non_negative = {"train.steps_per_epoch": config.train.steps_per_epoch,
                    "train.checkpoint_steps": config.train.checkpoint_steps,
                    "train.warmup_epochs": config.train.warmup_epochs,
                    "train.time_budget": config.train.time_budget,
                    "train.clip_norm": config.train.clip_norm,
                    "train.early_stopping_patience": config.train.early_stopping_patience,
                    "train.momentum": config.train.momentum,
                    "train.weight_decay": config.train.weight_decay}
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")
    if config.data.kitti.val_count < 0:
        raise ConfigError(f"data.kitti.val_count: must be >= 0 (0: hold none out), got {config.data.kitti.val_count}")
    if config.train.best_metric == "last" and (config.train.schedule == "plateau" or config.train.early_stopping_patience):
        raise ConfigError("train.best_metric last: keeps the last epoch, with no score for "
                          f"{'the plateau schedule' if config.train.schedule == 'plateau' else 'early stopping'} "
                          "to watch; use val_miou or val_max_f")
    for key, value in {"data.kitti.val_fraction": config.data.kitti.val_fraction,
                       "data.folder.val_fraction": config.data.folder.val_fraction}.items():
        if not 0.0 < value < 1.0:
            raise ConfigError(f"{key}: must lie strictly between 0 and 1, got {value}")
    validate_loss(config.loss)
    validate_stages(config)
    if not 0.0 <= config.train.final_learning_rate_fraction <= 1.0:
        raise ConfigError("train.final_learning_rate_fraction: must lie in [0, 1]")


CLASS_WEIGHTINGS = ("median_frequency", "inverse_frequency")
LOSS_TERMS = ("cross_entropy", "focal", "dice", "jaccard", "tversky", "focal_tversky", "lovasz")
DEPTH_LOSS_TERMS = ("l1", "ssim")


def validate_stages(config: RunConfig) -> None:
    stages = config.train.stages
    if not stages:
        return
    for i, stage in enumerate(stages):
        size = stage.get("size") if isinstance(stage, dict) else None
        epochs = stage.get("epochs") if isinstance(stage, dict) else None
        if not (isinstance(stage, dict) and set(stage) == {"size", "epochs"} and isinstance(size, list)
                and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
                and isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0):
            raise ConfigError(f"train.stages[{i}]: expected {{size: [height, width], epochs: n}} with positive "
                              f"integers, got {stage!r}")
    if not (config.data.resize or config.data.augment.crop_size):
        raise ConfigError("train.stages: a stage's size replaces data.resize or data.augment.crop_size; set one")
    total = sum(stage["epochs"] for stage in stages)
    if total != config.train.epochs and not config.train.time_budget:  # under a budget: shares
        raise ConfigError(f"train.stages: the stages' epochs add up to {total}, train.epochs is {config.train.epochs}")


def validate_loss(loss: LossConfig) -> None:
    if not loss.terms:
        raise ConfigError("loss.terms: give at least one term, e.g. {cross_entropy: 1.0}")
    for key, terms, known in (("loss.terms", loss.terms, LOSS_TERMS),
                              ("loss.depth_terms", loss.depth_terms, DEPTH_LOSS_TERMS)):
        for name, weight in terms.items():
            if name not in known:
                raise ConfigError(f"{key}: unknown term {name!r}; choose from {', '.join(known)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
                raise ConfigError(f"{key}.{name}: the weight must be a positive number, got {weight!r}")
    weights = loss.class_weights
    if isinstance(weights, str):
        if weights not in CLASS_WEIGHTINGS:
            raise ConfigError(f"loss.class_weights: {weights!r} is not one of {', '.join(CLASS_WEIGHTINGS)}, "
                              "a list of numbers or null")
    elif weights is not None and not (isinstance(weights, list) and weights and all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in weights)):
        raise ConfigError(f"loss.class_weights: expected {', '.join(CLASS_WEIGHTINGS)}, a list of "
                          f"non-negative numbers or null, got {weights!r}")
    for key in ("tversky_alpha", "tversky_beta", "focal_gamma", "smooth"):
        if getattr(loss, key) < 0:
            raise ConfigError(f"loss.{key}: must be >= 0, got {getattr(loss, key)}")
    if loss.focal_tversky_gamma <= 0:
        raise ConfigError(f"loss.focal_tversky_gamma: must be positive, got {loss.focal_tversky_gamma}")


def load_config(preset: str | None = None, overrides: typing.Iterable[str] = ()) -> RunConfig:
    """Resolves defaults <- preset (name or YAML path) <- ``--set`` overrides, and validates."""
    config = RunConfig()
    if preset:
        _merge_preset(config, preset, ())
    for text in overrides:
        _merge(config, parse_override(text), "", f"--set {text}")
    validate(config)
    return config


def to_dict(config: RunConfig) -> dict:
    return dataclasses.asdict(config)


def dump(config: RunConfig) -> str:
    """The configuration as YAML text, the form written to ``run_dir/config.yaml``."""
    return yaml.safe_dump(to_dict(config), sort_keys=False)
