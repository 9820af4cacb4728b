"""Scoring at the ground truth's resolution, the way the VOC and KITTI devkits score.

Three things can be scored against a split's original, never-resized labels:

* a run (``tfseg evaluate --run-dir``): its best model, run through
  :func:`tfseg.serving.graph.make_inference_fn` in float32, the very path the exported
  SavedModel serves;
* an exported SavedModel (``--model``), through its own serving signature;
* a folder of predicted PNGs named by image id (``--predictions``), from any program.

Every image adds to one exact (int64) confusion matrix: mIoU over the classes present,
pixel accuracy and mean class accuracy, as in the VOC protocol (void ignored). For two-class
tasks (KITTI Road) the positive class's probability, quantised to 0..255 as in a KITTI
submission PNG, also fills two 256-bin histograms from which the devkit's pixel evaluation
follows: precision and recall at each threshold ``t / 255``, summed over all images, the
maximum F-measure and its threshold, and the 11-point average precision, over all images.

KITTI Road is also scored as its benchmark tables it (:mod:`tfseg.kitti_benchmark`): per
category (UM, UMM, UU, URBAN), in perspective and, where the data has ``calib/``, in the
bird's-eye view the server ranks by. The ``worst`` images by BEV F1 can be drawn, truth
against prediction in both views.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from tfseg.data.check import pipeline_error_reason
from tfseg.depth import depth_error_sums, depth_scores
from tfseg.errors import UserError
from tfseg.heads import DEPTH
from tfseg.kitti_benchmark import RoadBenchmark, format_tables
from tfseg.metrics import RoadCurve, confusion_matrix, positive_class_scores, scores
from tfseg.predictions import PREDICTION_FORMATS, image_id_of, quantize_probability
from tfseg.serving.test_time import NO_TEST_TIME_AUGMENTATION, TestTimeAugmentation


class Scorer:
    """Accumulates one split's scores, image by image, at the labels' own resolution.

    ``benchmark`` (KITTI Road) adds the benchmark's per-category tables; ``worst`` keeps
    that many images with the lowest BEV F1, for :func:`final_scores` to draw.
    """

    def __init__(self, class_names, benchmark: RoadBenchmark | None = None, worst: int = 0):
        self.class_names = list(class_names)
        num_classes = len(self.class_names)
        self.matrix = np.zeros((num_classes, num_classes), np.int64)
        self.road = RoadCurve() if num_classes == 2 else None
        self.benchmark = benchmark
        self.worst = WorstImages(worst)
        self.num_images = 0
        self.depth_sums = np.zeros(4, np.float64)  # a depth head's (tfseg.depth.depth_error_sums)

    def add(self, label: np.ndarray, classes: np.ndarray, probability: np.ndarray | None = None,
            image_id: str = "", image: np.ndarray | None = None) -> None:
        """``label``, ``classes`` uint8 ``[H, W]``; ``probability`` uint8 ``[H, W]`` of class 1
        (two-class tasks; without it the hard decision counts as 0 or 255); ``image_id`` and
        the ``image`` for the benchmark's tables and pictures."""
        self.matrix += confusion_matrix(label, classes, len(self.class_names))
        if self.road is not None:
            if probability is None:
                probability = np.where(classes == 1, 255, 0).astype(np.uint8)
            self.road.add(label, probability)
        if self.benchmark is not None:
            self.benchmark.add(image_id, label, probability)
            if image_id in self.benchmark.image_f1 and image is not None:
                self.worst.offer(self.benchmark.image_f1[image_id], image_id, image[..., -3:], label, probability)
        self.num_images += 1

    def add_depth(self, truth: np.ndarray, predicted: np.ndarray) -> None:
        """``truth`` and ``predicted`` float32 ``[H, W]`` metres; truth <= 0 means no depth."""
        self.depth_sums += depth_error_sums(truth, predicted)

    def result(self) -> dict:
        result = scores(self.matrix)
        if not result["valid_pixels"]:
            raise UserError(f"no labelled pixels in {self.num_images} image(s): this split has no ground truth")
        result["per_class_iou"] = dict(zip(self.class_names, result["iou_per_class"]))
        result["class_names"] = self.class_names
        result["confusion_matrix"] = self.matrix.tolist()
        result["num_images"] = self.num_images
        if self.road is not None:
            result.update(**positive_class_scores(self.matrix), **self.road.scores())
        if self.benchmark is not None:
            result.update(self.benchmark.result())
        result.update(depth_scores(self.depth_sums))
        return result


