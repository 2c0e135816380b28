"""Permutation-invariant log-MSE with a soft threshold (GASS objective for a fixed number of outputs).

For a target ``s`` and an estimate ``ŝ`` the pair loss is ``10·log10(‖s − ŝ‖² + τ)`` with

* ``τ = 10^(threshold_db/10)·‖s‖²`` for an active target (``threshold_db = -30``: once the estimate reaches 30 dB
  SNR the loss flattens, so well separated sources stop dominating the gradient), and
* ``τ = 10^(threshold_db/10)·‖x‖²`` (``x`` the mixture) for an all-zero target, so a silent output is pushed
  towards silence without the loss diverging to ``-inf`` as it would with ``τ = 0``.

The loss of a mixture is the mean of the pair losses under the best assignment of outputs to targets, found
exactly over all ``C!`` permutations (24 for 4 outputs). Padded samples (beyond ``lengths``) are ignored.
"""

import itertools

import torch

from .si_snr import valid_samples


def _energy(signal, mask):
    """Energy over time of ``[B, T, C]`` signals with a ``[B, T, 1]`` mask -> ``[B, C]``."""
    return (signal.pow(2) * mask).sum(1)


def time_mask(lengths, num_samples, batch_size, device):
    """``[B, T, 1]`` mask of the valid samples from relative ``lengths`` (``None``: all valid).

    Example
    -------
    >>> time_mask(torch.tensor([1.0, 0.5]), 4, 2, "cpu")[:, :, 0]
    tensor([[1., 1., 1., 1.],
            [1., 1., 0., 0.]])
    """
    if lengths is None:
        return torch.ones(batch_size, num_samples, 1, device=device)
    valid = valid_samples(lengths.to(device), num_samples)
    steps = torch.arange(num_samples, device=device)
    return (steps[None, :] < valid[:, None]).float().unsqueeze(-1)


def pairwise_log_mse(estimates, targets, mixture=None, lengths=None, threshold_db=-30.0, active_eps=1e-10):
    """Pair losses ``[B, C_target, C_estimate]`` of every target against every estimate.

    Arguments
    ---------
    estimates, targets : torch.Tensor
        ``[B, T, C]`` estimated and reference sources.
    mixture : torch.Tensor, optional
        ``[B, T]`` mixture, used for the threshold of all-zero targets (default: the sum of the targets).
    lengths : torch.Tensor, optional
        ``[B]`` relative lengths (1.0 = whole signal).
    threshold_db : float
        Soft threshold of the loss (-30 dB).
    active_eps : float
        A target is silent when its energy is at most ``active_eps`` times the mixture energy.

    Example
    -------
    >>> s = torch.ones(1, 10, 1)
    >>> pairwise_log_mse(s, s).shape  # perfect estimate: 10·log10(1e-3·10) = -20 dB
    torch.Size([1, 1, 1])
    >>> round(pairwise_log_mse(s, s).item(), 4)
    -20.0
    """
    if estimates.shape != targets.shape:
        raise ValueError(f"estimates {tuple(estimates.shape)} and targets {tuple(targets.shape)} differ in shape.")
    batch, num_samples, _ = targets.shape
    mask = time_mask(lengths, num_samples, batch, targets.device)
    if mixture is None:
        mixture = targets.sum(-1)
    mix_energy = _energy(mixture.unsqueeze(-1), mask)  # [B, 1]
    target_energy = _energy(targets, mask)  # [B, C]
    active = target_energy > active_eps * mix_energy
    reference_energy = torch.where(active, target_energy, mix_energy.expand_as(target_energy))
    tau = 10 ** (threshold_db / 10) * reference_energy  # [B, C]
    difference = targets.unsqueeze(-1) - estimates.unsqueeze(-2)  # [B, T, C_target, C_estimate]
    error = (difference.pow(2) * mask.unsqueeze(-1)).sum(1)  # [B, C_target, C_estimate]
    # A tiny floor keeps log10 finite when the mixture itself is all zeros (e.g. a padded batch entry).
    return 10 * torch.log10(error + tau.unsqueeze(-1) + torch.finfo(error.dtype).tiny)


def permutation_invariant_log_mse(
    estimates, targets, mixture=None, lengths=None, threshold_db=-30.0, return_permutation=False
):
    """Per-mixture loss ``[B]``: mean pair log-MSE under the best output-to-target assignment.

    With ``return_permutation=True`` also returns ``[B, C]`` indices: target ``j`` is matched with estimate
    ``perm[b, j]``.

    Example
    -------
    >>> targets = torch.stack([torch.ones(8), torch.zeros(8)], -1)[None]
    >>> estimates = targets.flip(-1)  # outputs swapped: PIT recovers the perfect assignment
    >>> loss, perm = permutation_invariant_log_mse(estimates, targets, return_permutation=True)
    >>> perm.tolist()
    [[1, 0]]
    >>> round(loss.item(), 3)  # both pairs perfect: τ = 1e-3·8 for the active and the silent target
    -20.969
    """
    pairs = pairwise_log_mse(estimates, targets, mixture, lengths, threshold_db)
    num = pairs.shape[-1]
    permutations = torch.tensor(list(itertools.permutations(range(num))), device=pairs.device)  # [P, C]
    targets_index = torch.arange(num, device=pairs.device)
    # pairs[:, j, perm[j]] for every permutation -> [B, P, C]
    per_permutation = pairs[:, targets_index[None, :], permutations]
    scores = per_permutation.mean(-1)
    loss, best = scores.min(-1)
    if return_permutation:
        return loss, permutations[best]
    return loss


class PITLogMSE(torch.nn.Module):
    """Module form of :func:`permutation_invariant_log_mse` (for YAML: ``!new:spgm_lobes.losses.log_mse.PITLogMSE``).

    Example
    -------
    >>> loss = PITLogMSE(threshold_db=-30.0)
    >>> loss(torch.randn(2, 16, 4), torch.randn(2, 16, 4)).shape
    torch.Size([2])
    """

    def __init__(self, threshold_db=-30.0):
        super().__init__()
        self.threshold_db = threshold_db

    def forward(self, estimates, targets, mixture=None, lengths=None):
        """Per-mixture loss ``[B]`` (see :func:`permutation_invariant_log_mse`)."""
        return permutation_invariant_log_mse(estimates, targets, mixture, lengths, self.threshold_db)
