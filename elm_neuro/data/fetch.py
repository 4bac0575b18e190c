"""Download of the official SHD files with md5 check (docs/design.md §5).

Public API
----------
``fetch_shd(out_dir, base_url=DEFAULT_BASE_URL, splits=("train", "test"), md5=None,
force=False, keep_zip=False, timeout=60.0, progress=None) -> list[Path]``
    For each split, downloads ``<base_url>/shd_<split>.h5.zip`` into a temporary file in
    ``out_dir`` while computing its md5, **refuses** (``ChecksumError``, a ``ValueError``) a
    digest other than the expected one (docs/design.md §5: train f3252aeb598ac776c1b526422d90eecb, test
    1503a5064faa34311c398fb0a1ed0a6f; override with ``md5={"train": ..., "test": ...}``),
    then extracts ``shd_<split>.h5`` from the zip into a temporary file and moves it into place
    with ``os.replace`` - a failed or interrupted fetch never leaves a partial ``.h5``. The zip
    is deleted unless ``keep_zip``; existing ``.h5`` files are kept unless ``force``.
    CLI: ``elm-neuro data fetch --out DIR [--base-url URL]``.

The hosts are zenkelab.org/datasets (default) and compneuro.net (mirror).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from elm_neuro.defaults import FETCH_TIMEOUT_S

from ._h5io import atomic_output

__all__ = ["fetch_shd", "ChecksumError", "DownloadError", "SHD_MD5", "DEFAULT_BASE_URL",
           "MIRROR_BASE_URL"]

DEFAULT_BASE_URL = "https://zenkelab.org/datasets/"
MIRROR_BASE_URL = "https://compneuro.net/datasets/"
#: md5 of the official zip files (docs/design.md §5).
SHD_MD5 = {
    "train": "f3252aeb598ac776c1b526422d90eecb",
    "test": "1503a5064faa34311c398fb0a1ed0a6f",
}


class ChecksumError(ValueError):
    """A downloaded file does not have the expected md5 digest."""


class DownloadError(ValueError):
    """A download failed (HTTP error, unreachable host, bad zip)."""


def _download(url: str, dest: Path, timeout: float, progress: bool | None) -> str:
    """Stream ``url`` into ``dest``; return the md5 hex digest of the bytes received."""
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            total = resp.headers.get("Content-Length")
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=url.rsplit("/", 1)[-1], leave=False,
                      disable=(not progress) if progress is not None else None) as bar:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    md5.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(f"{url}: download failed ({exc})") from exc
    return md5.hexdigest()


def fetch_shd(out_dir: str | os.PathLike, base_url: str = DEFAULT_BASE_URL,
              splits=("train", "test"), md5: dict[str, str] | None = None,
              force: bool = False, keep_zip: bool = False, timeout: float = FETCH_TIMEOUT_S,
              progress: bool | None = None) -> list[Path]:
    """Download, verify and unzip SHD files; return the paths of the ``.h5`` files."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expected = dict(SHD_MD5)
    expected.update(md5 or {})
    if not base_url.endswith("/"):
        base_url += "/"
    paths = []
    for split in splits:
        if split not in expected:
            raise ValueError(f"unknown SHD split {split!r}; expected one of {sorted(expected)}")
        h5_name = f"shd_{split}.h5"
        zip_name = h5_name + ".zip"
        h5_path = out_dir / h5_name
        if h5_path.exists() and not force:
            paths.append(h5_path)
            continue
        url = base_url + zip_name
        zip_path = out_dir / zip_name
        with atomic_output(zip_path) as tmp_zip:
            digest = _download(url, tmp_zip, timeout, progress)
            if digest != expected[split].lower():
                raise ChecksumError(
                    f"{url}: md5 {digest} does not match the expected {expected[split]}; "
                    "refusing the file"
                )
        try:
            with zipfile.ZipFile(zip_path) as zf:
                names = zf.namelist()
                member = next((m for m in names if Path(m).name == h5_name), None)
                if member is None:
                    raise DownloadError(
                        f"{zip_path}: archive holds {names}, expected a member {h5_name}"
                    )
                with atomic_output(h5_path) as tmp_h5:
                    with zf.open(member) as src, open(tmp_h5, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        except zipfile.BadZipFile as exc:
            raise DownloadError(f"{zip_path}: not a valid zip archive ({exc})") from exc
        finally:
            if not keep_zip:
                with contextlib.suppress(FileNotFoundError):
                    zip_path.unlink()
        paths.append(h5_path)
    return paths
