"""Failures of studies that the command line reports in their own words (one line, exit 1): a
plan's stage whose cells failed while the others finished."""
from __future__ import annotations


class StageFailed(RuntimeError):
    """Cells of a stage failed; the others finished, and running the same command again retries
    the failed ones (the message says which and where they are listed)."""
