"""Step-level learning-rate schedules that compose with SpeechBrain's epoch-level schedulers.

Large batches train best with a higher peak learning rate reached by a linear warm-up; after it,
the recipes keep the paper's schedule (SpeechBrain's ``ReduceLROnPlateau``: halve after
``lr_patience`` epochs without validation improvement, stop at 1e-8). :class:`LinearWarmup` owns the
*base* learning rate, the one the epoch-level scheduler halves, and applies ``base * (k / steps)``
for the first ``steps`` optimizer steps; :class:`spgm_lobes.separation.SeparationBrain` calls it
before every optimizer step and hands it the epoch scheduler's decision at every epoch end.

A run with a wall-clock budget (:class:`spgm_lobes.epoch_budget.TimeBudgetEpochCounter`) can also
end on an annealed rate: :class:`BudgetAnneal` scales the rate down linearly to zero over the last
part of the expected training time, the schedule of budgeted training (Li et al., "Budgeted
Training: Rethinking Deep Neural Network Training Under Resource Constraints", ICLR 2020). Its
factor multiplies the warm-up's rate, so halving on plateau still acts on the base rate.
"""

import logging

from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks

logger = logging.getLogger(__name__)


@register_checkpoint_hooks
class LinearWarmup:
    """Linear learning-rate warm-up over ``steps`` optimizer steps towards a base rate.

    Arguments
    ---------
    steps : int
        Warm-up length in optimizer steps (0: none).
    base_lr : float
        Learning rate reached at the end of the warm-up (the peak).

    Example
    -------
    >>> opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> warmup = LinearWarmup(steps=4, base_lr=1e-3)
    >>> lrs = []
    >>> for _ in range(6):
    ...     warmup.before_step(opt)
    ...     lrs.append(opt.param_groups[0]["lr"])
    >>> [round(lr * 1e4, 2) for lr in lrs]
    [2.5, 5.0, 7.5, 10.0, 10.0, 10.0]

    An epoch-level scheduler halves the base rate; the warm-up applies the halved rate from then on:

    >>> warmup = LinearWarmup(steps=4, base_lr=1e-3)
    >>> warmup.before_step(opt)
    >>> warmup.set_base_lr(opt, 5e-4)
    >>> warmup.before_step(opt); opt.param_groups[0]["lr"]
    0.00025
    """

    def __init__(self, steps, base_lr):
        self.steps = int(steps)
        self.base_lr = float(base_lr)
        self.done = 0
        self.last_lr = None  # the rate the last step was given (the optimizer holds the base rate between epochs)
        self.loaded = False  # restored from a checkpoint (:meth:`load`)

    @property
    def active(self):
        """Whether the warm-up is still running."""
        return self.done < self.steps

    def factor(self):
        """The fraction of the base rate applied at the next step."""
        return min(1.0, (self.done + 1) / self.steps) if self.steps > 0 else 1.0

    def before_step(self, optimizer, scale=1.0):
        """Sets the learning rate of the next optimizer step: the base rate times the warm-up's
        factor and ``scale`` (e.g. a :class:`BudgetAnneal` factor)."""
        if self.active:
            _set_lr(optimizer, self.base_lr * self.factor() * scale)
            self.done += 1
        elif scale != 1.0 or optimizer.param_groups[0]["lr"] != self.base_lr:
            _set_lr(optimizer, self.base_lr * scale)
        self.last_lr = optimizer.param_groups[0]["lr"]

    def restore_base_lr(self, optimizer):
        """Puts the base rate back on the optimizer (before an epoch-level scheduler reads it)."""
        _set_lr(optimizer, self.base_lr)

    def set_base_lr(self, optimizer, lr):
        """Takes the epoch-level scheduler's new base rate; the warm-up scales it from now on."""
        self.base_lr = float(lr)
        if not self.active:
            update_learning_rate(optimizer, self.base_lr)

    def resume_without_state(self, optimizer_steps, base_lr):
        """Takes up a run recovered from a checkpoint that has no warm-up state (saved by a run without
        warm-up or learning-rate decay): the warm-up continues as if it had run since the first of the
        run's ``optimizer_steps`` (done already after as many steps as it has), towards the recovered rate
        ``base_lr``.

        Example
        -------
        >>> warmup = LinearWarmup(steps=400, base_lr=1e-3)
        >>> warmup.resume_without_state(optimizer_steps=1000, base_lr=5e-4)
        >>> warmup.active, warmup.base_lr
        (False, 0.0005)
        """
        self.done = min(self.steps, int(optimizer_steps))
        self.base_lr = float(base_lr)

    @mark_as_saver
    def save(self, path):
        """Checkpoint hook: writes the warm-up state."""
        _write_fields(path, self.steps, self.done, self.base_lr)

    @mark_as_loader
    def load(self, path, end_of_epoch=None):
        """Checkpoint hook: restores the warm-up state."""
        steps, done, base_lr = _read_fields(path)[0]
        self.steps, self.done, self.base_lr = int(steps), int(done), float(base_lr)
        self.loaded = True


