"""The files ``predict`` writes and ``evaluate --predictions`` reads, and their formats.

* class maps: palette PNGs whose values are class ids;
* probability maps (two classes): the class-1 probability as a grey PNG, ``round(255 p)``,
  named for the KITTI road benchmark where the image is a KITTI image
  (``um_000012`` -> ``um_road_000012.png``);
* depth maps: 16-bit grey PNGs of ``round(256 x metres)``, as KITTI's depth benchmark.
"""

from __future__ import annotations

import re

import numpy as np

# What a prediction PNG may hold; "auto" tells them apart by their values.
PREDICTION_FORMATS = ("auto", "index", "binary", "probability")
PROBABILITY_LEVELS = 256  # a uint8 probability map: probability q / 255
# Depth PNGs store round(256 x metres) in 16 bits, as KITTI's depth benchmark does.
DEPTH_PNG_SCALE = 256.0
_KITTI_SUBMISSION_NAME = re.compile(r"^(um|umm|uu)_road_(\d{6})$")


def quantize_probability(probability: np.ndarray) -> np.ndarray:
    """float probabilities in [0, 1] -> uint8 0..255, as a KITTI submission PNG stores them."""
    return np.round(np.clip(probability, 0.0, 1.0) * 255.0).astype(np.uint8)


def is_kitti_image_id(stem: str) -> bool:
    """Whether a file stem is a KITTI Road image id: ``um_000012``, ``umm_...``, ``uu_...``."""
    category, sep, number = stem.partition("_")
    return bool(sep) and category in ("um", "umm", "uu") and number.isdigit() and len(number) == 6


def kitti_submission_stem(image_id: str) -> str:
    """``um_000012`` -> ``um_road_000012``: the name the KITTI road benchmark expects for the
    road probability map of an image; ids of another form are kept as they are."""
    if is_kitti_image_id(image_id):
        category, _, number = image_id.partition("_")
        return f"{category}_road_{number}"
    return image_id


def image_id_of(stem: str) -> str:
    """The inverse of :func:`kitti_submission_stem`."""
    match = _KITTI_SUBMISSION_NAME.match(stem)
    return f"{match[1]}_{match[2]}" if match else stem


def encode_depth(depth: np.ndarray) -> np.ndarray:
    """Metres ``[H, W]`` float -> uint16 ``round(256 d)``, clipped to 0..65535."""
    return np.clip(np.round(np.nan_to_num(depth) * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)
