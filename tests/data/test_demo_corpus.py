"""Tests of the synthetic demo corpus and of its LibriSpeech-layout variant."""

import hashlib

import numpy as np
import pytest
import soundfile as sf

from spgm_lobes.data.demo_corpus import (
    SAMPLE_RATE,
    build_librispeech_corpus,
    generate_demo_corpus,
    make_voices,
    mix_pair,
    synthesize_utterance,
)

TINY = dict(n_speakers=8, utterances_per_speaker=2, n_mixtures={"tr": 4, "cv": 2, "tt": 2}, duration_range=(0.4, 0.6))


def _frame_f0(x, fs=SAMPLE_RATE, fmin=60.0, fmax=400.0):
    """F0 of the voiced 40-ms frames, by normalised autocorrelation."""
    frame, hop = int(0.04 * fs), int(0.01 * fs)
    lags = np.arange(int(fs / fmax), int(fs / fmin) + 1)
    energy = np.array([np.sum(x[i : i + frame] ** 2) for i in range(0, len(x) - frame - lags[-1], hop)])
    f0 = []
    for k, i in enumerate(range(0, len(x) - frame - lags[-1], hop)):
        if energy[k] < 0.01 * energy.max():
            continue
        a = x[i : i + frame]
        corr = np.array([np.dot(a, x[i + lag : i + lag + frame]) for lag in lags])
        corr /= np.sqrt(energy[k] * np.array([np.sum(x[i + lag : i + lag + frame] ** 2) for lag in lags]) + 1e-12)
        best = np.argmax(corr)
        if corr[best] > 0.7:
            f0.append(fs / lags[best])
    return f0


