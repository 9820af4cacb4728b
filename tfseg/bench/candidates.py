"""The tfseg input pipeline as a benchmark candidate: KITTI Road, resize, CLAHE, flip.

Each :class:`TfsegCandidate` is one CLAHE backend of :func:`tfseg.data.pipeline.build_dataset`,
measured three ways per round (see :mod:`tfseg.bench.pipeline`).
"""

from __future__ import annotations

import time

from tfseg.bench.stats import rates

CLIP_LIMIT, TILE_GRID = 2.0, (8, 8)


def clahe_backends() -> list[str]:
    """The CLAHE backends of tfseg's input pipeline, the default first."""
    from tfseg.config import CHOICES, PreprocessConfig

    default = PreprocessConfig().clahe_backend
    return [default] + [b for b in CHOICES["data.preprocess.clahe_backend"] if b != default]


def pipeline_config(data_dir: str, resize, cache: str = "memory", backend: str = "tensorflow"):
    """The tfseg data configuration the benchmark times: KITTI Road, resize, CLAHE, flip."""
    from tfseg.config import AugmentConfig, DataConfig, PreprocessConfig

    preprocess = PreprocessConfig(clahe=True, clahe_clip_limit=CLIP_LIMIT,
                                  clahe_tile_grid=list(TILE_GRID), clahe_backend=backend)
    return DataConfig(source="kitti_road", data_dir=str(data_dir), resize=list(resize),
                      preprocess=preprocess, augment=AugmentConfig(horizontal_flip=True), cache=cache)


def tfseg_training_dataset(data_dir: str, resize, batch_size: int, seed: int = 0,
                           cache: str = "memory", backend: str = "tensorflow"):
    """tfseg's training dataset over ``data_dir`` and its number of batches per epoch."""
    from tfseg.data.pipeline import build_dataset
    from tfseg.data.sources import make_source

    config = pipeline_config(data_dir, resize, cache, backend)
    source = make_source(config)
    steps = source.num_examples("trainval") // batch_size
    return build_dataset(source, "trainval", config, batch_size, training=True, seed=seed), steps


def time_epochs(dataset, steps: int, batch_size: int, epochs: int) -> dict:
    """Times a fresh (never iterated) training dataset: its first epoch, then the rest.

    The dataset is built (which traces every map function) before any clock starts.
    Creating the iterator (graph rewrites, function instantiation) is timed on its own as
    ``iterator_setup_s``; tf.data starts its threads lazily on the first ``next``, so the
    first-epoch clock starts after it. With a shuffle buffer larger than the split (tfseg's
    default is 1000), the first batch only comes once every example has gone through the
    maps, so the first ``steps`` batches are exactly one pass over every file.
    """
    start = time.perf_counter()
    iterator = iter(dataset)
    setup = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        next(iterator)
    first, first_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps * (epochs - 1)):
        next(iterator)
    later, later_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    del iterator  # stops tf.data's background threads before the next candidate runs
    images = steps * batch_size
    return {"first": rates(images, first, first_cpu),
            "later": rates(images * (epochs - 1), later, later_cpu), "iterator_setup_s": setup}


class TfsegCandidate:
    """One tfseg configuration (a CLAHE backend) measured two ways per round: a fresh
    memory-cached dataset (first epoch, then cached epochs) and a fresh uncached one
    (its second epoch: decoding at steady state)."""

    def __init__(self, backend: str, data_dir: str, resize, batch_size: int, epochs: int):
        self.backend, self.data_dir, self.resize = backend, data_dir, resize
        self.batch_size, self.epochs = batch_size, epochs
        # Row names: the default backend keeps the plain "tfseg" prefix.
        self.prefix = "tfseg" if backend == "tensorflow" else f"tfseg_clahe_{backend}"

    def rows(self) -> list[str]:
        return [f"{self.prefix}_first_epoch", f"{self.prefix}_uncached_steady", f"{self.prefix}_cached"]

    def run(self, seed: int) -> dict:
        """``{row: rates}`` for one round, plus the iterator set-up time."""
        ds, steps = tfseg_training_dataset(self.data_dir, self.resize, self.batch_size, seed,
                                           "memory", self.backend)
        cached = time_epochs(ds, steps, self.batch_size, self.epochs)
        ds, steps = tfseg_training_dataset(self.data_dir, self.resize, self.batch_size, seed,
                                           "", self.backend)
        uncached = time_epochs(ds, steps, self.batch_size, 2)
        first, steady, later = self.rows()
        return {first: cached["first"], steady: uncached["later"], later: cached["later"],
                "iterator_setup_s": cached["iterator_setup_s"]}
