"""Files and folders the package writes: atomic output, what it may replace or delete, and
exclusive folder locks.

Everything is first written to a temporary file beside its destination (same folder, same file
system), then moved onto the destination with ``os.replace``: a reader, a resumed run or a crash
sees either the old complete file or the new complete file, never a half-written one.

Temporary files are named ``<target name>.partial-<pid>-<random>.tmp`` (:func:`temp_files`), so
one left behind by a killed process (kill -9 during ``elm-neuro data synth``) is recognisable and
tells whose it was; the next write to the same target removes those of processes that no longer
run. :func:`scratch_file` gives such a name to a file that is only needed while a command runs (a
download before it is unpacked); :func:`replace_folder` does the same for a whole folder
(``--force`` of ``export``).

What may be replaced or deleted. A command replaces or deletes only what the package itself wrote,
recognised by its own names and marker files (an earlier export, a run's files, a synthetic data
file), and never a protected folder (:func:`protected_reason`: the current directory or a folder
above it, the home folder, the file-system root, a git repository, the folder of this package's
code), whatever ``--force`` says; anything else is refused with :class:`RefusedPath` naming what
is in the way. :func:`foreign_entries` lists what in a folder the package did not write (its lock
and temporary files always count as its own). Folders a command creates are recorded
(:func:`make_folders`) so that a command that fails removes them again when they are still empty
(:func:`remove_empty_folders`), or whole when they hold only its own output
(:func:`remove_created_folder`).

:func:`folder_lock` is an exclusive lock on a folder (a run directory, a sweep folder) for the
life of a run; see there.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path


TEMP_MARK = ".partial-"
TEMP_SUFFIX = ".tmp"


def temp_files(path: str | os.PathLike) -> list[Path]:
    """The temporary files (or folders) of writes to ``path`` now beside it, whoever made them."""
    path = Path(path)
    return sorted(path.parent.glob(f"{glob.escape(path.name)}{TEMP_MARK}*{TEMP_SUFFIX}"))


def _temp_owner(temp: Path, target_name: str) -> int | None:
    middle = temp.name[len(target_name) + len(TEMP_MARK):-len(TEMP_SUFFIX)]
    try:
        return int(middle.split("-", 1)[0])
    except ValueError:
        return None


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporary files (folders) of earlier writes to ``path`` whose process is gone
    (a live writer's are left alone); returns what was removed."""
    path = Path(path)
    removed = []
    for temp in temp_files(path):
        owner = _temp_owner(temp, path.name)
        if owner is None or owner == os.getpid() or pid_alive(owner):
            continue
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(temp) if temp.is_dir() and not temp.is_symlink() else temp.unlink()
        removed.append(temp)
    return removed


def _temp_prefix(path: Path) -> str:
    return f"{path.name}{TEMP_MARK}{os.getpid()}-"


def _new_temp(path: Path, suffix: str) -> Path:
    """A new empty temporary file beside ``path`` (the folder is created when missing), after
    removing the temporary files of earlier writers of ``path`` that no longer run."""
    folder = path.parent if str(path.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    suffix = suffix if suffix.endswith(TEMP_SUFFIX) else suffix + TEMP_SUFFIX  # always recognisable
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=suffix, dir=folder)
    os.close(fd)
    return Path(tmp)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = TEMP_SUFFIX) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (module docstring); on success move it onto ``path``.

    Temporary files of earlier writes to ``path`` by processes that no longer run are removed
    first. On any exception the temporary file is removed and ``path`` is left untouched. The
    final file gets the usual permissions (``0666 & ~umask``; ``mkstemp`` creates ``0600``).
    """
    path = Path(path)
    tmp_path = _new_temp(path, suffix)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def scratch_file(path: str | os.PathLike, suffix: str = TEMP_SUFFIX) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, named as :func:`atomic_output` names its temporary
    files, and remove it when the block ends, whatever happens; ``path`` itself is never touched.
    For a file needed only while a command runs (a download before it is unpacked)."""
    tmp_path = _new_temp(Path(path), suffix)
    try:
        yield tmp_path
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


