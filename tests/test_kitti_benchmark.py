"""KITTI Road as its benchmark scores it: the calibration files, the devkit's bird's-eye view
against projections computed by hand, the per-category tables against the devkit's own
steps in NumPy, evaluate's tables and pictures, and a submission ready to upload."""

import json
import shutil
import zipfile

import numpy as np
import pytest
from PIL import Image

from data_fixtures import KITTI_SAMPLE
from devkit_reference import devkit_table

from tfseg.cli import main
from tfseg.data.kitti_road import decode_ground_truth
from tfseg.data.labels import VOID
from tfseg.errors import UserError
from tfseg.viz import error_overlay
from tfseg.kitti_benchmark import (BEV_SHAPE, TABLE_KEYS, RoadBenchmark, bev_sampling, cell_centres, from_bev,
                                   parse_calibration, read_calibration, to_bev)

CALIB = KITTI_SAMPLE / "training" / "calib"


def sample_ids() -> list[str]:
    return sorted(p.stem for p in (KITTI_SAMPLE / "training" / "image_2").glob("*.png"))


def ground_truth(image_id: str) -> np.ndarray:
    category, number = image_id.split("_")
    path = KITTI_SAMPLE / "training" / "gt_image_2" / f"{category}_road_{number}.png"
    return decode_ground_truth(np.asarray(Image.open(path).convert("RGB")))


# -- the independent references ------------------------------------------------------------

