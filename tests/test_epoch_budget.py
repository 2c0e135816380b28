"""TimeBudgetEpochCounter: the budget's epoch estimate ignores warm-up; excluded time is not training."""

import logging

import pytest
from speechbrain.utils import distributed
from speechbrain.utils.checkpoints import Checkpointer
from speechbrain.utils.epoch_loop import EpochCounter

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


def _checkpointer(tmp_path, counter):
    return Checkpointer(tmp_path / "save", {"counter": counter})


def _train_with_checkpoints(tmp_path, clock, counter, epoch_s, stop_after=None):
    """Runs ``counter`` with epochs of ``epoch_s`` seconds, a checkpoint at each end; killed after
    epoch ``stop_after`` (or run to its budget)."""
    ckpt = _checkpointer(tmp_path, counter)
    for epoch in counter:
        clock.now += epoch_s
        ckpt.save_checkpoint()
        if epoch == stop_after:
            break


def test_a_killed_run_resumes_with_the_rest_of_its_budget(tmp_path):
    clock = Clock()
    uninterrupted = run(TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock), clock, first_epoch_compiles,
                        warmup={1: 110.0})  # fmt: skip
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    ckpt = _checkpointer(tmp_path, counter)
    for epoch in counter:  # killed after the third epoch's checkpoint
        if epoch == 1:
            counter.note_warmup(110.0)
        clock.now += first_epoch_compiles(epoch)
        ckpt.save_checkpoint()
        if epoch == 3:
            break
    clock.now += 5000.0  # down for a while: not training time
    resumed = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    _checkpointer(tmp_path, resumed).recover_if_possible()
    assert resumed.training_seconds() == 230.0 and resumed.warmup_s == 110.0
    assert run(resumed, clock, first_epoch_compiles) == [4, 5, 6] == uninterrupted[3:]
    assert resumed.training_seconds() == 350.0


def test_a_finished_run_started_again_trains_no_more(tmp_path):
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    _train_with_checkpoints(tmp_path, clock, counter, 40.0)
    assert counter.current == 9  # 9 x 40 s = 360 s
    clock.now += 100.0
    again = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    _checkpointer(tmp_path, again).recover_if_possible()
    assert list(again) == []


def test_an_epoch_killed_after_an_intra_epoch_checkpoint_goes_on(tmp_path):
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    ckpt = _checkpointer(tmp_path, counter)
    for epoch in counter:
        clock.now += 50.0 if epoch < 7 else 30.0  # 6 epochs of 50 s, then 30 s into the 7th (of 50 s)
        if epoch == 7:
            ckpt.save_checkpoint(end_of_epoch=False)
            break
        ckpt.save_checkpoint()
    clock.now += 1000.0
    resumed = TimeBudgetEpochCounter(limit=1000, minutes=6, clock=clock)
    _checkpointer(tmp_path, resumed).recover_if_possible()
    # the 7th epoch goes on (it was started within the budget: 300 + 50 <= 360); its 50 s are counted whole
    assert next(resumed) == 7
    assert resumed.expected_end_seconds() == 350.0
    clock.now += 20.0
    assert list(resumed) == [] and resumed.expected_epoch_seconds() == 50.0
    assert resumed.training_seconds() == 350.0


def test_a_checkpoint_of_speechbrains_epoch_counter_starts_the_budget_afresh(tmp_path, caplog):
    plain = EpochCounter(10)
    plain.current = 3
    ckpt = _checkpointer(tmp_path, plain).save_checkpoint()
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=10, minutes=1, clock=clock)
    with caplog.at_level(logging.INFO, logger="spgm_lobes.epoch_budget"):
        _checkpointer(tmp_path, counter).recover_if_possible()
    assert "holds the epoch only" in caplog.text and str(ckpt.path) in caplog.text
    assert counter.current == 3 and counter.training_seconds() == 0.0
    assert run(counter, clock, lambda epoch: 40.0) == [4]  # 1 minute: no room for a second 40-s epoch


def test_a_budgeted_checkpoint_resumes_with_speechbrains_epoch_counter(tmp_path):
    clock = Clock()
    _train_with_checkpoints(tmp_path, clock, TimeBudgetEpochCounter(limit=10, minutes=6, clock=clock), 40.0, 3)
    plain = EpochCounter(10)  # the recipe's own counter, without the budget override
    _checkpointer(tmp_path, plain).recover_if_possible()
    assert plain.current == 3 and next(plain) == 4


def test_an_unreadable_counter_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "counter.ckpt"
    path.write_text("not: [a counter", encoding="utf-8")
    with pytest.raises(ValueError, match="counter.ckpt"):
        TimeBudgetEpochCounter(limit=10)._recover(path)
    path.write_text("3", encoding="utf-8")
    TimeBudgetEpochCounter.budget_path(path).write_text("not: [a budget", encoding="utf-8")
    with pytest.raises(ValueError, match="counter.budget.yaml"):
        TimeBudgetEpochCounter(limit=10)._recover(path)


class TwoRanks:
    """DDP broadcasts of two processes run one after the other: rank 0's call sends, rank 1's receives."""

    def __init__(self):
        self.rank, self.sent = 0, []

    def broadcast(self, obj, src=0):
        if self.rank == src:
            self.sent.append(obj)
            return obj
        return self.sent.pop(0)


def test_under_ddp_every_process_follows_the_main_process(monkeypatch):
    from spgm_lobes.schedulers import BudgetAnneal

    ranks = TwoRanks()
    monkeypatch.setattr(distributed, "is_distributed_initialized", lambda: True)
    monkeypatch.setattr(distributed, "ddp_broadcast", ranks.broadcast)
    clocks = [Clock(), Clock()]
    counters = [TimeBudgetEpochCounter(limit=100, minutes=6, clock=clock) for clock in clocks]
    anneals = [BudgetAnneal(0.5, counter) for counter in counters]
    epochs = 0
    while True:
        started = []
        for rank in (0, 1):
            ranks.rank = rank
            started.append(next(counters[rank], None))
        assert started[0] == started[1]  # one process alone in another epoch would wait forever
        if started[0] is None:
            break
        epochs += 1
        assert counters[0].plan == counters[1].plan
        for step in (1, 5, 10):  # the same learning rate on both, whatever their clocks say
            assert anneals[0].factor(step) == anneals[1].factor(step)
        for rank, epoch_s in ((0, 40.0), (1, 41.0)):  # rank 1 measures its epochs 1 s longer
            counters[rank].note_train_steps(10, epoch_s - 4.0)
            clocks[rank].now += epoch_s
    assert epochs == 9  # rank 0's view: 9 x 40 s = 360 s (rank 1 alone would have stopped after 8)
    assert counters[1].plan.step_s == 3.6  # rank 0's 36 s of steps / 10
