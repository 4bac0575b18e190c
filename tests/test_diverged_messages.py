"""What a diverged run says (training/common.py ``diverged``): before any update (step 1, or after
warmup steps at learning rate 0) it blames the model's initialisation or the data, names the model
family and the loss or the parameters whose gradients are non-finite, and gives no learning-rate
advice; after updates it counts them and the CLI appends "(lower --lr or keep a warmup)". Through
the CLI: exit code 1, one line, no traceback."""
import math
from types import SimpleNamespace

import pytest
import torch

from elm_neuro.cli.main import EXIT_FAILURE, _describe, main
from elm_neuro.training import classification
from elm_neuro.training.common import LR_HINT, TrainingDiverged, optimizer_step, updates_made
from cli_helpers import error_line, shd, TINY  # noqa: F401 (fixture)



def _one_line(err: str) -> str:
    return error_line(err)


def test_non_finite_loss_at_step_1_blames_the_initialisation(shd, tmp_path, monkeypatch, capsys):
    real = classification.classification_loss

    def nan_loss(*args, **kwargs):
        ce, pred = real(*args, **kwargs)
        return ce * float("nan"), pred

    monkeypatch.setattr(classification, "classification_loss", nan_loss)
    run = tmp_path / "r"
    assert main(["train", *TINY, "--data", str(shd), "--out", str(run)]) == EXIT_FAILURE
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("elm-neuro train: error: non-finite loss (nan) at epoch 1, step 1 before any update; "
                           "stopped: the elm model at its initialisation gives a non-finite training loss on this "
                           "batch, so its initial dynamics (or the data) are at fault, not the learning rate. The last "
                           "good checkpoint is kept at ")
    assert line.endswith("(none written yet: a new run leaves nothing behind)")  # no learning-rate advice
    assert "lower --lr" not in line and not run.exists()


def test_divergence_after_updates_advises_the_learning_rate(shd, tmp_path, capsys):
    code = main(["train", *TINY, "--data", str(shd), "--out", str(tmp_path / "r"), "--lr", "1e30",
                 "--train-set", "warmup=0"])
    assert code == EXIT_FAILURE
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("elm-neuro train: error: non-finite ")
    assert " at epoch 1, step 2 after 1 update of the elm model" in line
    assert line.endswith(f"(none written yet: a new run leaves nothing behind) ({LR_HINT})")


def _session(model, factors, tmp_path):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: factors[min(step, len(factors) - 1)])
    return SimpleNamespace(model=model, optimizer=opt, scheduler=sched, cfg=SimpleNamespace(clip=1.0),
                           conf={"model": {"family": "lstm"}},
                           run=SimpleNamespace(checkpoint=tmp_path / "checkpoint.pt"))


def test_warmup_steps_at_learning_rate_0_are_not_updates(tmp_path):
    """A warmup from 0 leaves the parameters as they were at its first step: a failure at step 2
    is still one 'before any update'. A gradient failure names the parameters."""
    model = torch.nn.Linear(2, 1).double()
    x = torch.ones(1, 2, dtype=torch.float64)
    warm = _session(model, [0.0, 0.5, 1.0], tmp_path)
    optimizer_step(warm, model(x).sum(), "step 1")
    assert warm.scheduler.last_epoch == 1 and updates_made(warm) == 0
    with torch.no_grad():
        model.bias.zero_()
    bad = torch.sqrt(model.bias).sum() + model(x).sum()  # finite loss, infinite gradient of the bias
    with pytest.raises(TrainingDiverged) as info:
        optimizer_step(warm, bad, "step 2")
    exc = info.value
    assert exc.updates == 0 and exc.hint is None
    assert str(exc).startswith("non-finite gradient norm (inf) at step 2 before any update; stopped: the lstm model "
                               "at its initialisation gives a finite loss but non-finite gradients of bias on this "
                               "batch")
    plain = _session(model, [1.0], tmp_path)
    optimizer_step(plain, model(x).sum(), "step 1")
    assert updates_made(plain) == 1
    with pytest.raises(TrainingDiverged) as info:
        optimizer_step(plain, torch.tensor(math.inf, dtype=torch.float64), "step 2")
    exc = info.value
    assert (exc.updates, exc.hint) == (1, LR_HINT)
    assert str(exc).startswith("non-finite loss (inf) at step 2 after 1 update of the lstm model; stopped before "
                               "the update.")


def test_the_cli_appends_advice_only_where_there_is_some():
    code, msg = _describe(TrainingDiverged("non-finite loss (nan) at step 1 before any update; stopped.", updates=0))
    assert (code, msg) == (EXIT_FAILURE, "non-finite loss (nan) at step 1 before any update; stopped.")
    code, msg = _describe(TrainingDiverged("non-finite loss (nan) at step 5 after 4 updates.", updates=4))
    assert msg == f"non-finite loss (nan) at step 5 after 4 updates. ({LR_HINT})"
    assert _describe(TrainingDiverged("x", updates=3, hint="try again"))[1] == "x (try again)"
    assert TrainingDiverged("unknown").hint == LR_HINT  # updates not known: the advice as before
