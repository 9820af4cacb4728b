"""Downloads against a loopback server: checksums, resume, retries, prepare end to end."""

from __future__ import annotations

import hashlib
import zipfile

import numpy as np
import pytest
from data_fixtures import http_server, make_kitti, no_proxy  # noqa: F401 (fixtures)

from tfseg.config import DataConfig
from tfseg.data import prepare as prepare_lib
from tfseg.data.prepare import REMOTE_FILES, download, prepare
from tfseg.data.sources import make_source
from tfseg.errors import UserError

PAYLOAD = bytes(np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8))
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def served(http_server):
    base, folder, state = http_server
    (folder / "file.bin").write_bytes(PAYLOAD)
    return f"{base}/file.bin", state


def test_download_with_good_checksum(served, tmp_path):
    url, _ = served
    target = tmp_path / "dl" / "file.bin"
    assert download(url, target, sha256=SHA256, progress=False, timeout=5) == SHA256
    assert target.read_bytes() == PAYLOAD
    assert not target.with_name("file.bin.part").exists()
    # A second call finds the verified file and fetches nothing.
    _, state = served
    requests = len(state["requests"])
    download(url, target, sha256=SHA256, progress=False, timeout=5)
    assert len(state["requests"]) == requests


def test_md5_only_verification(served, tmp_path):
    url, _ = served
    download(url, tmp_path / "a.bin", md5=MD5, progress=False, timeout=5)
    with pytest.raises(UserError, match="MD5"):
        download(url, tmp_path / "b.bin", md5="0" * 32, progress=False, timeout=5)


def test_bad_checksum_deletes_the_part_file(served, tmp_path):
    url, _ = served
    target = tmp_path / "file.bin"
    with pytest.raises(UserError, match="does not match its checksum"):
        download(url, target, sha256="0" * 64, progress=False, timeout=5)
    assert not target.exists() and not target.with_name("file.bin.part").exists()


def test_existing_mismatching_file_is_not_overwritten(served, tmp_path):
    url, _ = served
    target = tmp_path / "file.bin"
    target.write_bytes(b"user data")
    with pytest.raises(UserError, match="already exists but does not match"):
        download(url, target, sha256=SHA256, progress=False, timeout=5)
    assert target.read_bytes() == b"user data"


def test_resume_from_a_part_file_with_range(served, tmp_path):
    url, state = served
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(PAYLOAD[:123_456])
    download(url, target, sha256=SHA256, progress=False, timeout=5)
    assert target.read_bytes() == PAYLOAD
    assert state["requests"][-1]["Range"] == "bytes=123456-"


def test_server_ignoring_range_restarts_cleanly(served, tmp_path):
    url, state = served
    state["ranges"] = False
    target = tmp_path / "file.bin"
    target.with_name("file.bin.part").write_bytes(b"garbage that is not a prefix")
    download(url, target, sha256=SHA256, progress=False, timeout=5)
    assert target.read_bytes() == PAYLOAD


def test_interrupted_download_resumes(served, tmp_path):
    url, state = served
    target = tmp_path / "file.bin"
    state["cut_after"].append(100_000)
    with pytest.raises(UserError, match="run again to resume"):
        download(url, target, sha256=SHA256, progress=False, timeout=5, retries=0)
    part = target.with_name("file.bin.part")
    assert part.stat().st_size == 100_000  # kept for the next attempt
    state["cut_after"].append(50_000)  # the retry inside one call also resumes
    download(url, target, sha256=SHA256, progress=False, timeout=5, retries=2, retry_wait=0.01)
    assert target.read_bytes() == PAYLOAD
    assert [r.get("Range") for r in state["requests"][-2:]] == ["bytes=100000-", "bytes=150000-"]


def test_unknown_checksum_needs_consent(served, tmp_path):
    url, _ = served
    with pytest.raises(UserError, match="no checksum is known"):
        download(url, tmp_path / "f", progress=False)
    assert download(url, tmp_path / "f", allow_unverified=True, progress=False, timeout=5) == SHA256


def test_http_errors_are_reported(http_server, tmp_path):
    base, _, _ = http_server
    with pytest.raises(UserError, match="HTTP 404"):
        download(f"{base}/missing.zip", tmp_path / "m.zip", sha256=SHA256, progress=False, timeout=5)


