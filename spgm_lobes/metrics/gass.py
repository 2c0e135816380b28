"""Evaluation of general audio source separation with a fixed number of outputs and 1-4 active sources.

After matching outputs to references (with the training criterion's permutation), each mixture gets

* ``si-snr`` / ``si-snr_i``: SI-SNR of the active sources and its improvement over the mixture (mean over the
  active sources). For a 1-source mixture the mixture *is* the source, so the improvement is undefined and is NaN;
* ``silent_energy_db``: for references that are all zeros, ``10·log10(‖ŝ‖² / ‖x‖²)``, the energy of the matched
  output relative to the mixture (lower is better; NaN when every reference is active).

:func:`summarize_by_count` averages these per number of sources (NaNs ignored).
"""

import math

import torch


def si_snr(estimate, reference, eps=1e-8):
    """Scale-invariant SNR in dB of ``[..., T]`` signals (zero-mean first).

    Example
    -------
    >>> s = torch.sin(torch.arange(100.0))
    >>> round(si_snr(2 * s, s).item(), 1) > 70
    True
    >>> s, n = torch.tensor([1.0, -1.0, 1.0, -1.0]), torch.tensor([1.0, 1.0, -1.0, -1.0])
    >>> round(si_snr(s + n, s).item(), 3)  # orthogonal noise as loud as the source
    0.0
    """
    estimate = estimate - estimate.mean(-1, keepdim=True)
    reference = reference - reference.mean(-1, keepdim=True)
    scale = (estimate * reference).sum(-1, keepdim=True) / (reference.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * reference
    noise = estimate - projection
    return 10 * torch.log10((projection.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))


def gass_scores(estimates, references, mixture, active_eps=1e-10):
    """Scores of one mixture: ``estimates`` and ``references`` ``[T, C]`` already matched, ``mixture`` ``[T]``.

    Returns a dict with ``si-snr``, ``si-snr_i``, ``silent_energy_db`` (see the module docstring) and
    ``num_active``.

    Example
    -------
    >>> t = torch.arange(800.0)
    >>> refs = torch.stack([torch.sin(0.1 * t), torch.sin(0.37 * t), torch.zeros(800)], -1)
    >>> mix = refs.sum(-1)
    >>> ests = refs + torch.stack([torch.zeros(800), torch.zeros(800), 0.01 * mix], -1)
    >>> scores = gass_scores(ests, refs, mix)
    >>> scores["num_active"], scores["si-snr"] > 70, round(scores["silent_energy_db"], 1)
    (2, True, -40.0)
    """
    mix_energy = mixture.pow(2).sum()
    reference_energy = references.pow(2).sum(0)
    active = reference_energy > active_eps * mix_energy
    num_active = int(active.sum())
    result = {"num_active": num_active, "si-snr": math.nan, "si-snr_i": math.nan, "silent_energy_db": math.nan}
    if num_active:
        est = estimates[:, active].T
        ref = references[:, active].T
        separated = si_snr(est, ref)
        result["si-snr"] = separated.mean().item()
        if num_active > 1:
            baseline = si_snr(mixture.expand_as(ref), ref)
            result["si-snr_i"] = (separated - baseline).mean().item()
    if num_active < references.shape[-1]:
        silent_energy = estimates[:, ~active].pow(2).sum(0)
        ratio = (silent_energy + 1e-12) / (mix_energy + 1e-12)
        result["silent_energy_db"] = (10 * torch.log10(ratio)).mean().item()
    return result


def summarize_by_count(rows, metrics=("si-snr", "si-snr_i", "silent_energy_db")):
    """Means of ``metrics`` per ``num_sources`` (NaNs ignored) plus an ``all`` row.

    Example
    -------
    >>> rows = [{"num_sources": 1, "si-snr": 10.0}, {"num_sources": 2, "si-snr": 4.0}]
    >>> rows.append({"num_sources": 2, "si-snr": 6.0})
    >>> for row in summarize_by_count(rows, metrics=("si-snr",)):
    ...     print(row)
    {'num_sources': 1, 'count': 1, 'si-snr': 10.0}
    {'num_sources': 2, 'count': 2, 'si-snr': 5.0}
    {'num_sources': 'all', 'count': 3, 'si-snr': 6.666666666666667}
    """

    def means(group):
        out = {}
        for metric in metrics:
            values = [float(r[metric]) for r in group if metric in r and not math.isnan(float(r[metric]))]
            out[metric] = sum(values) / len(values) if values else math.nan
        return out

    summary = []
    for count in sorted({int(r["num_sources"]) for r in rows}):
        group = [r for r in rows if int(r["num_sources"]) == count]
        summary.append({"num_sources": count, "count": len(group), **means(group)})
    summary.append({"num_sources": "all", "count": len(rows), **means(rows)})
    return summary
