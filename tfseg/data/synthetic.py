"""The built-in synthetic dataset: coloured shapes pasted onto textured backgrounds.

Every example is a pure function of ``(seed, split, index)``, so the data are identical on
every machine and in every order, need no download, and can be regenerated on the fly.
Each image holds one to four objects of four classes with distinct shapes *and* colour
families, at random positions and sizes, some mirrored, some partly hidden by others or by
the image border. Masks are exact (shapes are drawn without anti-aliasing), and about half
of the objects get a one-pixel void (255) band along their visible edge, so the ignore
label is exercised the way VOC's object borders exercise it.
"""

from __future__ import annotations

import cv2
import numpy as np

from tfseg.data.labels import VOID, voc_palette

CLASS_NAMES = ("background", "disc", "box", "triangle", "cross")
SPLITS = {"train": 0, "val": 1, "test": 2}

# A hue family per object class (OpenCV hue, 0..180), saturated, so that colour and shape
# both identify the class; backgrounds are drawn from low saturation only.
_CLASS_HUES = {1: 0, 2: 60, 3: 115, 4: 25}


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured, low-saturation background: a colour gradient, stripes or checks, noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(60, 190, size=3)
    tilt = rng.uniform(-0.6, 0.6, size=(2, 1))
    gradient = (tilt[0] * yy[..., None] + tilt[1] * xx[..., None]) * rng.uniform(0.2, 1.0, 3)
    period = rng.uniform(6, 24)
    angle = rng.uniform(0, np.pi)
    phase = np.cos(angle) * xx + np.sin(angle) * yy
    if rng.random() < 0.5:
        pattern = np.sin(2 * np.pi * phase / period)
    else:
        pattern = np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
    texture = pattern[..., None] * rng.uniform(5, 25)
    noise = rng.normal(0, rng.uniform(3, 12), size=(height, width, 3))
    image = base + gradient + texture + noise
    # Pull every pixel towards its own grey level: backgrounds stay unsaturated.
    grey = image.mean(axis=-1, keepdims=True)
    image = grey + (image - grey) * 0.25
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_mask(rng: np.random.Generator, class_id: int, height: int, width: int) -> np.ndarray:
    """A filled shape of ``class_id`` at a random place and size: ``[H, W]`` bool."""
    canvas = np.zeros((height, width), np.uint8)
    size = rng.uniform(0.12, 0.3) * min(height, width)
    cy, cx = rng.uniform(-0.1, 1.1) * height, rng.uniform(-0.1, 1.1) * width
    if class_id == 1:  # disc
        cv2.circle(canvas, (round(cx), round(cy)), max(3, round(size)), 1, -1, lineType=cv2.LINE_8)
    else:
        if class_id == 2:  # box, axis-aligned, random aspect ratio
            half_w, half_h = size * rng.uniform(0.6, 1.0), size * rng.uniform(0.6, 1.0)
            points = [(-half_w, -half_h), (half_w, -half_h), (half_w, half_h), (-half_w, half_h)]
        elif class_id == 3:  # right triangle: asymmetric, so a mirrored one looks different
            points = [(-size, size), (size, size), (-size, -size)]
        else:  # cross
            a, b = size, size * 0.35
            points = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b),
                      (b, a), (-b, a), (-b, b), (-a, b), (-a, -b), (-b, -b)]
        polygon = np.array(points, np.float64)
        if rng.random() < 0.5:  # pasted mirrored
            polygon[:, 0] *= -1
        if class_id != 2:
            angle = rng.uniform(-0.5, 0.5)
            rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            polygon = polygon @ rotation.T
        polygon += (cx, cy)
        cv2.fillPoly(canvas, [np.round(polygon).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _object_texture(rng: np.random.Generator, class_id: int, height: int, width: int) -> np.ndarray:
    """The class's saturated colour with shading and noise: ``[H, W, 3]`` uint8 RGB."""
    hue = (_CLASS_HUES[class_id] + rng.uniform(-8, 8)) % 180
    hsv = np.array([[[hue, rng.uniform(170, 255), rng.uniform(150, 255)]]], np.uint8)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # A gentle linear shading, at most +-20 % over the image, keeps objects saturated.
    shade = 1.0 + 0.2 * (rng.uniform(-1, 1) * (yy / height - 0.5) + rng.uniform(-1, 1) * (xx / width - 0.5))
    noise = rng.normal(0, 6, size=(height, width, 3))
    return np.clip(rgb * shade[..., None] + noise, 0, 255).astype(np.uint8)


def generate_example(seed: int, split: str, index: int, height: int = 96, width: int = 96):
    """Returns ``(image, label)``: ``[H, W, 3]`` uint8 RGB and ``[H, W]`` uint8 class ids.

    Label values are class ids ``0..len(CLASS_NAMES)-1`` and :data:`VOID` on void bands.
    """
    rng = np.random.default_rng([seed, SPLITS[split], index])
    image = textured_background(rng, height, width)
    # Instance map: which pasted object (1-based) owns each pixel; 0 is background.
    instances = np.zeros((height, width), np.int32)
    classes, void_band = [0], [False]
    for instance in range(1, rng.integers(1, 5) + 1):
        class_id = int(rng.integers(1, len(CLASS_NAMES)))
        mask = _shape_mask(rng, class_id, height, width)
        image[mask] = _object_texture(rng, class_id, height, width)[mask]
        instances[mask] = instance
        classes.append(class_id)
        void_band.append(bool(rng.random() < 0.5))
    label = np.asarray(classes, np.uint8)[instances]
    kernel = np.ones((3, 3), np.uint8)
    for instance, has_band in enumerate(void_band):
        if not has_band:
            continue
        visible = (instances == instance).astype(np.uint8)
        band = cv2.dilate(visible, kernel).astype(bool) & ~cv2.erode(visible, kernel).astype(bool)
        # OpenCV pads erosions with the maximum value: the image border is not an edge.
        label[band] = VOID
    return image, label


def palette() -> np.ndarray:
    """``[num_classes, 3]`` uint8 RGB display colours of the synthetic classes."""
    return voc_palette(len(CLASS_NAMES))
