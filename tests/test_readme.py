"""The README runs as written.

Every fenced block of README.md is taken by markdown-it-py (the Markdown parser) and either
run, in README order, in one sandbox folder with no network, or checked in another way, or
marked in the README itself, by an HTML comment right before it, with the reason it is not
run here:

* ``bash`` and ``python`` blocks run (``bash -euo pipefail``; ``python -c``). ``tfseg`` is
  the real command line, with settings appended to ``train`` and ``demo`` that shrink a
  training to seconds (``tests/readme_shim.py``), the only change to what the README says;
* ``<!-- readme: transcript -->``: ``$ command`` lines run, and what they print must be the
  lines that follow, exactly;
* ``<!-- readme: synopsis -->``: every ``--option`` of a ``tfseg COMMAND`` line exists;
* ``yaml`` blocks must parse;
* ``<!-- readme: skip REASON -->``: not run (Docker, a GPU, a download); the reason is
  required, and shown in the README's source;
* ``<!-- readme: text WHAT -->``: not a command (a layout, an example of output).

A README change that breaks a command fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt
from PIL import Image

from data_fixtures import KITTI_SAMPLE, VOC_SAMPLE, needs_samples

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DIRECTIVE = re.compile(r"<!--\s*readme:\s*(\w+)\s*(.*?)\s*-->", re.S)
RUN_LANGUAGES = ("bash", "python")
KINDS = ("run", "transcript", "synopsis", "yaml", "skip", "text")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, from 1
    language: str
    text: str
    kind: str  # one of KINDS
    note: str  # the directive's reason or description


def readme_blocks(path: Path = README) -> list[Block]:
    """The fenced blocks of ``path``, each with the directive of the HTML comment right
    before it (if any)."""
    blocks, directive = [], None
    for token in MarkdownIt("commonmark").parse(path.read_text()):
        if token.type == "html_block":
            match = DIRECTIVE.search(token.content)
            directive = (match[1], match[2]) if match else None
            continue
        if token.type == "fence":
            language = token.info.split()[0] if token.info.strip() else ""
            kind, note = directive or ({"yaml": "yaml"}.get(language, "run" if language in RUN_LANGUAGES
                                                             else "unmarked"), "")
            blocks.append(Block(token.map[0] + 1, language, token.content, kind, note))
        directive = None  # a directive belongs to the block right after it
    return blocks


BLOCKS = readme_blocks()


def test_every_block_is_run_checked_or_marked_with_a_reason():
    for block in BLOCKS:
        assert block.kind in KINDS, f"README.md:{block.line}: an unmarked ```{block.language} block"
        if block.kind in ("skip", "text"):
            assert block.note, f"README.md:{block.line}: say why the block is not run"
        if block.kind in ("run", "transcript"):
            assert block.language in RUN_LANGUAGES or block.kind == "transcript", block.line
    assert sum(block.kind in ("run", "transcript") for block in BLOCKS) >= 8


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A user's folder: the KITTI and VOC samples as data/, image pairs, no network."""
    from tfseg.data.fgbg import generate_scene

    root = tmp_path_factory.mktemp("readme")
    work = root / "work"
    (work / "data" / "kitti").mkdir(parents=True)
    (work / "data" / "kitti" / "data_road").symlink_to(KITTI_SAMPLE, target_is_directory=True)
    (work / "data" / "voc").symlink_to(VOC_SAMPLE, target_is_directory=True)
    (root / "shared" / "data").mkdir(parents=True)  # the README's ../shared/data
    (root / "shared" / "data" / "kitti_road_sample").symlink_to(KITTI_SAMPLE, target_is_directory=True)
    for folder in ("backgrounds", "composites"):
        (work / folder).mkdir()
    for i in range(3):
        scene = generate_scene(7, "test", i, height=32, width=48, foreground_size=16)
        Image.fromarray(scene.background).save(work / "backgrounds" / f"scene{i}.png")
        Image.fromarray(scene.composite).save(work / "composites" / f"scene{i}.png")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tfseg"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {REPO / 'tests' / 'readme_shim.py'} \"$@\"\n")
    shim.chmod(0o755)
    no_network = "http://127.0.0.1:9"  # a closed port: any download fails at once
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(REPO), "KERAS_HOME": str(root / "keras"), "http_proxy": no_network,
           "https_proxy": no_network, "HTTP_PROXY": no_network, "HTTPS_PROXY": no_network, "no_proxy": "",
           "WANDB_MODE": "offline"}
    return work, env


def run_bash(script: str, work: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.mark.slow
@needs_samples
@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind in ("run", "transcript")],
                         ids=lambda b: f"line{b.line}")
def test_the_block_runs_as_written(block, sandbox):
    work, env = sandbox
    if block.kind == "transcript":
        commands = [(i, line[2:]) for i, line in enumerate(block.text.splitlines()) if line.startswith("$ ")]
        lines = block.text.splitlines()
        for k, (start, command) in enumerate(commands):
            end = commands[k + 1][0] if k + 1 < len(commands) else len(lines)
            result = run_bash(command, work, env)
            assert result.returncode == 0, f"README.md:{block.line}: {command}\n{result.stderr[-3000:]}"
            assert result.stdout.splitlines() == lines[start + 1:end], f"README.md:{block.line}: {command}"
        return
    if block.language == "python":
        result = subprocess.run([sys.executable, "-c", block.text], cwd=work, env=env, capture_output=True,
                                text=True, timeout=600)
    else:
        result = run_bash(block.text, work, env)
    assert result.returncode == 0, f"README.md:{block.line}:\n{block.text}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr


def test_the_synopsis_names_only_options_that_exist():
    from tfseg.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    [synopsis] = [block for block in BLOCKS if block.kind == "synopsis"]
    for line in synopsis.text.splitlines():
        words = line.split()
        if words[0] != "tfseg":
            continue
        known = {option for action in commands[words[1]]._actions for option in action.option_strings}
        if words[1] == "data":  # the data commands share their options
            known = {option for action in commands["data"]._subparsers._group_actions[0].choices["check"]._actions
                     for option in action.option_strings}
        for option in re.findall(r"(--[a-z][a-z-]*)", line):
            assert option in known, f"README synopsis: tfseg {words[1]} has no {option}"


def test_the_yaml_blocks_parse():
    for block in (b for b in BLOCKS if b.kind == "yaml"):
        assert list(yaml.safe_load_all(block.text)), block.line


def normalised(lines: list[str]) -> list[str]:
    """Output lines with every number as N and the output folder as DIR: what stays the same
    from run to run."""
    lines = [re.sub(r"^outputs in \S+:", "outputs in DIR:", line) for line in lines]
    return [re.sub(r"\d+(?:\.\d+)?", "N", line) for line in lines]


def readme_demo_output() -> list[str]:
    """The lines `make demo` ends with, as the README shows them."""
    [block] = [b for b in BLOCKS if b.kind == "text" and b.note.startswith("the end of `make demo`")]
    return block.text.splitlines()


def test_the_demo_output_is_compared_without_its_numbers():
    shown = normalised(readme_demo_output())
    assert shown[0] == "held-out test split, N s in all:" and shown[-1].startswith("outputs in DIR: metrics.json")
    assert "disc               N.N" not in shown and "disc               N" in shown
