"""``tfseg data preview``: augmented training pairs, as the network will see them."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf

from tfseg.config import DataConfig
from tfseg.data.check import pipeline_error
from tfseg.data.labels import colorize
from tfseg.data.pipeline import augmented, cached_examples
from tfseg.data.sources import make_source
from tfseg.viz import overlay, save_grid


def augmented_examples(config: DataConfig, count: int, seed: int = 0):
    """``count`` training examples after the deterministic work and one random augmentation:
    ``(image uint8 [H, W, 3], label uint8 [H, W])`` pairs, before normalisation (of stacked
    images, the last)."""
    source = make_source(config)
    ds = cached_examples(source, "train", dataclasses.replace(config, cache=""))  # a look, not a run
    ds = ds.shuffle(min(config.shuffle_buffer, 256), seed=seed)
    seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda example, pair: augmented(example, pair, config.augment))
    examples = iter(ds.take(count))
    while True:
        try:
            image, label, *_ = next(examples)
        except StopIteration:
            return
        except tf.errors.OpError as err:  # a file that stops decoding: named in one line
            raise pipeline_error(err, source, "train") from None
        yield np.clip(np.round(image.numpy()[..., -3:]), 0, 255).astype(np.uint8), label.numpy(), source.palette


def save_preview(config: DataConfig, path: str | os.PathLike, count: int = 8, seed: int = 0) -> None:
    """A grid of ``count`` rows: augmented image, its mask (void in light grey), overlay."""
    rows = [[image, colorize(label, palette), overlay(image, label, palette)]
            for image, label, palette in augmented_examples(config, count, seed)]
    save_grid(rows, ["augmented image", "mask", "overlay"], path)
