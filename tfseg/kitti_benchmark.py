"""KITTI Road the way its benchmark scores it: the calibration files, the devkit's
bird's-eye view (BEV), and MaxF / AP / PRE / REC / FPR / FNR per category.

**Calibration.** Every KITTI Road image has ``calib/<id>.txt``: lines ``KEY: v v v ...``.
Three matter here: ``P2`` (3x4, the left colour camera's projection), ``R0_rect`` (3x3,
the rectifying rotation) and ``Tr_cam_to_road`` (3x4, camera -> road coordinates, whose
plane ``Y = 0`` is the road). As in the devkit, both are extended to 4x4 (a last row
``0 0 0 1``, and for ``R0_rect`` a zero last column), and a point ``(X, 0, Z)`` of the road
plane lands in the image at ``P2 · R0_rect · inv(Tr_cam_to_road) · (X, 0, Z, 1)``: the
columns X, Z and 1 of that 3x4 product are the road-to-image homography. Its pixel
coordinates count from 1 (the devkit's MATLAB heritage).

**The BEV grid** (the devkit's ``BirdsEyeView``): 0.05 m cells over ``x`` in [-10, 10] m
(left to right: 400 columns) and ``z`` in [6, 46] m ahead (far to near: 800 rows; row 0 is
``z = 45.975``). Each cell takes the image pixel under its centre, ``(int(u) - 1,
int(v) - 1)`` (truncation, no interpolation); a cell whose centre falls outside the image
(``u`` or ``v`` below 1 or beyond the width or height) is invalid: 0 in a transformed map,
void in a transformed label. :func:`from_bev` is the devkit's reverse, for pictures.

**Scores** (the devkit's ``evaluateRoad``): per category (``UM``, ``UMM``, ``UU``), the
valid pixels' counts summed over the category's images, then the maximum F-measure over
the thresholds ``t / 255``, the 11-point average precision, and precision, recall, false
positive rate ``FP / N`` and false negative rate ``FN / P`` at the MaxF threshold
(:class:`tfseg.metrics.RoadCurve`). ``URBAN`` pools the three categories' counts, as the
server's table does. The benchmark ranks in BEV; perspective scores are the same
computation on the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfseg.data.labels import VOID
from tfseg.errors import UserError
from tfseg.metrics import RoadCurve

BEV_RESOLUTION = 0.05  # metres per cell
BEV_X_RANGE = (-10.0, 10.0)  # lateral, metres
BEV_Z_RANGE = (6.0, 46.0)  # ahead of the camera, metres
BEV_SHAPE = (round((BEV_Z_RANGE[1] - BEV_Z_RANGE[0]) / BEV_RESOLUTION),
             round((BEV_X_RANGE[1] - BEV_X_RANGE[0]) / BEV_RESOLUTION))  # (800, 400): rows z, columns x
CATEGORIES = ("UM", "UMM", "UU")
URBAN = "URBAN"  # the three together
# What each category's table holds, in the order the benchmark prints it.
TABLE_KEYS = ("max_f", "average_precision", "precision", "recall", "fpr", "fnr")
_MATRIX_SHAPES = {"P2": (3, 4), "R0_rect": (3, 3), "Tr_cam_to_road": (3, 4)}


@dataclass(frozen=True)
class Calibration:
    """The matrices of one image's ``calib/<id>.txt`` that the BEV needs (float64)."""

    p2: np.ndarray  # [3, 4]
    r0_rect: np.ndarray  # [3, 3]
    tr_cam_to_road: np.ndarray  # [3, 4]

    def road_to_image(self) -> np.ndarray:
        """The 3x3 homography ``(X, Z, 1)`` on the road plane -> image ``(u, v, w)``, pixel
        coordinates ``(u / w, v / w)`` counted from 1."""
        r0 = np.eye(4)
        r0[:3, :3] = self.r0_rect
        cam_to_road = np.eye(4)
        cam_to_road[:3, :] = self.tr_cam_to_road
        projection = self.p2 @ r0 @ np.linalg.inv(cam_to_road)  # [3, 4]: road (X, Y, Z, 1) -> image
        return projection[:, [0, 2, 3]]


