"""Loudness rules of LibriMix (Cosentino et al., 2020), shared by mixture creation and dynamic mixing.

Each speech source is normalised with pyloudnorm (ITU-R BS.1770 integrated loudness) to a
target drawn uniformly in [-33, -25] LUFS, the noise to a target 5 LU lower ([-38, -30] LUFS).
A source that would clip after normalisation is instead peak-normalised to 0.9, and when the
sum of all parts (in ``max`` length mode) peaks above 0.9 every part is rescaled by the same
factor, so the relative levels are kept.

Everything here works on 1-D numpy arrays at one sample rate; the gains it returns are linear
factors, as in LibriMix's metadata files (``source_1_gain``, ..., ``noise_gain``).
"""

import math
import warnings

import numpy as np
import pyloudnorm

MIN_LOUDNESS = -33.0
MAX_LOUDNESS = -25.0
NOISE_LOUDNESS_OFFSET = -5.0
MAX_AMPLITUDE = 0.9
LOUDNESS_BLOCK_SECONDS = 0.4


def measure_loudness(signal, sample_rate):
    """Integrated loudness (LUFS) of a 1-D signal, measured with pyloudnorm.

    Returns ``-inf`` for a silent signal.

    Arguments
    ---------
    signal : numpy.ndarray
        Mono signal ``[time]``.
    sample_rate : int
        Sample rate in Hz.

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> tone = 0.1 * np.sin(2 * np.pi * 1000 * t)
    >>> round(measure_loudness(tone, 16000), 1)
    -23.1
    """
    signal = np.asarray(signal, dtype=np.float64)
    if signal.ndim != 1:
        raise ValueError(f"measure_loudness expects a 1-D signal, got shape {signal.shape}")
    min_len = math.ceil(LOUDNESS_BLOCK_SECONDS * sample_rate)
    if signal.shape[0] < min_len:
        raise ValueError(
            f"Signal of {signal.shape[0]} samples is shorter than pyloudnorm's {LOUDNESS_BLOCK_SECONDS} s block "
            f"({min_len} samples at {sample_rate} Hz)"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pyloudnorm.Meter(sample_rate).integrated_loudness(signal))


def draw_target_loudness(rng, noise=False):
    """Target loudness (LUFS) drawn uniformly in LibriMix's range (5 LU lower for noise).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> MIN_LOUDNESS <= draw_target_loudness(rng) <= MAX_LOUDNESS
    True
    >>> draw_target_loudness(rng, noise=True) <= MAX_LOUDNESS + NOISE_LOUDNESS_OFFSET
    True
    """
    offset = NOISE_LOUDNESS_OFFSET if noise else 0.0
    return float(rng.uniform(MIN_LOUDNESS + offset, MAX_LOUDNESS + offset))


def loudness_gain(loudness, target):
    """Linear gain that moves a signal from ``loudness`` to ``target`` LUFS.

    Example
    -------
    >>> round(loudness_gain(-20.0, -26.0), 4)
    0.5012
    """
    if not math.isfinite(loudness):
        raise ValueError(f"Cannot normalise a signal of loudness {loudness} LUFS (silent?)")
    return 10.0 ** ((target - loudness) / 20.0)


def clipping_weight(parts, max_amplitude=MAX_AMPLITUDE):
    """Common factor (<= 1) that keeps the peak of ``sum(parts)`` at or below ``max_amplitude``.

    Arguments
    ---------
    parts : list of numpy.ndarray
        Scaled parts of one mixture, all of the same length.

    Example
    -------
    >>> clipping_weight([np.array([0.5, -0.2]), np.array([0.7, 0.1])])
    0.75
    >>> clipping_weight([np.array([0.1]), np.array([0.2])])
    1.0
    """
    peak = float(np.max(np.abs(np.sum(np.stack(parts), axis=0))))
    return max_amplitude / peak if peak > max_amplitude else 1.0


