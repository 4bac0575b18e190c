"""No option is ignored silently (train, compare, sweep): a field given twice, a value of the wrong
type, ``--train-set`` of a field a command sets from its own option, and a model field the data
decides are each refused through the CLI with exit code 2 and one line naming the field, before
anything is written. Before, ``train --d-m 4 --set d_m=abc`` trained with d_m 4 and
``train --set n_classes=2 --set n_in=5`` trained with the data's values while config.json recorded
the overrides as given."""
import pytest

from elm_neuro.cli.main import EXIT_BAD_INPUT, build_parser, main
from elm_neuro.cli.train import train_config_from_args
from elm_neuro.data.synth import write_synthetic_shd

FAST = ["--task", "shd-adding", "--epochs", "1", "--batches-per-epoch", "1", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def shd(tmp_path_factory):
    d = tmp_path_factory.mktemp("shd")
    write_synthetic_shd(d, 24, 12, seed=1)
    return d


def refused(capsys, argv, out, *names) -> str:
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    command = argv[0]
    assert lines[0].startswith(f"elm-neuro {command}: error: ")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not out.exists()
    return lines[0]


# ----------------------------------------------------------------------------- a field given twice
@pytest.mark.parametrize("flag, setting", [(["--d-m", "4"], "d_m=abc"),  # the flag used to win silently
                                           (["--d-m", "4"], "d_m=4"),  # even with the same value
                                           (["--d-m", "4"], "hidden.d_m=5"),  # a dotted path to the same field
                                           (["--n", "20"], "n=20")])
def test_train_flag_and_set_of_one_field(shd, tmp_path, capsys, flag, setting):
    out = tmp_path / "r"
    line = refused(capsys, ["train", *FAST, "--data", str(shd), *flag, "--set", setting, "--out", str(out)], out,
                   "is given twice", f"{flag[0]} {flag[1]}", f"--set {setting}", "keep one")
    assert line.split("error: ")[1].startswith(setting.split("=")[0].split(".")[-1])


def test_the_same_set_twice(shd, tmp_path, capsys):
    out = tmp_path / "r"
    refused(capsys, ["train", *FAST, "--data", str(shd), "--set", "d_m=3", "--set", "d_m=4", "--out", str(out)], out,
            "d_m is given twice: --set d_m=3 and --set d_m=4")
    refused(capsys, ["train", *FAST, "--data", str(shd), "--train-set", "warmup=3", "--train-set", "warmup=4",
                     "--out", str(out)], out, "warmup is given twice")


def test_train_flag_and_train_set_of_one_field(shd, tmp_path, capsys):
    out = tmp_path / "r"
    refused(capsys, ["train", *FAST, "--data", str(shd), "--batch-size", "4", "--train-set", "batch_size=4",
                     "--out", str(out)], out, "batch_size is given twice: --batch-size 4 and --train-set batch_size=4")


@pytest.mark.parametrize("setting, option", [("seed=3", "--seed"), ("device=cpu", "--device"), ("model=lif", "--model"),
                                             ("data_dir=/x", "--data"), ("params=5000", "--params")])
def test_train_set_of_a_field_with_its_own_option(shd, tmp_path, capsys, setting, option):
    out = tmp_path / "r"
    refused(capsys, ["train", *FAST, "--data", str(shd), "--train-set", setting, "--out", str(out)], out,
            f"--train-set {setting}", f"is set by {option}")


# ----------------------------------------------------------------------------- values of the wrong type
@pytest.mark.parametrize("option, setting, words", [
    ("--set", "d_m=abc", "d_m must be an integer, got the string 'abc'"),
    ("--set", "d_m=4.5", "d_m must be an integer, got 4.5"),
    ("--set", "learn_tau=yes", "learn_tau must be true or false, got the string 'yes'"),
    ("--set", "tau_r=fast", "tau_r must be a number or null, got the string 'fast'"),
    ("--train-set", "lr=abc", "lr must be a number, got the string 'abc'"),
    ("--train-set", "reg_weights=0.1", "reg_weights must be a JSON object or null, got 0.1"),
])
def test_values_that_do_not_parse_for_their_field(shd, tmp_path, capsys, option, setting, words):
    out = tmp_path / "r"
    refused(capsys, ["train", *FAST, "--data", str(shd), option, setting, "--out", str(out)], out, words)


# ----------------------------------------------------------------------------- fields the data decides
@pytest.mark.parametrize("model, setting, says", [
    ("elm", "n_classes=2", "the data gives 19 classes"),
    ("elm", "n_in=5", "the data gives 100 input channels"),  # 700 units pooled by 7 (the small recipe)
    ("lif", "n_in=5", "the data gives 100 input channels"),
    ("lstm", "n_classes=19", "the data gives 19 classes"),  # even the data's own value: it does nothing
])
def test_fields_the_data_sets(shd, tmp_path, capsys, model, setting, says):
    out = tmp_path / "r"
    field = setting.split("=")[0]
    refused(capsys, ["train", *FAST, "--model", model, "--data", str(shd), "--set", setting, "--out", str(out)], out,
            f"{field} is set by the data", says)


# ----------------------------------------------------------------------------- compare and sweep
def test_compare(shd, tmp_path, capsys):
    out = tmp_path / "cmp"
    base = ["compare", *FAST, "--params", "3000", "--models", "lstm,elm", "--data", str(shd), "--out", str(out)]
    refused(capsys, base + ["--set", "elm:n_in=5"], out, "elm-s0 (model 'elm')", "n_in is set by the data")
    refused(capsys, base + ["--set", "elm:d_m=abc"], out, "elm-s0 (model 'elm')", "d_m must be an integer")
    refused(capsys, base + ["--batch-size", "4", "--train-set", "batch_size=8"], out, "batch_size is given twice")
    refused(capsys, base + ["--train-set", "seed=2"], out, "seed is set by --seeds")


def test_sweep(shd, tmp_path, capsys):
    out = tmp_path / "sw"
    base = ["sweep", *FAST, "--data", str(shd), "--out", str(out)]
    refused(capsys, base + ["--axis", "n", "--values", "3,4", "--d-m", "2", "--set", "d_m=2"], out,
            "d_m is given twice: --d-m 2 and --set d_m=2")
    refused(capsys, base + ["--d-m", "2", "--n", "3", "--set", "n=3"], out, "n is given twice")
    refused(capsys, base + ["--d-m", "2", "--n", "3", "--set", "n_classes=5"], out, "n_classes is set by the data")
    refused(capsys, base + ["--d-m", "2", "--n", "3", "--set", "d_tree=x"], out,
            "d_tree must be an integer, got the string 'x'")
    refused(capsys, base + ["--d-m", "2", "--n", "3", "--train-set", "seed=1"], out, "seed is set by --seeds")


# ----------------------------------------------------------------------------- what stays allowed
def test_settings_given_once_still_apply(shd):
    parser = build_parser()
    args = parser.parse_args(["train", *FAST, "--data", str(shd), "--train-set", "warmup=3", "--train-set",
                              "model_seed=4", "--out", "x"])
    cfg = train_config_from_args(args, "elm", {"d_m": 4, "readout.d_tree": 5, "d_tree": 10}, None, 0)
    assert (cfg.warmup, cfg.model_seed, cfg.epochs) == (3, 4, 1)
    assert cfg.model_overrides == {"d_m": 4, "readout.d_tree": 5, "d_tree": 10}  # a flat name and a path: both kept
    assert main(["budget", "--preset", "shd-adding", "--set", "n_in=100", "--n", "3"]) == 0  # no data: effective


def test_compare_refuses_a_model_field_given_twice(tmp_path, capsys):
    """`compare --set elm:d_m=3 --set elm:d_m=4` names both (the last one used to win silently);
    the same field for two models is fine."""
    from elm_neuro.cli.compare import parse_model_overrides

    assert parse_model_overrides(["elm:d_m=3", "lif:n=4", "elm:d_tree=2"]) == {"elm": {"d_m": 3, "d_tree": 2},
                                                                                "lif": {"n": 4}}
    out = tmp_path / "cmp"
    code = main(["compare", "--task", "shd-adding", "--models", "elm", "--params", "30000", "--data",
                 str(tmp_path / "nowhere"), "--out", str(out), "--set", "elm:d_m=3", "--set", "elm:d_m=4"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "d_m is given twice: --set elm:d_m=3 and --set elm:d_m=4; keep one" in err
    assert not out.exists()
