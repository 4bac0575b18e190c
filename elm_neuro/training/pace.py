"""How long a run will take, said early and repeated while it runs.

A run on the paper's recipe trains 140,000 steps (SHD-Adding: about a day on a CPU), and with
``--no-progress`` nothing else is printed between two epoch lines (2000 steps, tens of minutes).
:class:`Pace` watches the training steps of one run:

- after :data:`elm_neuro.defaults.PACE_ESTIMATE_STEPS` steps of this call (the first step is left
  out of the rate: it compiles the engines), one line with the measured seconds per step and the
  time the remaining training steps take at that rate (validation and test evaluations come on
  top; the epoch lines show their share);
- without progress bars, one line every :data:`elm_neuro.defaults.PACE_LINE_S` seconds: epoch,
  step, the running loss and the time left.

- after the first step, and whenever it changes, one line with the engine and backend each layer
  ran (:meth:`Pace.engines`; a layer whose compiled backend failed shows ``step (<reason>)``).

Lines go through ``tqdm.write`` (they do not break a bar) and name the run, since several runs
print side by side in ``compare``, ``sweep`` and the demo.
"""
from __future__ import annotations

import time
from typing import Callable, Optional

from tqdm.auto import tqdm

from elm_neuro import defaults as D


def duration_text(seconds: float) -> str:
    """``"3 min"``, ``"2.4 h"``, ``"1.3 days"``: a duration as a person reads it."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class Pace:
    """The pace of one run's training steps (module docstring). ``total_steps``: the run's steps;
    ``done``: those already taken (a resumed run); ``write``: where lines go."""

    def __init__(self, name: str, total_steps: int, done: int = 0, progress: bool = True,
                 clock: Callable[[], float] = time.perf_counter, write: Optional[Callable[[str], None]] = None,
                 estimate_steps: int = D.PACE_ESTIMATE_STEPS, line_s: float = D.PACE_LINE_S) -> None:
        self.name, self.total, self.progress = name, int(total_steps), bool(progress)
        self.clock, self.write = clock, write or tqdm.write
        self.estimate_steps, self.line_s = int(estimate_steps), float(line_s)
        self._first = done  # the step count when this call started
        self._t1: Optional[float] = None  # time after the first step of this call (the rate starts there)
        self._estimated = False
        self._last_line = clock()
        self._engines: Optional[str] = None

    def engines(self, text: str) -> None:
        """Print ``text``, the engines the layers ran (:func:`elm_neuro.training.runtime.engine_text`),
        unless it is what was printed last."""
        if text != self._engines:
            self._engines = text
            self.write(f"{self.name}: engines: {text}")

    def seconds_per_step(self, step: int) -> Optional[float]:
        """Measured seconds per step since the first step of this call (None before two steps)."""
        if self._t1 is None or step <= self._first + 1:
            return None
        return (self.clock() - self._t1) / (step - self._first - 1)

    def step(self, step: int, epoch: int, epochs: int, loss: float, unit: str = "loss") -> None:
        """Record that ``step`` (1-based, counting the whole run) is done in ``epoch`` of ``epochs``
        with running ``loss`` (``unit`` names it); print the lines that are due."""
        now = self.clock()
        if self._t1 is None:
            self._t1 = now
            return
        rate = self.seconds_per_step(step)
        left = max(self.total - step, 0)
        if not self._estimated and step - self._first >= self.estimate_steps:
            self._estimated = True
            self.write(f"{self.name}: {rate:.3g} s per training step; the remaining {left:,} of {self.total:,} "
                       f"steps take about {duration_text(rate * left)} (evaluations come on top)")
            self._last_line = now
        elif not self.progress and now - self._last_line >= self.line_s:
            self._last_line = now
            self.write(f"{self.name}: epoch {epoch}/{epochs}, step {step:,}/{self.total:,}, {unit} {loss:.4f}, "
                       f"about {duration_text(rate * left)} of training left")
