"""Tests of the permutation-invariant thresholded log-MSE (spgm_lobes.losses.log_mse)."""

import itertools
import math

import pytest
import torch

from spgm_lobes.losses.log_mse import PITLogMSE, pairwise_log_mse, permutation_invariant_log_mse


def _signals(*columns):
    """``[1, T, C]`` from lists of samples."""
    return torch.tensor(columns, dtype=torch.float64).T.unsqueeze(0)


def test_known_values_active_targets():
    targets = _signals([2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0])  # energies 4 and 2
    estimates = _signals([1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0])  # errors 1 and 0
    pairs = pairwise_log_mse(estimates, targets)
    assert pairs[0, 0, 0].item() == pytest.approx(10 * math.log10(1 + 1e-3 * 4))
    assert pairs[0, 1, 1].item() == pytest.approx(10 * math.log10(0 + 1e-3 * 2))
    # cross pair: target 1 [2,0,0,0] vs estimate 2 [0,1,1,0]: error 4 + 1 + 1
    assert pairs[0, 0, 1].item() == pytest.approx(10 * math.log10(6 + 1e-3 * 4))
    expected = (10 * math.log10(1.004) + 10 * math.log10(0.002)) / 2
    assert permutation_invariant_log_mse(estimates, targets).item() == pytest.approx(expected)


def test_perfect_estimate_is_thirty_db_below_target_energy():
    target = torch.randn(1, 200, 1, dtype=torch.float64)
    energy = target.pow(2).sum().item()
    loss = permutation_invariant_log_mse(target.clone(), target).item()
    assert loss == pytest.approx(10 * math.log10(energy) - 30.0)
    loss_20 = permutation_invariant_log_mse(target.clone(), target, threshold_db=-20.0).item()
    assert loss_20 == pytest.approx(10 * math.log10(energy) - 20.0)


def test_zero_targets_use_mixture_energy_and_stay_finite():
    mixture = torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.float64)  # energy 4
    targets = _signals([1.0, -1.0, 1.0, -1.0], [0.0] * 4)
    estimates = _signals([1.0, -1.0, 1.0, -1.0], [0.5, 0.0, 0.0, 0.0])  # silent output leaks energy 0.25
    pairs = pairwise_log_mse(estimates, targets, mixture)
    assert pairs[0, 1, 1].item() == pytest.approx(10 * math.log10(0.25 + 1e-3 * 4))
    # exactly silent output on a silent target: -30 dB relative to the mixture, not -inf
    perfect = pairwise_log_mse(targets.clone(), targets, mixture)
    assert perfect[0, 1, 1].item() == pytest.approx(10 * math.log10(4e-3))
    # everything silent (e.g. padding): finite
    zeros = torch.zeros(2, 16, 4, requires_grad=True)
    loss = permutation_invariant_log_mse(zeros, torch.zeros(2, 16, 4))
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(zeros.grad).all()


def test_permutation_invariance_and_exact_assignment():
    torch.manual_seed(1)
    targets = torch.randn(3, 64, 4)
    targets[0, :, 2:] = 0  # two silent targets
    targets[1, :, 3] = 0
    estimates = targets[:, :, [2, 0, 3, 1]] + 0.1 * torch.randn(3, 64, 4)
    loss, perm = permutation_invariant_log_mse(estimates, targets, return_permutation=True)
    for order in itertools.permutations(range(4)):
        shuffled = permutation_invariant_log_mse(estimates[:, :, list(order)], targets)
        torch.testing.assert_close(shuffled, loss)
    assert perm[2].tolist() == [1, 3, 0, 2]
    pairs = pairwise_log_mse(estimates, targets)
    brute = (
        torch.stack(
            [torch.stack([pairs[:, j, p[j]] for j in range(4)], -1).mean(-1) for p in itertools.permutations(range(4))]
        )
        .min(0)
        .values
    )
    torch.testing.assert_close(loss, brute)


def test_padding_is_ignored():
    torch.manual_seed(2)
    targets = torch.randn(1, 40, 3)
    estimates = torch.randn(1, 40, 3)
    padded_targets = torch.cat([targets, 5 * torch.randn(1, 10, 3)], 1)
    padded_estimates = torch.cat([estimates, torch.randn(1, 10, 3)], 1)
    batch_targets = torch.cat([padded_targets, torch.randn(1, 50, 3)])
    batch_estimates = torch.cat([padded_estimates, torch.randn(1, 50, 3)])
    full = permutation_invariant_log_mse(estimates, targets)
    padded = permutation_invariant_log_mse(batch_estimates, batch_targets, lengths=torch.tensor([0.8, 1.0]))
    torch.testing.assert_close(padded[0], full[0])


def test_gradient_is_finite_and_module_matches():
    torch.manual_seed(3)
    targets = torch.randn(2, 32, 4)
    targets[:, :, 3] = 0
    estimates = torch.randn(2, 32, 4, requires_grad=True)
    mixture = targets.sum(-1)
    loss = PITLogMSE()(estimates, targets, mixture)
    torch.testing.assert_close(loss, permutation_invariant_log_mse(estimates, targets, mixture))
    loss.mean().backward()
    assert torch.isfinite(estimates.grad).all() and estimates.grad.abs().sum() > 0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ"):
        pairwise_log_mse(torch.zeros(1, 4, 2), torch.zeros(1, 4, 3))