def parse_calibration(text: str, name: str) -> Calibration:
    """A calib file's text -> :class:`Calibration`; a missing key or a wrong number of values
    is a :class:`UserError` naming ``name``."""
    values = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise UserError(f"KITTI calib {name}: line {number} is not 'KEY: values'")
        try:
            values[key.strip()] = np.array(rest.split(), np.float64)
        except ValueError:
            raise UserError(f"KITTI calib {name}: line {number} ({key.strip()}) holds a value that is not "
                            "a number") from None
    matrices = {}
    for key, shape in _MATRIX_SHAPES.items():
        if key not in values:
            raise UserError(f"KITTI calib {name}: no {key} line")
        if values[key].size != shape[0] * shape[1]:
            raise UserError(f"KITTI calib {name}: {key} has {values[key].size} values, expected "
                            f"{shape[0] * shape[1]}")
        if not np.isfinite(values[key]).all():
            raise UserError(f"KITTI calib {name}: {key} holds a value that is not finite")
        matrices[key] = values[key].reshape(shape)
    calibration = Calibration(matrices["P2"], matrices["R0_rect"], matrices["Tr_cam_to_road"])
    if abs(np.linalg.det(np.vstack([calibration.tr_cam_to_road, [0, 0, 0, 1]]))) < 1e-9:
        raise UserError(f"KITTI calib {name}: Tr_cam_to_road cannot be inverted")
    return calibration


def read_calibration(location: str | Path) -> Calibration:
    """The calibration in a file (or ``archive.zip::member``)."""
    from tfseg.images import read_bytes

    try:
        text = read_bytes(str(location)).decode("ascii")
    except UnicodeDecodeError:
        raise UserError(f"KITTI calib {location}: not a text file") from None
    return parse_calibration(text, str(location))


def cell_centres() -> tuple[np.ndarray, np.ndarray]:
    """``(X, Z)`` float32 ``[800, 400]``: each BEV cell's centre on the road plane, metres
    (float32, as the devkit builds its grid)."""
    x = BEV_X_RANGE[0] + BEV_RESOLUTION * (np.arange(BEV_SHAPE[1]) + 0.5)
    z = BEV_Z_RANGE[1] - BEV_RESOLUTION * (np.arange(BEV_SHAPE[0]) + 0.5)
    grid_x, grid_z = np.meshgrid(x, z)
    return grid_x.astype(np.float32), grid_z.astype(np.float32)


@dataclass(frozen=True)
class BevSampling:
    """Which image pixel each BEV cell takes: ``rows``/``cols`` int64 ``[800, 400]`` (0 where
    ``valid`` is False)."""

    rows: np.ndarray
    cols: np.ndarray
    valid: np.ndarray  # bool [800, 400]

    def apply(self, image_map: np.ndarray, fill) -> np.ndarray:
        """``image_map`` ``[H, W, ...]`` -> ``[800, 400, ...]`` of its dtype, ``fill`` in
        invalid cells."""
        bev = image_map[self.rows, self.cols]
        mask = self.valid.reshape(self.valid.shape + (1,) * (bev.ndim - 2))
        return np.where(mask, bev, np.asarray(fill, image_map.dtype))


def bev_sampling(calibration: Calibration, image_shape: tuple[int, int]) -> BevSampling:
    """The devkit's sampling of an image of ``image_shape`` (height, width) into BEV."""
    height, width = image_shape
    grid_x, grid_z = cell_centres()
    road = np.stack([grid_x.ravel(), grid_z.ravel(), np.ones(grid_x.size, np.float32)])
    image = calibration.road_to_image() @ road  # float64 [3, cells]
    u, v = (image[:2] / image[2]).reshape(2, *BEV_SHAPE)
    valid = (u >= 1) & (v >= 1) & (u <= width) & (v <= height)
    cols = np.where(valid, np.trunc(np.where(valid, u, 1)) - 1, 0).astype(np.int64)
    rows = np.where(valid, np.trunc(np.where(valid, v, 1)) - 1, 0).astype(np.int64)
    return BevSampling(rows, cols, valid)


def to_bev(image_map: np.ndarray, calibration: Calibration, fill=0) -> np.ndarray:
    """An image-sized map ``[H, W, ...]`` (a label, a probability or class map, an RGB
    picture) in BEV, ``[800, 400, ...]``; ``fill`` where the grid leaves the image."""
    return bev_sampling(calibration, image_map.shape[:2]).apply(image_map, fill)