@dataclass(frozen=True)
class Worst:
    """Draw the ``count`` images with the lowest BEV F1 into ``folder`` (KITTI with calibration)."""

    count: int
    folder: Path


def final_scores(scorer: Scorer, source, worst: Worst | None) -> dict:
    """The scores, and the worst images drawn when asked for (listed under ``worst_images``)."""
    result = scorer.result()
    if worst is not None and scorer.worst.kept:
        from tfseg.viz import save_bev_comparison

        worst.folder.mkdir(parents=True, exist_ok=True)
        result["worst_images"] = []
        for rank, (f1, image_id, image, label, probability) in enumerate(scorer.worst.kept, 1):
            path = worst.folder / f"{rank:02d}_{image_id}.png"
            save_bev_comparison(path, image, label, probability, source.calibration(image_id))
            result["worst_images"].append({"id": image_id, "bev_f1": f1, "picture": str(path)})
    return result


class WorstImages:
    """The ``count`` images with the lowest BEV F1 seen so far, with what drawing them needs."""

    def __init__(self, count: int):
        self.count = count
        self.kept: list[tuple] = []  # (f1, image_id, image, label, probability), worst first

    def offer(self, f1: float, image_id: str, image, label, probability) -> None:
        if self.count:
            self.kept = sorted(self.kept + [(f1, image_id, image, label, probability)], key=lambda k: k[:2])
            del self.kept[self.count:]


def kitti_benchmark(source, split: str) -> RoadBenchmark | None:
    """The benchmark's tables for ``split`` of a KITTI Road source (in BEV when it has
    calibration, every file read here, so that a missing one refuses before any scoring)."""
    from tfseg.data.kitti_road import KittiRoadSource

    if not isinstance(source, KittiRoadSource):
        return None
    if not source.has_calibration:
        return RoadBenchmark(None)
    for name in split_names(source, split):
        for image_id in source.ids(name):
            source.calibration(image_id)
    return RoadBenchmark(source.calibration)


# -- what to score -----------------------------------------------------------------------

def split_names(source, split: str) -> list[str]:
    """The source splits that ``split`` means: ``all`` is every labelled image once."""
    if split == "all":
        if "trainval" in source.splits:
            return ["trainval"]
        return [s for s in ("train", "val") if s in source.splits]
    if split not in source.splits:
        raise UserError(f"{source.name} has no split {split!r}: choose one of "
                        f"{', '.join(source.splits)} or all")
    return [split]


def examples(source, split: str) -> Iterator[tuple[str, np.ndarray, np.ndarray, dict]]:
    """``(id, image uint8 [H, W, C], label uint8 [H, W], {target name: float32 [H, W]})`` at
    the original size, in order.

    An image or label that cannot be decoded, or a label of another size than its image,
    is a :class:`UserError` naming the example, not a TensorFlow traceback.
    """
    import tensorflow as tf

    from tfseg.data.sources import example_parts

    for name in split_names(source, split):
        decoded = source.dataset(name).as_numpy_iterator()
        for image_id in source.ids(name):
            try:
                image, label, targets = example_parts(next(decoded))
            except tf.errors.OpError as err:
                raise UserError(f"{source.name} image {image_id} ({name} split): {pipeline_error_reason(err)}; "
                                "`tfseg data check` lists every bad file") from None
            yield image_id, image, label, targets


def score_model(predict: Callable, source, split: str, progress: bool = True, worst: Worst | None = None) -> dict:
    """Scores ``predict`` (``images uint8 [1, H, W, C]`` -> ``{"classes", "probabilities"}``,
    and ``"depth"`` from a depth head, tensors at ``H x W``) on every image of ``split``."""
    from tqdm import tqdm

    total = sum(source.num_examples(name) for name in split_names(source, split))
    if not total:  # a split asked to hold nothing (KITTI's val with kitti.val_count: 0)
        raise UserError(f"{source.name}: the {split} split holds no images (none were held out); "
                        "score another split (--split), or other labelled images with evaluate --model")
    scorer = Scorer(source.class_names, kitti_benchmark(source, split), worst.count if worst else 0)
    for image_id, image, label, targets in tqdm(examples(source, split), total=total, desc=f"evaluate {split}",
                                                unit="img", disable=not progress):
        outputs = predict(image[np.newaxis])
        classes = np.asarray(outputs["classes"])[0]
        probability = None
        if scorer.road is not None:
            probability = quantize_probability(np.asarray(outputs["probabilities"])[0, ..., 1])
        scorer.add(label, classes, probability, image_id, image)
        if DEPTH in targets and DEPTH in outputs:
            scorer.add_depth(targets[DEPTH], np.asarray(outputs[DEPTH])[0])
    return final_scores(scorer, source, worst)


