"""Tests of the LibriMix loudness rules."""

import numpy as np
import pytest

from spgm_lobes.dsp.loudness import (
    MAX_AMPLITUDE,
    MAX_LOUDNESS,
    MIN_LOUDNESS,
    clipping_weight,
    extend_noise,
    librimix_gains,
    measure_loudness,
)

RATE = 8000


def _speechlike(rng, seconds=1.0, amp=0.1):
    t = np.arange(int(seconds * RATE)) / RATE
    return amp * np.sin(2 * np.pi * rng.uniform(100, 400) * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2


def test_gains_reach_drawn_targets():
    rng = np.random.default_rng(1)
    sources = [_speechlike(rng, amp=a) for a in (0.01, 0.5)]
    noise = 0.05 * rng.standard_normal(RATE)
    gains, targets, weight = librimix_gains(sources, RATE, np.random.default_rng(3), noise=noise)
    assert weight == 1.0
    for part, gain, target in zip(sources + [noise], gains, targets):
        assert measure_loudness(part * gain, RATE) == pytest.approx(target, abs=0.05)
    assert all(MIN_LOUDNESS <= t <= MAX_LOUDNESS for t in targets[:2])
    assert MIN_LOUDNESS - 5 <= targets[2] <= MAX_LOUDNESS - 5


def test_clipping_guard_rescales_all_parts():
    # Very peaky sources (clicks) have a low loudness but a high peak once normalised.
    clicks = np.zeros(RATE)
    clicks[::400] = 1.0
    gains, targets, weight = librimix_gains([clicks, clicks.copy()], RATE, np.random.default_rng(0))
    assert weight < 1.0
    mix = clicks * gains[0] + clicks * gains[1]
    assert np.max(np.abs(mix)) == pytest.approx(MAX_AMPLITUDE)
    assert clipping_weight([clicks * g for g in gains]) == 1.0


def test_too_short_or_silent_is_a_clear_error():
    with pytest.raises(ValueError, match="shorter than"):
        measure_loudness(np.ones(100), RATE)
    with pytest.raises(ValueError, match="silent"):
        librimix_gains([np.zeros(RATE), np.ones(RATE)], RATE, np.random.default_rng(0), names=["a.flac", "b.flac"])


def test_extend_noise_keeps_level():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(3000)
    out = extend_noise(noise, 10000, crossfade=500)
    assert out.shape == (10000,)
    np.testing.assert_array_equal(out[:2500], noise[:2500])
    assert np.std(out) == pytest.approx(np.std(noise), rel=0.15)
