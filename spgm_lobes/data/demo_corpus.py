"""A small, self-made, wsj0-2mix-layout corpus for the quickstart and for tests.

**The voices of the default corpus are synthetic.** They come from a
source-filter model, not from recordings: a glottal-like pulse train (Rosenberg
pulse shape) with a speaker-specific pitch range and intonation (phrase
declination, accents, drift, jitter), breath noise, vowel-like segments shaped
by speaker-specific formant resonators (Klatt-style two-pole sections), nasal
murmurs, unvoiced fricative and plosive noise segments, syllable rhythm and
pauses. It sounds like buzzy babble, not like words. Separation models trained on
it learn to separate two such voices; they are **not** useful on real speech.
Its purpose is to exercise the real recipe end to end in minutes, with no
download. Pass real speech in LibriSpeech layout (``build_librispeech_corpus``)
to get the same layout from recordings.

Layout written under ``root`` (the one of wsj0-2mix, so the WSJ0Mix recipe reads
it unchanged with ``--data_folder <root>/2speakers``)::

    <root>/2speakers/wav8k/min/{tr,cv,tt}/{mix,s1,s2}/<utt1>_<g1>_<utt2>_<g2>.wav
    <root>/wsj0/si_tr_s/<spk>/<utt>.wav     training speakers (dynamic mixing)
    <root>/wsj0/si_dt_05/<spk>/<utt>.wav    validation speakers
    <root>/wsj0/si_et_05/<spk>/<utt>.wav    test speakers
    <root>/speakers.csv                     speaker, split and voice parameters
    <root>/README.txt                       what this is

Speakers are disjoint across train (``tr``), validation (``cv``) and test
(``tt``). Speaker ids have three characters and every utterance name starts with
its speaker id, as in WSJ0. A mixture is ``mix = s1 + s2``; the sources are
scaled to equal active level, then to ``+g`` and ``-g`` dB with ``g`` uniform in
0-2.5 dB (relative level uniform in 0-5 dB, as in wsj0-2mix), cut to the
shorter one (``min`` mode) and written as 16-bit PCM; ``mix`` is the sum of the
16-bit ``s1`` and ``s2`` samples, so the relation holds exactly in the files.
Everything is deterministic given ``seed``.
"""

import csv
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm import tqdm

from ..dsp.audio import read_audio
from .splits import shuffled_partition

SAMPLE_RATE = 8000
SPLITS = ("tr", "cv", "tt")
SPEAKER_FOLDERS = {"tr": "si_tr_s", "cv": "si_dt_05", "tt": "si_et_05"}

