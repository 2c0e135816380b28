"""Dynamic mixing: new mixtures every epoch, reproducible per seed.

Each item ``index`` of epoch ``epoch`` is drawn from a random generator seeded
with ``(seed, epoch, index)``, so the mixtures do not depend on the number of
dataloader workers, on the order items are read in, or on how often a run was
resumed. The Brain calls :meth:`EpochSeededDataset.set_epoch` at every epoch
start; with ``num_workers > 0`` keep ``persistent_workers`` off (SpeechBrain's
default) so the workers see the new epoch.
"""

import os
from collections import defaultdict

import numpy as np
import torch

from ..dsp.audio import read_audio

AUDIO_EXTENSIONS = (".wav", ".flac")


class EpochSeededDataset(torch.utils.data.Dataset):
    """Base class of datasets that draw item ``index`` of epoch ``epoch`` from
    ``numpy.random.default_rng((seed, epoch, index))``.

    Example
    -------
    >>> class Noise(EpochSeededDataset):
    ...     def __getitem__(self, index):
    ...         return self.rng(index).random()
    >>> ds = Noise(num_items=4, seed=1)
    >>> a = ds[0]; ds.set_epoch(2)
    >>> ds[0] != a
    True
    """

    def __init__(self, num_items, seed=1234):
        self.num_items = int(num_items)
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self):
        return self.num_items

    def set_epoch(self, epoch):
        """Selects the epoch whose mixtures are drawn."""
        self.epoch = int(epoch)

    def rng(self, index):
        """The random generator of item ``index`` in the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))


def scan_speaker_folders(root, extensions=AUDIO_EXTENSIONS):
    """Maps each speaker to its sorted audio files, for folders laid out as
    ``<root>/<speaker>/**/<utterance>.<ext>`` (WSJ0's ``si_tr_s``, LibriSpeech).

    Raises ``FileNotFoundError`` naming ``root`` when it is missing or holds no audio.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"Speaker folder {root!r} does not exist.")
    speakers = defaultdict(list)
    for speaker in sorted(os.listdir(root)):
        folder = os.path.join(root, speaker)
        if not os.path.isdir(folder):
            continue
        for dirpath, _, files in os.walk(folder):
            speakers[speaker].extend(os.path.join(dirpath, f) for f in files if f.lower().endswith(extensions))
        speakers[speaker].sort()
        if not speakers[speaker]:
            del speakers[speaker]
    if not speakers:
        raise FileNotFoundError(f"No audio files ({', '.join(extensions)}) under speaker folders of {root!r}.")
    return dict(speakers)


class SpeakerDrawingDataset(EpochSeededDataset):
    """Base class of dynamic-mixing datasets that draw ``num_spks`` distinct
    speakers, and one utterance of each, from ``<speaker_folder>/<speaker>/...``.

    Raises ``ValueError`` naming the folder when it has fewer than ``num_spks``
    speakers with audio.
    """

    def __init__(self, speaker_folder, num_spks, num_mixtures, sample_rate=8000, segment_samples=None, seed=1234):
        super().__init__(num_mixtures, seed)
        self.speakers = scan_speaker_folders(speaker_folder)
        if len(self.speakers) < num_spks:
            raise ValueError(
                f"Dynamic mixing needs at least {num_spks} speakers with audio in {speaker_folder!r}; "
                f"found {len(self.speakers)}."
            )
        self.speaker_ids = sorted(self.speakers)
        self.num_spks = int(num_spks)
        self.sample_rate = int(sample_rate)
        self.segment_samples = int(segment_samples) if segment_samples else None

    def draw_speaker_files(self, rng):
        """One random utterance from each of ``num_spks`` distinct random speakers."""
        chosen = rng.choice(len(self.speaker_ids), size=self.num_spks, replace=False)
        files = []
        for s in chosen:
            utterances = self.speakers[self.speaker_ids[s]]
            files.append(utterances[rng.integers(len(utterances))])
        return files


class SpeakerMixingDataset(SpeakerDrawingDataset):
    """WSJ0-2mix-style dynamic mixing from speaker folders.

    Each mixture takes ``num_spks`` distinct random speakers and one random
    utterance of each, cuts them to a common length ("min" mode; at most
    ``segment_samples``, from a random offset), sets them to the same RMS and
    then applies relative levels drawn uniformly in ``±max_relative_db`` dB
    with respect to the first source (for two speakers: a level difference
    uniform in 0-5 dB, as in WSJ0-2mix). A mixture whose peak exceeds 0.9 is
    rescaled with its sources.

    Arguments
    ---------
    speaker_folder : str
        ``<root>/<speaker>/...`` audio folder (e.g. WSJ0 ``si_tr_s``).
    num_spks : int
        Sources per mixture.
    num_mixtures : int
        Mixtures per epoch.
    sample_rate : int
        Output rate; files at other rates are resampled.
    segment_samples : int, optional
        Maximum mixture length.
    max_relative_db : float
        Range of the relative levels.
    seed : int
        Seed of the mixture draws.

    Example
    -------
    >>> import tempfile, os, soundfile as sf
    >>> root = tempfile.mkdtemp()
    >>> for spk in "abc":
    ...     os.makedirs(os.path.join(root, spk))
    ...     sf.write(os.path.join(root, spk, "u.wav"), np.random.randn(1600) * 0.1, 8000)
    >>> ds = SpeakerMixingDataset(root, num_spks=2, num_mixtures=5, sample_rate=8000)
    >>> item = ds[0]
    >>> item["mix_sig"].shape, torch.allclose(item["mix_sig"], item["s1_sig"] + item["s2_sig"])
    (torch.Size([1600]), True)
    """

    def __init__(
        self,
        speaker_folder,
        num_spks,
        num_mixtures,
        sample_rate=8000,
        segment_samples=None,
        max_relative_db=5.0,
        rms=0.05,
        seed=1234,
    ):
        super().__init__(speaker_folder, num_spks, num_mixtures, sample_rate, segment_samples, seed)
        self.max_relative_db = float(max_relative_db)
        self.rms = float(rms)

    def draw_levels(self, rng):
        """Relative source levels in dB (first source at 0 dB)."""
        return np.concatenate([[0.0], rng.uniform(-self.max_relative_db, self.max_relative_db, self.num_spks - 1)])

    def __getitem__(self, index):
        rng = self.rng(index)
        files = self.draw_speaker_files(rng)
        sources = [read_audio(f, self.sample_rate)[0] for f in files]
        length = min(len(s) for s in sources)
        if self.segment_samples:
            length = min(length, self.segment_samples)
        cut = []
        for s in sources:
            start = int(rng.integers(0, len(s) - length + 1))
            cut.append(s[start : start + length])
        levels = self.draw_levels(rng)
        scaled = []
        for s, level in zip(cut, levels):
            s_rms = s.pow(2).mean().sqrt().clamp_min(1e-8)
            scaled.append(s / s_rms * self.rms * 10 ** (level / 20))
        sources = torch.stack(scaled)
        mix = sources.sum(0)
        peak = mix.abs().max()
        if peak > 0.9:
            sources = sources * (0.9 / peak)
            mix = sources.sum(0)
        item = {"id": f"dm_e{self.epoch}_{index}", "mix_sig": mix}
        item.update({f"s{i + 1}_sig": sources[i] for i in range(self.num_spks)})
        return item