def evaluate_run(run_dir: str | Path, split: str, progress: bool = True, worst: Worst | None = None,
                 tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION) -> dict:
    """Scores a finished run's best model on ``split`` of its own data, as it is served
    (with ``tta``, as it is served when exported with it)."""
    import tensorflow as tf

    from tfseg.data.sources import make_source
    from tfseg.models import model_stride
    from tfseg.runs import load_run
    from tfseg.serving.graph import make_inference_fn, serving_input

    run = load_run(run_dir)
    source = make_source(run.config.data)
    model = run.network()
    stride = model_stride(run.config.model.name, **run.config.model.options)
    predict = tf.function(make_inference_fn(model, run.config.data, stride, tta=tta),
                          input_signature=[serving_input(3 * len(run.input_groups))])
    return {**score_model(predict, source, split, progress, worst), "split": split, "model": str(run.model_path),
            "test_time_augmentation": tta.metadata()}


def evaluate_saved_model(model_dir: str | Path, data_config, split: str, progress: bool = True,
                         worst: Worst | None = None,
                         tta: TestTimeAugmentation = NO_TEST_TIME_AUGMENTATION) -> dict:
    """Scores an exported model (a SavedModel, or a ``.tflite`` or ``.onnx`` file) on
    ``split`` of the data ``data_config`` describes (with ``tta`` around a SavedModel
    exported without it)."""
    from tfseg.data.sources import make_source
    from tfseg.serving.client import load_model

    model = load_model(model_dir)
    model.with_test_time_augmentation(tta)
    source = make_source(data_config)
    if len(model.class_names) != len(source.class_names):
        raise UserError(f"model {model_dir}: predicts {len(model.class_names)} classes but "
                        f"{source.name} has {len(source.class_names)}")
    if len(source.class_names) == 2 and not model.has_probabilities:
        raise UserError(f"model {model.path}: was exported without probabilities (--no-probabilities), "
                        "which the two-class scores (MaxF, AP) need; export it again without that flag")
    return {**score_model(model.serve, source, split, progress, worst), "split": split, "model": str(model.path),
            **({"test_time_augmentation": tta.metadata()} if tta.enabled else {})}


def read_prediction(path: Path, num_classes: int, form: str, shape) -> tuple[np.ndarray, np.ndarray | None]:
    """A predicted PNG -> ``(classes uint8 [H, W], probability of class 1 uint8 or None)``.

    ``form``: "index" (palette or grey PNG of class ids), "binary" (0 / 255 for two
    classes), "probability" (grey 0..255 of class 1, two classes: class 1 where >= 128),
    or "auto", which takes a palette PNG as indices and a grey one by its values: ids
    if all are below the number of classes, binary if they are 0 and 255, else (two
    classes) a probability map.
    """
    from tfseg.images import open_image, read_bytes

    try:
        image = open_image(read_bytes(str(path)), str(path))
    except UserError as err:
        raise UserError(f"prediction {err}") from None
    if image.mode not in ("P", "L"):
        raise UserError(f"prediction {path}: a {image.mode} image; expected a palette (P) or grey (L) PNG")
    values = np.asarray(image, dtype=np.uint8)
    if values.shape != tuple(shape):
        raise UserError(f"prediction {path}: is {values.shape[0]}x{values.shape[1]} but its ground "
                        f"truth is {shape[0]}x{shape[1]}")
    if form == "auto":
        present = np.unique(values)
        if image.mode == "P" or present.max() < num_classes:
            form = "index"
        elif num_classes == 2 and set(present.tolist()) <= {0, 255}:
            form = "binary"
        elif num_classes == 2:
            form = "probability"
        else:
            form = "index"  # reported below
    if form == "index":
        if values.max() >= num_classes:
            raise UserError(f"prediction {path}: holds value {int(values.max())}, outside the class ids "
                            f"0..{num_classes - 1}")
        return values, None
    if num_classes != 2:
        raise UserError(f"prediction {path}: {form} maps are for two-class tasks; this one has {num_classes}")
    if form == "binary":
        if not set(np.unique(values).tolist()) <= {0, 255}:
            raise UserError(f"prediction {path}: a binary mask must hold only 0 and 255")
        return (values == 255).astype(np.uint8), values
    return (values >= 128).astype(np.uint8), values


