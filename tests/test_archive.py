"""Safe extraction: hostile members are refused before anything is written."""

from __future__ import annotations

import io
import os
import tarfile
import zipfile

import pytest

from tfseg.data.archive import safe_extract
from tfseg.errors import UserError


def make_zip(path, members: dict[str, bytes], symlinks: dict[str, str] | None = None):
    symlinks = symlinks or {}
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in symlinks.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return path


def make_tar(path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for member in members:
            if isinstance(member, tuple):
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tf.addfile(info, io.BytesIO(member[1]))
            else:
                tf.addfile(member)
    return path


def tar_link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_extracts_zip_and_tar_and_skips_identical_files(tmp_path):
    members = {"data/a.txt": b"alpha", "data/sub/b.bin": bytes(range(256)) * 10}
    for archive in (make_zip(tmp_path / "x.zip", members),
                    make_tar(tmp_path / "x.tgz", list(members.items()) + [tar_link("data/link", "a.txt")])):
        dest = tmp_path / f"out_{archive.suffix}"
        summary = safe_extract(archive, dest, progress=False)
        assert (dest / "data/a.txt").read_bytes() == b"alpha"
        assert (dest / "data/sub/b.bin").read_bytes() == members["data/sub/b.bin"]
        assert summary.written == 2
        again = safe_extract(archive, dest, progress=False)  # re-running resumes, writes nothing
        assert again.written == 0 and again.skipped >= 2
    assert os.readlink(tmp_path / "out_.tgz" / "data/link") == "a.txt"


def test_never_overwrites_a_different_file(tmp_path):
    archive = make_zip(tmp_path / "x.zip", {"a.txt": b"new"})
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "a.txt").write_bytes(b"mine")
    with pytest.raises(UserError, match="already exists with different content"):
        safe_extract(archive, dest, progress=False)
    assert (dest / "a.txt").read_bytes() == b"mine"


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/tfseg-evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_zip_path_traversal_is_refused(tmp_path, name):
    archive = make_zip(tmp_path / "bad.zip", {"fine.txt": b"x", name: b"evil"})
    dest = tmp_path / "out"
    with pytest.raises(UserError, match="refusing to extract"):
        safe_extract(archive, dest, progress=False)
    assert not dest.exists()  # checked before anything was written
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_out_of_the_target_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bad.zip", {"a.txt": b"x"}, symlinks={"link": "../../etc"})
    with pytest.raises(UserError, match="points outside"):
        safe_extract(archive, tmp_path / "out", progress=False)


@pytest.mark.parametrize("member,message", [
    (("../evil.txt", b"evil"), "climbs out"),
    (("/tmp/tfseg-evil.txt", b"evil"), "absolute path"),
    (tar_link("up", "../.."), "points outside"),
    (tar_link("abs", "/etc/passwd"), "absolute path"),
    (tar_link("hard", "../outside.txt", tarfile.LNKTYPE), "climbs out"),
    (tar_link("hard2", "not-in-archive.txt", tarfile.LNKTYPE), "not in the archive"),
    (tar_link("dev", "", tarfile.CHRTYPE), "device file"),
    (tar_link("fifo", "", tarfile.FIFOTYPE), "special file"),
])
def test_tar_hostile_members_are_refused(tmp_path, member, message):
    archive = make_tar(tmp_path / "bad.tar.gz", [("fine.txt", b"x"), member])
    dest = tmp_path / "out"
    with pytest.raises(UserError, match=message):
        safe_extract(archive, dest, progress=False)
    assert not dest.exists()


def test_writing_through_an_existing_link_out_of_the_target_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    archive = make_tar(tmp_path / "x.tar", [("sub/file.txt", b"x")], mode="w")
    with pytest.raises(UserError, match="through a link"):
        safe_extract(archive, dest, progress=False)
    assert not (outside / "file.txt").exists()


def test_internal_hardlink_is_copied(tmp_path):
    archive = make_tar(tmp_path / "x.tar", [("a.txt", b"same"), tar_link("b.txt", "a.txt", tarfile.LNKTYPE)],
                       mode="w")
    dest = tmp_path / "out"
    safe_extract(archive, dest, progress=False)
    assert (dest / "b.txt").read_bytes() == b"same"
    assert os.stat(dest / "b.txt").st_ino != os.stat(dest / "a.txt").st_ino


def test_not_an_archive(tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"plain text")
    with pytest.raises(UserError, match="not a readable zip or tar archive"):
        safe_extract(path, tmp_path / "out", progress=False)


@pytest.mark.parametrize("links", [
    [("l1", "."), ("l2", "l1/..")],                       # each looks harmless; together: ..
    [("a/l1", ".."), ("a/l2", "l1/..")],                  # a/l1 -> root, so a/l2 -> root/..
    [("l2", "l1/x"), ("l1", "sub/.."), ("sub", "..")],    # a chain defined out of order
    [("loop1", "loop2"), ("loop2", "loop1")],             # a cycle never resolves
])
def test_symlink_chains_are_resolved_like_the_filesystem(tmp_path, links):
    archive = make_tar(tmp_path / "chain.tar", [("fine.txt", b"x")] + [tar_link(n, t) for n, t in links], mode="w")
    dest = tmp_path / "deep" / "out"
    with pytest.raises(UserError, match="points outside the target folder"):
        safe_extract(archive, dest, progress=False)
    assert not dest.exists()


def test_a_member_written_through_an_archive_link_chain_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bad.zip", {"fine.txt": b"x", "l2/escaped.txt": b"evil"},
                       symlinks={"l1": ".", "l2": "l1/.."})
    with pytest.raises(UserError, match="refusing to extract"):
        safe_extract(archive, tmp_path / "deep" / "out", progress=False)
    assert not (tmp_path / "deep" / "escaped.txt").exists()
    assert not (tmp_path / "deep" / "out").exists()


def test_a_link_chain_that_stays_inside_is_extracted(tmp_path):
    archive = make_tar(tmp_path / "ok.tar", [("data/a.txt", b"alpha"), tar_link("l1", "data"),
                                              tar_link("l2", "l1/a.txt")], mode="w")
    dest = tmp_path / "out"
    safe_extract(archive, dest, progress=False)
    assert (dest / "l2").read_bytes() == b"alpha"


def test_a_late_conflict_leaves_nothing_written(tmp_path):
    archive = make_tar(tmp_path / "x.tar", [("a.txt", b"alpha"), ("b.txt", b"new")], mode="w")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "b.txt").write_bytes(b"mine")
    with pytest.raises(UserError, match="already exists with different content"):
        safe_extract(archive, dest, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]
    assert (dest / "b.txt").read_bytes() == b"mine"
