"""Shared pytest fixtures of spgm-lobes."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def _librispeech_mini_root():
    env = os.environ.get("SPGM_LIBRISPEECH_MINI")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "librispeech-mini")
    for path in candidates:
        if (path / "LibriSpeech").is_dir():
            return path
    return None


@pytest.fixture
def librispeech_mini():
    """Root of the shared real-speech folder (``LibriSpeech/train-clean-100/...``).

    Set ``SPGM_LIBRISPEECH_MINI`` to point elsewhere; the test is skipped when
    the folder is absent.
    """
    root = _librispeech_mini_root()
    if root is None:
        pytest.skip("librispeech-mini not found (set SPGM_LIBRISPEECH_MINI)")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


def _speech_or_synthetic_sources(count, samples, speech_root, rng):
    """``count`` distinct 8 kHz signals of ``samples`` samples: real speech from
    distinct LibriSpeech speakers when available, else synthetic harmonic voices."""
    import numpy as np

    signals = []
    if speech_root is not None:
        import soundfile as sf
        import torchaudio

        speakers = sorted((speech_root / "LibriSpeech" / "train-clean-100").iterdir())
        for spk in speakers[:count]:
            path = sorted(spk.rglob("*.flac"))[0]
            audio, rate = sf.read(path, frames=int(samples * 16000 / 8000) + 16000, start=8000, dtype="float32")
            audio = torchaudio.functional.resample(torch.from_numpy(audio), rate, 8000).numpy()[:samples]
            signals.append(audio / (np.abs(audio).max() + 1e-6) * 0.3)
    t = np.arange(samples) / 8000
    while len(signals) < count:
        f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 8000
        sig = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        signals.append((0.1 * sig).astype("float32"))
    return signals


def make_wsj0mix_corpus(root, num_spks=2, per_split=3, samples=2400, speech_root=None, seed=0):
    """Writes a tiny corpus in the wsj0-mix layout ``root/wav8k/min/{tr,cv,tt}/{mix,s1,..}``
    plus WSJ0-style speaker folders ``root/si_tr_s/<spk>/<utt>.wav`` for dynamic mixing."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n_speakers = max(4, num_spks + 1)
    voices = _speech_or_synthetic_sources(n_speakers, samples, speech_root, rng)
    for s, voice in enumerate(voices):
        folder = root / "si_tr_s" / f"spk{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"spk{s:02d}_utt0.wav", voice, 8000, subtype="FLOAT")
    for split in ("tr", "cv", "tt"):
        for k in range(per_split):
            chosen = rng.choice(n_speakers, num_spks, replace=False)
            length = samples - int(rng.integers(0, samples // 4))  # different lengths -> padding in batches
            sources = [np.roll(voices[c], int(rng.integers(samples)))[:length] for c in chosen]
            name = f"{split}_{k:03d}.wav"
            for i, src in enumerate(sources):
                (root / "wav8k" / "min" / split / f"s{i + 1}").mkdir(parents=True, exist_ok=True)
                sf.write(root / "wav8k" / "min" / split / f"s{i + 1}" / name, src, 8000, subtype="FLOAT")
            (root / "wav8k" / "min" / split / "mix").mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav8k" / "min" / split / "mix" / name, sum(sources), 8000, subtype="FLOAT")
    return root


@pytest.fixture
def wsj0mix_corpus(tmp_path):
    """A tiny wsj0-2mix-layout corpus (real speech when librispeech-mini is present)."""
    return make_wsj0mix_corpus(tmp_path / "wsj0-2mix", speech_root=_librispeech_mini_root())


TINY_ARCH = "{N_encoder_out: 16, out_channels: 16, nhead: 2, d_ffn: 32, intra_layers: 1, chunk_size: 10}"
