"""Safe extraction of zip and tar archives (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz).

The whole archive is checked before anything is written, so a hostile or broken archive,
or one that conflicts with files already there, leaves the target folder untouched.
Refused: absolute paths (``/x``, ``C:\\x``), paths with ``..`` components, links whose
target is absolute or leaves the target folder, members written through a link that
leaves it, device files and FIFOs. Links are resolved the way the filesystem will resolve
them once everything is extracted, chains included (``l1 -> .``, ``l2 -> l1/..`` leaves
the folder), together with links already in the target folder. While writing, every
parent folder is checked again against the real filesystem.

Existing files are never overwritten: a file that already holds exactly the member's
bytes is skipped (so re-running an interrupted extraction resumes it); one that differs
is an error. Each file is written to a temporary name and renamed into place, so an
interruption leaves no half-written file behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from tqdm import tqdm

from tfseg.errors import UserError


@dataclass
class ExtractSummary:
    written: int = 0
    skipped: int = 0  # already present with identical content
    directories: int = 0
    links: int = 0
    members: list[str] = field(default_factory=list)


@dataclass
class _Member:
    name: str  # normalised relative posix path
    kind: str  # "file", "dir", "symlink", "hardlink"
    size: int = 0
    link_target: str = ""  # symlink: as stored; hardlink: normalised member name
    crc32: int | None = None  # zip members carry one: lets an identical file be skipped cheaply


def _normalise(name: str, archive: str) -> str:
    """A member name as a safe relative posix path, or a :class:`UserError`."""
    text = name.replace("\\", "/")
    if text.startswith("/") or (len(text) > 1 and text[1] == ":"):
        raise UserError(f"{archive}: member {name!r} has an absolute path; refusing to extract")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{archive}: member {name!r} climbs out of the target folder with '..'; "
                        "refusing to extract")
    return "/".join(parts)


# Like the kernel's limit on symlinks followed in one lookup (Linux: 40).
MAX_LINK_HOPS = 40


def _is_absolute(target: str) -> bool:
    target = target.replace("\\", "/")
    return target.startswith("/") or (len(target) > 1 and target[1] == ":")


def _resolve(path: str, links: dict[str, str], root: Path, follow_last: bool = True) -> str | None:
    """Where the relative ``path`` lands under ``root`` once every symlink on the way is
    followed: the archive's ``links`` (name -> target) and the links already in ``root``.
    Returns the normalised relative path, or None if it leaves ``root`` (an absolute
    target, or ``..`` above it). ``follow_last=False`` leaves a final symlink unfollowed.
    """
    done: list[str] = []
    pending = [p for p in path.split("/") if p not in ("", ".")]
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        here = "/".join([*done, part])
        target = links.get(here)
        if target is None and (root / here).is_symlink():
            target = os.readlink(root / here)
        if target is None or (not pending and not follow_last):
            done.append(part)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS or _is_absolute(target):
            return None
        pending = target.replace("\\", "/").split("/") + pending
    return "/".join(done)


def _check_links(members: list[_Member], root: Path, archive: str) -> None:
    """Refuses any link, and any member written through a link, that leaves ``root``."""
    links = {m.name: m.link_target for m in members if m.kind == "symlink"}
    for member in members:
        if member.kind == "symlink":
            if _is_absolute(member.link_target):
                raise UserError(f"{archive}: link {member.name!r} points to absolute path "
                                f"{member.link_target!r}; refusing to extract")
            if _resolve(member.name, links, root) is None:
                raise UserError(f"{archive}: link {member.name!r} points outside the target folder "
                                f"({member.link_target!r}, links followed) or into a cycle; refusing to extract")
        if _resolve(member.name, links, root, follow_last=False) is None:
            raise UserError(f"{archive}: member {member.name!r} would be written through a link "
                            "that leaves the target folder; refusing to extract")


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str) -> _Member | None:
    name = _normalise(info.filename, archive)
    mode = info.external_attr >> 16
    if not name:
        return None
    if stat.S_ISLNK(mode):
        return _Member(name, "symlink", link_target=zf.read(info).decode())
    if info.is_dir():
        return _Member(name, "dir")
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise UserError(f"{archive}: member {info.filename!r} is not a regular file; refusing to extract")
    return _Member(name, "file", info.file_size, crc32=info.CRC)


def _tar_member(info: tarfile.TarInfo, archive: str) -> _Member | None:
    name = _normalise(info.name, archive)
    if not name:
        return None
    if info.isdir():
        return _Member(name, "dir")
    if info.issym():
        return _Member(name, "symlink", link_target=info.linkname)
    if info.islnk():
        return _Member(name, "hardlink", link_target=_normalise(info.linkname, archive))
    if info.isfile():
        return _Member(name, "file", info.size)
    kind = "device file" if info.ischr() or info.isblk() else "special file (FIFO?)"
    raise UserError(f"{archive}: member {info.name!r} is a {kind}; refusing to extract")


def _contents(path: Path) -> Iterator[tuple[_Member, Callable | None]]:
    """Yields each member in archive order with a function opening its data (files only).

    Tar archives are read as a stream: a compressed tar cannot seek backwards cheaply, so
    each member's data must be used before asking for the next one.
    """
    archive = str(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                member = _zip_member(zf, info, archive)
                if member:
                    yield member, (lambda info=info: zf.open(info)) if member.kind == "file" else None
        return
    try:
        with tarfile.open(path, "r|*") as tf:
            for info in tf:
                member = _tar_member(info, archive)
                if member:
                    yield member, (lambda info=info: tf.extractfile(info)) if member.kind == "file" else None
    except tarfile.TarError as err:
        raise UserError(f"{path}: not a readable zip or tar archive ({err})") from None


def _inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink resolved, lies inside ``root`` (already resolved)."""
    return os.path.commonpath([root, path.resolve()]) == str(root)


