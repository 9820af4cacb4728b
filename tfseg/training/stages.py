"""Progressive resizing: small training images first, then larger ones, in one run.

``train.stages`` lists ``{size: [h, w], epochs: n}``. During a stage the *training*
pipeline works at its size: with ``data.resize`` set, the stage's size replaces it (and
``data.augment.crop_size``, if set, is scaled by the same factors); without a resize, the
stage's size is the random crop. Validation, evaluation and the exported model keep the
configured geometry, so scores stay comparable from stage to stage and the model serves as
configured. The stage follows from the epoch alone, so a resumed run is in the right one.
"""

from __future__ import annotations

import copy

from tfseg.config import DataConfig, TrainConfig


def stage_index(train: TrainConfig, epoch: int) -> int | None:
    """Which stage ``epoch`` (from 0) belongs to; None without stages."""
    if not train.stages:
        return None
    end = 0
    for index, stage in enumerate(train.stages):
        end += stage["epochs"]
        if epoch < end:
            return index
    return len(train.stages) - 1


def stage_data_config(data: DataConfig, train: TrainConfig, epoch: int) -> DataConfig:
    """The data configuration the training pipeline uses in ``epoch``."""
    index = stage_index(train, epoch)
    if index is None:
        return data
    size = list(train.stages[index]["size"])
    staged = copy.deepcopy(data)
    if data.resize:
        staged.resize = size
        if data.augment.crop_size:
            staged.augment.crop_size = [max(1, round(c * s / r)) for c, s, r in
                                        zip(data.augment.crop_size, size, data.resize)]
    else:
        staged.augment.crop_size = size
    return staged
