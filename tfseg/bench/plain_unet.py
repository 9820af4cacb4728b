"""The plain reference of ``tfseg bench accuracy``: the short Keras script a user would
write instead of using tfseg, kept deliberately plain (it is not a preset).

A U-Net of 16 to 256 filters without batch norm, on KITTI Road images resized to
160x576, Adam at 1e-3, batches of 4, random horizontal flips, cross-entropy over the
labelled pixels; it trains whole epochs until ``--minutes`` have passed, keeps the last
epoch's weights, and writes the road probability of each validation image at its
original size as KITTI names them (``um_road_000000.png``, 0..255), for
``tfseg evaluate --predictions``. Only OpenCV, NumPy and Keras: none of tfseg's pipeline.

    python -m tfseg.bench.plain_unet --data-dir DIR --split-file SPLIT --minutes 15 --output OUT
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import keras
import numpy as np


def read_pair(root: Path, image_id: str, size: tuple[int, int]):
    """``(image float32 [h, w, 3] in 0..1, label int32 [h, w]: 0 not road, 1 road, 2 void)``."""
    image = cv2.imread(str(root / "image_2" / f"{image_id}.png"))[..., ::-1]
    category, number = image_id.split("_")
    truth = cv2.imread(str(root / "gt_image_2" / f"{category}_road_{number}.png"))  # BGR
    label = np.where(truth[..., 2] > 0, (truth[..., 0] > 0).astype(np.int32), 2)  # devkit: red valid, blue road
    height, width = size
    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    return image, cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)


def unet(filters=(16, 32, 64, 128), bottom=256) -> keras.Model:
    def twice(x, n):
        x = keras.layers.Conv2D(n, 3, padding="same", activation="relu")(x)
        return keras.layers.Conv2D(n, 3, padding="same", activation="relu")(x)

    inputs = keras.Input((None, None, 3))
    x, skips = inputs, []
    for n in filters:
        x = twice(x, n)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = twice(x, bottom)
    for n, skip in zip(reversed(filters), reversed(skips)):
        x = keras.layers.Conv2DTranspose(n, 2, strides=2)(x)
        x = twice(keras.layers.Concatenate()([x, skip]), n)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1)(x))


def masked_cross_entropy(label, logits):
    valid = label < 2
    label = keras.ops.where(valid, label, 0)
    loss = keras.losses.sparse_categorical_crossentropy(label, logits, from_logits=True)
    valid = keras.ops.cast(valid, "float32")
    return keras.ops.sum(loss * valid) / keras.ops.maximum(keras.ops.sum(valid), 1.0)


def train_and_predict(root: Path, split: dict, minutes: float, output: Path, size=(160, 576), seed=0) -> dict:
    keras.utils.set_random_seed(seed)
    images, labels = zip(*(read_pair(root, i, size) for i in split["train"]))
    images, labels = np.stack(images), np.stack(labels)
    model = unet()
    model.compile(keras.optimizers.Adam(1e-3), loss=masked_cross_entropy)
    rng, started, epochs = np.random.default_rng(seed), time.perf_counter(), 0
    while time.perf_counter() - started < minutes * 60:
        order = rng.permutation(len(images))
        flip = rng.random(len(images)) < 0.5
        x = np.where(flip[:, None, None, None], images[:, :, ::-1], images)[order]
        y = np.where(flip[:, None, None], labels[:, :, ::-1], labels)[order]
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
        epochs += 1
    trained = time.perf_counter() - started
    output.mkdir(parents=True, exist_ok=True)
    for image_id in split["val"]:
        original = cv2.imread(str(root / "image_2" / f"{image_id}.png"))
        image, _ = read_pair(root, image_id, size)
        road = keras.ops.softmax(model(image[None]), axis=-1)[0, ..., 1]
        road = cv2.resize(np.asarray(road), original.shape[1::-1], interpolation=cv2.INTER_LINEAR)
        category, number = image_id.split("_")
        cv2.imwrite(str(output / f"{category}_road_{number}.png"), np.round(road * 255).astype(np.uint8))
    return {"epochs": epochs, "train_seconds": trained}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfseg.bench.plain_unet", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="KITTI Road's folder (holding training/)")
    parser.add_argument("--split-file", required=True, help="a tfseg split file: train on train, predict val")
    parser.add_argument("--minutes", type=float, required=True)
    parser.add_argument("--output", required=True, help="folder for the probability PNGs")
    parser.add_argument("--size", type=int, nargs=2, default=(160, 576), metavar=("H", "W"))
    args = parser.parse_args(argv)
    split = json.loads(Path(args.split_file).read_text())
    done = train_and_predict(Path(args.data_dir) / "training", split, args.minutes, Path(args.output),
                             tuple(args.size))
    print(json.dumps(done))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
