"""Per-utterance separation metrics: SI-SNR, SDR and their improvements.

SI-SNR uses SpeechBrain's permutation-invariant loss; SDR is BSS-eval's SDR
(512-tap distortion filter) from ``torchmetrics`` under the best permutation,
which matches ``mir_eval.separation.bss_eval_sources`` (deprecated in
mir_eval 0.8) to about 0.01 dB. Both are computed on the valid samples of one
utterance, so results do not depend on batching.
"""

import itertools

from speechbrain.nnet.losses import get_si_snr_with_pitwrapper
from torchmetrics.functional.audio import permutation_invariant_training, signal_distortion_ratio

from ..losses.si_snr import pairwise_neg_si_snr, permutation_min

METRIC_COLUMNS = ("sdr", "sdr_i", "si-snr", "si-snr_i")


def si_snr_pit(est, refs):
    """SI-SNR (dB) of estimates ``[T, C]`` against references ``[T, C]`` under
    the best permutation, averaged over sources.

    Example
    -------
    >>> refs = torch.randn(800, 2)
    >>> round(si_snr_pit(2 * refs, refs), 1) > 80
    True
    """
    return -get_si_snr_with_pitwrapper(refs.unsqueeze(0).float(), est.unsqueeze(0).float()).item()


def si_snr_per_source(est, refs):
    """SI-SNR (dB) of each source under the best permutation (the one :func:`si_snr_pit` averages), and that
    permutation: estimates ``[T, C]``, references ``[T, C]`` -> (``[C]`` list of floats, ``order``) where
    ``est[:, order[i]]`` is matched to ``refs[:, i]``.

    Example
    -------
    >>> refs = torch.randn(800, 2)
    >>> est = refs.flip(-1) + torch.stack([0.01 * torch.randn(800), 0.1 * torch.randn(800)], -1)
    >>> scores, order = si_snr_per_source(est, refs)
    >>> order, scores[0] < scores[1], abs(sum(scores) / 2 - si_snr_pit(est, refs)) < 1e-3
    ((1, 0), True, True)
    """
    pairs = -pairwise_neg_si_snr(est[None].float(), refs[None].float())[0]  # [reference, estimate]
    _, index = permutation_min(-pairs[None])
    order = list(itertools.permutations(range(pairs.shape[0])))[int(index)]
    return [float(pairs[i, j]) for i, j in enumerate(order)], order


def sdr_bss_eval(est, refs):
    """BSS-eval SDR (dB) of estimates ``[T, C]`` against references ``[T, C]``
    under the best permutation, averaged over sources.

    Example
    -------
    >>> refs = torch.randn(4000, 2)
    >>> round(sdr_bss_eval(refs.flip(-1) + 0.1 * torch.randn(4000, 2), refs)) in (19, 20, 21)
    True
    """
    preds = est.detach().double().T.unsqueeze(0)
    target = refs.detach().double().T.unsqueeze(0)
    best, _ = permutation_invariant_training(
        preds, target, signal_distortion_ratio, mode="speaker-wise", eval_func="max"
    )
    return float(best)


def separation_metrics(est, refs, mix):
    """SDR, SDRi, SI-SNR and SI-SNRi of one utterance.

    Arguments
    ---------
    est : torch.Tensor
        Estimates ``[T, C]``.
    refs : torch.Tensor
        References ``[T, C]``.
    mix : torch.Tensor
        Mixture ``[T]`` (the baseline of the improvements).

    Example
    -------
    >>> refs = torch.randn(4000, 2)
    >>> mix = refs.sum(-1)
    >>> m = separation_metrics(refs + 0.1 * torch.randn(4000, 2), refs, mix)
    >>> sorted(m), m["si-snr_i"] > 10
    (['sdr', 'sdr_i', 'si-snr', 'si-snr_i'], True)
    """
    baseline = mix.unsqueeze(-1).expand_as(refs)
    sisnr = si_snr_pit(est, refs)
    sisnr_mix = si_snr_pit(baseline, refs)
    sdr = sdr_bss_eval(est, refs)
    sdr_mix = sdr_bss_eval(baseline, refs)
    return {"sdr": sdr, "sdr_i": sdr - sdr_mix, "si-snr": sisnr, "si-snr_i": sisnr - sisnr_mix}
