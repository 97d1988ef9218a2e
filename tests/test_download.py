"""Plain-URL downloads from the loopback server: sums recorded then checked, resume with Range, wrong sums
refused without leaving a trusted file, and the errors for missing, refused and offline."""
from __future__ import annotations

import hashlib
import json

import pytest
from hub_server import git_blob_id, hub_fixture  # noqa: F401  (the hub fixture)

from sparc_eval.download import SUMS_NAME, DownloadError, download, read_sums

DATA = bytes(range(256)) * 1024  # 256 KiB


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _gets(hub, name):
    return [p for m, p in hub.requests if m == "GET" and p.endswith(name)]


def test_first_download_records_the_sum_and_later_calls_check_it(hub, tmp_path):
    url = hub.add_url("coco/captions.zip", DATA)
    dest = tmp_path / "coco" / "captions.zip"
    got = download(url, dest, progress=False)
    assert (got.checked, got.sha256, got.size) == ("first-download", _sha(DATA), len(DATA))
    assert dest.read_bytes() == DATA and not list(dest.parent.glob("*.part*"))
    assert read_sums(dest.parent / SUMS_NAME) == {"captions.zip": _sha(DATA)}
    again = download(url, dest, progress=False)
    assert again.checked == "recorded" and len(_gets(hub, "captions.zip")) == 1  # not fetched twice
    dest.write_bytes(DATA[:-1] + b"\0")
    with pytest.raises(DownloadError, match="does not match the recorded sum") as e:
        download(url, dest, progress=False)
    assert e.value.exit_code == 2 and str(dest) in str(e.value)
    dest.unlink()  # deleted: fetched again and checked against the recorded sum
    assert download(url, dest, progress=False).checked == "recorded"


def test_shipped_sum_and_a_wrong_transfer(hub, tmp_path):
    url = hub.add_url("voc.tar", DATA)
    dest = tmp_path / "voc.tar"
    hub.fault("files/voc.tar", "wrong-bytes", times=1)
    with pytest.raises(DownloadError, match="shipped sum") as e:
        download(url, dest, sha256=_sha(DATA), progress=False)
    assert e.value.exit_code == 2 and url in str(e.value)
    assert not dest.exists() and not list(tmp_path.glob("voc.tar.part*"))  # nothing left to trust or resume from
    got = download(url, dest, sha256=_sha(DATA), progress=False)
    assert got.checked == "shipped" and dest.read_bytes() == DATA
    assert not (tmp_path / SUMS_NAME).exists()  # shipped sums are not recorded


def test_a_cut_transfer_resumes_with_range(hub, tmp_path):
    url = hub.add_url("big.bin", DATA)
    hub.fault("files/big.bin", "truncate")
    got = download(url, tmp_path / "big.bin", sha256=_sha(DATA), progress=False, chunk=4096)
    assert got.sha256 == _sha(DATA)
    assert len(_gets(hub, "big.bin")) == 2
    assert hub.ranges == [("/files/big.bin", f"bytes={len(DATA) // 2}-")]


def test_a_partial_file_from_a_killed_run_resumes_and_a_changed_file_restarts(hub, tmp_path):
    url = hub.add_url("ann.json", DATA)
    dest = tmp_path / "ann.json"
    part = tmp_path / "ann.json.part"
    # what a killed run leaves: the first 1000 bytes and the validators of the response
    part.write_bytes(DATA[:1000])
    (tmp_path / "ann.json.part.json").write_text(json.dumps({"url": url, "etag": f'"{git_blob_id(DATA)}"'}))
    assert download(url, dest, progress=False).sha256 == _sha(DATA)
    assert hub.ranges == [("/files/ann.json", "bytes=1000-")]
    # a partial file of an older version: If-Range does not match, so the server sends it whole
    dest2 = tmp_path / "ann2.json"
    url2 = hub.add_url("ann2.json", DATA)
    (tmp_path / "ann2.json.part").write_bytes(b"x" * 1000)
    (tmp_path / "ann2.json.part.json").write_text(json.dumps({"url": url2, "etag": '"old"'}))
    assert download(url2, dest2, progress=False).sha256 == _sha(DATA)
    assert hub.ranges[-1] == ("/files/ann2.json", "bytes=1000-") and dest2.read_bytes() == DATA


def test_missing_refused_and_offline(hub, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as e:
        download(f"{hub.endpoint}/files/absent.zip", tmp_path / "absent.zip", progress=False)
    assert "absent.zip" in str(e.value) and e.value.exit_code == 2
    url = hub.add_url("login.zip", DATA)
    hub.fault("files/login.zip", "401")
    with pytest.raises(DownloadError, match="needs a login"):
        download(url, tmp_path / "login.zip", progress=False)
    before = len(hub.requests)
    with pytest.raises(DownloadError, match="offline") as e:
        download(url, tmp_path / "off.zip", offline=True, progress=False)
    assert url in str(e.value) and len(hub.requests) == before
    hub.stop()
    with pytest.raises(DownloadError, match="cannot reach the server") as e:
        download(url, tmp_path / "gone.zip", progress=False)
    assert url in str(e.value)
    with pytest.raises(DownloadError, match="only http"):
        download("file:///etc/passwd", tmp_path / "x", progress=False)