@register_checkpoint_hooks
class BudgetAnneal:
    """Linear decay of the learning rate to zero over the last ``fraction`` of a time budget.

    The end is the counter's expected end of training
    (:meth:`~spgm_lobes.epoch_budget.TimeBudgetEpochCounter.expected_end_seconds`: the end of the last
    epoch that fits the budget), re-estimated as epochs finish; the factor never rises again.

    Arguments
    ---------
    fraction : float
        Share of the expected training time over which the rate decays (0 < fraction <= 1).
    counter : TimeBudgetEpochCounter
        The run's epoch counter, with a budget (its clock gives the training time).

    Example
    -------
    >>> from spgm_lobes.epoch_budget import TimeBudgetEpochCounter
    >>> now = [0.0]
    >>> counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=lambda: now[0])
    >>> anneal = BudgetAnneal(0.5, counter)
    >>> _ = next(counter)
    >>> factors = []
    >>> for t in (0, 200, 300, 450, 600):
    ...     now[0] = t
    ...     factors.append(anneal.factor())
    >>> factors
    [1.0, 1.0, 1.0, 0.5, 0.0]

    Its checkpoint holds the factor reached (the factor never rises again, unless the run goes on with
    another budget, see :meth:`load`); the training time it decays over is the counter's
    (:class:`~spgm_lobes.epoch_budget.TimeBudgetEpochCounter` keeps it across a resume).
    """

    def __init__(self, fraction, counter):
        self.fraction = float(fraction)
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"lr_anneal_fraction must be in (0, 1], got {fraction}")
        if getattr(counter, "expected_end_seconds", None) is None or counter.expected_end_seconds() is None:
            raise ValueError(
                "lr_anneal_fraction needs an epoch counter with a time budget "
                f"(spgm_lobes.epoch_budget.TimeBudgetEpochCounter with minutes), got {counter!r}"
            )
        self.counter = counter
        self.last = 1.0

    def factor(self, step=None):
        """The share of the rate to apply now (1 before the decay, 0 at the expected end).

        Under DDP, with ``step`` (the training step within the epoch), the training time is that of the
        counter's :attr:`~spgm_lobes.epoch_budget.TimeBudgetEpochCounter.plan`, the same on every process
        (the epoch's start plus ``step`` steps of the measured length), so that every process applies the
        same rate without a synchronisation at each step; in a single process, the counter's clock.

        Example
        -------
        >>> from spgm_lobes.epoch_budget import EpochPlan, TimeBudgetEpochCounter
        >>> counter = TimeBudgetEpochCounter(limit=100, minutes=10)
        >>> counter.plan = EpochPlan(start_s=400.0, step_s=2.0, end_s=600.0)  # what DDP processes receive
        >>> BudgetAnneal(0.5, counter).factor(step=25)  # at 450 s: 150 s left of the 300 decaying
        0.5
        """
        plan = getattr(self.counter, "plan", None)
        if plan is not None and step is not None:
            end, now = plan.end_s, plan.start_s + step * plan.step_s
        else:
            end, now = self.counter.expected_end_seconds(), None
        if end <= 0.0:  # a zero budget (``--minutes 0``, a smoke run): the decay is already over
            self.last = 0.0
            return self.last
        left = end - (self.counter.training_seconds() if now is None else now)
        self.last = min(self.last, max(0.0, min(1.0, left / (self.fraction * end))))
        return self.last

    @mark_as_saver
    def save(self, path):
        """Checkpoint hook: writes the factor reached and the budget it decayed over."""
        _write_fields(path, self.last, self.counter.budget_s)

    @mark_as_loader
    def load(self, path, end_of_epoch=None):
        """Checkpoint hook: restores the factor reached, when the run goes on with the same budget. A run
        continued with another budget (a larger ``--minutes``) decays again over the new one, from the rate
        its time in that budget gives (it would otherwise keep the factor of its finished decay, 0)."""
        values, text = _read_fields(path)
        try:
            last, budget = float(values[0]), (values[1] if len(values) > 1 else None)
            budget = None if budget in (None, "None") else float(budget)
        except (ValueError, IndexError):
            raise ValueError(f"{path}: not a learning-rate decay checkpoint: {text[:200]!r}") from None
        if len(values) > 1 and budget != self.counter.budget_s:
            logger.info("%s: a decay over another budget (%s s); it starts again over this one.", path, budget)
            return
        self.last = last


def _write_fields(path, *values):
    """Writes a checkpoint file of one line of space-separated values (floats exactly, as ``repr`` does)."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(" ".join(repr(v) for v in values) + "\n")


def _read_fields(path):
    """The values of a file :func:`_write_fields` wrote, as strings, and its text."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return text.split(), text


def _set_lr(optimizer, lr):
    """Sets the learning rate of every parameter group, silently (SpeechBrain's
    ``update_learning_rate`` logs every change: once a step during a warm-up)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
