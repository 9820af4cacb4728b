"""The tf.data input pipeline.

    source -> [resize] -> equalize (CLAHE) -> cache -> [shuffle, augment] -> normalize
           -> batch (padded) -> pad to the network stride -> prefetch

Deterministic work (decoding, resizing, CLAHE) happens before the cache, so it runs once,
and the cache holds compact uint8 images; random work (shuffling, augmentation) happens
after it, so it differs every epoch. With a fixed seed the whole stream, order and
augmentation included, is reproducible; each epoch's stream depends only on the seed and
the epoch, so a run resumed in the middle of an epoch sees the very batches it would have.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfseg.config import AugmentConfig, DataConfig
from tfseg.data.augment import augment, resize_nearest_2d
from tfseg.data.labels import VOID
from tfseg.data.preprocess import equalize, normalize, resize_image
from tfseg.data.sources import Source, example_parts, with_targets


def pad_batch_to_multiple(batch: tuple, multiple: int) -> tuple:
    """Pads a batch's ``[B, H, W, C]`` images (with 0), ``[B, H, W]`` labels (with void) and
    ``[B, H, W]`` targets (with 0: unknown) at the bottom and right so that H and W are
    multiples of ``multiple``."""
    images, labels, targets = example_parts(batch)
    height, width = tf.shape(labels)[1], tf.shape(labels)[2]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    images = tf.pad(images, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
    labels = tf.pad(labels, [[0, 0], [0, pad_h], [0, pad_w]], constant_values=VOID)
    return with_targets(images, labels, {name: tf.pad(target, [[0, 0], [0, pad_h], [0, pad_w]])
                                         for name, target in targets.items()})


def cached_examples(source: Source, split: str, config: DataConfig) -> tf.data.Dataset:
    """Unbatched ``(image uint8 [H, W, C], label uint8 [H, W])`` (and the source's targets,
    :func:`tfseg.data.sources.example_parts`) after the deterministic work: the steps of
    :func:`tfseg.data.preprocess.network_input` before normalisation. Targets are resized
    with nearest neighbour, like labels: no depth is invented between an object and what
    lies behind it."""

    def deterministic(*example):
        image, label, targets = example_parts(example)
        if config.resize:
            image = resize_image(image, config.resize)
            label = resize_nearest_2d(label, config.resize)
            targets = {name: resize_nearest_2d(target, config.resize) for name, target in targets.items()}
        return with_targets(equalize(image, config.preprocess, config.preprocess.clahe_backend), label, targets)

    ds = source.dataset(split).map(deterministic, num_parallel_calls=tf.data.AUTOTUNE)
    if config.cache == "memory":
        ds = ds.cache()
    elif config.cache:
        ds = ds.cache(f"{config.cache}_{split}")
    return ds


def augmented(example: tuple, seed, config: AugmentConfig) -> tuple:
    """:func:`tfseg.data.augment.augment` of an example, its targets included."""
    image, label, targets = example_parts(example)
    return augment(image, label, seed, config, targets)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's shuffling and augmentation, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def build_dataset(source: Source, split: str, config: DataConfig, batch_size: int,
                  training: bool, seed: int = 0, stride: int = 1, epoch: int = 0,
                  skip_batches: int = 0, cached: tf.data.Dataset | None = None) -> tf.data.Dataset:
    """Batches of ``(images float32 [B, H, W, C], labels uint8 [B, H, W])``, and the source's
    targets ``{name: float32 [B, H, W]}`` (0: unknown) as a third element.

    ``training`` switches on shuffling, augmentation and infinite repetition; evaluation
    datasets are one ordered pass that keeps the last, smaller batch. Images of different
    sizes are batched by padding (void labels), and every batch is padded to a multiple of
    ``stride``, the size multiple the network needs.

    A training stream starts at ``epoch``'s order and augmentation, ``skip_batches``
    batches in (skipped before augmentation, so skipping costs little). ``cached``, from
    :func:`cached_examples`, lets several streams share one cache.
    """
    ds = cached if cached is not None else cached_examples(source, split, config)
    if training:
        # No larger than the split: a bigger buffer would fill across epoch boundaries and
        # hold the first batch back until several epochs were decoded.
        buffer = max(1, min(config.shuffle_buffer, source.num_examples(split)))
        stream_seed = epoch_seed(seed, epoch)
        ds = ds.shuffle(buffer, seed=stream_seed, reshuffle_each_iteration=True).repeat()
        seeds = tf.data.Dataset.random(seed=stream_seed).batch(2, drop_remainder=True)
        ds = tf.data.Dataset.zip(ds, seeds).skip(skip_batches * batch_size).map(
            lambda example, pair: augmented(example, pair, config.augment), num_parallel_calls=tf.data.AUTOTUNE)

    def normalized(*example):
        image, label, targets = example_parts(example)
        return with_targets(normalize(image, config.preprocess.normalization), label, targets)

    ds = ds.map(normalized, num_parallel_calls=tf.data.AUTOTUNE)
    padding = with_targets(0.0, tf.constant(VOID, tf.uint8), {name: 0.0 for name in source.targets})
    ds = ds.padded_batch(batch_size, padding_values=padding, drop_remainder=training)
    if stride > 1:
        ds = ds.map(lambda *batch: pad_batch_to_multiple(batch, stride))
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
