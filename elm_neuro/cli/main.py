"""Entry point of the ``elm-neuro`` console script.

Each command group lives in its own module of this package and exposes
``register(subparsers)``, which adds its sub-parser(s) and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code) as the parser default.

Failures end in one line on standard error, ``elm-neuro COMMAND: error: ...``, naming the file
or setting at fault, and a distinct exit code: 2 for bad input (a wrong value or path, a file
that is not what it should be, a folder that cannot be written, a run or sweep folder that another
process holds), 130 when interrupted (Ctrl-C; what was written is kept, a run resumes from its last
checkpoint), 143 when terminated (``SIGTERM``, handled exactly as Ctrl-C:
:func:`elm_neuro.training.runtime.terminate_like_interrupt`), 1 for other failures (a run that
diverged, a Ray cluster that does not answer, a missing required dependency, an unexpected error).
A missing optional dependency (Ray for ``--executor ray``) is bad input: the line names the package
and the ``pip install`` command that brings it (:func:`_missing_module`), as it does for a missing
required one. ``--debug`` (before the command) shows the traceback. The message is always one line
(an exception's text spread over lines is joined).

A refused permission is reported as a reading or a writing problem: the package's readers raise
:class:`elm_neuro.data.shd.UnreadableFile` with their own message; for any other
``PermissionError`` the file system is asked whether the path exists and cannot be read, sits in a
folder that cannot be entered, or is to be written (:func:`_permission_message`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from elm_neuro.experiments.failures import StageFailed
from elm_neuro.data.shd import UnreadableFile
from elm_neuro.training.common import TrainingDiverged
from elm_neuro.training.runtime import Terminated, terminate_like_interrupt

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process that SIGTERM ended
_KEPT = ("complete files written so far are kept (a training run continues from its last checkpoint with "
         "--resume RUN_DIR; a new run that had none is removed)")

# Command-group modules, in the order they appear in ``elm-neuro --help``.
COMMAND_MODULES = (
    "elm_neuro.cli.data",
    "elm_neuro.cli.budget",
    "elm_neuro.cli.train",
    "elm_neuro.cli.compare",
    "elm_neuro.cli.sweep",
    "elm_neuro.cli.analyze",
    "elm_neuro.cli.demo",
    "elm_neuro.cli.reproduce",
    "elm_neuro.cli.sample",
    "elm_neuro.cli.export",
)


def package_version() -> str:
    """``elm_neuro.__version__``: the version, written once in ``elm_neuro/__init__.py`` (pyproject.toml
    reads it from there). Looked up on the loaded package, not imported: the façade sits above the CLI in
    the layering, and importing any ``elm_neuro.*`` module has already run its ``__init__``."""
    return sys.modules["elm_neuro"].__version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elm-neuro",
        description="Recurrent networks of expressive (ELM) neurons and spiking baselines.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a failure")
    parser.add_argument("--version", action="version", version=f"elm-neuro {package_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _permission_message(exc: PermissionError) -> str:
    """Whether a refused permission was about reading or writing ``exc.filename`` (module docstring)."""
    if isinstance(exc, UnreadableFile):
        return str(exc)
    name = exc.filename
    if not name:
        return f"permission denied ({exc.strerror or exc})"
    path = Path(os.fsdecode(name))
    if path.exists() and not os.access(path, os.R_OK):
        return f"permission denied reading {path}; make it readable (chmod u+r) or use a copy you can read"
    for folder in reversed(Path(os.path.abspath(path)).parents):  # from the root down, while they exist
        if not os.path.lexists(folder):
            break
        if not os.access(folder, os.X_OK):
            return (f"permission denied: the folder {folder} cannot be entered, so {path} can be neither read nor "
                    f"written; make it accessible (chmod u+rx) or choose another path")
    return f"permission denied writing {path}; choose a folder you can write to"


# Optional dependencies: the module a feature imports -> (what needs it, the extra that installs it).
# (The package imports no other optional module: tonic, snntorch and lauscher serve tests and benchmarks.)
OPTIONAL_MODULES = {
    "ray": ("the ray executor (--executor ray)", "distributed"),
}


def _missing_module(exc: ImportError) -> tuple[int, str] | None:
    """Exit code and one line for a missing dependency, naming it and the ``pip install`` that
    brings it; None for another import failure (a broken install or a bug: reported as unexpected)."""
    if "pip install" in str(exc):  # raised by the package with its own install hint (an optional one)
        return EXIT_BAD_INPUT, str(exc)
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if not isinstance(exc, ModuleNotFoundError) or not name:
        return None
    if name in OPTIONAL_MODULES:
        what, extra = OPTIONAL_MODULES[name]
        return EXIT_BAD_INPUT, (f"{what} needs the Python package {name!r}, which is not installed: "
                                f"pip install 'elm_neuro[{extra}]'")
    return EXIT_FAILURE, (f"the Python package {name!r}, a dependency of elm_neuro, is not installed: "
                          f"pip install {name} (or reinstall elm_neuro)")


def _describe(exc: BaseException) -> tuple[int, str]:
    """Exit code and one-line message for a failure."""
    if isinstance(exc, Terminated):
        return EXIT_TERMINATED, f"terminated ({exc.signal_name}); {_KEPT}"
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, f"interrupted; {_KEPT}"
    if isinstance(exc, PermissionError):
        return EXIT_BAD_INPUT, _permission_message(exc)
    if isinstance(exc, IsADirectoryError):
        return EXIT_BAD_INPUT, f"{exc.filename or exc} is a folder; give a file path"
    if isinstance(exc, NotADirectoryError):
        return EXIT_BAD_INPUT, f"{exc.filename or exc}: a path component is a file, not a folder"
    if isinstance(exc, FileExistsError):
        return EXIT_BAD_INPUT, f"{exc.filename or exc} already exists"
    if isinstance(exc, (ValueError, FileNotFoundError, KeyError)):
        return EXIT_BAD_INPUT, str(exc) if not isinstance(exc, KeyError) else f"missing key {exc}"
    if isinstance(exc, OSError):
        return EXIT_FAILURE, f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)
    if isinstance(exc, TrainingDiverged):
        return EXIT_FAILURE, f"{exc} ({exc.hint})" if exc.hint else str(exc)
    if isinstance(exc, StageFailed):
        return EXIT_FAILURE, str(exc)  # a plan's stage: the message says which cells and what to do
    if isinstance(exc, ImportError) and _missing_module(exc) is not None:
        return _missing_module(exc)
    return EXIT_FAILURE, f"unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with terminate_like_interrupt():
            return int(args.func(args) or 0)
    except (Exception, KeyboardInterrupt) as exc:
        if args.debug:
            raise
        code, message = _describe(exc)
        message = " ".join(str(message).split())  # one line, whatever the exception's text
        print(f"elm-neuro {args.command}: error: {message}", file=sys.stderr)
        if getattr(exc, "hard_exit", False):  # e.g. a lost Ray cluster, whose core would crash the exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
