"""Per-utterance separation metrics: SI-SNR, SDR and their improvements, per source and averaged.

SI-SNR is SpeechBrain's formula (:func:`spgm_lobes.losses.si_snr.pairwise_neg_si_snr`)
under the permutation with the best mean; SDR is BSS-eval's SDR (512-tap
distortion filter) from ``torchmetrics`` under the permutation with the best
mean SDR. ``mir_eval.separation.bss_eval_sources`` (deprecated in mir_eval 0.8)
picks the permutation with the best mean SIR instead; the SDRs match to about
0.01 dB whenever the two choose the same one, which can differ only for very
poor separations (mean SDR around 0 dB). Both are computed on the valid samples of one utterance, so
results do not depend on batching. :func:`separation_metrics` (the columns of
``test_results.csv``) is the mean over sources of :func:`per_source_metrics`.
"""

import itertools

import torch
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper
from torchmetrics.functional.audio import signal_distortion_ratio

from ..losses.si_snr import pairwise_neg_si_snr, permutation_min

METRIC_COLUMNS = ("sdr", "sdr_i", "si-snr", "si-snr_i")


def _best_permutation(score_matrix):
    """``(mean score, permutation)`` of the assignment with the highest mean score of a ``[C, C]``
    (reference, estimate) matrix: ``permutation[i]`` is the estimate matched with reference ``i``.

    A NaN score (the SDR of a silent reference, which is undefined) counts as 0 in the choice, the same for
    every permutation, and makes the mean NaN."""
    _, index = permutation_min(-torch.nan_to_num(score_matrix, nan=0.0).unsqueeze(0))
    C = score_matrix.shape[-1]
    order = next(itertools.islice(itertools.permutations(range(C)), int(index), None))
    return sum(float(score_matrix[i, j]) for i, j in enumerate(order)) / C, order


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
    _, order = _best_permutation(pairs)
    return [float(pairs[i, j]) for i, j in enumerate(order)], order


def _sdr_pairs(est, refs):
    """BSS-eval SDR (dB, float64) of ``est[:, k]`` against ``refs[:, k]`` for every ``k``: ``[T, K]`` x 2 -> ``[K]``.

    One pair per call: a batched call (twice as fast on a CPU) solves its distortion filters with a batched
    float64 ``torch.linalg.solve``, which in the MKL build of torch 2.14 fails ("Intel oneMKL ERROR: Parameter 6
    was incorrect on entry to DLASWP", then hangs) once ``torch.set_num_threads(n >= 2)`` has been called, as the
    quickstart does.

    A silent (all-zero) reference gives NaN, as BSS-eval leaves it undefined (``mir_eval`` refuses it)."""
    est, refs = est.detach().double(), refs.detach().double()
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    return torch.stack(  # a silent reference has no SDR (its distortion filter is singular): NaN
        [signal_distortion_ratio(est[:, k], refs[:, k]) if refs[:, k].any() else nan for k in range(est.shape[1])]
    )


def _all_pairs(est, refs):
    """Columns of every (reference ``i``, estimate ``j``) pair, ``i * C + j``: two ``[T, C * C]`` tensors."""
    C = refs.shape[1]
    return est.repeat(1, C), refs.repeat_interleave(C, dim=1)


def sdr_bss_eval(est, refs):
    """BSS-eval SDR (dB) of estimates ``[T, C]`` against references ``[T, C]``
    under the best permutation, averaged over sources.

    Example
    -------
    >>> refs = torch.randn(4000, 2)
    >>> round(sdr_bss_eval(refs.flip(-1) + 0.1 * torch.randn(4000, 2), refs)) in (19, 20, 21)
    True
    """
    return _best_permutation(_sdr_pairs(*_all_pairs(est, refs)).view(refs.shape[1], -1))[0]


def per_source_metrics(est, refs, mix):
    """SDR, SDRi, SI-SNR and SI-SNRi of each reference and the estimate matched with it.

    Arguments
    ---------
    est : torch.Tensor
        Estimates ``[T, C]`` in any order.
    refs : torch.Tensor
        References ``[T, C]``.
    mix : torch.Tensor
        Mixture ``[T]`` (the baseline of the improvements).

    Returns
    -------
    dict
        ``sdr``, ``sdr_i``, ``si-snr``, ``si-snr_i``: lists of ``C`` floats in reference order;
        ``order``: the estimate matched with each reference (SI-SNR's best permutation,
        :func:`si_snr_per_source`); ``sdr_order``: the same for SDR, which picks its own best
        permutation as BSS-eval does (it differs from ``order`` only for poor separations).

    Example
    -------
    >>> refs = torch.randn(4000, 2)
    >>> m = per_source_metrics(refs.flip(-1) + 0.1 * torch.randn(4000, 2), refs, refs.sum(-1))
    >>> m["order"], m["sdr_order"], [round(v) for v in m["si-snr"]]
    ((1, 0), (1, 0), [20, 20])
    """
    C = refs.shape[1]
    mix = mix.reshape(-1, 1).expand(-1, C)
    si_snr, order = si_snr_per_source(est, refs)
    si_snr_mix, _ = si_snr_per_source(mix, refs)  # every column is the mixture: reference i against it
    # every (reference, estimate) pair and the mixture against each reference
    pairs_est, pairs_ref = _all_pairs(est, refs)
    sdr_all = _sdr_pairs(torch.cat([pairs_est, mix], 1), torch.cat([pairs_ref, refs], 1))
    sdr_matrix, sdr_mix = sdr_all[: C * C].view(C, C), sdr_all[C * C :].tolist()
    _, sdr_order = _best_permutation(sdr_matrix)
    sdr = [sdr_matrix[i, sdr_order[i]].item() for i in range(C)]
    return {
        "sdr": sdr,
        "sdr_i": [s - m for s, m in zip(sdr, sdr_mix)],
        "si-snr": si_snr,
        "si-snr_i": [s - m for s, m in zip(si_snr, si_snr_mix)],
        "order": order,
        "sdr_order": sdr_order,
    }


def separation_metrics(est, refs, mix):
    """SDR, SDRi, SI-SNR and SI-SNRi of one utterance: the means over sources of :func:`per_source_metrics`.

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
    per_source = per_source_metrics(est, refs, mix)
    return {key: sum(per_source[key]) / len(per_source[key]) for key in METRIC_COLUMNS}