def highest_value(path: Path) -> int:
    """The highest value stored in a PNG (palette indices, grey levels)."""
    from tfseg.images import open_image, read_bytes

    try:
        return int(np.asarray(open_image(read_bytes(str(path)), str(path))).max())
    except UserError as err:
        raise UserError(f"prediction {err}") from None


def evaluate_predictions(predictions_dir: str | Path, data_config, split: str, form: str = "auto",
                         progress: bool = True, worst: Worst | None = None) -> dict:
    """Scores a folder of PNGs named ``<image id>.png`` (KITTI also ``um_road_000000.png``)
    against ``split``; a missing, extra or mis-sized file is an error naming it."""
    from tqdm import tqdm

    from tfseg.data.sources import make_source

    folder = Path(predictions_dir)
    if not folder.is_dir():
        raise UserError(f"predictions {folder}: not a directory")
    if form not in PREDICTION_FORMATS:
        raise UserError(f"prediction format {form!r}: choose one of {', '.join(PREDICTION_FORMATS)}")
    source = make_source(data_config)
    files = {image_id_of(p.stem): p for p in folder.iterdir() if p.suffix.lower() == ".png"}
    wanted = [i for name in split_names(source, split) for i in source.ids(name)]
    missing = [i for i in wanted if i not in files]
    if missing:
        raise UserError(f"predictions {folder}: no {missing[0]}.png for image {missing[0]} "
                        f"({len(missing)} of {len(wanted)} missing)")
    extra = sorted(set(files) - set(wanted))
    if extra:
        raise UserError(f"predictions {folder}: {files[extra[0]].name} is not an image of split {split!r} "
                        f"({len(extra)} such file(s))")
    if form == "probability" and all(highest_value(files[i]) <= 1 for i in wanted):
        # Probabilities of 0 or 1/255 everywhere: class maps, which would score as no road.
        raise UserError(f"predictions {folder}: every PNG holds only 0 and 1, class ids rather than "
                        "probabilities 0..255; use --format index (or auto)")
    scorer = Scorer(source.class_names, kitti_benchmark(source, split), worst.count if worst else 0)
    for image_id, image, label, _ in tqdm(examples(source, split), total=len(wanted), desc=f"evaluate {split}",
                                          unit="img", disable=not progress):
        classes, probability = read_prediction(files[image_id], len(source.class_names), form, label.shape)
        scorer.add(label, classes, probability, image_id, image)
    return {**final_scores(scorer, source, worst), "split": split, "predictions": str(folder)}


def write_report(metrics: dict, json_path: str | Path) -> Path:
    """Writes the metrics JSON and, beside it, ``<name>_confusion.png``; returns the PNG path."""
    from tfseg.fileio import write_text
    from tfseg.viz import save_confusion_matrix

    json_path = Path(json_path)
    write_text(json_path, json.dumps(metrics, indent=1) + "\n")
    picture = json_path.with_name(f"{json_path.stem}_confusion.png")
    save_confusion_matrix(np.asarray(metrics["confusion_matrix"]), metrics["class_names"], picture)
    return picture


def format_report(metrics: dict) -> str:
    """The per-class table and summary lines ``tfseg evaluate`` prints."""
    lines = [f"{metrics['num_images']} images of split {metrics['split']}, scored at their own resolution",
             f"{'class':<16} {'IoU':>8}"]
    for name, iou in metrics["per_class_iou"].items():
        lines.append(f"{name:<16} {'n/a' if iou is None else f'{iou:.4f}':>8}")
    lines.append(f"miou {metrics['miou']:.4f}  pixel_accuracy {metrics['pixel_accuracy']:.4f}  "
                 f"mean_class_accuracy {metrics['mean_class_accuracy']:.4f}")
    if "max_f" in metrics:
        threshold = metrics["max_f_threshold"]
        lines.append(f"precision {metrics['precision']:.4f}  recall {metrics['recall']:.4f}  "
                     f"f1 {metrics['f1']:.4f} (at 0.5)")
        lines.append(f"max_f {metrics['max_f']:.4f} (threshold {threshold if threshold is None else f'{threshold:.3f}'})  "
                     f"average_precision {metrics['average_precision']:.4f}")
    if "perspective" in metrics:
        lines += format_tables(metrics)
    if "depth_rmse" in metrics:
        lines.append(f"depth_rmse {metrics['depth_rmse']:.4f} m  depth_abs_rel {metrics['depth_abs_rel']:.4f}  "
                     f"depth_delta1 {metrics['depth_delta1']:.4f}")
    return "\n".join(lines)

