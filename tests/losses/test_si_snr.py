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
    losses = torch.tensor([-40.0, -31.0, -29.0, -5.0], requires_grad=True)
    loss, kept = threshold_loss(losses, -30)
    assert loss.item() == pytest.approx(-17.0) and kept.item()
    loss.backward()
    assert losses.grad.tolist() == [0.0, 0.0, 0.5, 0.5]  # only the kept utterances drive training
    loss, kept = threshold_loss(torch.tensor([-35.0, -31.0]), -30)
    assert loss.item() == 0.0 and not kept.item()


def test_batched_loss_equals_speechbrain_pit_wrapper():
    """Unpadded batches: the batched computation gives SpeechBrain's PIT SI-SNR, 2 and 3 sources."""
    from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

    torch.manual_seed(0)
    for sources in (2, 3):
        refs = torch.randn(4, 600, sources)
        for est in (refs[..., torch.randperm(sources)] + 0.3 * torch.randn_like(refs), torch.randn_like(refs)):
            expected = get_si_snr_with_pitwrapper(refs, est.clone())
            assert torch.allclose(pit_si_snr_loss(est, refs), expected, atol=1e-4)
            assert torch.allclose(pit_si_snr_loss(est, refs, torch.ones(4)), expected, atol=1e-4)


def test_permutation_min_picks_the_best_assignment():
    from spgm_lobes.losses.si_snr import permutation_min

    matrix = torch.tensor([[[0.0, 5.0, 5.0], [5.0, 5.0, 0.0], [5.0, 0.0, 5.0]]])  # ref i -> est (0, 2, 1)
    loss, index = permutation_min(matrix)
    assert loss.item() == 0.0 and index.item() == 1  # permutations(range(3))[1] == (0, 2, 1)


def test_batched_loss_has_gradients():
    refs = torch.randn(2, 400, 2)
    est = torch.randn(2, 400, 2, requires_grad=True)
    pit_si_snr_loss(est, refs).mean().backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