# Textbook average formants (F1, F2, F3 in Hz) of adult male vowels, before
# the per-speaker vocal-tract scaling; "m" is a nasal murmur.
VOWEL_FORMANTS = {
    "i": (270.0, 2290.0, 3010.0),
    "e": (530.0, 1840.0, 2480.0),
    "ae": (660.0, 1720.0, 2410.0),
    "a": (730.0, 1090.0, 2440.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
    "er": (490.0, 1350.0, 1690.0),
    "m": (250.0, 1100.0, 2300.0),
}
VOWELS = tuple(VOWEL_FORMANTS)
_NASAL = VOWELS.index("m")
# Levels of the unvoiced parts (fricative hiss, plosive bursts) relative to the
# voiced excitation; white-ish noise carries no speaker cue, so louder ones make
# the separation task mostly a guess on those segments.
FRICATIVE_LEVEL = 0.2
# Median pitch registers span low male to high female / child voices, log-uniform
# (stratified) over 27 semitones: separation of two voices gets much harder as
# their registers get closer, and a narrower span (85-260 Hz was tried) makes
# close pairs common enough to cost the quickstart model about 1 dB on average.
F0_LOW, F0_HIGH = 70.0, 330.0
BURST_LEVEL = 0.15


@dataclass(frozen=True)
class VoiceProfile:
    """Parameters of one synthetic speaker.

    Arguments
    ---------
    speaker : str
        Three-character speaker id.
    f0_median : float
        Median fundamental frequency in Hz.
    f0_range : float
        Spread of the intonation in semitones.
    formant_scale : float
        Vocal-tract scaling of all formants (shorter tract: larger).
    formants : tuple
        Per vowel of ``VOWELS``, the three formant frequencies in Hz.
    bandwidths : tuple
        Bandwidths (Hz) of F1, F2, F3.
    syllable_rate : float
        Syllables per second.
    open_quotient : float
        Fraction of the pitch period the glottis is open.
    breathiness : float
        Breath-noise level relative to the voiced excitation.
    jitter : float
        Relative random pitch perturbation.
    fricative_center : float
        Centre frequency (Hz) of the speaker's fricative noise.
    """

    speaker: str
    f0_median: float
    f0_range: float
    formant_scale: float
    formants: tuple
    bandwidths: tuple
    syllable_rate: float
    open_quotient: float
    breathiness: float
    jitter: float
    fricative_center: float


def make_voices(n_speakers, seed=0):
    """Draws ``n_speakers`` distinct synthetic voices.

    Median pitch, vocal-tract scale and speaking rate are stratified (a Latin
    hypercube): every speaker falls in its own stratum of each, so no two
    speakers share the same pitch register or the same formant scale.

    Arguments
    ---------
    n_speakers : int
        Number of speakers (at most 1000).
    seed : int
        Seed of the draw.

    Returns
    -------
    list of VoiceProfile

    Example
    -------
    >>> voices = make_voices(4, seed=0)
    >>> [v.speaker for v in voices]
    ['000', '001', '002', '003']
    >>> len({round(v.f0_median) for v in voices})
    4
    """
    if not 1 <= n_speakers <= 1000:
        raise ValueError(f"n_speakers must be in 1..1000, got {n_speakers}")
    rng = np.random.default_rng([seed, 1])
    strata = [(rng.permutation(n_speakers) + rng.uniform(0.2, 0.8, n_speakers)) / n_speakers for _ in range(3)]
    voices = []
    for index in range(n_speakers):
        r = np.random.default_rng([seed, 2, index])
        f0_median = F0_LOW * (F0_HIGH / F0_LOW) ** strata[0][index]
        scale = 0.86 + 0.34 * strata[1][index]
        formants = []
        for vowel in VOWELS:
            f = np.array(VOWEL_FORMANTS[vowel]) * scale * (1.0 + 0.04 * r.standard_normal(3))
            f = np.minimum(np.sort(f), 0.46 * SAMPLE_RATE)
            formants.append(tuple(float(x) for x in f))
        voices.append(
            VoiceProfile(
                speaker=f"{index:03d}",
                f0_median=float(f0_median),
                f0_range=float(r.uniform(2.0, 7.0)),
                formant_scale=float(scale),
                formants=tuple(formants),
                bandwidths=(float(r.uniform(50, 110)), float(r.uniform(70, 140)), float(r.uniform(110, 200))),
                syllable_rate=float(3.0 + 3.0 * strata[2][index]),
                open_quotient=float(r.uniform(0.4, 0.75)),
                breathiness=float(r.uniform(0.01, 0.12)),
                jitter=float(r.uniform(0.004, 0.015)),
                fricative_center=float(r.uniform(2000.0, 3500.0)),
            )
        )
    return voices


def _resonator(freq, bandwidth, fs):
    """Klatt two-pole resonator with unit gain at 0 Hz: ``(b, a)``."""
    r = math.exp(-math.pi * bandwidth / fs)
    a1, a2 = -2.0 * r * math.cos(2.0 * math.pi * freq / fs), r * r
    return np.array([1.0 + a1 + a2]), np.array([1.0, a1, a2])


def _cascade(formants, bandwidths, fs):
    b, a = np.ones(1), np.ones(1)
    for freq, bw in zip(formants, bandwidths):
        rb, ra = _resonator(freq, bw, fs)
        b, a = np.convolve(b, rb), np.convolve(a, ra)
    return b, a


def _window(n, ramp):
    """Raised-cosine ramps of ``ramp`` samples at both ends of ``n`` ones."""
    w = np.ones(n)
    ramp = min(ramp, n // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        w[:ramp] = edge
        w[n - ramp :] = edge[::-1]
    return w


def _smooth_noise(rng, n, fs, cutoff):
    """Unit-variance noise low-passed by a one-pole filter at ``cutoff`` Hz."""
    alpha = math.exp(-2.0 * math.pi * cutoff / fs)
    x = lfilter([1.0 - alpha], [1.0, -alpha], rng.standard_normal(n))
    return x / (x.std() + 1e-12)


def _plan_segments(voice, n, fs, rng):
    """Timeline of the utterance: syllables (onset, nucleus), words, phrases.

    Returns a list of ``(start, stop, kind, detail)`` in samples with ``kind``
    in ``vowel`` (detail: vowel index, stress), ``fricative``, ``plosive``, and
    the list of phrase ``(start, stop)``.
    """
    segments, phrases = [], []
    t = int(rng.uniform(0.05, 0.25) * fs)
    phrase_start = t
    syllable = fs / voice.syllable_rate
    end = n - int(0.1 * fs)
    while t < end:
        for _ in range(rng.integers(1, 5)):  # one word
            if rng.random() < 0.6:  # consonant onset
                if rng.random() < 0.5:
                    length = int(rng.uniform(0.04, 0.11) * fs)
                    segments.append((t, t + length, "fricative", rng.uniform(0.8, 1.2)))
                else:
                    length = int(rng.uniform(0.01, 0.03) * fs)
                    segments.append((t, t + length, "plosive", None))
                    length += int(rng.uniform(0.01, 0.03) * fs)  # closure / aspiration gap
                t += length
            length = int(syllable * rng.uniform(0.45, 0.85))
            vowel = _NASAL if rng.random() < 0.12 else int(rng.integers(0, len(VOWELS) - 1))
            segments.append((t, t + length, "vowel", (vowel, rng.random() < 0.35)))
            t += length
            if t >= end:
                break
        if rng.random() < 0.3 or t >= end:  # phrase break
            phrases.append((phrase_start, min(t, n)))
            t += int(rng.uniform(0.25, 0.5) * fs)
            phrase_start = t
        else:  # word gap
            t += int(rng.uniform(0.02, 0.15) * fs)
    if not phrases or phrases[-1][1] < phrase_start < n:
        phrases.append((phrase_start, n))
    return [s for s in segments if s[0] < n], phrases


def _pitch_track(voice, n, fs, segments, phrases, rng):
    """Per-sample F0 (Hz): declination per phrase, accents, drift, jitter."""
    semitones = 0.4 * voice.f0_range * _smooth_noise(rng, n, fs, 1.5) / 2.0
    for start, stop in phrases:
        length = max(stop - start, 1)
        ramp = np.linspace(0.5, -0.5, length) * voice.f0_range * rng.uniform(0.6, 1.0)
        semitones[start:stop] += ramp[: max(0, min(stop, n) - start)]
    time = np.arange(n)
    for start, stop, kind, detail in segments:
        if kind == "vowel" and detail[1]:
            centre, width = 0.5 * (start + stop), 0.06 * fs
            semitones += rng.uniform(0.3, 0.8) * voice.f0_range * np.exp(-0.5 * ((time - centre) / width) ** 2)
    voiced = np.zeros(n, dtype=bool)
    for start, stop, kind, _ in segments:
        voiced[start:stop] |= kind == "vowel"
    if voiced.any():  # the speaker's median pitch is ``f0_median``
        semitones -= np.median(semitones[voiced])
    semitones += 12.0 * voice.jitter * _smooth_noise(rng, n, fs, 400.0)
    return voice.f0_median * 2.0 ** (semitones / 12.0)


def _glottal_excitation(voice, f0, fs, rng):
    """Derivative of a Rosenberg glottal flow driven by the pitch track."""
    phase = np.cumsum(f0 / fs) + rng.random()
    frac = phase - np.floor(phase)
    rise, fall = 0.6 * voice.open_quotient, 0.4 * voice.open_quotient
    flow = np.where(
        frac < rise,
        0.5 - 0.5 * np.cos(np.pi * frac / rise),
        np.where(frac < rise + fall, np.cos(0.5 * np.pi * np.clip(frac - rise, 0, None) / fall), 0.0),
    )
    excitation = np.diff(flow, prepend=flow[0])
    excitation /= excitation.std() + 1e-12
    breath = voice.breathiness * 4.0 * rng.standard_normal(len(f0)) * flow
    return excitation + breath


def synthesize_utterance(voice, duration, seed=0, fs=SAMPLE_RATE):
    """Synthesizes one utterance of ``voice``, deterministic given ``seed``.

    Arguments
    ---------
    voice : VoiceProfile
        The speaker (see ``make_voices``).
    duration : float
        Length in seconds.
    seed : int or sequence of int
        Seed of this utterance.
    fs : int
        Sample rate.

    Returns
    -------
    numpy.ndarray
        float64 samples, active level about -26 dBFS, peak below 1.

    Example
    -------
    >>> voice = make_voices(1)[0]
    >>> x = synthesize_utterance(voice, 0.5, seed=1)
    >>> x.shape, bool(abs(x).max() < 1)
    ((4000,), True)
    """
    n = int(round(duration * fs))
    if n <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    rng = np.random.default_rng(seed)
    segments, phrases = _plan_segments(voice, n, fs, rng)
    f0 = _pitch_track(voice, n, fs, segments, phrases, rng)
    excitation = _glottal_excitation(voice, f0, fs, rng)

    weights = np.zeros((len(VOWELS), n))
    noise_env = np.zeros(n)
    fric_env = np.zeros(n)
    for start, stop, kind, detail in segments:
        stop = min(stop, n)
        length = stop - start
        if length <= 0:
            continue
        if kind == "vowel":
            vowel, stressed = detail
            gain = (1.4 if stressed else 1.0) * (0.35 if vowel == _NASAL else 1.0)
            weights[vowel, start:stop] += gain * _window(length, int(0.02 * fs))
        elif kind == "fricative":
            fric_env[start:stop] += 0.5 * detail * _window(length, int(0.015 * fs))
        else:
            noise_env[start:stop] += np.exp(-np.arange(length) / (0.006 * fs))

    voiced = np.zeros(n)
    for index in np.flatnonzero(weights.any(axis=1)):
        b, a = _cascade(voice.formants[index], voice.bandwidths, fs)
        voiced += weights[index] * lfilter(b, a, excitation)
    b, a = _resonator(voice.fricative_center, 900.0, fs)
    hiss = lfilter(b, a, np.diff(rng.standard_normal(n + 1)))
    burst = rng.standard_normal(n)
    signal = voiced + FRICATIVE_LEVEL * fric_env * hiss / (hiss.std() + 1e-12) + BURST_LEVEL * noise_env * burst
    level = _active_rms(signal)
    if level > 0:
        signal *= 10 ** (-26 / 20) / level
    peak = np.abs(signal).max()
    if peak > 0.9:
        signal *= 0.9 / peak
    return signal


def _active_rms(x, fs=SAMPLE_RATE, floor_db=-40.0):
    """RMS over the 20-ms frames within ``floor_db`` of the loudest frame."""
    hop = max(1, int(0.02 * fs))
    frames = len(x) // hop
    if frames == 0:
        return float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
    energy = (x[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1)
    active = energy[energy >= energy.max() * 10 ** (floor_db / 10)]
    return float(np.sqrt(active.mean())) if active.size and energy.max() > 0 else 0.0


def _write_readme(root, text):
    (root / "README.txt").write_text(text, encoding="utf-8")


def _write_speaker_folders(root, utterances, progress):
    """Writes ``{split: {speaker: [(name, samples)]}}`` as WSJ0-style folders."""
    paths = {split: {} for split in utterances}
    items = [(s, spk, utts) for s in utterances for spk, utts in utterances[s].items()]
    for split, speaker, utts in tqdm(items, desc="speaker folders", disable=not progress):
        folder = root / "wsj0" / SPEAKER_FOLDERS[split] / speaker
        folder.mkdir(parents=True, exist_ok=True)
        for name, samples in utts:
            path = folder / f"{name}.wav"
            sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
            paths[split].setdefault(speaker, []).append((name, path))
    return paths


def mix_pair(s1, s2, gain_db, peak=0.9):
    """Mixes two sources wsj0-2mix style, exactly in 16-bit integers.

    Both are cut to the shorter length, scaled to equal active level, then to
    ``+gain_db`` and ``-gain_db``; the pair is scaled down when the mixture
    peak would exceed ``peak``.

    Arguments
    ---------
    s1, s2 : numpy.ndarray
        Sources (float).
    gain_db : float
        Half the relative level in dB (s1 louder when positive).
    peak : float
        Largest allowed absolute mixture sample.

    Returns
    -------
    tuple of numpy.ndarray
        ``(mix, s1, s2)`` as int16 with ``mix == s1 + s2``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> mix, a, b = mix_pair(rng.standard_normal(800) * 0.1, rng.standard_normal(900) * 0.3, 1.0)
    >>> mix.dtype, len(mix), bool((mix == a + b).all())
    (dtype('int16'), 800, True)
    """
    n = min(len(s1), len(s2))
    s1, s2 = np.asarray(s1[:n], dtype=np.float64), np.asarray(s2[:n], dtype=np.float64)
    l1, l2 = _active_rms(s1), _active_rms(s2)
    if l1 <= 0 or l2 <= 0:
        raise ValueError("cannot mix a silent source")
    target = 10 ** (-26 / 20)
    s1 = s1 * target / l1 * 10 ** (gain_db / 20)
    s2 = s2 * target / l2 * 10 ** (-gain_db / 20)
    top = np.abs(s1 + s2).max()
    if top > peak:
        s1, s2 = s1 * peak / top, s2 * peak / top
    q1 = np.round(s1 * 32767).astype(np.int32)
    q2 = np.round(s2 * 32767).astype(np.int32)
    mix = q1 + q2
    if np.abs(mix).max() > 32767:
        raise AssertionError("mixture overflow")  # unreachable with peak <= 0.9
    return mix.astype(np.int16), q1.astype(np.int16), q2.astype(np.int16)


def _write_mixtures(root, speaker_paths, n_mixtures, seed, progress):
    """Draws and writes the ``{tr,cv,tt}`` mixtures from the speaker folders."""
    base = root / "2speakers" / "wav8k" / "min"
    cache = {}

    def load(path):
        if path not in cache:
            cache[path] = read_audio(path)[0].numpy().astype(np.float64)
        return cache[path]

    counts = {}
    for split_index, split in enumerate(SPLITS):
        speakers = sorted(speaker_paths.get(split, {}))
        count = int(n_mixtures.get(split, 0))
        if count and len(speakers) < 2:
            raise ValueError(f"split {split!r} needs at least 2 speakers to mix, has {len(speakers)}")
        folders = {k: base / split / k for k in ("mix", "s1", "s2")}
        for folder in folders.values():
            folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 3, split_index])
        names = set()
        bar = tqdm(total=count, desc=f"mixtures {split}", disable=not progress)
        attempts = 0
        while len(names) < count:
            attempts += 1
            if attempts > 20 * count + 100:
                raise RuntimeError(f"could not draw {count} distinct non-silent mixtures for split {split!r}")
            a, b = rng.choice(len(speakers), size=2, replace=False)
            utts_a, utts_b = speaker_paths[split][speakers[a]], speaker_paths[split][speakers[b]]
            (n1, p1), (n2, p2) = utts_a[rng.integers(len(utts_a))], utts_b[rng.integers(len(utts_b))]
            gain = float(rng.uniform(0.0, 2.5))
            name = f"{n1}_{gain:.4f}_{n2}_{-gain:.4f}"
            if name in names:
                continue
            try:
                mix, s1, s2 = mix_pair(load(p1), load(p2), gain)
            except ValueError:  # a source is silent over the common length: draw again
                continue
            names.add(name)
            for key, samples in (("mix", mix), ("s1", s1), ("s2", s2)):
                sf.write(folders[key] / f"{name}.wav", samples, SAMPLE_RATE, subtype="PCM_16")
            bar.update()
        bar.close()
        counts[split] = count
    return counts


def _split_speakers(speakers, fractions, seed):
    """Speaker-disjoint ``{split: [speakers]}``, each split with >= 2 speakers."""
    if len(speakers) < 6:
        raise ValueError(f"need at least 6 speakers for a speaker-disjoint tr/cv/tt split, got {len(speakers)}")
    n_cv = max(2, int(round(fractions[1] * len(speakers))))
    n_tt = max(2, int(round(fractions[2] * len(speakers))))
    tr, cv, tt = shuffled_partition(speakers, [len(speakers) - n_cv - n_tt, n_cv, None], [seed, 4])
    return {"tr": sorted(tr), "cv": sorted(cv), "tt": sorted(tt)}


def _check_output_root(root):
    root = Path(root)
    if (root / "2speakers").exists() and any((root / "2speakers").iterdir()):
        raise FileExistsError(f"{root / '2speakers'} already exists and is not empty; choose another root")
    root.mkdir(parents=True, exist_ok=True)
    return root


DEFAULT_MIXTURES = {"tr": 1000, "cv": 60, "tt": 100}


def generate_demo_corpus(
    root,
    n_speakers=48,
    utterances_per_speaker=20,
    n_mixtures=None,
    duration_range=(2.0, 4.0),
    split_fractions=(0.66, 0.17, 0.17),
    seed=0,
    progress=True,
):
    """Writes the synthetic demo corpus (see the module docstring) under ``root``.

    Arguments
    ---------
    root : str or Path
        Output folder; ``root/2speakers`` must not exist or be empty.
    n_speakers : int
        Number of synthetic speakers, split speaker-disjointly into tr/cv/tt.
    utterances_per_speaker : int
        Utterances written per speaker folder.
    n_mixtures : dict
        Mixtures per split, default ``DEFAULT_MIXTURES``.
    duration_range : tuple
        Utterance lengths are uniform in this range (seconds).
    split_fractions : tuple
        Fractions of the speakers in tr, cv, tt.
    seed : int
        Everything is a function of this seed.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        ``data_folder`` (for the recipe), ``base_folder_dm`` (training speaker
        folders), ``speakers`` per split and ``mixtures`` counts.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> info = generate_demo_corpus(root, n_speakers=6, utterances_per_speaker=2,
    ...     n_mixtures={"tr": 2, "cv": 1, "tt": 1}, duration_range=(0.3, 0.5), progress=False)
    >>> sorted(p.name for p in (root / "2speakers/wav8k/min/tr").iterdir())
    ['mix', 's1', 's2']
    >>> info["mixtures"]
    {'tr': 2, 'cv': 1, 'tt': 1}
    """
    root = _check_output_root(root)
    n_mixtures = dict(DEFAULT_MIXTURES if n_mixtures is None else n_mixtures)
    low, high = duration_range
    if not 0 < low <= high:
        raise ValueError(f"invalid duration_range {duration_range}")
    voices = make_voices(n_speakers, seed)
    split = _split_speakers([v.speaker for v in voices], split_fractions, seed)
    split_of = {spk: s for s, spks in split.items() for spk in spks}
    utterances = {s: {} for s in SPLITS}
    for index, voice in enumerate(tqdm(voices, desc="synthesizing voices", disable=not progress)):
        utts = []
        for u in range(utterances_per_speaker):
            rng = np.random.default_rng([seed, 5, index, u])
            duration = float(rng.uniform(low, high))
            utts.append((f"{voice.speaker}c{u:04d}", synthesize_utterance(voice, duration, seed=[seed, 6, index, u])))
        utterances[split_of[voice.speaker]][voice.speaker] = utts
    paths = _write_speaker_folders(root, utterances, progress)
    counts = _write_mixtures(root, paths, n_mixtures, seed, progress)
    with open(root / "speakers.csv", "w", newline="", encoding="utf-8") as handle:
        fields = ["speaker", "split", "f0_median", "f0_range", "formant_scale", "syllable_rate"]
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for voice in voices:
            row = {k: v for k, v in asdict(voice).items() if k in fields}
            writer.writerow({**row, "split": split_of[voice.speaker]})
    _write_readme(
        root,
        "SYNTHETIC demo corpus written by spgm_lobes.data.demo_corpus (seed "
        f"{seed}).\nThe voices are made by a source-filter model (pulse train + formant resonators + noise), "
        "not recorded speech.\nModels trained on it do not separate real speech. Layout: wsj0-2mix "
        "(2speakers/wav8k/min/{tr,cv,tt}/{mix,s1,s2}) and WSJ0-style speaker folders under wsj0/.\n",
    )
    return _info(root, split, counts)


def _info(root, split, counts):
    return {
        "root": root,
        "data_folder": root / "2speakers",
        "base_folder_dm": root / "wsj0" / SPEAKER_FOLDERS["tr"],
        "speakers": split,
        "mixtures": counts,
    }


def _librispeech_speakers(librispeech_root):
    """``{speaker: [flac paths]}`` of a LibriSpeech-layout folder."""
    root = Path(librispeech_root)
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder {root} does not exist")
    speakers = {}
    for path in sorted(root.rglob("*.flac")):
        # <subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac
        speakers.setdefault(path.parent.parent.name, []).append(path)
    if not speakers:
        raise FileNotFoundError(f"no .flac files under {root} (expected LibriSpeech/<subset>/<spk>/<chapter>/*.flac)")
    return speakers


def build_librispeech_corpus(
    librispeech_root,
    root,
    n_mixtures=None,
    segment_seconds=3.0,
    max_segments_per_speaker=8,
    max_speakers=None,
    split_fractions=(0.7, 0.15, 0.15),
    seed=0,
    progress=True,
):
    """Writes the demo-corpus layout from real speech in LibriSpeech layout.

    Speakers are split speaker-disjointly into tr/cv/tt; each recording is
    resampled to 8 kHz (torchaudio) and cut into consecutive segments of
    ``segment_seconds`` (a last shorter piece is kept if longer than half of
    it; near-silent pieces are dropped). LibriSpeech speaker ids are renamed to
    three-character ids (``speakers.csv`` keeps the original ids).

    Arguments
    ---------
    librispeech_root : str or Path
        Folder holding ``.../<speaker>/<chapter>/*.flac`` (e.g. ``librispeech-mini``).
    root : str or Path
        Output folder.
    n_mixtures : dict
        Mixtures per split, default ``DEFAULT_MIXTURES``.
    segment_seconds : float
        Length of the utterances cut from the recordings.
    max_segments_per_speaker : int
        At most this many segments per speaker.
    max_speakers : int or None
        Use only the first speakers (sorted by id), e.g. for a quick test.
    split_fractions : tuple
        Fractions of the speakers in tr, cv, tt.
    seed : int
        Seed of the split and of the mixtures.
    progress : bool
        Show tqdm progress bars.

    Returns
    -------
    dict
        As ``generate_demo_corpus``.
    """

    speakers = _librispeech_speakers(librispeech_root)
    ids = sorted(speakers, key=lambda s: (len(s), s))[: max_speakers or None]
    if len(ids) > 1000:
        ids = ids[:1000]
    root = _check_output_root(root)
    short = {spk: f"{i:03d}" for i, spk in enumerate(ids)}
    split = _split_speakers([short[s] for s in ids], split_fractions, seed)
    split_of = {spk: s for s, spks in split.items() for spk in spks}
    seg = int(round(segment_seconds * SAMPLE_RATE))
    utterances = {s: {} for s in SPLITS}
    for spk in tqdm(ids, desc="reading LibriSpeech", disable=not progress):
        utts = []
        for path in speakers[spk]:
            wave = read_audio(path, SAMPLE_RATE)[0].numpy().astype(np.float64)
            for k, start in enumerate(range(0, len(wave), seg)):
                piece = wave[start : start + seg]
                if len(piece) < seg // 2 or _active_rms(piece) < 1e-4 or len(utts) >= max_segments_per_speaker:
                    continue
                utts.append((f"{short[spk]}-{path.stem}-{k:02d}", piece))
        if utts:
            utterances[split_of[short[spk]]][short[spk]] = utts
    paths = _write_speaker_folders(root, utterances, progress)
    counts = _write_mixtures(root, paths, dict(DEFAULT_MIXTURES if n_mixtures is None else n_mixtures), seed, progress)
    with open(root / "speakers.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["speaker", "split", "librispeech_speaker"])
        for spk in ids:
            writer.writerow([short[spk], split_of[short[spk]], spk])
    _write_readme(
        root,
        f"Real speech from {Path(librispeech_root).resolve()} (LibriSpeech layout), resampled to 8 kHz, cut into "
        f"{segment_seconds:g}-s segments and mixed wsj0-2mix style by spgm_lobes.data.demo_corpus (seed {seed}).\n",
    )
    return _info(root, split, counts)