def from_bev(bev_map: np.ndarray, calibration: Calibration, image_shape: tuple[int, int],
             fill=0) -> np.ndarray:
    """A BEV map ``[800, 400, ...]`` back in the image, ``[H, W, ...]`` (the devkit's reverse
    transform): each pixel ``(x, y)``, counted from 1, goes through the inverse homography
    to the road plane and takes the cell ``round`` puts it in; ``fill`` off the grid."""
    height, width = image_shape
    y, x = np.mgrid[1:height + 1, 1:width + 1]
    pixels = np.stack([x.ravel(), y.ravel(), np.ones(x.size)]).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        road = np.linalg.inv(calibration.road_to_image()) @ pixels
        road_x, road_z = road[0] / road[2], road[1] / road[2]
        col = np.round((road_x - BEV_X_RANGE[0]) / BEV_RESOLUTION)
        row = np.round(BEV_SHAPE[0] - (road_z - BEV_Z_RANGE[0]) / BEV_RESOLUTION)
    valid = (col >= 1) & (col <= BEV_SHAPE[1]) & (row >= 1) & (row <= BEV_SHAPE[0])
    out = np.full((height * width,) + bev_map.shape[2:], fill, bev_map.dtype)
    out[valid] = bev_map[row[valid].astype(np.int64) - 1, col[valid].astype(np.int64) - 1]
    return out.reshape((height, width) + bev_map.shape[2:])


def category_of(image_id: str) -> str:
    """``"umm_000012"`` (or ``"umm_road_000012"``) -> ``"UMM"``."""
    return image_id.split("_")[0].upper()


def table_of(curve: RoadCurve) -> dict:
    """The benchmark's row for one category: :data:`TABLE_KEYS`."""
    s = curve.scores()
    return {"max_f": s["max_f"], "average_precision": s["average_precision"],
            "precision": s.get("max_f_precision", 0.0), "recall": s.get("max_f_recall", 0.0),
            "fpr": s.get("max_f_fpr", 0.0), "fnr": s.get("max_f_fnr", 1.0)}


class RoadBenchmark:
    """The benchmark's tables, accumulated image by image: per category in perspective and,
    with ``calibration`` (image id -> :class:`Calibration`), in BEV. Also each image's F1
    in BEV at probability 0.5 (``image_f1``), to find where a model fails."""

    def __init__(self, calibration=None):
        self.calibration = calibration
        self.curves = {space: {} for space in ("perspective", "bev")}
        self.image_f1: dict[str, float] = {}

    def add(self, image_id: str, label: np.ndarray, probability: np.ndarray) -> None:
        """``label`` uint8 ``[H, W]`` (0, 1, 255 = void), ``probability`` of road uint8 0..255."""
        category = category_of(image_id)
        self.curves["perspective"].setdefault(category, RoadCurve()).add(label, probability)
        if self.calibration is None:
            return
        sampling = bev_sampling(self.calibration(image_id), label.shape)
        bev_label, bev_probability = sampling.apply(label, VOID), sampling.apply(probability, 0)
        self.curves["bev"].setdefault(category, RoadCurve()).add(bev_label, bev_probability)
        self.image_f1[image_id] = f1_at_half(bev_label, bev_probability)

    def result(self) -> dict:
        """``{"perspective": {category: table}, "bev": {...}}`` (``bev`` only with
        calibration; categories without images left out; ``URBAN`` pools them)."""
        result = {}
        for space, curves in self.curves.items():
            if not curves:
                continue
            tables = {category: table_of(curves[category]) for category in CATEGORIES if category in curves}
            pooled = RoadCurve()
            for curve in curves.values():
                pooled.positives += curve.positives
                pooled.negatives += curve.negatives
            result[space] = {**tables, URBAN: table_of(pooled)}
        return result


def f1_at_half(label: np.ndarray, probability: np.ndarray) -> float:
    """F1 of road where ``probability >= 128`` over the valid pixels (1.0 with neither road
    predicted nor present)."""
    valid = label != VOID
    truth, predicted = label[valid] == 1, probability[valid] >= 128
    true_positive = int(np.sum(truth & predicted))
    denominator = int(np.sum(truth)) + int(np.sum(predicted))
    return 1.0 if denominator == 0 else 2 * true_positive / denominator


def format_tables(tables: dict) -> list[str]:
    """The benchmark's tables as text lines, one per space and category, in percent."""
    lines = [f"{'KITTI':<18}" + "".join(f"{key:>10}" for key in ("MaxF", "AP", "PRE", "REC", "FPR", "FNR"))]
    for space in ("perspective", "bev"):
        for category, table in tables.get(space, {}).items():
            name = f"{category} ({'BEV' if space == 'bev' else 'persp.'})"
            lines.append(f"{name:<18}" + "".join(f"{100 * table[key]:>10.2f}" for key in TABLE_KEYS))
    return lines
