"""An epoch counter that also stops training when a wall-clock budget is spent.

Benchmarks and smoke runs use it in place of SpeechBrain's ``EpochCounter`` (same checkpoint
format, so it can be swapped in from the command line)::

    python train.py hparams/spgm.yaml ... \\
        --epoch_counter "!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [1000, 6]"

(positional arguments: a mapping would be merged into the recipe's ``EpochCounter`` node and keep
its class, a sequence replaces the node).

Training stops at an epoch boundary, before an epoch that would probably not finish within the
budget (elapsed time plus the longest epoch so far, validation included; once a second epoch has
finished, the first is left out of that estimate: lazy one-off work, data workers starting and
the first steps of a compiled model make it the slowest), so the last epoch is always validated
and checkpointed.

Two kinds of time are treated apart, both reported by the training loop
(:class:`spgm_lobes.separation.SeparationBrain` does it):

* **warm-up** (:meth:`TimeBudgetEpochCounter.note_warmup`): one-off work inside an epoch, such as
  ``torch.compile`` building its graphs on the first step. It counts towards the budget (the user
  waited for it) but not towards the length expected of later epochs, which do not repeat it;
* **excluded** time (:meth:`TimeBudgetEpochCounter.exclude`): work that is not training at all,
  such as a benchmark evaluating the test set at fixed marks. It counts towards neither.

Its checkpoint holds the training time so far and the epoch lengths as well as the epoch, so a
killed run resumes with the rest of its budget (the time between the kill and the resume does not
count) and a finished one, started again, trains no more. The epoch stays in ``counter.ckpt``, in
SpeechBrain's ``EpochCounter`` format, and the rest goes beside it to ``counter.budget.yaml``
(:meth:`TimeBudgetEpochCounter.budget_path`): either counter resumes from the other's checkpoints
(from SpeechBrain's, the budget starts afresh).

Under DDP every process has its own clock: the main process decides whether another epoch starts
and the others follow (a broadcast at each epoch start), so that no process waits in a collective
that the others never reach. The same broadcast gives every process the main process's
:attr:`TimeBudgetEpochCounter.plan` for the epoch (its start, the seconds a training step takes and
the expected end of training), from which :class:`spgm_lobes.schedulers.BudgetAnneal` computes the
same learning rate on every process without a synchronisation at each step.
"""

import logging
import math
import time
from collections import namedtuple
from pathlib import Path

import yaml
from speechbrain.utils import distributed
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.epoch_loop import EpochCounter

logger = logging.getLogger(__name__)

EpochPlan = namedtuple("EpochPlan", ["start_s", "step_s", "end_s"])
EpochPlan.__doc__ = """The main process's view of the running epoch under DDP (:attr:`TimeBudgetEpochCounter.plan`):
training seconds at its start, seconds per training step (of the last epoch that measured them, 0 before
one has), expected training seconds at the end of training."""


