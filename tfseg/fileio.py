"""Writing outputs atomically: a reader sees the old file or the new one, never half of one.

Temporary files and folders are created private (mode 0600 / 0700); before they are
renamed into place they get the permissions a plain ``open()`` or ``mkdir()`` would have
given them under the process's umask, so that colleagues, services and containers running
as other users can read what tfseg writes.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def current_umask() -> int:
    """The process's umask, read without changing it (Linux), else by setting it back."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish_mode(path: str | os.PathLike) -> None:
    """Gives a file or folder the mode a normal write would have: 0666 or 0777, less the umask."""
    base = 0o777 if os.path.isdir(path) else 0o666
    os.chmod(path, base & ~current_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renames it onto ``path`` if the block succeeds.

    The temporary file keeps the final suffix so that writers which pick a format from
    the file name (OpenCV, PIL, matplotlib) still do the right thing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        publish_mode(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_writable(path: str | os.PathLike, what: str, folder: bool = False) -> None:
    """Refuses, as a :class:`~tfseg.errors.UserError` naming ``what`` and ``path``, an output
    that could not be written: a folder where a file goes (or the reverse), a path under a
    regular file, or a place this process may not write (tried with a temporary file, at
    once removed). Call it before the long work whose result goes there, so that nothing is
    computed in vain.
    """
    from tfseg.errors import UserError

    path = Path(path)
    if path.exists():
        if path.is_dir() != folder:
            raise UserError(f"{what} {path}: is {'not ' if folder else ''}a folder; give "
                            f"{'a folder' if folder else 'a file name'}")
        target = path if folder else path.parent
    else:
        target = path.parent
        while not target.exists():  # the nearest existing ancestor is where it would be created
            target = target.parent
        if not target.is_dir():
            raise UserError(f"{what} {path}: lies under {target}, which is a file, not a folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise UserError(f"{what} {path}: cannot be written here (permission denied); choose another path")
    # A file created where the output goes: the permission bits do not tell all (root,
    # read-only mounts, /proc).
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as err:
        raise UserError(f"{what} {path}: cannot be written here ({err.strerror}); choose another path") from None
