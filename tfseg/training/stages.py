"""Progressive resizing: small training images first, then larger ones, in one run.

``train.stages`` lists ``{size: [h, w], epochs: n}``. During a stage the *training*
pipeline works at its size: with ``data.resize`` set, the stage's size replaces it (and
``data.augment.crop_size``, if set, is scaled by the same factors); without a resize, the
stage's size is the random crop. Validation, evaluation and the exported model keep the
configured geometry, so scores stay comparable from stage to stage and the model serves as
configured.

With ``train.time_budget`` the stages' epochs are their shares of the budget instead
(:class:`StageBudget`): stage ``i`` ends when ``budget * (shares up to i) / (all shares)``
has passed, and its epoch count is fitted to that once its first epoch is timed, since a
small stage's epochs say little about a large one's. The stage follows from the epoch and
the counts alone (kept in the run's checkpoints), so a resumed run is in the right one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

from tfseg.config import DataConfig, TrainConfig


def stage_index(stage_epochs: Sequence[int], epoch: int) -> int | None:
    """Which stage ``epoch`` (from 0) belongs to, given each stage's epoch count; a count of
    0 (not planned yet) holds every epoch from the stage's start on. None without stages."""
    if not len(stage_epochs):
        return None
    end = 0
    for index, count in enumerate(stage_epochs):
        end += count
        if not count or epoch < end:
            return index
    return len(stage_epochs) - 1


def stage_data_config(data: DataConfig, train: TrainConfig, stage: int | None) -> DataConfig:
    """The data configuration the training pipeline uses in ``stage`` (None: no stages)."""
    if stage is None:
        return data
    size = list(train.stages[stage]["size"])
    staged = copy.deepcopy(data)
    if data.resize:
        staged.resize = size
        if data.augment.crop_size:
            staged.augment.crop_size = [max(1, round(c * s / r)) for c, s, r in
                                        zip(data.augment.crop_size, size, data.resize)]
    else:
        staged.augment.crop_size = size
    return staged


@dataclass(frozen=True)
class StageBudget:
    """``train.time_budget`` planned over ``train.stages``.

    ``shares``: each stage's share of the budget (its configured epochs, as weights);
    ``pixels``: the pixels of each stage's training images, by which an epoch of a stage not
    timed yet is estimated from the current one's.
    """

    budget_seconds: float
    shares: tuple[int, ...]
    pixels: tuple[int, ...]

    @classmethod
    def of(cls, train: TrainConfig) -> StageBudget | None:
        if not (train.time_budget and train.stages):
            return None
        return cls(train.time_budget * 60, tuple(stage["epochs"] for stage in train.stages),
                   tuple(stage["size"][0] * stage["size"][1] for stage in train.stages))

    def deadline(self, stage: int) -> float:
        """Seconds into training by which ``stage`` ends."""
        return self.budget_seconds * sum(self.shares[:stage + 1]) / sum(self.shares)

    def fit(self, stage: int, elapsed_seconds: float, epoch_seconds: float) -> int:
        """Epochs of ``stage`` in all, its first one done ``elapsed_seconds`` into training,
        each further one taking ``epoch_seconds``: at least 1."""
        remaining = self.deadline(stage) - elapsed_seconds
        return max(1, 1 + math.floor(remaining / max(epoch_seconds, 1e-9)))

    def estimated_total(self, stage_epochs: Sequence[int], stage: int, train_seconds: float,
                        validation_seconds: float) -> int:
        """All epochs of the run: the planned counts, and for each stage not timed yet its
        share of the budget over an epoch estimated from ``stage``'s (training time scaled
        by pixels, the same validation), at least 1."""
        total = 0
        for later, count in enumerate(stage_epochs):
            if count:
                total += count
                continue
            epoch_seconds = train_seconds * self.pixels[later] / self.pixels[stage] + validation_seconds
            share = self.budget_seconds * self.shares[later] / sum(self.shares)
            total += max(1, math.floor(share / max(epoch_seconds, 1e-9)))
        return total