def test_prepare_kitti_end_to_end(http_server, tmp_path):
    base, folder, _ = http_server
    root = make_kitti(tmp_path / "src" / "data_road", {"um_000000": (12, 20), "uu_000001": (14, 18)})
    with zipfile.ZipFile(folder / "data_road.zip", "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, "data_road/" + path.relative_to(root).as_posix())
    digest = hashlib.sha256((folder / "data_road.zip").read_bytes()).hexdigest()
    target = tmp_path / "datasets" / "kitti"
    with pytest.raises(UserError, match="no checksum is known"):
        prepare("kitti_road", target, url={"kitti_road": f"{base}/data_road.zip"}, progress=False)
    result = prepare("kitti_road", target, sha256=digest, url={"kitti_road": f"{base}/data_road.zip"},
                     progress=False)
    assert result.archives == {"data_road.zip": digest}
    assert result.extracted["data_road.zip"] == len([p for p in root.rglob("*") if p.is_file()])
    source = make_source(DataConfig(source="kitti_road", data_dir=str(result.directory)))
    assert [e.id for e in source.examples("trainval")] == ["um_000000", "uu_000001"]
    # Running it again verifies and skips: nothing new is written.
    again = prepare("kitti_road", target, sha256=digest, url={"kitti_road": f"{base}/data_road.zip"},
                    progress=False)
    assert again.extracted["data_road.zip"] == 0


def test_registry_has_the_official_addresses_and_checksums():
    assert REMOTE_FILES["kitti_road"].url == "https://s3.eu-central-1.amazonaws.com/avg-kitti/data_road.zip"
    assert REMOTE_FILES["voc2012"].sha256 == "e14f763270cf193d0b5f74b169f44157a4b0c6efa708f4dd0ff78ee691763bcb"
    assert REMOTE_FILES["sbd"].sha256 is None and REMOTE_FILES["sbd"].md5
    assert prepare_lib.DATASETS["voc_aug"] == ("voc2012", "sbd")
    with pytest.raises(UserError, match="unknown dataset"):
        prepare("imagenet", "x")
    with pytest.raises(UserError, match="give one SHA-256 each"):
        prepare("voc_aug", "x", sha256="0" * 64)


def test_prepare_uses_kitti_already_extracted_or_zipped_without_the_network(tmp_path, monkeypatch, capsys):
    """The README's first KITTI command, where the data are already there: checked, exit 0."""
    import urllib.request

    from tfseg.cli import main

    def no_network(*args, **kwargs):
        raise AssertionError("prepare went to the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    extracted = tmp_path / "kitti"
    make_kitti(extracted / "data_road", {"um_000000": (12, 20), "umm_000001": (14, 18)})
    assert main(["data", "prepare", "--dataset", "kitti_road", "--data-dir", str(extracted)]) == 0
    out = capsys.readouterr().out
    assert f"data_road.zip: already extracted in {extracted / 'data_road'}" in out
    assert "kitti_road: layout complete, 3 examples" in out  # two training pairs and one test image
    # A training image without its ground truth: the layout check names it.
    (extracted / "data_road" / "training" / "gt_image_2" / "umm_road_000001.png").unlink()
    assert main(["data", "prepare", "--dataset", "kitti_road", "--data-dir", str(extracted)]) == 2
    assert "umm_000001" in capsys.readouterr().err

    # The zip alone: its CRCs are checked and its SHA-256 printed, to pin.
    zipped = tmp_path / "zipped"
    root = make_kitti(tmp_path / "src" / "data_road", {"um_000000": (12, 20)})
    zipped.mkdir()
    with zipfile.ZipFile(zipped / "data_road.zip", "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, "data_road/" + path.relative_to(root).as_posix())
    digest = hashlib.sha256((zipped / "data_road.zip").read_bytes()).hexdigest()
    assert main(["data", "prepare", "--dataset", "kitti_road", "--data-dir", str(zipped), "--no-extract"]) == 0
    assert f"data_road.zip: sha256 {digest}, 0 file(s) extracted" in capsys.readouterr().out
    # A damaged zip (a member's bytes changed) fails its CRC check, in one line.
    data = bytearray((zipped / "data_road.zip").read_bytes())
    data[40] ^= 0xFF
    (zipped / "data_road.zip").write_bytes(bytes(data))
    assert main(["data", "prepare", "--dataset", "kitti_road", "--data-dir", str(zipped), "--no-extract"]) == 2
    assert "damaged" in capsys.readouterr().err


def test_without_a_checksum_the_refusal_names_the_flag(http_server, tmp_path, capsys):
    from tfseg.cli import main

    base, folder, _ = http_server
    root = make_kitti(tmp_path / "src" / "data_road", {"um_000000": (12, 20)})
    with zipfile.ZipFile(folder / "data_road.zip", "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, "data_road/" + path.relative_to(root).as_posix())
    digest = hashlib.sha256((folder / "data_road.zip").read_bytes()).hexdigest()
    args = ["data", "prepare", "--dataset", "kitti_road", "--data-dir", str(tmp_path / "kitti"),
            "--url", f"{base}/data_road.zip"]
    assert main(args) == 2
    assert "pass --allow-unverified" in capsys.readouterr().err
    assert main(args + ["--allow-unverified"]) == 0
    assert f"data_road.zip: sha256 {digest}" in capsys.readouterr().out