def hand_projection(calib_text: str, x: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Road-plane points (x, 0, z) -> image (u, v), counted from 1, step by step: road to
    camera by solving R c + t = p (R is orthonormal only to the file's precision, so not
    R^T), rectify, project with P2."""
    values = {line.split(":")[0]: np.array(line.split(":")[1].split(), float)
              for line in calib_text.splitlines() if ":" in line}
    p2, r0 = values["P2"].reshape(3, 4), values["R0_rect"].reshape(3, 3)
    rotation, translation = values["Tr_cam_to_road"].reshape(3, 4)[:, :3], values["Tr_cam_to_road"].reshape(3, 4)[:, 3]
    road = np.stack([x, np.zeros_like(x), z], -1).astype(np.float64)
    camera = np.linalg.solve(rotation, (road - translation).reshape(-1, 3).T).T.reshape(road.shape)
    image = np.concatenate([camera @ r0.T, np.ones(camera.shape[:-1] + (1,))], -1) @ p2.T
    return image[..., 0] / image[..., 2], image[..., 1] / image[..., 2]


def hand_bev(values: np.ndarray, calib_text: str, fill) -> np.ndarray:
    """The devkit's sampling by :func:`hand_projection`: each cell takes pixel
    (int(v) - 1, int(u) - 1) when 1 <= u <= W and 1 <= v <= H, else ``fill``."""
    height, width = values.shape[:2]
    x = -10 + 0.05 * (np.arange(400) + 0.5)
    z = 46 - 0.05 * (np.arange(800) + 0.5)
    grid_x, grid_z = np.meshgrid(x.astype(np.float32), z.astype(np.float32))
    u, v = hand_projection(calib_text, grid_x, grid_z)
    out = np.full((800, 400) + values.shape[2:], fill, values.dtype)
    inside = (u >= 1) & (v >= 1) & (u <= width) & (v <= height)
    out[inside] = values[v[inside].astype(int) - 1, u[inside].astype(int) - 1]
    return out


def noisy_probability(label: np.ndarray, seed: int) -> np.ndarray:
    """A road probability that is right in places and wrong in others (shifted, noisy)."""
    rng = np.random.default_rng(seed)
    shifted = np.roll(label == 1, 40 + 10 * seed, axis=1)
    return np.clip(shifted * 140 + rng.integers(0, 130, label.shape), 0, 255).astype(np.uint8)


# -- calibration ------------------------------------------------------------------------------

@pytest.mark.parametrize("change, message", [
    (lambda text: "\n".join(l for l in text.splitlines() if not l.startswith("Tr_cam_to_road")), "no Tr_cam_to_road line"),
    (lambda text: text.replace("R0_rect: ", "R0_rect: 1.0 "), "R0_rect has 10 values, expected 9"),
    (lambda text: text.replace("P2: 7.2", "P2: x7.2"), r"line 3 \(P2\) holds a value that is not a number"),
    (lambda text: text + "no colon here\n", "is not 'KEY: values'"),
])
def test_a_malformed_calibration_file_is_one_line_naming_it(change, message):
    text = (CALIB / "um_000000.txt").read_text()
    with pytest.raises(UserError, match=message) as caught:
        parse_calibration(change(text), "calib/um_000000.txt")
    assert str(caught.value).startswith("KITTI calib calib/um_000000.txt: ") and "\n" not in str(caught.value)


@pytest.mark.parametrize("image_id", ["um_000000", "umm_000080"])
def test_the_bev_grid_samples_the_pixels_a_hand_projection_finds(image_id):
    text = (CALIB / f"{image_id}.txt").read_text()
    calibration = read_calibration(CALIB / f"{image_id}.txt")
    sampling = bev_sampling(calibration, (375, 1242))
    grid_x, grid_z = cell_centres()
    assert grid_x.shape == BEV_SHAPE == (800, 400)
    assert grid_z[0, 0] == np.float32(45.975) and grid_z[-1, 0] == np.float32(6.025)  # far at the top
    assert grid_x[0, 0] == np.float32(-9.975) and grid_x[0, -1] == np.float32(9.975)
    u, v = hand_projection(text, grid_x, grid_z)
    inside = (u >= 1) & (v >= 1) & (u <= 1242) & (v <= 375)
    np.testing.assert_array_equal(sampling.valid, inside)
    # The same pixels, but for centres that fall on a pixel's edge to within rounding (a
    # few in 300,000), where the two orders of multiplication may land either side.
    for taken, exact in ((sampling.cols, u), (sampling.rows, v)):
        differ = taken[inside] != exact[inside].astype(int) - 1
        assert differ.sum() < 20
        assert np.all(np.abs(exact[inside][differ] - np.round(exact[inside][differ])) < 1e-9)
    # The geometry itself: the near road lies low in the picture, the far road near the
    # horizon, and 1 m to the left is left of the centre.
    assert 0.9 < sampling.valid.mean() < 1.0
    near, far = hand_projection(text, np.array([0.0, 0.0]), np.array([6.0, 46.0]))[1]
    assert near > 300 and 170 < far < 210
    left, right = hand_projection(text, np.array([-1.0, 1.0]), np.array([20.0, 20.0]))[0]
    assert left < 609 < right


def test_from_bev_puts_the_grid_back_where_it_was_sampled():
    calibration = read_calibration(CALIB / "um_000000.txt")
    # Lateral stripes 1 m wide: any image pixel taken back from BEV lands in its own stripe.
    stripes = (np.arange(400)[None, :].repeat(800, 0) // 20 % 2 + 1).astype(np.uint8)
    image = from_bev(stripes, calibration, (375, 1242))
    assert image.shape == (375, 1242) and image.dtype == np.uint8
    assert (image[:150] == 0).all()  # above the horizon: off the grid
    again = to_bev(image, calibration, fill=0)
    # Away from the stripes' edges (a pixel spans several cells far off, and the reverse
    # rounds where the forward truncates), the stripes come back.
    columns = np.arange(400)[None, :] % 20
    compared = (again > 0) & (np.minimum(columns, 19 - columns) >= 4) & (np.arange(800)[:, None] > 200)
    assert compared.mean() > 0.3
    assert np.mean(again[compared] == stripes[compared]) > 0.99


# -- the tables -------------------------------------------------------------------------------

def test_the_tables_equal_the_devkit_s_steps_in_perspective_and_bev():
    ids = sample_ids()
    benchmark = RoadBenchmark(lambda image_id: read_calibration(CALIB / f"{image_id}.txt"))
    pairs = {"perspective": {}, "bev": {}}
    for seed, image_id in enumerate(ids):
        label, probability = ground_truth(image_id), None
        probability = noisy_probability(label, seed)
        benchmark.add(image_id, label, probability)
        category = image_id.split("_")[0].upper()
        text = (CALIB / f"{image_id}.txt").read_text()
        pairs["perspective"].setdefault(category, []).append((label, probability))
        pairs["bev"].setdefault(category, []).append((hand_bev(label, text, VOID), hand_bev(probability, text, 0)))
    result = benchmark.result()
    assert set(result) == {"perspective", "bev"}
    for space, by_category in pairs.items():
        categories = sorted(by_category) + ["URBAN"]
        assert sorted(result[space]) == sorted(categories)
        for category in categories:
            chosen = by_category[category] if category != "URBAN" else sum(by_category.values(), [])
            expected = devkit_table(chosen)
            assert 0.3 < expected["max_f"] < 0.99, (space, category)  # a real curve
            for key in TABLE_KEYS:
                assert result[space][category][key] == pytest.approx(expected[key], abs=1e-6), (space, category, key)
    # The two spaces differ: BEV weighs the far road more.
    assert abs(result["bev"]["URBAN"]["max_f"] - result["perspective"]["URBAN"]["max_f"]) > 0.01


@pytest.fixture
def probability_folder(tmp_path):
    folder = tmp_path / "predictions"
    folder.mkdir()
    for seed, image_id in enumerate(sample_ids()):
        category, number = image_id.split("_")
        Image.fromarray(noisy_probability(ground_truth(image_id), seed)).save(folder / f"{category}_road_{number}.png")
    return folder


def test_evaluate_prints_and_writes_both_spaces_and_draws_the_worst(probability_folder, tmp_path, capsys):
    metrics_file = tmp_path / "m.json"
    assert main(["evaluate", "--predictions", str(probability_folder), "--dataset", "kitti_road",
                 "--data-dir", str(KITTI_SAMPLE), "--split", "all", "--json", str(metrics_file), "--worst", "2"]) == 0
    out = capsys.readouterr().out
    assert "UM (BEV)" in out and "URBAN (persp.)" in out and "MaxF" in out
    report = json.loads(metrics_file.read_text())
    pairs = []
    for seed, image_id in enumerate(sample_ids()):
        label = ground_truth(image_id)
        text = (CALIB / f"{image_id}.txt").read_text()
        pairs.append((hand_bev(label, text, VOID), hand_bev(noisy_probability(label, seed), text, 0)))
    expected = devkit_table(pairs)
    for key in TABLE_KEYS:
        assert report["bev"]["URBAN"][key] == pytest.approx(expected[key], abs=1e-6), key
    assert "UU" not in report["bev"]  # the sample has no uu image
    worst = report["worst_images"]
    f1 = []
    for bev_label, bev_probability in pairs:
        valid = bev_label != VOID
        truth, predicted = bev_label[valid] == 1, bev_probability[valid] >= 128
        f1.append(2 * np.sum(truth & predicted) / (np.sum(truth) + np.sum(predicted)))
    expected = sorted(zip(f1, sample_ids()))[:2]
    assert [w["id"] for w in worst] == [image_id for _, image_id in expected]
    assert [w["bev_f1"] for w in worst] == pytest.approx([value for value, _ in expected], abs=1e-9)
    picture = np.asarray(Image.open(worst[0]["picture"]))
    image = np.asarray(Image.open(KITTI_SAMPLE / "training" / "image_2" / f"{worst[0]['id']}.png").convert("RGB"))
    label = ground_truth(worst[0]["id"])
    predicted = noisy_probability(label, sample_ids().index(worst[0]["id"])) >= 128
    height, width = label.shape
    assert picture.shape == (height + 800, width, 3)
    np.testing.assert_array_equal(picture[:height], error_overlay(image, label, predicted))
    bev_image = hand_bev(image, (CALIB / f"{worst[0]['id']}.txt").read_text(), 0)
    assert np.mean(np.all(picture[height:, :400] == bev_image, -1)) > 0.3  # the true negatives, unpainted
    # A second run does not overwrite the pictures.
    assert main(["evaluate", "--predictions", str(probability_folder), "--dataset", "kitti_road",
                 "--data-dir", str(KITTI_SAMPLE), "--split", "all", "--json", str(metrics_file), "--worst", "2"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


def test_data_without_calib_scores_in_perspective_only(probability_folder, tmp_path):
    data = tmp_path / "kitti"
    shutil.copytree(KITTI_SAMPLE, data, ignore=shutil.ignore_patterns("calib"))
    assert main(["evaluate", "--predictions", str(probability_folder), "--dataset", "kitti_road",
                 "--data-dir", str(data), "--split", "all", "--json", str(tmp_path / "m.json")]) == 0
    report = json.loads((tmp_path / "m.json").read_text())
    assert "perspective" in report and "bev" not in report


def test_a_missing_or_broken_calibration_is_named_by_check_and_by_evaluate(probability_folder, tmp_path, capsys):
    data = tmp_path / "kitti"
    shutil.copytree(KITTI_SAMPLE, data)
    (data / "training" / "calib" / "um_000001.txt").unlink()
    broken = data / "training" / "calib" / "umm_000080.txt"
    broken.write_text(broken.read_text().replace("P2: ", "P2: 1 "))
    main(["data", "check", "--dataset", "kitti_road", "--data-dir", str(data)])
    out = capsys.readouterr()
    assert "um_000001.txt: no calibration file for this image" in out.out + out.err
    assert "umm_000080.txt: P2 has 13 values, expected 12" in out.out + out.err
    assert main(["evaluate", "--predictions", str(probability_folder), "--dataset", "kitti_road",
                 "--data-dir", str(data), "--split", "all"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KITTI calib" in err and "um_000001.txt: not found" in err


# -- a submission -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sample_model(tmp_path_factory):
    """A tiny road model trained for a few steps on the sample, exported."""
    run_dir = tmp_path_factory.mktemp("kitti") / "run"
    assert main(["train", "--config", "kitti_unet", "--run-dir", str(run_dir),
                 "--set", f"data.data_dir={KITTI_SAMPLE}", "--set", "data.resize=[64, 208]",
                 "--set", "data.augment.crop_size=[64, 208]", "--set", "model.options={depth: 2, base_filters: 4}",
                 "--set", "train.epochs=1", "--set", "train.steps_per_epoch=2", "--set", "train.batch_size=2",
                 "--set", "train.mixed_precision=false", "--set", "train.jit_compile=false"]) == 0
    assert main(["export", "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_the_submission_is_each_road_map_in_bev_zipped_at_the_root(sample_model, tmp_path, capsys):
    testing = tmp_path / "data_road" / "testing"
    (testing / "image_2").mkdir(parents=True)
    (testing / "calib").mkdir()
    ids = sample_ids()[:3]
    for image_id in ids:
        shutil.copy(KITTI_SAMPLE / "training" / "image_2" / f"{image_id}.png", testing / "image_2")
        shutil.copy(CALIB / f"{image_id}.txt", testing / "calib")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(sample_model / "export"), "-i", str(testing / "image_2"),
                 "-o", str(out), "--kitti-submission"]) == 0
    assert "KITTI submission" in capsys.readouterr().out
    names = [f"{i.split('_')[0]}_road_{i.split('_')[1]}.png" for i in ids]
    with zipfile.ZipFile(out / "kitti_road_bev.zip") as packed:
        assert sorted(packed.namelist()) == sorted(names)  # at the root, named as the benchmark asks
    for image_id, name in zip(ids, names):
        perspective = np.asarray(Image.open(out / "probabilities" / name))
        bev = np.asarray(Image.open(out / "bev" / name))
        assert bev.shape == (800, 400) and bev.dtype == np.uint8
        np.testing.assert_array_equal(bev, hand_bev(perspective, (CALIB / f"{image_id}.txt").read_text(), 0))

    (testing / "calib" / f"{ids[1]}.txt").unlink()
    assert main(["predict", "--model", str(sample_model / "export"), "-i", str(testing / "image_2"),
                 "-o", str(tmp_path / "again"), "--kitti-submission"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{ids[1]}.txt: not found (1 of 3 image(s) without one)" in err
    assert not (tmp_path / "again").exists()


def test_a_run_scores_both_spaces_as_its_export_does(sample_model, tmp_path):
    assert main(["evaluate", "--run-dir", str(sample_model), "--split", "val", "--json", str(tmp_path / "r.json")]) == 0
    assert main(["evaluate", "--model", str(sample_model / "export"), "--dataset", "kitti_road",
                 "--data-dir", str(KITTI_SAMPLE), "--set", "data.split_file=" + str(sample_model / "split.json"),
                 "--split", "val", "--json", str(tmp_path / "m.json")]) == 0
    by_run, by_model = (json.loads((tmp_path / name).read_text()) for name in ("r.json", "m.json"))
    assert set(by_run["bev"]) >= {"URBAN"}
    for space in ("perspective", "bev"):
        for category, table in by_run[space].items():
            for key, value in table.items():
                assert by_model[space][category][key] == pytest.approx(value, abs=1e-3), (space, category, key)
