"""The README's command list runs as written, top to bottom, in an empty folder on synthetic data.

Every line between the ``readme-commands`` markers of README.md is run through the CLI in one
temporary working folder, in order (later lines use what earlier ones wrote), at a reduced size:
training commands get one epoch of two batches and one validation and test batch, the sweep two
cells. Nothing else is added or changed, so a README line that names a wrong folder, a flag that
no longer exists or a model that cannot train fails here.
"""
import shlex
from pathlib import Path

import pytest

from elm_neuro.cli.main import main

README = Path(__file__).resolve().parents[1] / "README.md"
SHORT = ["--epochs", "1", "--batches-per-epoch", "2", "--train-set", "valid_batches=1", "--train-set",
         "test_batches=1", "--no-progress", "--threads", "1"]


def readme_commands(text: str) -> list[list[str]]:
    """The commands of the README's marked block: continuation lines joined, comments dropped."""
    begin, end = "<!-- readme-commands: begin -->", "<!-- readme-commands: end -->"
    assert begin in text and end in text, "README.md lost its readme-commands markers"
    block = text.split(begin, 1)[1].split(end, 1)[0]
    block = block.replace("```bash", "").replace("```", "").replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def reduced(args: list[str]) -> list[str]:
    """``args`` (without ``elm-neuro``) at the reduced size of the module docstring."""
    command = args[0]
    if command == "train" and "--resume" not in args or command == "compare":
        return args + SHORT
    if command == "sweep":
        return args + SHORT + ["--max-cells", "2"]
    return args


def test_the_readme_block_is_what_this_test_runs():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 15 and all(c[0] == "elm-neuro" for c in commands)
    names = [c[1] for c in commands]
    for needed in ("budget", "data", "train", "compare", "sweep", "sweep-report", "analyze", "export"):
        assert needed in names


def test_the_readme_commands_run_top_to_bottom(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args in readme_commands(README.read_text(encoding="utf-8")):
        code = main(reduced(args[1:]))
        err = capsys.readouterr().err
        assert code == 0, f"{shlex.join(args)} exited {code}: {err.strip().splitlines()[-1:]}"
    assert (tmp_path / "models" / "my-elm" / "MODEL_CARD.md").is_file()
    assert (tmp_path / "runs" / "sweep" / "report.md").is_file()
    assert (tmp_path / "runs" / "cmp" / "report.md").is_file()
