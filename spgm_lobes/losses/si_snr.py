"""Utterance-level permutation-invariant SI-SNR loss that ignores padding.

SpeechBrain's ``get_si_snr_with_pitwrapper`` scores the whole padded tensor, so
the zeros that pad the shorter utterances of a batch enter both the signal
statistics and the loss. Here every utterance is scored on its own samples
only, with SpeechBrain's loss, so a padded batch gives exactly the losses of its
utterances computed one by one.
"""

import torch
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper


def valid_samples(lengths, max_len):
    """Number of valid samples of each utterance from SpeechBrain relative
    lengths (``1.0`` = the longest of the batch).

    Example
    -------
    >>> valid_samples(torch.tensor([1.0, 0.5]), 8).tolist()
    [8, 4]
    """
    if lengths is None:
        return None
    return torch.round(lengths.float() * max_len).long().clamp(1, max_len)


def pit_si_snr_loss(est_source, targets, lengths=None):
    """Negative SI-SNR (dB) of each utterance under its best permutation.

    Arguments
    ---------
    est_source : torch.Tensor
        Estimates ``[B, T, C]``.
    targets : torch.Tensor
        References ``[B, T, C]``.
    lengths : torch.Tensor, optional
        Relative lengths ``[B]`` (SpeechBrain convention); ``None`` = no padding.

    Returns
    -------
    torch.Tensor
        ``[B]`` losses (lower is better).

    Example
    -------
    >>> refs = torch.randn(2, 800, 2)
    >>> est = refs.flip(-1) + 0.01 * torch.randn(2, 800, 2)
    >>> (pit_si_snr_loss(est, refs) < -30).all().item()
    True
    """
    if lengths is None:
        return get_si_snr_with_pitwrapper(targets, est_source).view(-1)
    n = valid_samples(lengths, targets.shape[1])
    losses = [
        get_si_snr_with_pitwrapper(targets[i : i + 1, : n[i]], est_source[i : i + 1, : n[i]]).view(())
        for i in range(targets.shape[0])
    ]
    return torch.stack(losses)


def threshold_loss(losses, threshold=-30.0):
    """Mean of the per-utterance losses that are above ``threshold`` (SI-SNR
    clipped at ``-threshold`` dB): utterances already separated better than that
    no longer drive training. Returns ``None`` when no utterance is left.

    Example
    -------
    >>> threshold_loss(torch.tensor([-35.0, -10.0, -20.0])).item()
    -15.0
    >>> threshold_loss(torch.tensor([-40.0])) is None
    True
    """
    kept = losses[losses > threshold]
    if kept.numel() == 0:
        return None
    return kept.mean()
