"""TimeBudgetEpochCounter: the budget's epoch estimate ignores warm-up; excluded time is not training."""

from spgm_lobes.epoch_budget import TimeBudgetEpochCounter


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def run(counter, clock, epoch_seconds, warmup=None, exclude=None):
    """Runs the counter with a simulated clock; returns the epochs it allowed."""
    epochs = []
    for epoch in counter:
        if warmup and epoch in warmup:
            counter.note_warmup(warmup[epoch])
        if exclude and epoch in exclude:
            counter.exclude(exclude[epoch])
            clock.now += exclude[epoch]
        clock.now += epoch_seconds(epoch)
        epochs.append(epoch)
    return epochs


def first_epoch_compiles(epoch):
    return 150.0 if epoch == 1 else 40.0  # 110 s of compilation in the first epoch


def test_compilation_is_not_expected_of_later_epochs():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    epochs = run(counter, clock, first_epoch_compiles, warmup={1: 110.0})
    # 150 s + 5 x 40 s = 350 s <= 360 s; a 7th epoch would end at 390 s
    assert epochs == [1, 2, 3, 4, 5, 6]
    assert counter.training_seconds() == 350.0
    assert counter.warmup_s == 110.0


def test_without_the_warmup_note_the_first_epoch_is_typical_until_another_finishes():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=4, clock=clock)
    # for contrast: a second 150-s epoch would end at 300 s, past the 240-s budget
    assert run(counter, clock, first_epoch_compiles) == [1]
    assert counter.training_seconds() == 150.0
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    # a second epoch fits: once it has finished (40 s), the first is left out of the estimate
    assert run(counter, clock, first_epoch_compiles) == [1, 2, 3, 4, 5, 6]
    assert counter.training_seconds() == 350.0


def test_a_slow_first_epoch_is_left_out_once_a_second_has_finished():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=5, clock=clock)
    # 80 s (slow first steps, no warm-up noted), then 40-s epochs: six end at 280 s, where taking
    # the 80-s epoch as typical would have stopped after five, at 240 s
    assert run(counter, clock, lambda epoch: 80.0 if epoch == 1 else 40.0) == [1, 2, 3, 4, 5, 6]
    assert counter.training_seconds() == 280.0
    assert counter.expected_epoch_seconds() == 40.0


def test_excluded_time_counts_neither_towards_the_budget_nor_the_epoch_length():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=2, clock=clock)
    epochs = run(counter, clock, lambda epoch: 30.0, exclude={1: 500.0, 2: 500.0})
    assert epochs == [1, 2, 3, 4]
    assert counter.training_seconds() == 120.0
    assert clock.now - 1000.0 == 1120.0


def test_the_epoch_limit_still_applies():
    clock = Clock()
    assert run(TimeBudgetEpochCounter(limit=3, minutes=100, clock=clock), clock, lambda epoch: 1.0) == [1, 2, 3]


def test_expected_end_is_the_last_epoch_that_fits():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    ends = []
    for epoch in counter:
        ends.append(counter.expected_end_seconds())
        if epoch == 1:
            counter.note_warmup(110.0)
            counter.exclude(30.0)  # e.g. a benchmark's evaluation: not training
            clock.now += 30.0
        clock.now += first_epoch_compiles(epoch)
    # nothing known in epoch 1: the budget; then 40-s epochs from 150 s: 5 fit, the last ends at 350 s
    assert ends == [360.0, 350.0, 350.0, 350.0, 350.0, 350.0]
    assert counter.training_seconds() == ends[-1]


def test_expected_end_moves_when_epochs_get_longer():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=5, clock=clock)
    ends = []
    for epoch in counter:
        ends.append(counter.expected_end_seconds())
        clock.now += 50.0 if epoch < 3 else 70.0
    assert ends[:4] == [300.0, 300.0, 300.0, 240.0]  # 50-s epochs: 6 fit; after a 70-s one: 2 more from 170 s
    assert counter.training_seconds() == 240.0


def test_no_budget_no_expected_end():
    counter = TimeBudgetEpochCounter(limit=3)
    next(counter)
    assert counter.expected_end_seconds() is None
