"""``tfseg train``: a run directory, its data and model, and the training loop over them.

A run directory holds everything about one run::

    run_dir/
      config.yaml        the configuration, written before training starts
      labels.json        class names and display palette of the data source
      split.json         the seeded train/val split, where the source has one
      checkpoints/       step checkpoints for resuming (tfseg.training.checkpoints) and best.keras
      history.csv  curves.png  tensorboard/     (tfseg.training.history)
      model.keras        the best model, written when training finishes

Running the same command again resumes an unfinished run at its last checkpoint; a run
stopped before its first checkpoint starts again. Only the settings in :data:`RESUMABLE`
may change on resumption (e.g. a lower learning rate after a divergence).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from tfseg import config as config_lib
from tfseg import losses
from tfseg.config import RunConfig
from tfseg.data.check import pipeline_error
from tfseg.data.pipeline import build_dataset, cached_examples
from tfseg.data.preprocess import normalize, pad_to_multiple
from tfseg.data.sources import class_palette, make_source
from tfseg.data.splits import write_split_record
from tfseg.depth import DepthMetrics, make_depth_loss
from tfseg.errors import UserError
from tfseg.fileio import atomic_path, check_writable, write_text
from tfseg.heads import DEPTH
from tfseg.models import build_model, check_options, model_stride
from tfseg.runs import (BEST_FILE, CHECKPOINT_DIR, CLASS_WEIGHTS_FILE, CONFIG_FILE, MODEL_FILE, SPLIT_FILE,
                        earlier_changes, load_trained_model, prepare_run_dir, resolved_comment, write_config,
                        write_labels)
from tfseg.training.checkpoints import Position, TrainingCheckpoints
from tfseg.training.devices import (apply_precision, describe, is_chief, is_multi_worker, make_strategy,
                                    resolve_jit_compile)
from tfseg.training.history import PREVIEW_IMAGES, History, PredictionPanels
from tfseg.training.interrupts import StopRequest
from tfseg.training.loop import KEEP_LAST, HeadObjective, InputError, LoopSettings, Trainer, run_loop
from tfseg.training.schedules import make_optimizer
from tfseg.training.stages import StageBudget, stage_data_config, stage_index
from tfseg.training.tracking import open_tracker


def worker_loss(message: str) -> str:
    """The gist of a collective operation's failure: which worker stopped and how (from
    TensorFlow's heartbeats or gRPC's report), without the graph trace around it."""
    text = " ".join(message.split())
    unhealthy = re.search(r"tasks are unhealthy \(stopped sending heartbeats\):\s*(\S+)", text)
    if unhealthy:
        return f"{unhealthy[1]} stopped sending heartbeats"
    remote = re.search(r"remote target (/job:\S+).*?grpc_message:\s*\"([^\"]*)\"", text)
    if remote:
        return f"{remote[1]}: {remote[2]}"
    lines = [line.strip() for line in message.splitlines()
             if line.strip() and not line.strip().startswith(("[[", "Detected at node", "File ", "Graph execution"))]
    return (lines[-1] if lines else "no message")[:300]


def resolve_class_weights(config: RunConfig, source, run_dir: Path, is_writer: bool) -> list[float] | None:
    """The class weights ``loss.class_weights`` names: as given, or computed once on the
    training split and kept in ``run_dir/class_weights.json`` (a resumed run reads them)."""
    setting, num_classes = config.loss.class_weights, len(source.class_names)
    if setting is None:
        return None
    if isinstance(setting, list):
        if len(setting) != num_classes:
            raise UserError(f"loss.class_weights: {len(setting)} weights for {num_classes} classes "
                            f"({', '.join(source.class_names)})")
        return [float(w) for w in setting]
    path = run_dir / CLASS_WEIGHTS_FILE
    if path.is_file():
        return json.loads(path.read_text())["class_weights"]
    from tfseg.data.stats import class_weights

    weights = class_weights(source, "train", setting)
    if is_writer:
        write_text(path, json.dumps({"method": setting, "split": "train", "class_names": list(source.class_names),
                                     "class_weights": weights}, indent=1))
    return weights


def match_input_channels(config: RunConfig, source) -> None:
    """Sets ``model.options.input_channels`` to the source's (3 per stacked RGB image) when
    it is not 3, so that the run's config.yaml rebuilds the same network; refuses a
    configured value that differs."""
    channels = 3 * len(source.input_groups)
    configured = config.model.options.get("input_channels", 3)
    if "input_channels" in config.model.options and configured != channels:
        raise UserError(f"model.options.input_channels: {configured}, but {source.name} gives "
                        f"{channels} channels ({' + '.join(source.input_groups)})")
    if channels != 3:
        config.model.options["input_channels"] = channels


def check_depth_settings(config: RunConfig, source) -> None:
    """A depth head needs depth maps and a depth loss; a depth loss needs a depth head."""
    head = bool(config.model.options.get("depth_head"))
    if head and DEPTH not in source.targets:
        raise UserError(f"model.options.depth_head: the {source.name} data gives no depth maps"
                        + (" (set data.fgbg.depth: true)" if source.name == "fgbg" else ""))
    if head and not config.loss.depth_terms:
        raise UserError("model.options.depth_head: give its loss in loss.depth_terms, e.g. {l1: 1.0, ssim: 1.0}")
    if config.loss.depth_terms and not head:
        raise UserError("loss.depth_terms: the model has no depth head (model.options.depth_head: true)")


def check_best_metric(config: RunConfig, source) -> None:
    """val_max_f scores class 1 against the rest: two classes only. Without validation
    images, the last epoch is the only one to keep."""
    if config.train.best_metric == "val_max_f" and len(source.class_names) != 2:
        raise UserError(f"train.best_metric val_max_f: needs two classes; {source.name} has "
                        f"{len(source.class_names)} (use val_miou)")
    if config.train.best_metric != KEEP_LAST and not source.num_examples("val"):
        raise UserError(f"train.best_metric {config.train.best_metric}: the {source.name} data holds out no "
                        "validation images; set train.best_metric=last to keep the last epoch")


def head_objectives(config: RunConfig) -> dict[str, HeadObjective]:
    """How each head beyond the classes that the configured model has trains, by name."""
    if not config.model.options.get("depth_head"):
        return {}
    return {DEPTH: HeadObjective(make_depth_loss(config.loss.depth_terms), DepthMetrics)}


def train(config: RunConfig, verbose: int = 2,
          after_step: Callable[[Position], None] | None = None) -> Path:
    """Trains the configured model; returns the path of the saved best model.

    ``after_step`` is called after every training step with the loop's position.
    """
    check_options(config.model.name, config.model.options)
    # First: a multi-worker strategy must configure TensorFlow before anything runs.
    strategy = make_strategy(config.train)
    writer = is_chief(strategy)
    # A seeded split is frozen in the run directory: every later evaluation of this run,
    # and its resumption, use the very same split, from any directory.
    run_split_file = Path(config.run_dir).resolve() / SPLIT_FILE
    if not config.data.split_file and run_split_file.is_file():  # going on with a run
        config.data.split_file = str(run_split_file)
    if config.data.cache not in ("", "memory"):  # a file prefix: its folder must take files
        check_writable(f"{config.data.cache}_train", "data.cache")
    source, split_record = make_source(config.data), None
    match_input_channels(config, source)
    check_depth_settings(config, source)
    check_best_metric(config, source)
    if not config.data.split_file:
        split_record = source.split_record()
        if split_record is not None:
            config.data.split_file = str(run_split_file)
    run_dir, changes = prepare_run_dir(config, writer)
    changes = earlier_changes(run_dir / CONFIG_FILE) + changes
    if split_record is not None and writer:
        write_split_record(split_record, run_split_file)

    keras.utils.set_random_seed(config.train.seed)
    if config.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    policy = apply_precision(config.train)
    jit_compile = resolve_jit_compile(config.train)
    resolved = describe(policy, jit_compile, strategy)
    num_classes = len(source.class_names)
    palette = class_palette(config.data, source)
    if writer:
        write_config(run_dir, config, resolved_comment(resolved) + changes)
        write_labels(run_dir, source.class_names, palette, source.input_groups)

    t = config.train
    steps = t.steps_per_epoch or max(source.num_examples("train") // t.batch_size, 1)
    stride = model_stride(config.model.name, **config.model.options)
    cache: dict = {}  # the current stage's cached training examples (one stage without stages)

    stage_budget = StageBudget.of(t)
    configured_stage_epochs = [stage["epochs"] for stage in t.stages]

    def train_batches(epoch: int, skip: int) -> tf.data.Dataset:
        # Under a budget the counts are planned as training goes, in the checkpoints.
        stage = stage_index(checkpoints.stage_epochs.numpy() if stage_budget else configured_stage_epochs, epoch)
        data = stage_data_config(config.data, t, stage)
        if stage not in cache:
            cache.clear()  # an earlier stage's images are not needed again
            cache[stage] = cached_examples(source, "train", data)
            if stage is not None and verbose:
                size = data.resize or data.augment.crop_size
                print(f"stage {stage + 1}/{len(t.stages)}: training on {size[0]}x{size[1]} images")
        return build_dataset(source, "train", data, t.batch_size, training=True, seed=t.seed,
                             stride=stride, epoch=epoch, skip_batches=skip, cached=cache[stage])

    validating = source.num_examples("val") > 0
    val_ds = build_dataset(source, "val", config.data, t.batch_size, training=False, stride=stride) if validating else None
    panels = None
    if writer and validating:
        def panel_input(images):  # cached examples are resized and equalized already
            return pad_to_multiple(normalize(images, config.data.preprocess.normalization), stride)

        shown = list(cached_examples(source, "val", config.data).take(PREVIEW_IMAGES).as_numpy_iterator())
        panels = PredictionPanels(shown, panel_input, palette)

    with strategy.scope():
        model = build_model(config.model.name, num_classes, **config.model.options)
        optimizer, schedule = make_optimizer(t, steps, t.epochs, policy)
    class_weights = resolve_class_weights(config, source, run_dir, writer)
    loss = losses.make_loss(config.loss, num_classes, class_weights)
    trainer = Trainer(model, optimizer, loss, num_classes, strategy, jit_compile, head_objectives(config),
                      max_f=t.best_metric == "val_max_f")
    checkpoints = TrainingCheckpoints(run_dir / CHECKPOINT_DIR, model, optimizer, is_writer=writer,
                                      budgeted_stages=len(t.stages) if stage_budget else 0)
    print(f"{'going on with' if checkpoints.latest else 'starting'} run in {run_dir}")
    print(f"model {config.model.name}: {model.count_params():,} parameters, policy {policy}, "
          f"XLA {'on' if jit_compile else 'off'}, "
          f"{strategy.num_replicas_in_sync} replica(s), stride {stride}")
    for line in changes:
        print(line.removeprefix("# "))
    if class_weights is not None:
        print("class weights: " + ", ".join(f"{name} {w:.3g}" for name, w in zip(source.class_names, class_weights)))
    settings = LoopSettings(t.epochs, steps, t.checkpoint_steps, t.checkpoint_minutes, verbose,
                            t.plateau_patience, t.plateau_factor, t.early_stopping_patience, t.time_budget,
                            stage_budget, t.best_metric)
    tracker = (open_tracker(t.wandb_project, t.wandb_mode, config.name, config_lib.to_dict(config), run_dir)
               if writer else None)
    stop = StopRequest()
    with stop.handling_signals():
        try:
            run_loop(trainer, settings, schedule=schedule, train_batches=train_batches, val_batches=val_ds,
                     checkpoints=checkpoints, history=History(run_dir, writer, tracker),
                     best_path=run_dir / BEST_FILE, is_writer=writer, stop=stop, panels=panels,
                     after_step=after_step)
        except InputError as err:
            raise pipeline_error(err.error, source, err.split) from None
        except tf.errors.ResourceExhaustedError:
            raise UserError(f"out of memory training {config.model.name} on batches of {t.batch_size}: "
                            "lower train.batch_size (or data.resize / data.augment.crop_size)") from None
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError,
                tf.errors.CancelledError) as err:
            if not is_multi_worker(strategy):  # not a lost peer: TensorFlow's own error
                raise
            raise UserError(f"multi-worker training lost a worker ({worker_loss(err.message)}); "
                            "the same command on every worker resumes from the last checkpoint") from None
        finally:
            if tracker is not None:
                tracker.finish()

    if writer:
        best = load_trained_model(run_dir / BEST_FILE)
        with atomic_path(run_dir / MODEL_FILE) as tmp:
            best.save(tmp)
        checkpoints.remove()  # only for resuming, and the run is finished
    return run_dir / MODEL_FILE
