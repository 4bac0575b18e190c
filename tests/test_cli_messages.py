"""What a user reads on the command line: messages in the command line's words (flags, not Python
arguments), units on every number, and no figure that claims more than it shows."""
from elm_neuro.cli.main import main


def test_a_missing_enwik8_source_names_the_flags(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "enwik8.zip"
    code = main(["train", "--task", "enwik8", "--data", str(missing), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert str(missing) in err and "no --data / --src on the command line" in err and "mattmahoney.net" in err
    assert not (tmp_path / "run").exists()
