"""Deterministic, stratified train/validation splits and the JSON file that freezes one.

Datasets without an official validation set (KITTI Road, folders without split lists) hold
out a seeded, stratified subset of their labelled images. The order that picks it comes
from SHA-256 of ``"<seed>:<id>"``, not from a random generator, so the split is the same on
every machine and with every NumPy version, and adding an image to one category never
changes which images are held out of another.

A split can be written to a JSON file (:func:`write_split`); a source whose
``data.split_file`` names an existing file uses that file instead of recomputing, so later
runs and evaluations keep the validation set even if the data folder changes.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Callable, Iterable

from tfseg.errors import UserError
from tfseg.fileio import write_text

FORMAT = "tfseg-split/1"


def holdout_size(total: int, val_count: int, val_fraction: float) -> int:
    """How many of ``total`` images to hold out: ``min(val_count, round(val_fraction * total))``,
    but at least one for validation and one for training whenever there are two images;
    none with ``val_count`` 0.

    With the KITTI defaults (48, 0.17) the full 289 training images give 48, and a 10-image
    sample gives 2: a tiny copy of the data keeps most of its images for training.
    """
    if total < 2 or val_count == 0:
        return 0
    wanted = min(val_count, int(math.floor(val_fraction * total + 0.5)))
    return max(1, min(wanted, total - 1))


def allocate(sizes: dict[str, int], count: int) -> dict[str, int]:
    """Splits ``count`` over categories in proportion to ``sizes`` (largest remainder).

    Every non-empty category gets at least one when ``count`` allows it, taken from the
    category with the largest share; ties go to the alphabetically first category.
    """
    present = sorted(c for c, n in sizes.items() if n > 0)
    total = sum(sizes[c] for c in present)
    if not present or count <= 0:
        return {c: 0 for c in sizes}
    quotas = {c: count * sizes[c] / total for c in present}
    shares = {c: int(math.floor(quotas[c])) for c in present}
    by_remainder = sorted(present, key=lambda c: (-(quotas[c] - shares[c]), c))
    for c in by_remainder[: count - sum(shares.values())]:
        shares[c] += 1
    if count >= len(present):
        for c in present:
            if shares[c] == 0:
                donor = max(present, key=lambda d: (shares[d], -present.index(d)))
                shares[donor] -= 1
                shares[c] += 1
    for c in present:
        shares[c] = min(shares[c], sizes[c])
    return {c: shares.get(c, 0) for c in sizes}


def seeded_order(ids: Iterable[str], seed: int) -> list[str]:
    """``ids`` in a pseudo-random order fixed by ``seed``."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())


def stratified_holdout(ids: Iterable[str], val_size: int, seed: int,
                       category: Callable[[str], str] = lambda i: "") -> dict[str, list[str]]:
    """``{"train": [...], "val": [...]}``, each sorted; ``val`` has ``val_size`` ids spread
    over the categories in proportion to their sizes (see :func:`allocate`)."""
    groups: dict[str, list[str]] = {}
    for i in sorted(set(ids)):
        groups.setdefault(category(i), []).append(i)
    shares = allocate({c: len(members) for c, members in groups.items()}, val_size)
    val = set()
    for c, members in groups.items():
        val.update(seeded_order(members, seed)[: shares[c]])
    everything = sorted(i for members in groups.values() for i in members)
    return {"train": [i for i in everything if i not in val], "val": sorted(val)}


def read_split(path: str | Path, ids: Iterable[str], source_name: str) -> dict[str, list[str]]:
    """The ``train``/``val`` id lists of a split file, checked against the data's ``ids``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"split file {path}: not found") from None
    except (OSError, ValueError) as err:
        raise UserError(f"split file {path}: not readable JSON ({err})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise UserError(f"split file {path}: not a tfseg split file (expected \"format\": \"{FORMAT}\")")
    if record.get("source") != source_name:
        raise UserError(f"split file {path}: written for source {record.get('source')!r}, "
                        f"not {source_name!r}")
    train, val = record.get("train"), record.get("val")
    if not (isinstance(train, list) and isinstance(val, list)):
        raise UserError(f"split file {path}: needs \"train\" and \"val\" lists")
    overlap = set(train) & set(val)
    if overlap:
        raise UserError(f"split file {path}: {len(overlap)} id(s) in both train and val, "
                        f"e.g. {sorted(overlap)[0]}")
    known, listed = set(ids), set(train) | set(val)
    if listed - known:
        missing = sorted(listed - known)
        raise UserError(f"split file {path}: {len(missing)} listed image(s) are not in the data, "
                        f"e.g. {missing[0]}; is data.data_dir the folder the split was made for?")
    if known - listed:
        extra = sorted(known - listed)
        raise UserError(f"split file {path}: {len(extra)} image(s) of the data are in neither "
                        f"list, e.g. {extra[0]}; write a new split file for this data")
    return {"train": sorted(train), "val": sorted(val)}


def write_split(source, path: str | Path, overwrite: bool = False) -> dict:
    """Writes ``source``'s seeded split to ``path`` (JSON) and returns what it wrote.

    ``source`` must have a seeded split (``split_record()`` is not None: kitti_road, or a
    folder without split lists). An existing file is only replaced with ``overwrite=True``.
    """
    split = source.split_record()
    if split is None:
        raise UserError(f"source {source.name!r} has a fixed split (official lists, or the "
                        "folder's own); there is no seeded split file to write")
    if not any(split.get(name) for name in ("train", "val")):
        raise UserError(f"{source.name} data: holds no images to split; check data.data_dir")
    return write_split_record(split, path, overwrite)


def write_split_record(split: dict, path: str | Path, overwrite: bool = False) -> dict:
    """Writes a source's ``split_record()`` to ``path`` as a split file; returns the record."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"split file {path}: already exists; pass --overwrite to replace it")
    record = {"format": FORMAT, **split}
    write_text(path, json.dumps(record, indent=1) + "\n")
    return record
