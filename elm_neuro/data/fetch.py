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

What it touches. Only files of its own names in ``out_dir``: ``shd_<split>.h5`` (with ``force``,
an existing one is replaced only when it is an HDF5 file, the real SHD, a synthetic file or a
damaged copy: a folder, a link or another kind of file of that name is refused) and, with
``keep_zip``, ``shd_<split>.h5.zip``. A zip of that name already in ``out_dir`` (downloaded by
hand, e.g. on a machine without access to the hosts) is used instead of a download when its md5 is
the expected one, and is never replaced or deleted; one with another md5 is refused before
anything is downloaded. Everything is checked before the first download. When the fetch fails
(no network, a host that does not answer, a wrong digest), what it created is removed again: its
temporary files and the folders it made for ``out_dir``; the message of a failed download names
the ways on: the mirror (``--base-url``), a zip put there by hand, or synthetic SHD-format data
(``elm-neuro data synth``).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from elm_neuro.atomic import RefusedPath, make_folders, remove_empty_folders, scratch_file
from elm_neuro.defaults import FETCH_TIMEOUT_S

from ._h5io import atomic_output
from .shd import HDF5_SIGNATURE

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


def _download(url: str, dest: Path, timeout: float, progress: bool | None, out_dir: Path) -> str:
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
        mirror = "" if url.startswith(MIRROR_BASE_URL) else f"try the mirror with --base-url {MIRROR_BASE_URL}, "
        raise DownloadError(f"{url}: download failed ({exc}); {mirror}put {url.rsplit('/', 1)[-1]} into {out_dir} "
                            f"by hand and run again, or train on synthetic SHD-format data written by "
                            f"`elm-neuro data synth --out DIR`") from exc
    return md5.hexdigest()


def _md5_of(path: Path) -> str:
    md5 = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
    return md5.hexdigest()


def _check_replaceable(h5_path: Path) -> None:
    """``force`` replaces an existing ``shd_<split>.h5`` only when it is an HDF5 file (module
    docstring)."""
    rule = "--force replaces only an HDF5 file of that name (the real SHD, a synthetic or a damaged copy)"
    if h5_path.is_symlink() or not h5_path.is_file():
        raise RefusedPath(f"{h5_path} is not a regular file; {rule}: move it away or choose another --out")
    with open(h5_path, "rb") as fh:
        head = fh.read(len(HDF5_SIGNATURE))
    if head and head != HDF5_SIGNATURE:
        raise RefusedPath(f"{h5_path} is not an HDF5 file; {rule}: move it away or choose another --out "
                          f"(nothing was changed)")


def _extract(zip_path: Path, h5_path: Path, shown: str) -> None:
    """Unzip member ``shd_<split>.h5`` of ``zip_path`` atomically onto ``h5_path``."""
    h5_name = h5_path.name
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = zf.namelist()
            member = next((m for m in names if Path(m).name == h5_name), None)
            if member is None:
                raise DownloadError(f"{shown}: archive holds {names}, expected a member {h5_name}")
            with atomic_output(h5_path) as tmp_h5:
                with zf.open(member) as src, open(tmp_h5, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{shown}: not a valid zip archive ({exc})") from exc


def fetch_shd(out_dir: str | os.PathLike, base_url: str = DEFAULT_BASE_URL,
              splits=("train", "test"), md5: dict[str, str] | None = None,
              force: bool = False, keep_zip: bool = False, timeout: float = FETCH_TIMEOUT_S,
              progress: bool | None = None) -> list[Path]:
    """Download, verify and unzip SHD files; return the paths of the ``.h5`` files (module
    docstring: what it touches, what it leaves when it fails)."""
    out_dir = Path(out_dir)
    expected = dict(SHD_MD5)
    expected.update(md5 or {})
    if not base_url.endswith("/"):
        base_url += "/"
    for split in splits:
        if split not in expected:
            raise ValueError(f"unknown SHD split {split!r}; expected one of {sorted(expected)}")
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(17, "File exists", str(out_dir))
    plan = []  # (split, h5 path, zip path, use the zip already there)
    for split in splits:
        h5_path = out_dir / f"shd_{split}.h5"
        zip_path = out_dir / f"shd_{split}.h5.zip"
        if h5_path.exists() or h5_path.is_symlink():
            if not force:
                plan.append((split, h5_path, None, False))
                continue
            _check_replaceable(h5_path)
        local = zip_path.is_file()
        if local and _md5_of(zip_path) != expected[split].lower():
            raise ChecksumError(f"{zip_path} is already there but its md5 {_md5_of(zip_path)} is not the expected "
                                f"{expected[split]}; fetch neither uses nor replaces it: move it away, or replace it "
                                f"with a complete copy, and run again")
        plan.append((split, h5_path, zip_path, local))
    created = make_folders(out_dir)
    try:
        for split, h5_path, zip_path, local in plan:
            if zip_path is None:
                continue
            if local:  # the user's zip: used, never removed
                _extract(zip_path, h5_path, str(zip_path))
                continue
            url = base_url + zip_path.name
            with (atomic_output(zip_path) if keep_zip else scratch_file(zip_path)) as tmp_zip:
                digest = _download(url, tmp_zip, timeout, progress, out_dir)
                if digest != expected[split].lower():
                    raise ChecksumError(f"{url}: md5 {digest} does not match the expected {expected[split]}; "
                                        "refusing the file")
                _extract(tmp_zip, h5_path, url)
    except BaseException:
        remove_empty_folders(created)
        raise
    return [h5_path for _, h5_path, _, _ in plan]
