"""LinearWarmup composes with SpeechBrain's ReduceLROnPlateau and survives a checkpoint; BudgetAnneal
decays the rate to zero at the expected end of a time-budgeted run, on top of both."""

import pytest
import torch
from speechbrain.nnet.schedulers import ReduceLROnPlateau
from speechbrain.utils.checkpoints import Checkpointer

from spgm_lobes.epoch_budget import TimeBudgetEpochCounter
from spgm_lobes.schedulers import BudgetAnneal, LinearWarmup


def optimizer(lr=1e-3):
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def lr_of(opt):
    return opt.param_groups[0]["lr"]


def epoch_end(warmup, plateau, opt, epoch, loss):
    """What SeparationBrain does at a validation end."""
    warmup.restore_base_lr(opt)
    _, next_lr = plateau([opt], epoch, loss)
    warmup.set_base_lr(opt, next_lr)


def test_warmup_ramps_linearly_then_holds():
    opt = optimizer()
    warmup = LinearWarmup(steps=10, base_lr=1e-3)
    seen = []
    for _ in range(15):
        warmup.before_step(opt)
        seen.append(lr_of(opt))
    assert seen[:10] == pytest.approx([1e-4 * k for k in range(1, 11)])
    assert seen[10:] == pytest.approx([1e-3] * 5)
    assert not warmup.active


def test_halving_on_plateau_during_and_after_the_warmup():
    opt = optimizer()
    warmup = LinearWarmup(steps=8, base_lr=1e-3)
    plateau = ReduceLROnPlateau(factor=0.5, patience=0, dont_halve_until_epoch=0)
    for _ in range(4):  # half the warm-up
        warmup.before_step(opt)
    assert lr_of(opt) == pytest.approx(5e-4)
    epoch_end(warmup, plateau, opt, 1, -5.0)  # first epoch: the anchor, no change
    assert warmup.base_lr == pytest.approx(1e-3)
    epoch_end(warmup, plateau, opt, 2, -4.0)  # worse: the plateau halves the *base* rate
    assert warmup.base_lr == pytest.approx(5e-4)
    warmup.before_step(opt)  # step 5 of 8 of the warm-up, on the halved base
    assert lr_of(opt) == pytest.approx(5e-4 * 5 / 8)
    for _ in range(3):
        warmup.before_step(opt)
    assert lr_of(opt) == pytest.approx(5e-4)
    epoch_end(warmup, plateau, opt, 3, -3.0)  # after the warm-up: halved on the optimizer at once
    assert lr_of(opt) == pytest.approx(2.5e-4)
    warmup.before_step(opt)
    assert lr_of(opt) == pytest.approx(2.5e-4)


def test_checkpoint_round_trip(tmp_path):
    warmup = LinearWarmup(steps=8, base_lr=1e-3)
    opt = optimizer()
    for _ in range(3):
        warmup.before_step(opt)
    warmup.save(tmp_path / "warmup.ckpt")
    restored = LinearWarmup(steps=1, base_lr=1.0)
    restored.load(tmp_path / "warmup.ckpt")
    assert (restored.steps, restored.done, restored.base_lr) == (8, 3, 1e-3)
    restored.before_step(opt)
    assert lr_of(opt) == pytest.approx(1e-3 * 4 / 8)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_anneal_decays_linearly_to_zero_at_the_expected_end():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=clock)
    anneal = BudgetAnneal(0.25, counter)
    next(counter)
    factors = []
    for t in (0.0, 449.0, 450.0, 525.0, 600.0, 700.0):
        clock.now = t
        factors.append(anneal.factor())
    assert factors == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.0, 0.0])


def test_anneal_follows_the_expected_end_and_never_rises():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=clock)
    anneal = BudgetAnneal(0.5, counter)
    next(counter)
    clock.now = 240.0
    assert anneal.factor() == 1.0
    next(counter)  # 240-s epochs: one more fits, ending at 480 s
    assert counter.expected_end_seconds() == 480.0
    assert anneal.factor() == 1.0
    clock.now = 360.0
    assert anneal.factor() == pytest.approx(0.5)  # (480 - 360) / (0.5 * 480)
    clock.now = 480.0
    assert anneal.factor() == 0.0
    counter._epoch_lengths_s = [1.0]  # a later estimate with room left does not raise the rate again
    assert anneal.factor() == 0.0