@register_checkpoint_hooks
class TimeBudgetEpochCounter(EpochCounter):
    """``EpochCounter`` with a wall-clock budget in minutes (``None``: no budget).

    Arguments
    ---------
    limit : int
        Largest number of epochs.
    minutes : float, optional
        Training budget in minutes.
    clock : callable
        Seconds as a float (default :func:`time.monotonic`; tests pass a simulated clock).

    Example
    -------
    >>> counter = TimeBudgetEpochCounter(limit=5, minutes=0)
    >>> list(counter)  # the first epoch always runs
    [1]
    >>> list(TimeBudgetEpochCounter(limit=3))
    [1, 2, 3]

    With a simulated clock: a first epoch of 5 minutes, 4 of them spent compiling, leaves room
    for more one-minute epochs in a 9-minute budget:

    >>> now = [0.0]
    >>> counter = TimeBudgetEpochCounter(limit=100, minutes=9, clock=lambda: now[0])
    >>> epochs = []
    >>> for epoch in counter:
    ...     if epoch == 1:
    ...         counter.note_warmup(240.0)
    ...     now[0] += 300.0 if epoch == 1 else 60.0
    ...     epochs.append(epoch)
    >>> epochs, round(counter.training_seconds() / 60, 1)
    ([1, 2, 3, 4, 5], 9.0)

    A run killed after its second epoch resumes from its checkpoint with the rest of the budget,
    however long it was down:

    >>> import tempfile
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> now = [0.0]
    >>> counter = TimeBudgetEpochCounter(limit=100, minutes=5, clock=lambda: now[0])
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), {"counter": counter})
    >>> for epoch in counter:
    ...     now[0] += 60.0
    ...     _ = ckpt.save_checkpoint()
    ...     if epoch == 2:
    ...         break  # killed
    >>> now[0] += 3600.0
    >>> resumed = TimeBudgetEpochCounter(limit=100, minutes=5, clock=lambda: now[0])
    >>> _ = Checkpointer(ckpt.checkpoints_dir, {"counter": resumed}).recover_if_possible()
    >>> epochs = []
    >>> for epoch in resumed:
    ...     now[0] += 60.0
    ...     epochs.append(epoch)
    >>> epochs, resumed.training_seconds()
    ([3, 4, 5], 300.0)
    """

    def __init__(self, limit, minutes=None, clock=time.monotonic):
        super().__init__(limit)
        self.budget_s = None if minutes is None else 60.0 * float(minutes)
        self.clock = clock
        self._start = None  # clock() at the first epoch start of this process
        self._last = None  # clock() at the running epoch's start (in this process)
        self._resumed_s = 0.0  # training seconds before this process (recovered from a checkpoint)
        self._epoch_lengths_s = []  # training seconds of each finished epoch, warm-up left out
        self._excluded_s = 0.0  # in all, since the start
        self._epoch_excluded_s = 0.0  # excluded + warm-up time of the running epoch
        self._epoch_start_s = 0.0  # training seconds when the running epoch started
        self._epoch_before_s = 0.0  # seconds of the running epoch before this process (an intra-epoch resume)
        self._continue_epoch = False  # the next epoch is one a checkpoint was saved in: it goes on, unchecked
        self._epoch_warmup_s = 0.0  # warm-up of the running epoch
        self._step_s = 0.0  # seconds per training step, of the last epoch that measured them (note_train_steps)
        self.warmup_s = 0.0
        self.plan = None  # an EpochPlan under DDP, the same on every process; None in a single process

    def note_warmup(self, seconds):
        """Records ``seconds`` of one-off warm-up (compilation) inside the running epoch: they
        count towards the budget, not towards the expected length of later epochs."""
        self.warmup_s += float(seconds)
        self._epoch_warmup_s += float(seconds)
        self._epoch_excluded_s += float(seconds)
        logger.info("Warm-up (compilation, first step) took %.1f s; not expected of later epochs.", seconds)

    def exclude(self, seconds):
        """Records ``seconds`` that are not training (e.g. a benchmark's evaluation): they count
        neither towards the budget nor towards the epoch length."""
        self._excluded_s += float(seconds)
        self._epoch_excluded_s += float(seconds)

    def note_train_steps(self, steps, seconds):
        """Records that the running epoch's training stage made ``steps`` steps in ``seconds`` (its
        warm-up included: left out here), for the seconds per step of :attr:`plan`.

        Example
        -------
        >>> counter = TimeBudgetEpochCounter(limit=3, minutes=10)
        >>> _ = next(counter)
        >>> counter.note_warmup(30.0)  # the first step compiled
        >>> counter.note_train_steps(11, 80.0)
        >>> counter.seconds_per_step()
        5.0
        """
        warmup = self._epoch_warmup_s
        steps = int(steps) - (1 if warmup > 0 else 0)  # the warm-up is the first step's
        if steps > 0:
            self._step_s = max(0.0, float(seconds) - warmup) / steps

    def seconds_per_step(self):
        """Seconds per training step, of the last epoch that measured them (0 before one has)."""
        return self._step_s

    def training_seconds(self):
        """Training time so far: wall-clock since the first epoch started, less excluded time (and
        the time between a kill and the resume)."""
        if self._start is None:
            return self._resumed_s
        return self._resumed_s + self.clock() - self._start - self._excluded_s

    def _running_epoch_seconds(self):
        """Seconds of the running epoch so far, warm-up and excluded time left out (0 before the first)."""
        if self._last is None:
            return self._epoch_before_s
        return self._epoch_before_s + self.clock() - self._last - self._epoch_excluded_s

    def expected_end_seconds(self):
        """Training seconds at which the run is expected to stop (``None`` without a budget): the end of
        the last epoch that fits the budget, if the running and later epochs take as long as the longest
        so far (the first left out once another has finished); the budget itself while no epoch has finished.

        Example
        -------
        >>> now = [0.0]
        >>> counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=lambda: now[0])
        >>> next(counter), counter.expected_end_seconds()  # nothing known yet: the budget
        (1, 600.0)
        >>> now[0] = 70.0
        >>> next(counter), counter.expected_end_seconds()  # 70-s epochs: epochs 2 to 8 fit, ending at 560 s
        (2, 560.0)
        """
        if self.budget_s is None:
            return None
        epoch_s = self.expected_epoch_seconds()
        if epoch_s <= 0:
            return self.budget_s
        fitting = max(1, math.floor((self.budget_s - self._epoch_start_s) / epoch_s))
        return self._epoch_start_s + fitting * epoch_s

    def expected_epoch_seconds(self):
        """Training seconds expected of the next epoch (0 while none has finished): the longest
        epoch so far, the first one left out once another has finished.

        Example
        -------
        >>> now = [0.0]
        >>> counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=lambda: now[0])
        >>> for epoch_s in (0.0, 90.0, 50.0, 60.0):  # the first epoch ends at 90 s, the second at 140 s
        ...     now[0] += epoch_s
        ...     _ = next(counter)
        ...     print(counter.expected_epoch_seconds())
        0.0
        90.0
        50.0
        60.0
        """
        lengths = self._epoch_lengths_s
        return max(lengths[1:] or lengths or [0.0])

    def __next__(self):
        now = self.clock()
        if self._start is None:
            self._start = now
        else:
            self._epoch_lengths_s.append(self._running_epoch_seconds())
            self._epoch_before_s = 0.0
        self._last = now
        self._epoch_excluded_s = self._epoch_warmup_s = 0.0
        elapsed = self.training_seconds()
        epoch_s = self.expected_epoch_seconds()
        if self._continue_epoch:  # started before the checkpoint it resumes from (within the budget then)
            self._continue_epoch = False
            stop = False
        else:
            self._epoch_start_s = elapsed
            stop = self.budget_s is not None and epoch_s > 0 and elapsed + epoch_s > self.budget_s
        if self.budget_s is not None and distributed.is_distributed_initialized():  # the main process decides
            plan = EpochPlan(self._epoch_start_s, self._step_s, self.expected_end_seconds())
            stop, self.plan = distributed.ddp_broadcast((stop, plan))
            self._epoch_start_s = self.plan.start_s
        if stop:
            logger.info(
                "Time budget of %.1f min: stopping after %.1f min of training (epochs take up to %.1f min; "
                "warm-up %.1f min).",
                self.budget_s / 60,
                elapsed / 60,
                epoch_s / 60,
                self.warmup_s / 60,
            )
            raise StopIteration
        return super().__next__()

    @staticmethod
    def budget_path(path):
        """Where the budget state is saved beside the epoch file ``path`` (``counter.ckpt`` ->
        ``counter.budget.yaml``): the epoch file stays SpeechBrain's ``EpochCounter`` format, so that a run
        saved with a budget can be resumed with SpeechBrain's counter, and the other way round."""
        path = Path(path)
        return path.with_name(f"{path.stem}.budget.yaml")

    @mark_as_saver
    def _save(self, path):
        state = {
            "training_s": self.training_seconds(),
            "epoch_lengths_s": list(self._epoch_lengths_s),
            "running_epoch_s": self._running_epoch_seconds(),
            "epoch_start_s": self._epoch_start_s,
            "warmup_s": self.warmup_s,
            "step_s": self._step_s,
        }
        with open(self.budget_path(path), "w", encoding="utf-8") as fo:  # first: a complete epoch file has it
            yaml.safe_dump({k: _plain(v) for k, v in state.items()}, fo)
        super()._save(path)

    @mark_as_loader
    def _recover(self, path, end_of_epoch=True):
        """Restores the epoch and the training time so far; after an end-of-epoch checkpoint the epoch
        it was saved in counts as finished, after an intra-epoch one it goes on (SpeechBrain runs it
        again from where it was saved). A checkpoint of SpeechBrain's ``EpochCounter`` (the epoch
        alone, no budget file beside it) starts the budget afresh, with a log line."""
        try:
            super()._recover(path, end_of_epoch)
        except ValueError as err:
            raise ValueError(f"{path}: not an epoch counter checkpoint ({err})") from err
        budget_file = self.budget_path(path)
        if not budget_file.is_file():
            logger.info("%s holds the epoch only (SpeechBrain's EpochCounter): the time budget starts afresh.", path)
            return
        text = budget_file.read_text(encoding="utf-8")
        try:
            state = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"{budget_file}: not a time budget checkpoint ({err})") from err
        if not isinstance(state, dict) or not {"training_s", "epoch_lengths_s"} <= set(state):
            raise ValueError(f"{budget_file}: not a time budget checkpoint: {text[:200]!r}")
        self._start = self._last = None
        self._excluded_s = self._epoch_excluded_s = 0.0
        self._resumed_s = float(state["training_s"])
        self._epoch_lengths_s = [float(x) for x in state["epoch_lengths_s"]]
        self.warmup_s = float(state.get("warmup_s", 0.0))
        self._step_s = float(state.get("step_s", 0.0))
        running_s = float(state.get("running_epoch_s", 0.0))
        if end_of_epoch:
            self._epoch_lengths_s.append(running_s)
            self._epoch_before_s, self._epoch_start_s, self._continue_epoch = 0.0, self._resumed_s, False
        else:  # SpeechBrain's loader has set current one back: the epoch runs again from where it was saved
            self._epoch_before_s, self._continue_epoch = running_s, True
            self._epoch_start_s = float(state.get("epoch_start_s", self._resumed_s - running_s))
        logger.info(
            "Time budget: %.1f min of training done before this run (%d epochs recovered).",
            self._resumed_s / 60,
            len(self._epoch_lengths_s),
        )


def _plain(value):
    """A float, or a list of them, as YAML writes plainly (no numpy or tensor tags)."""
    return [float(v) for v in value] if isinstance(value, list) else float(value)
