"""How long a run will take: one estimate line after a few steps (the first step, which compiles,
left out of the rate), and where the run is every few minutes when no bars are drawn."""
import pytest

from elm_neuro.training.pace import Pace, duration_text


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_the_estimate_leaves_the_first_step_out_and_lines_follow_without_bars():
    clock, lines = Clock(), []
    pace = Pace("run", total_steps=1000, progress=False, clock=clock, write=lines.append, estimate_steps=3,
                line_s=100.0)
    clock.t = 50.0  # the first step took 50 s (compiling)
    pace.step(1, 1, 10, 2.0)
    for step in (2, 3):
        clock.t += 2.0
        pace.step(step, 1, 10, 2.0)
    assert lines == ["run: 2 s per training step; the remaining 997 of 1,000 steps take about 33 min "
                     "(evaluations come on top)"]
    for step in range(4, 53):  # 98 s later: no line yet
        clock.t += 2.0
        pace.step(step, 1, 10, 1.5)
    assert len(lines) == 1
    clock.t += 2.0
    pace.step(53, 1, 10, 1.5)  # 100 s after the estimate
    assert lines[1] == "run: epoch 1/10, step 53/1,000, loss 1.5000, about 32 min of training left"


def test_with_bars_only_the_estimate_is_printed_and_a_resumed_run_counts_from_its_step():
    clock, lines = Clock(), []
    pace = Pace("r", total_steps=140_000, done=70_000, progress=True, clock=clock, write=lines.append,
                estimate_steps=3, line_s=1.0)
    for step in range(70_001, 70_100):
        clock.t += 0.7
        pace.step(step, 36, 70, 1.0)
    assert len(lines) == 1 and "0.7 s per training step" in lines[0]
    assert "remaining 69,997 of 140,000 steps take about 13.6 h" in lines[0]


def test_the_engines_line_is_printed_once_and_again_when_it_changes():
    lines = []
    pace = Pace("run", total_steps=10, write=lines.append)
    pace.engines("hidden fused elm_triton, readout fused elm_triton")
    pace.engines("hidden fused elm_triton, readout fused elm_triton")
    assert lines == ["run: engines: hidden fused elm_triton, readout fused elm_triton"]
    pace.engines("hidden step (elm_triton failed), readout fused elm_triton")
    assert lines[1:] == ["run: engines: hidden step (elm_triton failed), readout fused elm_triton"]


@pytest.mark.parametrize("seconds,text", [(30, "30 s"), (600, "10 min"), (9000, "2.5 h"), (97200, "27.0 h"),
                                          (3 * 86400, "3.0 days")])
def test_durations_read_as_a_person_reads_them(seconds, text):
    assert duration_text(seconds) == text
