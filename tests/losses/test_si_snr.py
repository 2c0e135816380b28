import pytest
import torch

from spgm_lobes.losses import pit_si_snr_loss, threshold_loss


def test_padded_batch_equals_one_by_one():
    lengths_samples = [800, 530, 611]
    T = max(lengths_samples)
    refs = torch.zeros(3, T, 2)
    est = torch.zeros(3, T, 2)
    singles = []
    for i, n in enumerate(lengths_samples):
        r, e = torch.randn(n, 2), torch.randn(n, 2)
        refs[i, :n], est[i, :n] = r, e
        est[i, n:] = 5.0  # garbage in the padding must not matter
        singles.append(pit_si_snr_loss(e[None], r[None])[0])
    lengths = torch.tensor(lengths_samples, dtype=torch.float) / T
    torch.testing.assert_close(pit_si_snr_loss(est, refs, lengths), torch.stack(singles))


def test_padding_changes_the_unmasked_loss():
    # Sanity check of the test above: without lengths, the padding does count.
    refs, est = torch.randn(1, 800, 2), torch.randn(1, 800, 2)
    padded_refs = torch.cat([refs, torch.zeros(1, 400, 2)], 1)
    padded_est = torch.cat([est, torch.ones(1, 400, 2)], 1)
    assert not torch.allclose(pit_si_snr_loss(padded_est, padded_refs), pit_si_snr_loss(est, refs))


def test_permutation_invariance():
    refs = torch.randn(2, 500, 3)
    est = refs + 0.1 * torch.randn(2, 500, 3)
    torch.testing.assert_close(pit_si_snr_loss(est[..., [2, 0, 1]], refs), pit_si_snr_loss(est, refs))


def test_threshold_keeps_only_utterances_above():
    losses = torch.tensor([-40.0, -31.0, -29.0, -5.0])
    assert threshold_loss(losses, -30).item() == pytest.approx(-17.0)
    assert threshold_loss(torch.tensor([-35.0, -31.0]), -30) is None
