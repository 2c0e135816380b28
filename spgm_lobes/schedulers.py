"""Learning-rate warm-up that composes with SpeechBrain's epoch-level schedulers.

Large batches train best with a higher peak learning rate reached by a linear warm-up; after it,
the recipes keep the paper's schedule (SpeechBrain's ``ReduceLROnPlateau``: halve after
``lr_patience`` epochs without validation improvement, stop at 1e-8). :class:`LinearWarmup` owns the
*base* learning rate, the one the epoch-level scheduler halves, and applies ``base * (k / steps)``
for the first ``steps`` optimizer steps; :class:`spgm_lobes.separation.SeparationBrain` calls it
before every optimizer step and hands it the epoch scheduler's decision at every epoch end.
"""

from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks


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

    @property
    def active(self):
        """Whether the warm-up is still running."""
        return self.done < self.steps

    def factor(self):
        """The fraction of the base rate applied at the next step."""
        return min(1.0, (self.done + 1) / self.steps) if self.steps > 0 else 1.0

    def before_step(self, optimizer):
        """Sets the learning rate of the next optimizer step."""
        if self.active:
            _set_lr(optimizer, self.base_lr * self.factor())
            self.done += 1

    def restore_base_lr(self, optimizer):
        """Puts the base rate back on the optimizer (before an epoch-level scheduler reads it)."""
        _set_lr(optimizer, self.base_lr)

    def set_base_lr(self, optimizer, lr):
        """Takes the epoch-level scheduler's new base rate; the warm-up scales it from now on."""
        self.base_lr = float(lr)
        if not self.active:
            update_learning_rate(optimizer, self.base_lr)

    @mark_as_saver
    def save(self, path):
        """Checkpoint hook: writes the warm-up state."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"{self.steps} {self.done} {self.base_lr!r}\n")

    @mark_as_loader
    def load(self, path, end_of_epoch=None):
        """Checkpoint hook: restores the warm-up state."""
        with open(path, encoding="utf-8") as f:
            steps, done, base_lr = f.read().split()
        self.steps, self.done, self.base_lr = int(steps), int(done), float(base_lr)


def _set_lr(optimizer, lr):
    """Sets the learning rate of every parameter group, silently (SpeechBrain's
    ``update_learning_rate`` logs every change: once a step during a warm-up)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