def test_anneal_scales_the_warmup_and_the_halved_base_rate():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=clock)
    next(counter)
    anneal = BudgetAnneal(0.5, counter)
    opt = optimizer()
    warmup = LinearWarmup(steps=4, base_lr=1e-3)
    plateau = ReduceLROnPlateau(factor=0.5, patience=0, dont_halve_until_epoch=0)
    clock.now = 450.0  # half-way through the decay
    warmup.before_step(opt, anneal.factor())
    assert lr_of(opt) == pytest.approx(1e-3 / 4 * 0.5)  # warm-up step 1 of 4, annealed
    for _ in range(3):
        warmup.before_step(opt, anneal.factor())
    assert lr_of(opt) == pytest.approx(5e-4)
    epoch_end(warmup, plateau, opt, 1, -5.0)
    epoch_end(warmup, plateau, opt, 2, -4.0)  # the plateau halves the base rate, not the annealed one
    assert warmup.base_lr == pytest.approx(5e-4)
    clock.now = 540.0
    warmup.before_step(opt, anneal.factor())
    assert lr_of(opt) == pytest.approx(5e-4 * 0.2)
    warmup.restore_base_lr(opt)  # an epoch end: the optimizer holds the base rate, the warm-up the last step's
    assert (lr_of(opt), warmup.last_lr) == pytest.approx((5e-4, 5e-4 * 0.2))


@pytest.mark.parametrize("fraction", [0.0, 1.5, -0.1])
def test_anneal_fraction_out_of_range(fraction):
    counter = TimeBudgetEpochCounter(limit=3, minutes=1)
    with pytest.raises(ValueError, match="lr_anneal_fraction"):
        BudgetAnneal(fraction, counter)


def test_anneal_needs_a_time_budget():
    with pytest.raises(ValueError, match="time budget"):
        BudgetAnneal(0.5, TimeBudgetEpochCounter(limit=3))


def test_anneal_with_a_zero_budget_is_already_over():
    clock = Clock()
    counter = TimeBudgetEpochCounter(limit=3, minutes=0, clock=clock)  # a smoke run: --minutes 0
    anneal = BudgetAnneal(0.5, counter)
    next(counter)
    assert anneal.factor() == 0.0
    clock.now = 5.0  # the one epoch a zero budget runs
    assert anneal.factor() == 0.0
    with pytest.raises(StopIteration):
        next(counter)


def _budgeted(clock, save, minutes=10):
    counter = TimeBudgetEpochCounter(limit=100, minutes=minutes, clock=clock)
    anneal = BudgetAnneal(0.5, counter)
    return counter, anneal, Checkpointer(save, {"counter": counter, "lr_anneal": anneal})


def test_anneal_continues_where_it_stopped_after_a_resume(tmp_path):
    clock = Clock()
    counter, anneal, ckpt = _budgeted(clock, tmp_path)
    for epoch in counter:  # 100-s epochs; killed after the fourth one's checkpoint
        clock.now += 100.0
        anneal.factor()
        ckpt.save_checkpoint()
        if epoch == 4:
            break
    before = anneal.factor()
    assert before == pytest.approx(200.0 / 300.0)  # 200 s left of the 600 expected, decaying over 300
    clock.now += 3600.0  # down for an hour
    counter, anneal, ckpt = _budgeted(clock, tmp_path)
    ckpt.recover_if_possible()
    assert next(counter) == 5
    assert anneal.factor() == pytest.approx(before)
    clock.now += 50.0
    assert anneal.factor() == pytest.approx(150.0 / 300.0)


def test_anneal_factor_survives_a_checkpoint(tmp_path):
    clock = Clock()
    counter, anneal, ckpt = _budgeted(clock, tmp_path)
    next(counter)
    anneal.last = 0.25  # reached under an earlier, shorter estimate of the end
    ckpt.save_checkpoint()
    counter, anneal, ckpt = _budgeted(clock, tmp_path)
    ckpt.recover_if_possible()
    next(counter)
    assert anneal.factor() == 0.25  # never rises again
    (tmp_path / "broken.ckpt").write_text("x")
    with pytest.raises(ValueError, match="broken.ckpt"):
        anneal.load(tmp_path / "broken.ckpt")


def test_a_finished_decay_continued_with_a_larger_budget_decays_again_over_it(tmp_path):
    clock = Clock()
    counter, anneal, ckpt = _budgeted(clock, tmp_path)
    for _ in counter:  # the whole 10-minute budget: the rate decays to 0
        clock.now += 100.0
        anneal.factor()
        ckpt.save_checkpoint()
    assert anneal.factor() == 0.0
    counter, anneal, ckpt = _budgeted(clock, tmp_path, minutes=40)  # continued: 40 minutes in all
    ckpt.recover_if_possible()
    assert next(counter) == 7
    assert anneal.factor() == 1.0  # 600 s of 2400: before the decay over the new budget's last half