def librimix_gains(sources, sample_rate, rng, noise=None, names=None):
    """Draw LibriMix gains for the sources (and noise) of one mixture.

    Sources and noise must have the same length (LibriMix pads the sources to the longest one and
    cuts or extends the noise to that length before measuring). Targets are drawn from ``rng`` in
    order: source 1, ..., source n, noise.

    Arguments
    ---------
    sources : list of numpy.ndarray
        Speech sources ``[time]``, same length.
    sample_rate : int
        Sample rate of the signals.
    rng : numpy.random.Generator
        Random generator (draws the target loudness).
    noise : numpy.ndarray, optional
        Noise ``[time]``.
    names : list of str, optional
        One name per part (files), used in error messages.

    Returns
    -------
    gains : list of float
        Linear gain of each source, then of the noise when given.
    targets : list of float
        Drawn target loudness of each part (LUFS), before the clipping guard.
    weight : float
        Clipping-guard factor included in the gains (1.0 when the mixture did not clip).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(8000) / 8000
    >>> s1, s2 = np.sin(2 * np.pi * 440 * t), 0.1 * np.sin(2 * np.pi * 300 * t)
    >>> gains, targets, weight = librimix_gains([s1, s2], 8000, rng)
    >>> len(gains), weight
    (2, 1.0)
    """
    parts = list(sources) + ([noise] if noise is not None else [])
    names = names or [f"source {i + 1}" for i in range(len(sources))] + (["noise"] if noise is not None else [])
    if len(names) != len(parts):
        raise ValueError(f"Got {len(names)} names for {len(parts)} parts (sources, then noise)")
    lengths = {len(p) for p in parts}
    if len(lengths) != 1:
        raise ValueError(f"All parts must have the same length to draw gains, got lengths {sorted(lengths)}")
    gains, targets = [], []
    for i, (part, name) in enumerate(zip(parts, names)):
        part = np.asarray(part, dtype=np.float64)
        loudness = measure_loudness(part, sample_rate)
        target = draw_target_loudness(rng, noise=noise is not None and i == len(parts) - 1)
        if not math.isfinite(loudness):
            raise ValueError(f"{name} is silent (loudness {loudness} LUFS); cannot normalise its loudness")
        gain = loudness_gain(loudness, target)
        peak = float(np.max(np.abs(part)))
        if peak * gain >= 1.0:
            # LibriMix: a source that would clip is peak-normalised to MAX_AMPLITUDE instead.
            gain = MAX_AMPLITUDE / peak
        gains.append(gain)
        targets.append(target)
    weight = clipping_weight([np.asarray(p, dtype=np.float64) * g for p, g in zip(parts, gains)])
    return [g * weight for g in gains], targets, weight


def fit_length(signals, mode):
    """Cut (``min``) or zero-pad (``max``) signals to a common length.

    Example
    -------
    >>> [len(s) for s in fit_length([np.ones(3), np.ones(5)], "min")]
    [3, 3]
    >>> [len(s) for s in fit_length([np.ones(3), np.ones(5)], "max")]
    [5, 5]
    """
    if mode == "min":
        length = min(len(s) for s in signals)
        return [s[:length] for s in signals]
    if mode == "max":
        length = max(len(s) for s in signals)
        return [np.pad(s, (0, length - len(s))) for s in signals]
    raise ValueError(f"Unknown length mode {mode!r}; use 'min' or 'max'")


def extend_noise(noise, length, crossfade):
    """Repeat ``noise`` up to ``length`` samples with raised-cosine crossfades of ``crossfade`` samples.

    Example
    -------
    >>> extend_noise(np.ones(10), 25, crossfade=4).shape
    (25,)
    >>> bool(np.allclose(extend_noise(np.ones(10), 25, crossfade=4), 1.0))
    True
    """
    noise = np.asarray(noise)
    if len(noise) >= length:
        return noise[:length]
    crossfade = min(crossfade, len(noise) // 2)
    if crossfade == 0:
        return np.resize(noise, length)
    fade_in = 0.5 - 0.5 * np.cos(np.pi * (np.arange(crossfade) + 0.5) / crossfade)
    out = noise.astype(np.float64)
    while len(out) < length:
        overlap = out[-crossfade:] * fade_in[::-1] + noise[:crossfade] * fade_in
        out = np.concatenate([out[:-crossfade], overlap, noise[crossfade:]])
    return out[:length].astype(noise.dtype)
