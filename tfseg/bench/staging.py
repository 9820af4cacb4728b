"""Stages the files a pipeline benchmark reads: a KITTI Road tree of labelled PNG pairs.

The pairs are copies of real KITTI Road images (a given folder or zip, else the small
shared sample) or generated road scenes whose PNGs compress like real ones.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

KITTI_SIZE = (375, 1242)  # height, width of most KITTI Road images

# KITTI ground-truth colours (RGB): road, not road, void.
_MAGENTA, _RED, _BLACK = (255, 0, 255), (255, 0, 0), (0, 0, 0)


def find_kitti_sample() -> Path | None:
    """The small real KITTI Road sample (``shared/data/kitti_road_sample``), if present.

    Looked for in ``$TFSEG_SHARED_DATA`` and in ``shared/data`` beside any folder above
    this package (the test data sit beside a checkout). Without it the benchmark generates
    road-like images.
    """
    candidates = []
    if os.environ.get("TFSEG_SHARED_DATA"):
        candidates.append(Path(os.environ["TFSEG_SHARED_DATA"]) / "kitti_road_sample")
    candidates += [parent / "shared" / "data" / "kitti_road_sample"
                   for parent in Path(__file__).resolve().parents]
    for candidate in candidates:
        if (candidate / "training" / "image_2").is_dir():
            return candidate
    return None


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
        raise OSError(f"cannot write {path}")


def synthetic_road_scene(rng: np.random.Generator, height: int, width: int):
    """A road-scene-like RGB image and its KITTI-style GT colours, both uint8 ``[H, W, 3]``.

    PNG decode time depends on how well the image compresses, so pure noise (which does
    not compress) or flat colour (which compresses to nothing) would misstate it. Smooth
    shading, a few bands and blobs and a moderate sensor noise give files about the size
    of real KITTI PNGs (~60% of the raw pixels: ~0.9 MB at 1242x375; GT ~4 KB).
    """
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    horizon = height * rng.uniform(0.35, 0.5)
    sky = np.stack([150 + 60 * (1 - yy / height)] * 3, -1) * np.array([0.8, 0.9, 1.0])
    ground = np.stack([90 + 40 * (yy / height)] * 3, -1) * np.array([1.0, 0.95, 0.9])
    image = np.where((yy < horizon)[..., None], sky, ground)
    for _ in range(12):  # buildings, cars, trees: soft-edged blobs of random colour
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = height * rng.uniform(0.03, 0.33), width * rng.uniform(0.02, 0.17)
        blob = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2) ** 2)
        image += blob[..., None] * (rng.uniform(-80, 80, 3))
    image += 25 * np.sin(xx / rng.uniform(3, 9))[..., None] * (yy > horizon)[..., None]
    image += rng.normal(0, 7, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)

    # Road: a trapezoid from the bottom edge to the horizon; the rest is "not road", and
    # a thin black (void) band sits along the road border as in the real ground truth.
    half = (yy - horizon) / max(height - horizon, 1) * width * 0.45
    inside = (yy > horizon) & (np.abs(xx - width / 2) < half)
    border = (yy > horizon) & (np.abs(np.abs(xx - width / 2) - half) < 2)
    gt = np.empty((height, width, 3), np.uint8)
    gt[:] = _RED
    gt[inside] = _MAGENTA
    gt[border] = _BLACK
    return image, gt


def stage_kitti_tree(dest: str | os.PathLike, num_images: int, data_dir: str | None = None,
                     synthetic: bool = False, image_size: tuple[int, int] = KITTI_SIZE,
                     seed: int = 0) -> tuple[Path, str]:
    """Writes a KITTI Road tree of exactly ``num_images`` labelled pairs into ``dest``.

    The pairs are copies of ``data_dir``'s labelled KITTI images (a folder or
    ``data_road.zip``), or if that is None of the shared KITTI sample, repeated as often
    as needed; each copy is its own file, so nothing is decoded from a shared buffer.
    With ``synthetic`` (or when neither exists) they are generated road scenes of
    ``image_size``. Returns the tree's root and a description of where the pixels came from.
    """
    root = Path(dest)
    images, truths = root / "training" / "image_2", root / "training" / "gt_image_2"
    images.mkdir(parents=True, exist_ok=True)
    truths.mkdir(parents=True, exist_ok=True)
    origin = None if synthetic else (data_dir or find_kitti_sample())
    if origin is not None:
        from tfseg.config import DataConfig
        from tfseg.data.kitti_road import KittiRoadSource, category
        from tfseg.images import read_bytes

        examples = KittiRoadSource(DataConfig(source="kitti_road", data_dir=str(origin))).examples("trainval")
        for i in range(num_images):
            example = examples[i % len(examples)]
            cat = category(example.id)
            (images / f"{cat}_{i:06d}.png").write_bytes(read_bytes(example.image_path))
            (truths / f"{cat}_road_{i:06d}.png").write_bytes(read_bytes(example.label_path))
        return root, f"{len(examples)} KITTI Road image(s) from {origin}, copied to {num_images}"
    rng = np.random.default_rng(seed)
    for i in range(num_images):
        image, gt = synthetic_road_scene(rng, *image_size)
        _write_png(images / f"um_{i:06d}.png", image)
        _write_png(truths / f"um_road_{i:06d}.png", gt)
    return root, f"{num_images} synthetic road scene(s) of {image_size[0]}x{image_size[1]}"


def staged_pairs(root: Path) -> list[tuple[str, str]]:
    """``(image, ground truth)`` paths of a staged tree, in tfseg's example order."""
    from tfseg.config import DataConfig
    from tfseg.data.kitti_road import KittiRoadSource

    source = KittiRoadSource(DataConfig(source="kitti_road", data_dir=str(root)))
    return [(e.image_path, e.label_path) for e in source.examples("trainval")]
