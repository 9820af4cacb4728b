"""Downloading and unpacking the public datasets: resumable, checksummed, extracted safely.

:func:`download` fetches a URL to ``<file>.part``, resuming an interrupted download with an
HTTP ``Range`` request, shows a tqdm progress bar, verifies the checksum and only then
renames the file into place, so a file with the final name is always complete and
verified. When the checksum does not match, the ``.part`` file is deleted: its bytes
cannot be trusted, and keeping it would make every later resume fail the same way.

:func:`prepare` downloads a dataset's archives into a folder and extracts them there
with :func:`tfseg.data.archive.safe_extract`. Checksums: SHA-256 where one is published;
otherwise MD5 where one is widely documented; a ``sha256=`` argument (``--sha256``)
overrides both. A file with no known checksum (KITTI's ``data_road.zip``) is only
downloaded with an explicit ``sha256`` or ``allow_unverified=True``; its SHA-256 is then
reported so it can be pinned. One that is already there is checked against the CRCs its
zip holds. A dataset already extracted (its archive gone) is checked for a complete
layout and used as it is: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from tfseg.data.archive import safe_extract
from tfseg.errors import UserError


@dataclass(frozen=True)
class RemoteFile:
    """A published archive and what is known about its content."""

    url: str
    filename: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    note: str = ""  # where the checksums come from


REMOTE_FILES = {
    "kitti_road": RemoteFile(
        url="https://s3.eu-central-1.amazonaws.com/avg-kitti/data_road.zip",
        filename="data_road.zip",
        note="No checksum is published for data_road.zip; pass sha256 (or allow_unverified=True, "
             "which reports the SHA-256 to pin)."),
    "voc2012": RemoteFile(
        url="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
        filename="VOCtrainval_11-May-2012.tar",
        size=1999639040,
        sha256="e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb",
        md5="6cd6e144f989b92b3379bac3b3de84fd",
        note="SHA-256 and size: tensorflow-datasets url_checksums/voc.txt; MD5: torchvision VOCSegmentation."),
    "voc2007": RemoteFile(
        url="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
        filename="VOCtrainval_06-Nov-2007.tar",
        size=460032000,
        sha256="7d8cd951101b0957ddfd7a530bdc8a94f06121cfc1e511bb5937e973020c7508",
        md5="c52e279531787c972589f7e41ab4ae64",
        note="SHA-256 and size: tensorflow-datasets url_checksums/voc.txt; MD5: torchvision VOCSegmentation."),
    "sbd": RemoteFile(
        url="http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
        filename="benchmark.tgz",
        md5="82b4d87ceb2ed10f6038a1cba92111cb",
        note="No published SHA-256; MD5 from torchvision SBDataset (verified by MD5)."),
}

# The folder each archive extracts to, inside the dataset's folder.
EXTRACTED_FOLDERS = {"kitti_road": "data_road", "voc2012": "VOCdevkit/VOC2012", "voc2007": "VOCdevkit/VOC2007",
                     "sbd": "benchmark_RELEASE"}

# What each tfseg source needs downloaded.
DATASETS = {
    "kitti_road": ("kitti_road",),
    "voc2012": ("voc2012",),
    "voc2007": ("voc2007",),
    "voc_aug": ("voc2012", "sbd"),
}


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, sha256: str | None, md5: str | None) -> str:
    """Checks ``path`` against the strongest checksum given; returns its SHA-256."""
    actual = file_digest(path, "sha256")
    if sha256 and actual != sha256.lower():
        raise _ChecksumError(f"SHA-256 {actual}, expected {sha256.lower()}")
    if not sha256 and md5:
        actual_md5 = file_digest(path, "md5")
        if actual_md5 != md5.lower():
            raise _ChecksumError(f"MD5 {actual_md5}, expected {md5.lower()}")
    return actual


class _ChecksumError(Exception):
    pass


def _verify_unpinned(path: Path, allow_unverified: bool) -> str:
    """Checks a file no checksum is known for as far as it can be: a zip archive against the
    CRC of every member it holds; returns its SHA-256 (to pin)."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError) as err:
            damaged = str(err)
        if damaged:
            raise UserError(f"{path}: damaged ({damaged} fails its CRC check); move it away to download it again")
    elif not allow_unverified:
        raise UserError(f"{path}: no checksum is known to check it against; pass --sha256 HASH, or "
                        "--allow-unverified to use it as it is")
    return file_digest(path, "sha256")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": "tfseg-prepare"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def download(url: str, path: str | os.PathLike, sha256: str | None = None, md5: str | None = None,
             size: int | None = None, allow_unverified: bool = False, progress: bool = True,
             timeout: float = 60.0, retries: int = 3, retry_wait: float = 2.0) -> str:
    """Downloads ``url`` to ``path`` and returns the file's SHA-256.

    An existing ``path`` that matches the checksum is kept (nothing is fetched); one that
    does not is an error, never overwritten. Connection errors are retried ``retries``
    times after ``retry_wait`` seconds (doubling), each retry resuming where the last stopped.
    """
    path = Path(path)
    if path.exists():
        if not (sha256 or md5):
            return _verify_unpinned(path, allow_unverified)
        try:
            return _verify(path, sha256, md5)
        except _ChecksumError as err:
            raise UserError(f"{path}: already exists but does not match ({err}); move it away to "
                            "download it again") from None
    if not (sha256 or md5 or allow_unverified):
        raise UserError(f"{url}: no checksum is known for {path.name}; pass --allow-unverified to download "
                        "it anyway (its SHA-256 is printed, to pin with --sha256 next time), or --sha256 HASH")
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    for attempt in range(retries + 1):
        try:
            _fetch(url, part, size, progress, timeout)
            break
        except (OSError, http.client.HTTPException) as err:  # URLError, timeouts, resets
            if isinstance(err, urllib.error.HTTPError) and err.code < 500:
                raise UserError(f"{url}: HTTP {err.code} {err.reason}") from None
            if attempt == retries:
                raise UserError(f"{url}: download failed after {retries + 1} attempts ({err}); run "
                                f"again to resume from {part}") from None
            time.sleep(min(retry_wait * 2 ** attempt, 60))
    try:
        digest = _verify(part, sha256, md5)
    except _ChecksumError as err:
        part.unlink()
        raise UserError(f"{url}: the download does not match its checksum ({err}); deleted "
                        f"{part}. If the file was legitimately updated, pass its SHA-256") from None
    os.replace(part, path)
    return digest