@contextlib.contextmanager
def replace_folder(path: str | os.PathLike, replace: bool = False,
                   check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it becomes ``path``.

    ``path`` must not exist (or be an empty folder) unless ``replace``: then the old folder (or
    file) is moved aside and removed only once the new one is in place (two renames on the same
    file system; a crash between them leaves the old folder under a ``.partial-`` name beside it,
    never a mix of both). A protected path (:func:`protected_reason`) is refused with
    :class:`RefusedPath` before anything is made, and ``check(path)``, when given, is called just
    before an existing ``path`` is moved aside and refuses it by raising (the caller's rule of
    what it may replace, module docstring). On any exception the temporary folder is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    reason = protected_reason(path)
    if reason is not None:
        raise RefusedPath(f"{path} is {reason}; elm-neuro never replaces or deletes it: choose another folder")
    parent = path.parent if str(path.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=parent))
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = None
        is_dir = path.is_dir() and not path.is_symlink()
        if is_dir and not any(path.iterdir()):
            path.rmdir()
        elif is_dir or path.exists() or path.is_symlink():
            if not replace:
                raise FileExistsError(17, "File exists", str(path))
            if check is not None:
                check(path)
            old = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=parent))
            try:
                os.replace(path, old) if is_dir else os.replace(path, old / path.name)
            except BaseException:
                old.rmdir()  # still empty: nothing was moved
                raise
        try:
            os.replace(tmp, path)
        except BaseException:
            if old is not None:  # put the old folder (file) back
                os.replace(old, path) if is_dir else os.replace(old / path.name, path)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: str | os.PathLike, write: Callable) -> None:
    """Call ``write(binary_file)`` on a temporary file, fsync it, then move it onto ``path``."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())


def save_bytes(data: bytes, path) -> None:
    write_atomic(path, lambda f: f.write(data))


def save_text(text: str, path) -> None:
    save_bytes(text.encode(), path)


def save_json(obj, path) -> None:
    save_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", path)


_PLAIN = (str, int, float, bool, type(None))


def check_plain(obj, where: str = "obj") -> None:
    """Raise ``TypeError`` naming the first part of ``obj`` that is not a tensor or plain data
    (dict with str / int keys, list, tuple that is not a named tuple, str, number, bool, None):
    what ``torch.load(..., weights_only=True)`` reads back without unpickling any other object."""
    import torch

    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} is a {type(k).__name__}, not a str or int")
            check_plain(v, f"{where}[{k!r}]")
        return
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, not a tensor or plain "
                    f"data; a checkpoint holds only those (so that it loads with weights_only=True)")


def save_torch(obj, path) -> None:
    """``torch.save`` of tensors and plain data only (:func:`check_plain`), atomically."""
    import torch  # only here: the data code writes files through this module without torch

    check_plain(obj, Path(path).name)
    write_atomic(path, lambda f: torch.save(obj, f))


# --------------------------------------------------------------------------- what may be replaced or deleted
class RefusedPath(ValueError):
    """A path the package will not replace or delete: it did not write it, or it is protected
    (module docstring). A ValueError: the CLI's bad-input exit 2."""


# The folder of this package's code: it, and every folder above it, are protected.
_PACKAGE_DIR = Path(__file__).resolve().parent


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def protected_reason(path: str | os.PathLike) -> str | None:
    """Why ``path`` must never be replaced or deleted (None when nothing forbids it): the current
    directory or a folder above it, the home folder, the file-system root, a git repository (a
    folder holding ``.git``), or the folder of this package's code or one above it. Checked for
    the path as given and with its links resolved."""
    given = Path(os.path.abspath(path))
    try:
        real = given.resolve()
    except OSError:
        real = given
    try:
        cwd = Path.cwd().resolve()
    except OSError:  # the current directory was removed: nothing can be above it
        cwd = None
    try:
        home = Path.home().resolve()
    except (OSError, RuntimeError, KeyError):  # no home folder known
        home = None
    for p in dict.fromkeys((given, real)):
        if p.parent == p:
            return "the file-system root"
        if p == cwd:
            return "the current directory"
        if cwd is not None and _within(cwd, p):
            return f"a folder above the current directory {cwd}"
        if p == home:
            return "your home folder"
        if _within(_PACKAGE_DIR, p):
            return "the folder of elm_neuro's own code (or one above it)"
        try:
            if (p / ".git").exists():
                return "a git repository (it holds .git)"
        except OSError:
            pass
    return None


