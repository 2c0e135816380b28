import torch

from spgm_lobes.metrics import sdr_bss_eval, separation_metrics, si_snr_pit


def test_perfect_estimates_beat_the_mixture():
    refs = torch.randn(4000, 2)
    m = separation_metrics(refs.flip(-1) * 3.0, refs, refs.sum(-1))
    assert m["si-snr"] > 60 and m["si-snr_i"] > 55
    assert m["sdr"] > 40 and m["sdr_i"] > 35


def test_improvements_are_relative_to_the_mixture():
    refs = torch.randn(4000, 2)
    mix = refs.sum(-1)
    est = mix.unsqueeze(-1).repeat(1, 2)
    m = separation_metrics(est, refs, mix)
    assert abs(m["si-snr_i"]) < 1e-4 and abs(m["sdr_i"]) < 1e-4


def test_sdr_is_permutation_invariant():
    refs = torch.randn(3000, 2)
    est = refs + 0.2 * torch.randn(3000, 2)
    assert abs(sdr_bss_eval(est, refs) - sdr_bss_eval(est.flip(-1), refs)) < 1e-6
    assert abs(si_snr_pit(est, refs) - si_snr_pit(est.flip(-1), refs)) < 1e-4
