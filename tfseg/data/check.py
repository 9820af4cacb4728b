"""Checking a file-based dataset: every image and mask readable, paired and valid.

:func:`check` returns ``(file, reason)`` pairs and raises nothing for bad files, so one run
lists every problem. It looks for:

- layout problems: images without masks, masks without images, split lists naming
  missing files, files with unexpected names (from the source's listing);
- images that do not decode completely: corrupt PNGs (chunk CRCs), truncated JPEGs
  (which OpenCV and lenient Pillow decode without complaint), unknown formats;
- masks that cannot be read, or whose size differs from their image's;
- mask values the format does not allow: KITTI colours other than magenta, red, black
  and pure blue; VOC indices outside 0..20 and 255; folder ids outside the class list.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

from tqdm import tqdm

from tfseg.data.files import Example, FileSource
from tfseg.data.sources import Source
from tfseg.errors import UserError
from tfseg.images import image_size, verify_image


def all_examples(source: FileSource) -> list[Example]:
    """Every complete example of every split once (splits overlap, e.g. trainval)."""
    seen, examples = set(), []
    for split in source.splits:
        for example in source.complete_examples(split):
            key = (example.image_path, example.label_path)
            if key not in seen:
                seen.add(key)
                examples.append(example)
    return examples


def check_example(source: FileSource, example: Example, values: bool = True) -> list[tuple[str, str]]:
    """The problems of one image/mask pair; with ``values`` off only those that stop its
    decoding (mask values outside the format become void and do not)."""
    problems = []
    reason = verify_image(example.image_path)
    if reason:
        problems.append((example.image_path, reason))
    if example.label_path is None:
        return problems
    try:
        raw = source.read_raw_label(example.label_path)
    except UserError as err:
        return problems + [(example.label_path, str(err).removeprefix(f"{example.label_path}: "))]
    if not reason:
        height, width = image_size(example.image_path)
        if raw.shape[:2] != (height, width):
            problems.append((example.label_path, f"mask is {raw.shape[0]}x{raw.shape[1]} but its image "
                                                 f"{os.path.basename(example.image_path)} is {height}x{width}"))
    if values:
        problems += [(example.label_path, text) for text in source.label_problems(raw)]
    return problems


def check(source: Source, workers: int | None = None, progress: bool = False) -> list[tuple[str, str]]:
    """``(file, reason)`` for everything wrong with ``source``'s files, sorted by file.

    ``workers`` threads read files in parallel (Pillow and zlib release the GIL while
    decoding); the default is the number of CPUs.
    """
    if not isinstance(source, FileSource):
        raise UserError(f"check reads raw files; source {source.name!r} has none "
                        "(with data.use_tfds: true, check the raw data with use_tfds: false)")
    try:
        problems = [(p.file, p.reason) for p in source.structure_problems()]
        examples = all_examples(source)
    except OSError as err:  # e.g. a symbolic link that loops
        raise UserError(f"{err.filename}: cannot be listed ({err.strerror})") from None
    if not examples and not problems:
        raise UserError(f"{source.name} data: holds no image/mask pairs; check data.data_dir")
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = pool.map(lambda e: check_example(source, e), examples)
        for found in tqdm(results, total=len(examples), desc="check", unit="img", disable=not progress):
            problems += found
    return sorted(set(problems))


def pipeline_error_reason(err) -> str:
    """What went wrong in a tf.data error (a ``tf.errors.OpError``), without the pipeline's
    own trace around it."""
    first = err.message.strip().splitlines()[0]
    match = re.search(r"Iterator::[\w:]+: (.*)", first)
    return (match[1] if match else first).removeprefix("assertion failed: ").strip("[] ")


def pipeline_error(err, source: Source, split: str, workers: int | None = None) -> UserError:
    """One line for a tf.data failure while reading ``split``: the split's first bad file
    and why, found by checking the split's files (only now that something failed)."""
    hint = "`tfseg data check` lists every bad file"
    if isinstance(source, FileSource):
        examples = source.complete_examples(split)
        # A file that stops decoding first; then a mask with values outside the label set
        # (which stops sources that decode masks in NumPy, but not KITTI's devkit rule).
        for values in (False, True):
            with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
                for problems in pool.map(lambda e: check_example(source, e, values=values), examples):
                    if problems:
                        file, reason = problems[0]
                        return UserError(f"{file}: {reason} ({source.name} {split} split); {hint}")
    return UserError(f"{source.name} {split} split: {pipeline_error_reason(err)}; {hint}")