def _same_content(path: Path, member: _Member, open_data: Callable) -> bool:
    if path.stat().st_size != member.size:
        return False
    if member.crc32 is not None:
        crc = 0
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                crc = zlib.crc32(chunk, crc)
        return crc == member.crc32
    with open(path, "rb") as existing, open_data() as new:
        while True:
            a, b = existing.read(1 << 20), new.read(1 << 20)
            if a != b:
                return False
            if not a:
                return True


def _write_file(open_data: Callable, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.part")
    try:
        with open_data() as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_existing(target: Path, member: _Member, open_data: Callable | None) -> None:
    """Refuses a member that would meet an existing file it may not replace (checked
    before anything is written; the writing pass checks again)."""
    if member.kind != "file" or target.is_symlink() or not target.exists():
        return
    if not (target.is_file() and _same_content(target, member, open_data)):
        raise UserError(f"{target}: already exists with different content; not overwriting "
                        "it (move it away, or extract somewhere else)")


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike, progress: bool = True) -> ExtractSummary:
    """Extracts ``archive`` into ``dest`` (created if needed) under the rules above."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise UserError(f"{archive}: archive not found")
    # First pass: validate every member, and every existing file it would meet; nothing is
    # written if any one is refused.
    root = dest.resolve()
    members = []
    for member, open_data in _contents(archive):
        members.append(member)
        _check_existing(root / member.name, member, open_data)
    names = {m.name for m in members}
    for member in members:
        if member.kind == "hardlink" and member.link_target not in names:
            raise UserError(f"{archive}: hard link {member.name!r} points to {member.link_target!r}, "
                            "which is not in the archive; refusing to extract")
    _check_links(members, root, str(archive))
    dest.mkdir(parents=True, exist_ok=True)
    summary = ExtractSummary()
    total = sum(m.size for m in members if m.kind == "file")
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"extract {archive.name}",
              disable=not progress) as bar:
        for member, open_data in _contents(archive):
            target = root / member.name
            summary.members.append(member.name)
            # A symlink extracted earlier (or already in dest) must not carry writes outside.
            if not _inside(root, target.parent):
                raise UserError(f"{archive}: member {member.name!r} would be written through a link "
                                f"that leaves {dest}; refusing to extract")
            if member.kind == "dir":
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    raise UserError(f"{target}: exists and is not a folder; not overwriting it")
                target.mkdir(parents=True, exist_ok=True)
                summary.directories += 1
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if not _inside(root, target.parent):
                raise UserError(f"{archive}: member {member.name!r} would be written through a link "
                                f"that leaves {dest}; refusing to extract")
            if member.kind == "symlink":
                if target.is_symlink() and os.readlink(target) == member.link_target:
                    summary.skipped += 1
                elif target.exists() or target.is_symlink():
                    raise UserError(f"{target}: already exists; not overwriting it")
                else:
                    os.symlink(member.link_target, target)
                    summary.links += 1
                continue
            if member.kind == "hardlink":
                # Copy the linked file's content rather than making a hard link: it cannot
                # alias anything outside the target, and it was extracted (and checked) already.
                source = root / member.link_target
                if not (source.is_file() and _inside(root, source)):
                    raise UserError(f"{archive}: hard link {member.name!r} points to "
                                    f"{member.link_target!r}, which was not extracted as a file")
                member = _Member(member.name, "file", source.stat().st_size)
                open_data = lambda source=source: open(source, "rb")  # noqa: E731
            if target.is_symlink():
                raise UserError(f"{target}: is a symlink; not writing a file through it")
            if target.exists():
                if target.is_file() and _same_content(target, member, open_data):
                    summary.skipped += 1
                    bar.update(member.size)
                    continue
                raise UserError(f"{target}: already exists with different content; not overwriting "
                                "it (move it away, or extract somewhere else)")
            _write_file(open_data, target)
            summary.written += 1
            bar.update(member.size)
    return summary