def is_own_helper_file(name: str) -> bool:
    """Whether an entry name is one the package leaves in any folder it works in: the lock file
    of :func:`folder_lock` or a temporary file of :func:`atomic_output` / :func:`replace_folder`."""
    return name == LOCK_NAME or (TEMP_MARK in name and name.endswith(TEMP_SUFFIX))


def foreign_entries(folder: str | os.PathLike, own: Iterable[str] = ()) -> list[str]:
    """Entries of ``folder`` the package did not write: every name that is not in ``own`` nor a
    lock or temporary file (:func:`is_own_helper_file`), sorted, folders with a trailing ``/``."""
    own = set(own)
    out = []
    for entry in sorted(Path(folder).iterdir()):
        if entry.name in own or is_own_helper_file(entry.name):
            continue
        out.append(entry.name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
    return out


def list_names(names: list[str], limit: int = 3) -> str:
    """``a, b, c and 4 more``: a short list of names for a message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def make_folders(path: str | os.PathLike) -> list[Path]:
    """Create folder ``path`` and the missing folders above it; returns those created, outermost
    first (for :func:`remove_empty_folders` when the command then fails)."""
    path = Path(path)
    missing = []
    p = Path(os.path.abspath(path))
    while not p.exists() and p.parent != p:
        missing.append(p)
        p = p.parent
    path.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def remove_empty_folders(created: Iterable[Path]) -> None:
    """Remove the folders of :func:`make_folders` that are still empty, innermost first (a folder
    that holds anything now is kept, with the folders above it)."""
    for p in reversed(list(created)):
        try:
            p.rmdir()
        except OSError:
            return


def remove_created_folder(path: str | os.PathLike) -> bool:
    """Remove a folder that the calling command created and filled only with its own output
    (a new run that failed before its first checkpoint), unless it is protected; returns whether
    it was removed. Never raises: it runs while another error is on its way to the user."""
    path = Path(path)
    if protected_reason(path) is not None or path.is_symlink() or not path.is_dir():
        return False
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


# --------------------------------------------------------------------------- exclusive directory locks
#: Name of the lock file in a locked folder (a run directory, a sweep or comparison folder).
LOCK_NAME = ".elm-neuro.lock"

# Folders this process holds (resolved path -> depth), so that a nested call re-enters its own lock.
_held: dict = {}


class FolderLocked(ValueError):
    """Another live process holds the folder's lock (a ValueError: the CLI's bad-input exit 2)."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
        return int(text.split()[0]) if text else None
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run directory") -> Iterator[int | None]:
    """Hold ``FOLDER/.elm-neuro.lock`` exclusively for the life of the ``with`` block.

    The lock is an ``flock`` on the file, which holds this process's pid: a second process is
    refused at once with :class:`FolderLocked` naming the folder and the holder's pid. The kernel
    drops the lock of a process that dies (kill -9 included), so a lock file left by a dead process
    is taken over; the context yields that process's pid (None when there was no stale lock). The
    same process may enter its own lock again (nested calls). The folder is created when missing;
    the lock file is removed on exit.
    """
    import fcntl  # POSIX only; imported here so that the rest of this module works everywhere

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    key = str(folder.resolve())
    if key in _held:
        _held[key] += 1
        try:
            yield None
        finally:
            _held[key] -= 1
        return
    path = folder / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder is not None else "a process that is starting"
            raise FolderLocked(f"{folder} is in use by another elm-neuro process ({who}, lock file {path}); "
                               f"wait for it to finish, stop it, or choose another {what}") from None
        try:  # a holder that just released the lock removed the file: lock the new one instead
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read_pid(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _held[key] = 1
    try:
        yield stale if stale != os.getpid() else None
    finally:
        _held.pop(key, None)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
