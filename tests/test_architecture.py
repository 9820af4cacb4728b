"""The layout's rules, checked: what each package may import, no import circles, and one
owner for the run directory's file names."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tfseg"
# The modules that read datasets: the sources and their file formats.
DATASET_MODULES = ("tfseg.data.sources", "tfseg.data.files", "tfseg.data.kitti_road", "tfseg.data.voc",
                   "tfseg.data.folder", "tfseg.data.synthetic", "tfseg.data.fgbg", "tfseg.data.tfds_source",
                   "tfseg.data.pipeline")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(package: str) -> list[str]:
    folder = PACKAGE.parent / package.replace(".", "/")
    return sorted(module_name(path) for path in folder.rglob("*.py"))


def imported_after(modules: list[str]) -> list[str]:
    """The tfseg modules loaded, in a fresh interpreter, by importing ``modules``."""
    program = (f"import importlib, json, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
               "print(json.dumps(sorted(m for m in sys.modules if m.startswith('tfseg'))))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("package, forbidden", [
    ("tfseg.serving", ("tfseg.training",) + DATASET_MODULES),
    ("tfseg.training", ("tfseg.serving",)),
])
def test_what_a_package_imports(package, forbidden):
    loaded = imported_after(modules_under(package))
    assert not [m for m in loaded if m.startswith(forbidden)]


def test_predict_loads_no_dataset_code_and_no_training():
    loaded = imported_after(["tfseg.predict"])
    assert not [m for m in loaded if m.startswith(DATASET_MODULES + ("tfseg.training", "tfseg.models"))]


def top_level_imports(path: Path) -> set[str]:
    """The tfseg modules a module imports when it is itself imported (not inside functions)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tfseg"):
            for alias in node.names:  # `from tfseg.x import y` may name a module y
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                          else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("tfseg"))
    return found


def test_no_import_circles():
    graph = {module_name(path): top_level_imports(path) for path in PACKAGE.rglob("*.py")}
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == "open":
                pytest.fail("import circle: " + " -> ".join(trail[trail.index(imported):] + [imported]))
            if imported not in state:
                visit(imported, trail + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_only_runs_py_spells_the_run_directory_s_file_names():
    from tfseg import runs

    names = {runs.MODEL_FILE, runs.CONFIG_FILE, runs.LABELS_FILE, runs.SPLIT_FILE, runs.CLASS_WEIGHTS_FILE,
             runs.CHECKPOINT_DIR, runs.BEST_FILE, runs.HISTORY_FILE, runs.CURVES_FILE, runs.TENSORBOARD_DIR,
             runs.WANDB_RUN_ID_FILE}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "runs.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert node.value not in names and not node.value.startswith(runs.METRICS_PREFIX), \
                    f"{path.relative_to(PACKAGE.parent)}:{node.lineno} spells {node.value!r}; use tfseg.runs"


def test_each_set_of_names_is_the_one_its_registry_defines():
    """The configuration validates names without importing TensorFlow; each list it keeps is
    the registry's, where the names are implemented."""
    from tfseg import config, depth, losses
    from tfseg.data import sources
    from tfseg.predictions import PREDICTION_FORMATS
    from tfseg.training import schedules

    assert config.CHOICES["train.schedule"] == schedules.SCHEDULES
    assert config.CHOICES["train.optimizer"] == tuple(schedules.OPTIMIZERS)
    assert config.LOSS_TERMS == tuple(losses.TERM_BUILDERS)
    assert config.DEPTH_LOSS_TERMS == tuple(depth.DEPTH_TERMS)
    assert config.SOURCE_NAMES == tuple(sources.SOURCES)
    from tfseg.cli import build_parser

    evaluate = build_parser()._subparsers._group_actions[0].choices["evaluate"]
    [format_option] = [a for a in evaluate._actions if "--format" in a.option_strings]
    assert tuple(format_option.choices) == PREDICTION_FORMATS


def test_the_configuration_loads_without_tensorflow():
    assert not [m for m in imported_after(["tfseg.config"]) if m.startswith(("tfseg.training", "tfseg.serving"))]
    program = "import sys, tfseg.config, tfseg.cli\nprint('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
