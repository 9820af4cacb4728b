"""``tfseg bench accuracy``: what a training budget buys on KITTI Road, recipe against
recipe, with the plain reference measured in the same run.

Every recipe (a preset or config file, or ``plain``: :mod:`.plain_unet`) is trained with
``train.time_budget`` = each budget (minutes) on each of k folds of the labelled images
(stratified by category, seeded: :func:`folds`), then scored on the fold's held-out
images at their original size as ``tfseg evaluate`` scores them (MaxF, AP, road IoU, and
the bird's-eye-view URBAN MaxF where the data has ``calib/``; MaxF per category, in the
image and in the bird's-eye view, in the JSON and CSV tables). With ``--tta-flip`` each
tfseg recipe's cell is also scored with flip test-time augmentation (``evaluate --model
--tta-flip``): its MaxF and road IoU, and its cost in milliseconds per image and as a ratio
of the time, measured side by side in one process (``tfseg bench predict --tta-flip``).

Cells run in the order budget, fold, recipe, so that the recipes compared at one budget
share the machine's hour. Each cell trains in its own process and writes its scores to
``OUT/cells/<recipe>_<budget>min_fold<i>.json`` atomically; a rerun skips the cells
already written, so a long measurement can span several sittings.

A tfseg recipe trains on a copy of the data that holds only the fold's training images
(links: :func:`training_view`), so that its own validation split, and the best epoch it
picks by it, come from those images as they would for a user who has only them; its
export is then scored. The plain reference keeps its last epoch. Then ``OUT/table.csv``,
``OUT/table.json`` (mean and spread over folds, and each recipe's ratio to ``plain``
where it was measured) and ``OUT/accuracy.png`` (MaxF and road IoU against minutes).

    tfseg bench accuracy --data-dir data/kitti/data_road --recipes kitti_unet plain \\
        --budgets 5 15 --folds 2 --output bench/accuracy
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tfseg.arguments import ArgumentParser, positive_float, positive_int
from tfseg.data.splits import FORMAT, seeded_order
from tfseg.errors import UserError
from tfseg.fileio import atomic_path, check_writable, write_text

PLAIN = "plain"
SCORES = ("max_f", "average_precision", "road_iou", "bev_max_f", "tta_max_f", "tta_road_iou",
          "tta_ms_per_image", "tta_time_ratio")
CATEGORIES = ("UM", "UMM", "UU")  # KITTI Road's, each scored alone as well as URBAN, all three
CATEGORY_SCORES = tuple(f"{prefix}{category.lower()}" for prefix in ("max_f_", "bev_max_f_") for category in CATEGORIES)


def folds(ids: list[str], k: int, seed: int = 0) -> list[dict[str, list[str]]]:
    """``k`` train/val splits whose val parts partition ``ids``: each category (the id's
    prefix, ``um``/``umm``/``uu``) is dealt round-robin in a seeded order, so every fold
    holds each category in proportion."""
    if k < 2 or len(ids) < k:
        raise UserError(f"--folds {k}: needs at least 2 folds and as many labelled images ({len(ids)})")
    by_category: dict[str, list[str]] = {}
    for image_id in sorted(ids):
        by_category.setdefault(image_id.rsplit("_", 1)[0], []).append(image_id)
    val: list[list[str]] = [[] for _ in range(k)]
    dealt = 0
    for category in sorted(by_category):
        for image_id in seeded_order(by_category[category], seed):
            val[dealt % k].append(image_id)
            dealt += 1
    return [{"train": sorted(set(ids) - set(part)), "val": sorted(part)} for part in val]


def labelled_ids(data_dir: Path) -> list[str]:
    from tfseg.config import DataConfig
    from tfseg.data.sources import make_source

    source = make_source(DataConfig(source="kitti_road", data_dir=str(data_dir)))
    ids = [i for split in ("train", "val") for i in source.split_record()[split]]
    if not ids:
        raise UserError(f"--data-dir {data_dir}: holds no labelled KITTI Road images")
    return ids


def run_command(command: list[str], log: Path) -> None:
    """Runs one of the bench's processes; its output goes to ``log``, its failure is one line."""
    with open(log, "w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise UserError(f"{' '.join(command[2:5])}... exited {done.returncode}: {tail[0][:200]} (log: {log})")


def scored(evaluate: list[str], json_path: Path, log: Path) -> tuple[dict, float]:
    """``tfseg evaluate`` with these arguments: its metrics and its wall time in seconds."""
    started = time.perf_counter()
    run_command([sys.executable, "-m", "tfseg", "evaluate", *evaluate, "--json", str(json_path)], log)
    return json.loads(json_path.read_text()), time.perf_counter() - started


def training_view(data_dir: Path, ids: list[str], folder: Path) -> Path:
    """A KITTI Road folder that holds only ``ids`` (links to their image, ground truth and
    calibration files): the data a user with just these images has. A preset trained on it
    holds out its own validation split from them, as it would for that user, and never sees
    the fold's held-out images."""
    view = folder / "data"
    for sub, name in (("image_2", "{c}_{n}.png"), ("gt_image_2", "{c}_road_{n}.png"), ("calib", "{c}_{n}.txt")):
        (view / "training" / sub).mkdir(parents=True)
        for image_id in ids:
            category, number = image_id.rsplit("_", 1)
            file = data_dir / "training" / sub / name.format(c=category, n=number)
            if file.is_file():
                (view / "training" / sub / file.name).symlink_to(file)
    return view


def train_cell(recipe: str, budget: float, split_file: Path, data_dir: Path, folder: Path,
               overrides: list[str], tta: bool) -> dict[str, list[str]]:
    """Trains one recipe on one fold's training images for ``budget`` minutes in ``folder``;
    returns the ``tfseg evaluate`` arguments that score what it trained on the fold's
    held-out images, by name: ``plain``, and ``tta`` (flip TTA) where asked for."""
    split = json.loads(split_file.read_text())
    outer = ["--dataset", "kitti_road", "--data-dir", str(data_dir), "--set", f"data.split_file={split_file}"]
    if recipe == PLAIN:
        run_command([sys.executable, "-m", "tfseg.bench.plain_unet", "--data-dir", str(data_dir),
                     "--split-file", str(split_file), "--minutes", f"{budget:g}",
                     "--output", str(folder / "probabilities")], folder / "train.log")
        return {"plain": ["--predictions", str(folder / "probabilities"), *outer]}
    run_dir, tfseg = folder / "run", [sys.executable, "-m", "tfseg"]
    train = [*tfseg, "train", "--config", recipe, "--run-dir", str(run_dir), "--set", f"train.time_budget={budget:g}",
             "--set", f"data.data_dir={training_view(data_dir, split['train'], folder)}"]
    for setting in overrides:
        train += ["--set", setting]
    run_command(train, folder / "train.log")
    # Scored as served: the export, on the fold's held-out images at their original size.
    run_command([*tfseg, "export", "--run-dir", str(run_dir), "--version", "1"], folder / "export.log")
    scorings = {"plain": ["--model", str(run_dir / "export" / "1"), *outer]}
    if tta:
        scorings["tta"] = [*scorings["plain"], "--tta-flip"]
    return scorings


def score_cell(evaluate: list[str], folder: Path) -> dict:
    """The devkit's scores of a trained cell."""
    metrics, _ = scored(evaluate, folder / "scores.json", folder / "evaluate.log")
    urban = metrics.get("bev", {}).get("URBAN", {})
    return {"max_f": metrics["max_f"], "average_precision": metrics["average_precision"],
            "road_iou": metrics["iou_per_class"][1], "bev_max_f": urban.get("max_f"),
            "num_images": metrics["num_images"], **category_scores(metrics)}


def category_scores(metrics: dict) -> dict:
    """MaxF per KITTI category (um, umm, uu: those the images hold), in the image and in
    the bird's-eye view, from ``tfseg evaluate``'s metrics: ``{"max_f_um": ...,
    "bev_max_f_um": ...}``."""
    scores = {}
    for view, prefix in (("perspective", "max_f_"), ("bev", "bev_max_f_")):
        for category, figures in metrics.get(view, {}).items():
            if category in CATEGORIES:
                scores[prefix + category.lower()] = figures["max_f"]
    return scores


def score_cell_with_tta(scorings: dict[str, list[str]], data_dir: Path, folder: Path) -> dict:
    """A cell scored with flip test-time augmentation (MaxF, road IoU), and the
    milliseconds per image that it adds: ``tfseg bench predict --tta-flip`` on 12 of the
    images, the model served plain and with it in alternating rounds in one process."""
    flipped, _ = scored(scorings["tta"], folder / "scores_tta.json", folder / "evaluate_tta.log")
    model = scorings["plain"][scorings["plain"].index("--model") + 1]
    run_command([sys.executable, "-m", "tfseg", "bench", "predict", "--model", model, "--tta-flip",
                 "--data-dir", str(data_dir), "--num-images", "12", "--rounds", "3",
                 "--json", str(folder / "tta_cost.json")], folder / "tta_cost.log")
    cost = json.loads((folder / "tta_cost.json").read_text())
    return {"tta_max_f": flipped["max_f"], "tta_road_iou": flipped["iou_per_class"][1],
            "tta_ms_per_image": cost["added_ms_per_image"], "tta_time_ratio": cost["tta_time_over_plain"]["median"]}


def done_cell(cell_file: Path, folder: Path) -> dict:
    """A cell measured before, with the per-category scores of its ``scores.json`` where
    the cell was written before they were kept."""
    cell = json.loads(cell_file.read_text())
    scores = folder / "scores.json"
    return {**(category_scores(json.loads(scores.read_text())) if scores.is_file() else {}), **cell}


def table(cells: list[dict]) -> list[dict]:
    """One row per recipe and budget: mean and spread (standard deviation) of each score
    over the folds, and the ratio of the means to ``plain``'s at that budget."""
    rows = []
    for recipe, budget in sorted({(c["recipe"], c["budget"]) for c in cells}, key=lambda rb: (rb[1], rb[0])):
        done = [c for c in cells if c["recipe"] == recipe and c["budget"] == budget]
        row = {"recipe": recipe, "budget_minutes": budget, "folds": len(done)}
        for score in SCORES + CATEGORY_SCORES:
            values = [c[score] for c in done if c.get(score) is not None]
            if values:
                row[score] = float(np.mean(values))
                row[f"{score}_spread"] = float(np.std(values))
        rows.append(row)
    for row in rows:
        plain = next((r for r in rows if r["recipe"] == PLAIN and r["budget_minutes"] == row["budget_minutes"]), None)
        if plain is not None and row is not plain:
            for score in ("max_f", "road_iou"):
                row[f"{score}_vs_plain"] = row[score] / plain[score]
    return rows


def write_outputs(rows: list[dict], output: Path) -> list[Path]:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    lines = [",".join(columns)] + [",".join(_csv(row.get(c)) for c in columns) for row in rows]
    write_text(output / "table.csv", "\n".join(lines) + "\n")
    write_text(output / "table.json", json.dumps(rows, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, score, name in ((axes[0], "max_f", "MaxF"), (axes[1], "road_iou", "road IoU")):
        for recipe in dict.fromkeys(r["recipe"] for r in rows):
            mine = [r for r in rows if r["recipe"] == recipe]
            axis.errorbar([r["budget_minutes"] for r in mine], [r[score] for r in mine],
                          yerr=[r[f"{score}_spread"] for r in mine], marker="o", capsize=3, label=recipe)
        axis.set_xlabel("training budget (minutes)")
        axis.set_ylabel(f"{name} (mean and spread over folds)")
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle("KITTI Road, each fold's held-out images at their original size")
    figure.tight_layout()
    with atomic_path(output / "accuracy.png") as tmp:
        figure.savefig(tmp, dpi=100)
    plt.close(figure)
    return [output / "table.csv", output / "table.json", output / "accuracy.png"]


def _csv(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'recipe':<24}{'min':>6}{'folds':>6}{'MaxF':>16}{'road IoU':>16}{'AP':>8}{'BEV MaxF':>10}"
             f"{'MaxF/plain':>12}{'TTA MaxF':>10}{'TTA IoU':>9}{'TTA +ms':>9}{'TTA time':>10}"]

    def number(row, key, form):
        return format(row[key], form) if key in row else "-"

    for r in rows:
        lines.append(f"{r['recipe']:<24}{r['budget_minutes']:>6g}{r['folds']:>6}"
                     f"{r['max_f']:>9.4f} ±{r['max_f_spread']:.3f}{r['road_iou']:>9.4f} ±{r['road_iou_spread']:.3f}"
                     f"{r['average_precision']:>8.4f}{number(r, 'bev_max_f', '.4f'):>10}"
                     f"{number(r, 'max_f_vs_plain', '.3f'):>12}{number(r, 'tta_max_f', '.4f'):>10}"
                     f"{number(r, 'tta_road_iou', '.4f'):>9}{number(r, 'tta_ms_per_image', '.0f'):>9}"
                     f"{number(r, 'tta_time_ratio', '.2f') + ('x' if 'tta_time_ratio' in r else ''):>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="tfseg bench accuracy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="KITTI Road's folder (holding training/)")
    parser.add_argument("--recipes", nargs="+", required=True,
                        help=f"presets or config files, and {PLAIN!r} for the plain Keras reference")
    parser.add_argument("--budgets", type=positive_float, nargs="+", required=True, metavar="MINUTES")
    parser.add_argument("--folds", type=positive_int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="the folds' seed (default 0)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every tfseg recipe, e.g. train.mixed_precision=float32")
    parser.add_argument("--tta-flip", action="store_true",
                        help="also score each tfseg recipe with flip test-time augmentation, and time it")
    parser.add_argument("--output", required=True, help="folder for cells/, the table and the plot")
    args = parser.parse_args(argv)
    data_dir, output = Path(args.data_dir).resolve(), Path(args.output).resolve()
    check_writable(output, "--output", folder=True)
    (output / "cells").mkdir(parents=True, exist_ok=True)
    parts = folds(labelled_ids(data_dir), args.folds, args.seed)
    split_files = []
    for index, part in enumerate(parts):
        split_files.append(output / f"fold{index}.json")
        write_text(split_files[-1], json.dumps({"format": FORMAT, "source": "kitti_road", **part}, indent=1) + "\n")
    plan = [(budget, index, recipe) for budget in args.budgets for index in range(args.folds) for recipe in args.recipes]
    cells = []
    for number, (budget, index, recipe) in enumerate(plan, 1):
        label = f"{Path(recipe).stem}_{budget:g}min_fold{index}"
        cell_file = output / "cells" / f"{label}.json"
        if cell_file.is_file():
            cells.append(done_cell(cell_file, output / "runs" / label))
            print(f"[{number}/{len(plan)}] {label}: done before", flush=True)
            continue
        folder = output / "runs" / label
        if folder.exists():  # an interrupted cell: kept aside, measured afresh
            folder.rename(folder.with_name(f"{label}.interrupted-{int(time.time())}"))
        folder.mkdir(parents=True)
        print(f"[{number}/{len(plan)}] {label}: training {budget:g} min on {len(parts[index]['train'])} "
              f"images, scoring {len(parts[index]['val'])}", flush=True)
        started = time.perf_counter()
        scorings = train_cell(recipe, budget, split_files[index], data_dir, folder, args.overrides, args.tta_flip)
        cell = {"recipe": Path(recipe).stem, "budget": budget, "fold": index,
                "train_seconds": time.perf_counter() - started, **score_cell(scorings["plain"], folder)}
        line = f"    MaxF {cell['max_f']:.4f}, road IoU {cell['road_iou']:.4f}"
        if "tta" in scorings:
            cell.update(score_cell_with_tta(scorings, data_dir, folder))
            line += (f"; with flip TTA {cell['tta_max_f']:.4f}, {cell['tta_road_iou']:.4f} "
                     f"({cell['tta_ms_per_image']:+.0f} ms per image, {cell['tta_time_ratio']:.2f}x the time)")
        write_text(cell_file, json.dumps(cell, indent=1) + "\n")
        cells.append(cell)
        print(line, flush=True)
    rows = table(cells)
    print(format_rows(rows))
    print("wrote " + ", ".join(str(p) for p in write_outputs(rows, output)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
