"""An epoch counter that also stops training when a wall-clock budget is spent.

Benchmarks and smoke runs use it in place of SpeechBrain's ``EpochCounter`` (same checkpoint
format, so it can be swapped in from the command line)::

    python train.py hparams/spgm.yaml ... \\
        --epoch_counter "!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [1000, 6]"

(positional arguments: a mapping would be merged into the recipe's ``EpochCounter`` node and keep
its class, a sequence replaces the node).

Training stops at an epoch boundary, before an epoch that would probably not finish within the
budget (elapsed time plus the longest epoch so far, validation included), so the last epoch is
always validated and checkpointed.
"""

import logging
import time

from speechbrain.utils.epoch_loop import EpochCounter

logger = logging.getLogger(__name__)


class TimeBudgetEpochCounter(EpochCounter):
    """``EpochCounter`` with a wall-clock budget in minutes (``None``: no budget).

    Example
    -------
    >>> counter = TimeBudgetEpochCounter(limit=5, minutes=0)
    >>> list(counter)  # the first epoch always runs
    [1]
    >>> list(TimeBudgetEpochCounter(limit=3))
    [1, 2, 3]
    """

    def __init__(self, limit, minutes=None):
        super().__init__(limit)
        self.budget_s = None if minutes is None else 60.0 * float(minutes)
        self._start = None
        self._last = None
        self._longest_epoch_s = 0.0

    def __next__(self):
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            self._longest_epoch_s = max(self._longest_epoch_s, now - self._last)
        self._last = now
        elapsed = now - self._start
        if self.budget_s is not None and self._longest_epoch_s > 0 and elapsed + self._longest_epoch_s > self.budget_s:
            logger.info(
                "Time budget of %.1f min: stopping after %.1f min (epochs take up to %.1f min).",
                self.budget_s / 60,
                elapsed / 60,
                self._longest_epoch_s / 60,
            )
            raise StopIteration
        return super().__next__()