def _fetch(url: str, part: Path, size: int | None, progress: bool, timeout: float) -> None:
    """Appends the rest of ``url`` to ``part``, starting a fresh file if the server ignores Range."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset == size:
        return  # complete already; the checksum decides whether it is good
    if size is not None and offset > size:
        offset = 0  # longer than the file can be: start over
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # range not satisfiable: we already have every byte
            return
        raise
    with response:
        status = response.status
        if offset and status != 206:
            offset = 0  # the server sent the whole file
        elif status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise UserError(f"{url}: server answered a resume request with range {content_range!r}")
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        with open(part, "ab" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=part.name[:-5],
                disable=not progress) as bar:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
                bar.update(len(chunk))
        if length is not None and part.stat().st_size != total:
            raise ConnectionError(f"connection closed at {part.stat().st_size} of {total} bytes")


@dataclass
class PrepareResult:
    dataset: str
    directory: Path  # give this as data.data_dir
    archives: dict[str, str] = field(default_factory=dict)  # file name -> its SHA-256
    extracted: dict[str, int] = field(default_factory=dict)  # file name -> files written
    found: dict[str, Path] = field(default_factory=dict)  # file name -> the folder already extracted from it
    examples: int = 0  # examples the dataset's layout check found, when something was found extracted


def prepare(dataset: str, directory: str | os.PathLike, sha256: dict[str, str] | str | None = None,
            url: dict[str, str] | None = None, extract: bool = True, allow_unverified: bool = False,
            progress: bool = True) -> PrepareResult:
    """Downloads (and extracts) the archives of ``dataset`` (a key of :data:`DATASETS`) into
    ``directory``.

    ``sha256`` overrides the known checksum: a string for a one-archive dataset, else
    ``{remote file key: sha256}`` (keys as in :data:`REMOTE_FILES`). ``url`` replaces
    download addresses the same way (mirrors, tests). KITTI's zip is left packed with
    ``extract=False``: the kitti_road source reads it directly.
    """
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    keys = DATASETS[dataset]
    if isinstance(sha256, str):
        if len(keys) != 1:
            raise UserError(f"{dataset} has {len(keys)} archives ({', '.join(keys)}): give one SHA-256 each")
        sha256 = {keys[0]: sha256}
    sha256, url = sha256 or {}, url or {}
    directory = Path(directory)
    result = PrepareResult(dataset, directory)
    for key in keys:
        remote = REMOTE_FILES[key]
        override = sha256.get(key)
        archive = directory / remote.filename
        if not archive.exists() and (directory / EXTRACTED_FOLDERS[key]).is_dir():
            result.found[remote.filename] = directory / EXTRACTED_FOLDERS[key]  # checked below
            continue
        digest = download(url.get(key, remote.url), archive,
                          sha256=override or remote.sha256, md5=None if override else remote.md5,
                          size=None if override else remote.size, allow_unverified=allow_unverified,
                          progress=progress)
        result.archives[remote.filename] = digest
        if extract:
            result.extracted[remote.filename] = safe_extract(archive, directory, progress=progress).written
    if result.found:
        result.examples = check_layout(dataset, directory)
    return result


def check_layout(dataset: str, directory: Path) -> int:
    """Checks an extracted dataset the way its source reads it (every listed image and mask
    present, nothing unpaired); returns its number of examples. Contents are checked by
    ``tfseg data check``."""
    from tfseg.config import DataConfig
    from tfseg.data.check import all_examples
    from tfseg.data.sources import make_source

    source = make_source(DataConfig(source=dataset, data_dir=str(directory)))
    problems = source.structure_problems()
    if problems:
        raise UserError(f"{directory}: its extracted {dataset} data is incomplete ({problems[0].file}: "
                        f"{problems[0].reason}; {len(problems)} problem(s)); move the folder away to download "
                        "and extract it again")
    return len(all_examples(source))