def _spectral_centroid(x, fs=SAMPLE_RATE, n_fft=256):
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[:: n_fft // 2] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    keep = power.sum(axis=1) > 0.1 * power.sum(axis=1).max()
    spectrum = power[keep].mean(axis=0)
    freqs = np.fft.rfftfreq(n_fft, 1 / fs)
    return float((spectrum * freqs).sum() / spectrum.sum())


def test_voices_are_distinct_and_measurable():
    voices = make_voices(6, seed=3)
    features, labels = [], []
    for index, voice in enumerate(voices):
        pitches = []
        for utt in range(3):
            x = synthesize_utterance(voice, 1.5, seed=[3, index, utt])
            frames = _frame_f0(x)
            pitches += frames
            features.append([12 * np.log2(np.median(frames)), _spectral_centroid(x) / 100.0])
            labels.append(index)
        # the measured median pitch is the speaker's register
        assert abs(12 * np.log2(np.median(pitches) / voice.f0_median)) < 1.5, (voice, np.median(pitches))
    features, labels = np.array(features), np.array(labels)
    # nearest-centroid speaker identification, leaving each utterance out
    correct = 0
    for i in range(len(labels)):
        others = np.arange(len(labels)) != i
        centroids = np.array([features[others & (labels == k)].mean(axis=0) for k in range(len(voices))])
        correct += int(np.argmin(((centroids - features[i]) ** 2).sum(axis=1)) == labels[i])
    assert correct / len(labels) >= 0.8
    registers = sorted(v.f0_median for v in voices)
    assert min(np.diff(12 * np.log2(registers))) > 0.5  # stratified pitch registers


def test_utterance_has_pauses_and_unvoiced_parts():
    x = synthesize_utterance(make_voices(1)[0], 3.0, seed=1)
    frames = x[: len(x) // 160 * 160].reshape(-1, 160)
    level = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    assert (level < level.max() - 50).mean() > 0.05  # pauses
    zero_crossings = (np.diff(np.sign(frames), axis=1) != 0).mean(axis=1)
    loud = level > level.max() - 30
    assert (zero_crossings[loud] > 0.3).any() and (zero_crossings[loud] < 0.15).any()  # noise and voiced frames


def _tree_digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_layout_mixtures_and_speaker_split(tmp_path):
    info = generate_demo_corpus(tmp_path, progress=False, **TINY)
    base = tmp_path / "2speakers" / "wav8k" / "min"
    assert info["data_folder"] == tmp_path / "2speakers"
    for split, count in TINY["n_mixtures"].items():
        names = sorted(p.name for p in (base / split / "mix").iterdir())
        assert len(names) == count
        for key in ("s1", "s2"):
            assert sorted(p.name for p in (base / split / key).iterdir()) == names
        for name in names:
            mix, rate = sf.read(base / split / "mix" / name, dtype="int16")
            s1, _ = sf.read(base / split / "s1" / name, dtype="int16")
            s2, _ = sf.read(base / split / "s2" / name, dtype="int16")
            assert rate == SAMPLE_RATE and mix.ndim == 1
            np.testing.assert_array_equal(mix.astype(int), s1.astype(int) + s2.astype(int))
            utt1, gain1, utt2, gain2 = name[:-4].split("_")
            assert utt1[:3] in info["speakers"][split] and utt2[:3] in info["speakers"][split]
            assert utt1[:3] != utt2[:3] and float(gain1) == -float(gain2) and 0 <= float(gain1) <= 2.5
    speakers = [set(info["speakers"][s]) for s in ("tr", "cv", "tt")]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
    for folder, split in (("si_tr_s", "tr"), ("si_dt_05", "cv"), ("si_et_05", "tt")):
        spk_dirs = sorted(p.name for p in (tmp_path / "wsj0" / folder).iterdir())
        assert spk_dirs == info["speakers"][split]
        for spk in spk_dirs:
            assert all(p.stem.startswith(spk) for p in (tmp_path / "wsj0" / folder / spk).glob("*.wav"))
    assert "SYNTHETIC" in (tmp_path / "README.txt").read_text()
    with pytest.raises(FileExistsError):
        generate_demo_corpus(tmp_path, progress=False, **TINY)


def test_determinism(tmp_path):
    generate_demo_corpus(tmp_path / "a", seed=7, progress=False, **TINY)
    generate_demo_corpus(tmp_path / "b", seed=7, progress=False, **TINY)
    generate_demo_corpus(tmp_path / "c", seed=8, progress=False, **TINY)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_relative_level():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(4000) * 0.01, rng.standard_normal(5000) * 0.2
    _, s1, s2 = mix_pair(a, b, 2.0)
    ratio = 10 * np.log10(np.mean(s1.astype(float) ** 2) / np.mean(s2.astype(float) ** 2))
    assert ratio == pytest.approx(4.0, abs=0.05)
    with pytest.raises(ValueError, match="silent"):
        mix_pair(np.zeros(100), b, 0.0)


def test_from_librispeech_layout(tmp_path, librispeech_mini):
    info = build_librispeech_corpus(
        librispeech_mini / "LibriSpeech",
        tmp_path,
        n_mixtures={"tr": 3, "cv": 2, "tt": 2},
        segment_seconds=1.0,
        max_segments_per_speaker=2,
        max_speakers=8,
        progress=False,
    )
    assert sum(len(s) for s in info["speakers"].values()) == 8
    mixes = sorted((tmp_path / "2speakers/wav8k/min/tt/mix").glob("*.wav"))
    assert len(mixes) == 2
    mix, rate = sf.read(mixes[0], dtype="int16")
    assert rate == SAMPLE_RATE and len(mix) <= SAMPLE_RATE
    s1, _ = sf.read(str(mixes[0]).replace("/mix/", "/s1/"), dtype="int16")
    s2, _ = sf.read(str(mixes[0]).replace("/mix/", "/s2/"), dtype="int16")
    np.testing.assert_array_equal(mix.astype(int), s1.astype(int) + s2.astype(int))
    assert (tmp_path / "speakers.csv").read_text().count("\n") == 9


def test_librispeech_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_librispeech_corpus(tmp_path / "nowhere", tmp_path / "out")
