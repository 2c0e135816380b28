"""Tests of the GASS evaluation metrics (spgm_lobes.metrics.gass)."""

import math

import pytest
import torch

from spgm_lobes.metrics.gass import gass_scores, si_snr, summarize_by_count


def test_si_snr_known_value():
    source = torch.tensor([1.0, -1.0, 1.0, -1.0])
    noise = torch.tensor([1.0, 1.0, -1.0, -1.0])  # orthogonal, zero mean
    assert si_snr(source + 0.5 * noise, source).item() == pytest.approx(20 * math.log10(2), abs=1e-4)
    assert si_snr(3 * source, source).item() > 60  # scale invariant


def test_scores_active_improvement_and_silent_energy():
    torch.manual_seed(0)
    refs = torch.randn(400, 4)
    refs[:, 2:] = 0
    mixture = refs.sum(-1)
    ests = refs.clone()
    ests[:, 0] += 0.1 * refs[:, 1]
    ests[:, 3] = 0.1 * mixture  # -20 dB leakage on a silent output
    ests[:, 2] = 0.01 * mixture  # -40 dB
    scores = gass_scores(ests, refs, mixture)
    assert scores["num_active"] == 2
    expected_sep = (si_snr(ests[:, 0], refs[:, 0]) + si_snr(ests[:, 1], refs[:, 1])).item() / 2
    baseline = (si_snr(mixture, refs[:, 0]) + si_snr(mixture, refs[:, 1])).item() / 2
    assert scores["si-snr"] == pytest.approx(expected_sep, abs=1e-4)
    assert scores["si-snr_i"] == pytest.approx(expected_sep - baseline, abs=1e-4)
    assert scores["silent_energy_db"] == pytest.approx(-30.0, abs=1e-3)


def test_single_source_has_no_improvement_and_full_has_no_silent():
    refs = torch.zeros(100, 4)
    refs[:, 0] = torch.randn(100)
    scores = gass_scores(refs.clone(), refs, refs.sum(-1))
    assert math.isnan(scores["si-snr_i"]) and scores["si-snr"] > 60
    full = torch.randn(100, 4)
    assert math.isnan(gass_scores(full, full, full.sum(-1))["silent_energy_db"])


def test_summary_by_count_ignores_nan():
    rows = [
        {"num_sources": 1, "si-snr": 20.0, "si-snr_i": math.nan},
        {"num_sources": 3, "si-snr": 5.0, "si-snr_i": 8.0},
        {"num_sources": 3, "si-snr": 7.0, "si-snr_i": 10.0},
    ]
    summary = summarize_by_count(rows, metrics=("si-snr", "si-snr_i"))
    assert [s["num_sources"] for s in summary] == [1, 3, "all"]
    assert math.isnan(summary[0]["si-snr_i"])
    assert summary[1] == {"num_sources": 3, "count": 2, "si-snr": 6.0, "si-snr_i": 9.0}
    assert summary[2]["si-snr_i"] == 9.0 and summary[2]["count"] == 3
