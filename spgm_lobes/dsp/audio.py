"""The one audio reader of spgm-lobes, and its resampler.

Every place that reads audio (separation of files, dataset preparation and mixing, publishing,
test corpora, benchmarks) calls :func:`read_audio`, so one rule holds everywhere:

* **channels** are averaged to one, as SpeechBrain's separators down-mix a multi-channel input.
  ``channel=k`` takes channel ``k`` instead; only LibriMix's creation uses it, for WHAM!'s
  two-channel noise, whose first channel LibriMix takes (its published gains are measured on it);
* **rate**: with ``sample_rate`` the signal is resampled to it by :func:`resample` (torchaudio's
  windowed-sinc resampler with its default filter); without it the file's rate is kept. The rate
  of the returned signal is returned beside it;
* ``start`` and ``frames`` count samples at the file's own rate;
* a missing file, one that soundfile (libsndfile: wav, flac, ogg, mp3, ...) cannot read, a read
  that returns no sample, or NaN / infinite samples raise :class:`AudioReadError` naming the file.
"""

import functools
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio


class AudioReadError(RuntimeError):
    """An audio file could not be read; the message names the file."""


def read_audio(path, sample_rate=None, start=0, frames=-1, channel=None):
    """Reads ``path`` as one float32 signal (see the module docstring for the rules).

    Arguments
    ---------
    path : str or Path
        An audio file.
    sample_rate : int, optional
        Rate to resample to; default: the file's rate.
    start : int
        First sample read, at the file's rate.
    frames : int
        Number of samples read at the file's rate (-1: up to the end).
    channel : int, optional
        Take this channel instead of the average of all of them.

    Returns
    -------
    signal : torch.Tensor
        ``[time]`` float32.
    rate : int
        Rate of ``signal``: ``sample_rate`` when given, else the file's.

    Example
    -------
    >>> path = getfixture("tmp_path") / "stereo.wav"
    >>> sf.write(path, np.stack([np.full(1600, 0.25), np.full(1600, 0.75)], axis=1), 16000)
    >>> signal, rate = read_audio(path)
    >>> signal.shape, rate, round(signal[800].item(), 4)
    (torch.Size([1600]), 16000, 0.5)
    >>> read_audio(path, sample_rate=8000, start=400, frames=800)[0].shape
    torch.Size([400])
    >>> read_audio(path, channel=1)[0][0].item()
    0.75
    """
    path = Path(path)
    if not path.is_file():
        raise AudioReadError(f"{path}: no such file.")
    try:
        audio, rate = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile reports unreadable files with several exception types
        raise AudioReadError(f"{path}: not a readable audio file ({error}).") from error
    if audio.shape[0] == 0:
        where = f" from sample {start}" if start else ""
        raise AudioReadError(f"{path}: the file holds no samples{where}.")
    if channel is None:
        audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    elif not 0 <= channel < audio.shape[1]:
        raise AudioReadError(f"{path}: has {audio.shape[1]} channel(s), no channel {channel}.")
    else:
        audio = audio[:, channel]
    if not np.isfinite(audio).all():
        raise AudioReadError(f"{path}: the file holds NaN or infinite samples.")
    signal = torch.from_numpy(np.ascontiguousarray(audio))
    if sample_rate is not None and int(sample_rate) != rate:
        return resample(signal, rate, int(sample_rate)), int(sample_rate)
    return signal, int(rate)


def audio_info(path):
    """``(frames, sample_rate)`` of an audio file, without reading its samples.

    Example
    -------
    >>> path = getfixture("tmp_path") / "a.wav"
    >>> sf.write(path, np.zeros(800), 8000)
    >>> audio_info(path)
    (800, 8000)
    """
    try:
        info = sf.info(str(path))
    except Exception as error:  # as in read_audio
        raise AudioReadError(f"{path}: not a readable audio file ({error}).") from error
    return int(info.frames), int(info.samplerate)


@functools.lru_cache(maxsize=32)
def _resampler(orig_rate, new_rate):
    # building the filter costs more than applying it to a short signal: one per rate pair
    return torchaudio.transforms.Resample(orig_rate, new_rate)


def resample(signal, orig_rate, new_rate):
    """``signal`` (``[..., time]`` tensor or numpy array, float32) resampled from ``orig_rate`` to ``new_rate``
    with torchaudio's windowed-sinc resampler; the same type comes back (no copy when the rates match).

    Example
    -------
    >>> resample(torch.zeros(2, 16000), 16000, 8000).shape
    torch.Size([2, 8000])
    >>> resample(np.zeros(800, dtype=np.float32), 8000, 16000).shape
    (1600,)
    """
    orig_rate, new_rate = int(orig_rate), int(new_rate)
    if orig_rate == new_rate:
        return signal
    if isinstance(signal, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(signal, dtype=np.float32))
        return _resampler(orig_rate, new_rate)(tensor).numpy()
    return _resampler(orig_rate, new_rate)(signal.float())
