"""The reference the input pipeline is measured against: a plain single-threaded OpenCV loop.

It does tfseg's work image by image, on the same files and with the same output:
``cv2.imread`` of image and ground truth, GT colours -> labels, ``cv2.resize``
(INTER_LINEAR image, INTER_NEAREST_EXACT mask), CLAHE on Y of YCrCb, random horizontal
flip, ``/ 255`` to float32 and stacking into batches. :func:`check_equivalence` holds its
output against tfseg's.
"""

from __future__ import annotations

import time

import numpy as np

from tfseg.bench.candidates import CLIP_LIMIT, TILE_GRID, pipeline_config
from tfseg.bench.stats import rates


class OpenCvLoop:
    """The single-threaded OpenCV reference: same files, same work, same output as tfseg."""

    def __init__(self, pairs, resize, batch_size: int, seed: int = 0):
        import cv2

        cv2.setNumThreads(1)
        self.cv2 = cv2
        self.pairs, self.batch_size = pairs, batch_size
        self.size = (int(resize[1]), int(resize[0]))  # cv2 wants (width, height)
        self.clahe = cv2.createCLAHE(CLIP_LIMIT, TILE_GRID)
        self.rng = np.random.default_rng(seed)

    def example(self, index: int, flip: bool):
        """One ``(image uint8 RGB [h, w, 3], label uint8 [h, w])``, as tfseg's cache + flip."""
        cv2 = self.cv2
        image_path, gt_path = self.pairs[index]
        bgr = cv2.imread(image_path, cv2.IMREAD_COLOR)
        gt = cv2.imread(gt_path, cv2.IMREAD_COLOR)
        # KITTI devkit: valid where red > 0, road where blue > 0 (BGR: channel 2, channel 0).
        label = np.where(gt[..., 2] > 0, (gt[..., 0] > 0).view(np.uint8), np.uint8(255))
        bgr = cv2.resize(bgr, self.size, interpolation=cv2.INTER_LINEAR)
        # NEAREST_EXACT samples pixel centres like tf.image.resize; plain INTER_NEAREST
        # (same cost) picks a neighbouring pixel on ~0.5% of the label map.
        label = cv2.resize(label, self.size, interpolation=cv2.INTER_NEAREST_EXACT)
        y, cr, cb = cv2.split(cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb))
        rgb = cv2.cvtColor(cv2.merge([self.clahe.apply(y), cr, cb]), cv2.COLOR_YCrCb2RGB)
        if flip:
            rgb, label = cv2.flip(rgb, 1), cv2.flip(label, 1)
        return rgb, label

    def epoch(self):
        """One shuffled pass as float32 ``/ 255`` image batches and uint8 label batches;
        yields ``(images [B, h, w, 3], labels [B, h, w])`` and drops a last partial batch."""
        order = self.rng.permutation(len(self.pairs))
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            examples = [self.example(i, self.rng.random() < 0.5) for i in order[start:start + self.batch_size]]
            images = np.stack([e[0] for e in examples]).astype(np.float32) * np.float32(1 / 255)
            yield images, np.stack([e[1] for e in examples])

    def time_epoch(self) -> dict:
        """Throughput and CPU time per image of one epoch (see :func:`tfseg.bench.stats.rates`)."""
        start, cpu_start = time.perf_counter(), time.process_time()
        count = sum(len(labels) for _, labels in self.epoch())
        return rates(count, time.perf_counter() - start, time.process_time() - cpu_start)


def check_equivalence(data_dir: str, pairs, resize, backends) -> dict:
    """Compares tfseg's cached example 0 (each backend) with the OpenCV loop's (unflipped):
    labels must be identical; images differ only where the bilinear resizes round
    differently (CLAHE can stretch a 1-level difference by a few levels). The backends
    must agree with each other exactly."""
    from tfseg.data.pipeline import cached_examples
    from tfseg.data.sources import make_source

    cv_image, cv_label = OpenCvLoop(pairs, resize, 1).example(0, flip=False)
    images, result = {}, {}
    for backend in backends:
        config = pipeline_config(data_dir, resize, "", backend)
        image, label = next(iter(cached_examples(make_source(config), "trainval", config)))
        images[backend] = image.numpy()
        diff = np.abs(images[backend].astype(np.int16) - cv_image)
        result[backend] = {"labels_identical": bool(np.array_equal(label.numpy(), cv_label)),
                           "image_max_abs_diff": int(diff.max()),
                           "image_mean_abs_diff": float(diff.mean())}
    first = images[backends[0]]
    result["backends_identical"] = all(np.array_equal(first, other) for other in images.values())
    return result
