"""The built-in foreground-on-background dataset: an object pasted onto a scene.

Like :mod:`tfseg.data.synthetic`, every example is a pure function of
``(seed, split, index)``. Each split has its own pools of textured backgrounds
(``height x width``) and of foregrounds with transparency (``foreground_size`` square,
RGB + alpha): a disc, an ellipse or an irregular blob with anti-aliased edges, in a
saturated shaded colour. An example takes one background and one foreground from its
split's pools, mirrors the foreground half of the time and pastes it, alpha-blended, at a
random place where it fits whole. The mask is exact: foreground where alpha >= 0.5.

Each scene also has a plausible depth map in metres: the background is a ground plane
seen from above the horizon, farthest at the top row and nearest at the bottom (each
background its own range, about 8-12 m to 1.5-3 m), and the object stands nearer than the
ground at its foot (60-90 % of that depth), its middle slightly nearer than its rim.
Validation and test scenes are built from backgrounds and foregrounds never seen in
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tfseg.data.synthetic import SPLITS, textured_background

CLASS_NAMES = ("background", "foreground")
PALETTE = np.array([[0, 0, 0], [255, 200, 0]], np.uint8)
# Seed streams: the pools of backgrounds and foregrounds, the scenes built from them, and
# the backgrounds' depth ranges.
_BACKGROUND, _FOREGROUND, _SCENE, _BACKGROUND_DEPTH = 0, 1, 2, 3


@dataclass(frozen=True)
class Scene:
    background: np.ndarray  # uint8 [H, W, 3] RGB: the scene without the object
    composite: np.ndarray  # uint8 [H, W, 3] RGB: the object pasted onto the background
    mask: np.ndarray  # uint8 [H, W]: 1 on the object (alpha >= 0.5), else 0
    depth: np.ndarray  # float32 [H, W], metres: the object where the mask is 1, else the ground


def foreground(seed: int, split: str, index: int, size: int) -> np.ndarray:
    """Foreground ``index`` of ``split``'s pool: ``[size, size, 4]`` float32 RGB (0..255) + alpha (0..1)."""
    rng = np.random.default_rng([seed, _FOREGROUND, SPLITS[split], index])
    canvas = np.zeros((size, size), np.uint8)
    centre = (size / 2 + rng.uniform(-0.05, 0.05) * size, size / 2 + rng.uniform(-0.05, 0.05) * size)
    radius = rng.uniform(0.3, 0.46) * size
    kind = rng.integers(3)
    if kind == 0:  # disc
        cv2.circle(canvas, np.round(centre).astype(int).tolist(), round(radius), 255, -1, cv2.LINE_AA)
    elif kind == 1:  # ellipse at a random angle
        axes = (round(radius), round(radius * rng.uniform(0.45, 0.8)))
        cv2.ellipse(canvas, np.round(centre).astype(int).tolist(), axes, rng.uniform(0, 180), 0, 360,
                    255, -1, cv2.LINE_AA)
    else:  # a blob: a star-shaped polygon with radii varying around the centre
        angles = np.sort(rng.uniform(0, 2 * np.pi, rng.integers(6, 11)))
        radii = radius * rng.uniform(0.55, 1.0, angles.size)
        points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [np.round(points).astype(np.int32)], 255, cv2.LINE_AA)
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(150, 255), rng.uniform(140, 255)]]], np.uint8)
    colour = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    shade = 1.0 + 0.3 * (rng.uniform(-1, 1) * yy + rng.uniform(-1, 1) * xx)
    rgb = np.clip(colour * shade[..., None] + rng.normal(0, 5, (size, size, 3)), 0, 255)
    return np.concatenate([rgb, canvas[..., None].astype(np.float32) / 255.0], axis=-1).astype(np.float32)


def generate_scene(seed: int, split: str, index: int, height: int = 192, width: int = 192,
                   foreground_size: int = 96, backgrounds: int = 100, foregrounds: int = 100) -> Scene:
    """Scene ``index`` of ``split``: a background and a foreground of the split's pools
    (``backgrounds`` and ``foregrounds`` of them), the foreground mirrored or not, pasted
    at a random place."""
    if foreground_size > min(height, width):
        raise ValueError(f"foreground_size {foreground_size} does not fit in {height}x{width}")
    rng = np.random.default_rng([seed, _SCENE, SPLITS[split], index])
    background_id, foreground_id = int(rng.integers(backgrounds)), int(rng.integers(foregrounds))
    background = textured_background(np.random.default_rng([seed, _BACKGROUND, SPLITS[split], background_id]),
                             height, width)
    tile = foreground(seed, split, foreground_id, foreground_size)
    if rng.random() < 0.5:
        tile = tile[:, ::-1]
    top = int(rng.integers(height - foreground_size + 1))
    left = int(rng.integers(width - foreground_size + 1))
    window = (slice(top, top + foreground_size), slice(left, left + foreground_size))
    alpha = tile[..., 3:]
    composite = background.astype(np.float32)
    composite[window] = (1 - alpha) * composite[window] + alpha * tile[..., :3]
    mask = np.zeros((height, width), np.uint8)
    mask[window] = alpha[..., 0] >= 0.5

    depth_rng = np.random.default_rng([seed, _BACKGROUND_DEPTH, SPLITS[split], background_id])
    far, near = depth_rng.uniform(8.0, 12.0), depth_rng.uniform(1.5, 3.0)
    rows = np.linspace(far, near, height, dtype=np.float32)
    depth = np.repeat(rows[:, None], width, axis=1)
    foot = top + int(np.nonzero(alpha[..., 0] >= 0.5)[0].max())  # the object's lowest row
    nearest = rows[foot] * rng.uniform(0.6, 0.9)
    yy, xx = np.mgrid[0:foreground_size, 0:foreground_size] / (foreground_size - 1) * 2 - 1
    rounded = nearest * (1.0 - 0.1 * np.clip(1.0 - (yy**2 + xx**2), 0.0, 1.0))
    depth[window] = np.where(alpha[..., 0] >= 0.5, rounded, depth[window])
    return Scene(background, np.round(composite).astype(np.uint8), mask, depth.astype(np.float32))
