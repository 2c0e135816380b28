"""Utterance-level permutation-invariant SI-SNR loss that ignores padding.

SpeechBrain's ``get_si_snr_with_pitwrapper`` scores the whole padded tensor, so
the zeros that pad the shorter utterances of a batch enter both the signal
statistics and the loss. Here every utterance is scored on its own samples
only, with SpeechBrain's loss, so a padded batch gives exactly the losses of its
utterances computed one by one.
"""

import itertools

import torch


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


EPS = 1e-8  # SpeechBrain's cal_si_snr constant


def pairwise_neg_si_snr(est_source, targets, mask=None):
    """Negative SI-SNR (dB) of every (reference ``i``, estimate ``j``) pair:
    ``[B, T, C]`` x 2 -> ``[B, C, C]``.

    SpeechBrain's ``cal_si_snr`` formula (zero mean, ``EPS`` in the same
    places) for all pairs in one batched computation: no Python loop, no host
    synchronisation (it can run inside a CUDA graph). With a ``[B, T, 1]``
    ``mask`` of valid samples (1) and padding (0), each utterance is scored on
    its valid samples only: means and sums run over them, padding contributes
    nothing.

    Example
    -------
    >>> refs = torch.randn(1, 800, 2)
    >>> m = pairwise_neg_si_snr(refs.flip(-1), refs)
    >>> bool(m[0, 0, 1] < -100) and bool(m[0, 0, 0] > 0)
    True
    """
    if mask is None:
        s = targets - targets.mean(dim=1, keepdim=True)  # [B, T, C]
        e = est_source - est_source.mean(dim=1, keepdim=True)
    else:
        count = mask.sum(dim=1, keepdim=True)
        s = (targets - (targets * mask).sum(dim=1, keepdim=True) / count) * mask
        e = (est_source - (est_source * mask).sum(dim=1, keepdim=True) / count) * mask
    s, e = s.unsqueeze(-1), e.unsqueeze(-2)  # reference i on dim 2, estimate j on dim 3
    dot = (s * e).sum(dim=1, keepdim=True)  # [B, 1, C, C]
    proj = dot * s / ((s**2).sum(dim=1, keepdim=True) + EPS)  # [B, T, C, C]
    ratio = (proj**2).sum(dim=1) / (((e - proj) ** 2).sum(dim=1) + EPS)
    return -10.0 * torch.log10(ratio + EPS)


def permutation_min(loss_matrix):
    """Smallest mean loss over the assignments of estimates to references:
    ``[B, C, C]`` (reference, estimate) -> ``[B]`` losses and ``[B]`` indices into
    ``itertools.permutations(range(C))``. Tensor operations only (no host sync).

    Example
    -------
    >>> loss, index = permutation_min(torch.tensor([[[1.0, -3.0], [-5.0, 2.0]]]))
    >>> loss.tolist(), index.tolist()
    ([-4.0], [1])
    """
    C = loss_matrix.shape[-1]
    # integer indexing only: no index tensor copied to the device (CUDA-graph safe)
    per_perm = [sum(loss_matrix[:, i, j] for i, j in enumerate(p)) / C for p in itertools.permutations(range(C))]
    return torch.stack(per_perm, dim=-1).min(dim=-1)


def pit_si_snr_loss(est_source, targets, lengths=None):
    """Negative SI-SNR (dB) of each utterance under its best permutation.

    One batched, synchronisation-free computation (:func:`pairwise_neg_si_snr`,
    SpeechBrain's formula); with ``lengths``, each utterance is scored on its
    valid samples only, so a padded batch gives the losses of its utterances
    computed one by one with SpeechBrain's ``get_si_snr_with_pitwrapper``.

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
    >>> padded = pit_si_snr_loss(est, refs, torch.tensor([1.0, 0.5]))
    >>> from speechbrain.nnet.losses import get_si_snr_with_pitwrapper
    >>> one = get_si_snr_with_pitwrapper(refs[1:, :400], est[1:, :400]).view(())
    >>> torch.allclose(padded[1], one, atol=1e-4)
    True
    """
    mask = None
    if lengths is not None:
        n = valid_samples(lengths, targets.shape[1])
        mask = (torch.arange(targets.shape[1], device=n.device) < n[:, None]).unsqueeze(-1).to(targets.dtype)
    return permutation_min(pairwise_neg_si_snr(est_source, targets, mask))[0]


def threshold_loss(losses, threshold=-30.0):
    """Mean of the per-utterance losses that are above ``threshold`` (SI-SNR
    clipped at ``-threshold`` dB): utterances already separated better than that
    no longer drive training. Returns the loss and whether any utterance is
    left (a boolean tensor; when none is, the loss is 0 with no gradient). No
    host synchronisation.

    Example
    -------
    >>> loss, kept = threshold_loss(torch.tensor([-35.0, -10.0, -20.0]))
    >>> loss.item(), kept.item()
    (-15.0, True)
    >>> [x.item() for x in threshold_loss(torch.tensor([-40.0]))]
    [0.0, False]
    """
    keep = losses > threshold
    count = keep.sum()
    return torch.where(keep, losses, torch.zeros_like(losses)).sum() / count.clamp_min(1), count > 0
