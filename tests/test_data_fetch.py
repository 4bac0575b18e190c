"""SHD download (docs/design.md §5 md5s) against a local HTTP server on 127.0.0.1 started in the test."""
from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile

import numpy as np
import pytest

from elm_neuro.atomic import RefusedPath
from elm_neuro.cli.main import main
from elm_neuro.data.fetch import SHD_MD5, ChecksumError, DownloadError, fetch_shd
from elm_neuro.data.shd import read_shd
from test_data_helpers import write_fake_shd


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path):
    """Serve tmp_path/www on a free loopback port; yields (base_url, folder, md5s)."""
    www = tmp_path / "www"
    www.mkdir()
    md5 = {}
    for split, n in (("train", 5), ("test", 3)):
        h5 = tmp_path / f"shd_{split}.h5"
        write_fake_shd(h5, [[0.1 * i] for i in range(n)], [[i] for i in range(n)],
                       list(range(n)), [0] * n)
        zpath = www / f"shd_{split}.h5.zip"
        with zipfile.ZipFile(zpath, "w") as z:
            z.write(h5, arcname=h5.name)
        md5[split] = hashlib.md5(zpath.read_bytes()).hexdigest()
    (www / "shd_bad.h5.zip").write_bytes(b"not a zip")
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", tmp_path, md5
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_fetch_verifies_and_unzips(server, tmp_path):
    url, src, md5 = server
    out = tmp_path / "data"
    paths = fetch_shd(out, base_url=url, md5=md5, progress=False)
    assert [p.name for p in paths] == ["shd_train.h5", "shd_test.h5"]
    for p in paths:
        assert p.read_bytes() == (src / p.name).read_bytes()
    assert len(read_shd(out / "shd_train.h5")) == 5
    assert sorted(p.name for p in out.iterdir()) == ["shd_test.h5", "shd_train.h5"]
    # an existing file is kept (no download); keep_zip keeps the archive
    (out / "shd_test.h5").write_bytes(b"sentinel")
    fetch_shd(out, base_url=url, md5=md5, splits=("test",), progress=False)
    assert (out / "shd_test.h5").read_bytes() == b"sentinel"
    # force replaces only an HDF5 file of that name: a file of another kind is refused, untouched
    with pytest.raises(RefusedPath, match=r"shd_test\.h5 is not an HDF5 file; --force replaces only"):
        fetch_shd(out, base_url=url, md5=md5, splits=("test",), force=True, progress=False)
    assert (out / "shd_test.h5").read_bytes() == b"sentinel"
    damaged = (src / "shd_test.h5").read_bytes()[:100]  # a truncated copy: HDF5, replaced
    (out / "shd_test.h5").write_bytes(damaged)
    fetch_shd(out, base_url=url, md5=md5, splits=("test",), force=True, keep_zip=True,
              progress=False)
    assert (out / "shd_test.h5").read_bytes() == (src / "shd_test.h5").read_bytes()
    assert (out / "shd_test.h5.zip").is_file()


def test_fetch_refuses_md5_mismatch(server, tmp_path):
    url, _, md5 = server
    out = tmp_path / "data"
    # the official md5 (docs/design.md §5) does not match our fake zip: refused, nothing left behind
    assert SHD_MD5 == {"train": "f3252aeb598ac776c1b526422d90eecb",
                       "test": "1503a5064faa34311c398fb0a1ed0a6f"}
    with pytest.raises(ChecksumError, match=rf"shd_train\.h5\.zip: md5 {md5['train']} does "
                                            rf"not match the expected {SHD_MD5['train']}"):
        fetch_shd(out, base_url=url, progress=False)
    assert not out.exists()  # the folder it made is removed again


def test_fetch_http_error_and_bad_zip(server, tmp_path):
    url, _, _ = server
    out = tmp_path / "data"
    with pytest.raises(DownloadError, match="nothere/shd_train.h5.zip: download failed"):
        fetch_shd(out, base_url=url + "nothere/", progress=False)
    bad_md5 = hashlib.md5(b"not a zip").hexdigest()
    with pytest.raises(DownloadError, match=r"shd_bad\.h5\.zip: not a valid zip"):
        fetch_shd(out, base_url=url, splits=("bad",), md5={"bad": bad_md5}, progress=False)
    assert not out.exists()
    with pytest.raises(ValueError, match="unknown SHD split 'valid'"):
        fetch_shd(out, base_url=url, splits=("valid",))


def test_fetch_cli(server, tmp_path, capsys):
    url, _, md5 = server
    out = tmp_path / "cli"
    rc = main(["data", "fetch", "--out", str(out), "--base-url", url, "--md5-train",
               md5["train"], "--md5-test", md5["test"], "--quiet"])
    assert rc == 0
    assert (out / "shd_train.h5").is_file() and (out / "shd_test.h5").is_file()
    assert "ready:" in capsys.readouterr().out
    rc = main(["data", "fetch", "--out", str(tmp_path / "cli2"), "--base-url", url, "--quiet"])
    assert rc == 2
    assert "does not match the expected" in capsys.readouterr().err
    np.testing.assert_array_equal(read_shd(out / "shd_test.h5").labels, [0, 1, 2])
