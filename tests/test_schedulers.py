"""LinearWarmup composes with SpeechBrain's ReduceLROnPlateau and survives a checkpoint."""

import pytest
import torch
from speechbrain.nnet.schedulers import ReduceLROnPlateau

from spgm_lobes.schedulers import LinearWarmup


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
