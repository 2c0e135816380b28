"""Dynamic mixing for general audio source separation (GASS: speech, music and sound events).

Sources come from category folders (``<data_folder>/<category>/**`` with any audio files at any sample rate) or
from a CSV manifest (``path,category[,split]``). Every item of :class:`GASSMixer` is a new mixture of 1 to
``max_sources`` sources built on the fly:

* the number of sources is drawn uniformly in ``[min_sources, max_sources]``, the category of each source from
  ``category_weights`` (default: uniform over the categories present) and the file uniformly in its category;
* the sources of one mixture are distinct files (a category whose files are all in the mixture already is not
  drawn again) and, with ``distinct_speakers``, of distinct speakers (read from LibriSpeech file names
  ``<speaker>-<chapter>-<utterance>``, :func:`librispeech_speaker`); ``max_sources`` is lowered, with a warning,
  when the files (speakers) are fewer;
* with probability ``background_prob`` (only for mixtures of 2 sources or more) the first source is a
  *background*: a category from ``background_categories`` spanning the whole mixture (a file shorter than the
  mixture is looped) at a gain drawn in ``background_gain_db``;
* the other sources are *foregrounds*: a random crop lasting between ``min_foreground_fraction`` of the mixture and
  all of it, starting at a random offset, at a gain drawn in ``foreground_gain_db``;
* gains are in dB relative to ``reference_level_db`` dBFS RMS (each crop is RMS-normalised over its active part
  first); when the mixture would clip, the mixture and all sources are scaled down together, so the mixture is
  always the sum of its sources;
* silence-aware selection: a crop whose RMS is below ``silence_threshold_db`` dBFS is redrawn (another file and
  offset of the same category), at most ``max_retries`` times, then a :class:`RuntimeError` names the category and
  the files tried;
* deterministic: item ``index`` of epoch ``epoch`` uses the random generator seeded with ``(seed, epoch, index)``,
  so the mixtures do not depend on the number of dataloader workers nor on the order the items are read.
  :meth:`GASSMixer.set_epoch` (called by the Brain at the start of each training epoch) draws new mixtures.

Items are dictionaries with ``id``, ``mix_sig`` and ``s1_sig`` ... ``s<num_outputs>_sig`` (zeros for absent
sources), ``num_sources`` and ``categories`` (the categories of ``s1``, ``s2``, ... joined by ``+``).

Example
-------
>>> import numpy as np, soundfile as sf, tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for category in ("speech", "music", "sfx"):
...     (root / category).mkdir()
...     sf.write(root / category / "a.wav", np.random.default_rng(0).normal(0, 0.1, 16000), 16000)
>>> mixer = GASSMixer(find_category_files(root), num_items=4, sample_rate=8000, segment_seconds=0.5, seed=1)
>>> item = mixer[0]
>>> item["mix_sig"].shape, item["s4_sig"].shape
(torch.Size([4000]), torch.Size([4000]))
>>> bool(torch.allclose(item["mix_sig"], sum(item[f"s{k}_sig"] for k in range(1, 5)), atol=1e-6))
True
"""

import csv
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..dsp.audio import AudioReadError, audio_info, read_audio, resample
from .dynamic_mixing import EpochSeededDataset
from .splits import shuffled_partition

logger = logging.getLogger(__name__)

DEFAULT_CATEGORIES = ("speech", "music", "sfx")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")


def librispeech_speaker(path):
    """The speaker of a LibriSpeech file name ``<speaker>-<chapter>-<utterance>.<ext>``, ``None`` for other names.

    Example
    -------
    >>> librispeech_speaker("LibriSpeech/train-clean-100/103/1240/103-1240-0000.flac"), librispeech_speaker("a.wav")
    ('103', None)
    """
    parts = Path(path).stem.split("-")
    return parts[0] if len(parts) == 3 and all(p.isdigit() for p in parts) else None


def find_category_files(data_folder, categories=DEFAULT_CATEGORIES, extensions=AUDIO_EXTENSIONS):
    """Lists the audio files of every ``<data_folder>/<category>/**`` folder (sorted, recursive).

    Categories whose folder is missing are left out; a folder that exists without audio files is an error.

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "music" / "jazz").mkdir(parents=True)
    >>> _ = (root / "music" / "jazz" / "x.flac").write_bytes(b"")
    >>> {k: [p.name for p in v] for k, v in find_category_files(root).items()}
    {'music': ['x.flac']}
    """
    data_folder = Path(data_folder)
    if not data_folder.is_dir():
        raise FileNotFoundError(f"GASS data folder {data_folder} does not exist.")
    extensions = tuple(e.lower() for e in extensions)
    files = {}
    for category in categories:
        folder = data_folder / category
        if not folder.is_dir():
            continue
        found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not found:
            raise FileNotFoundError(f"Category folder {folder} has no audio files ({', '.join(extensions)}).")
        files[category] = found
    if not files:
        raise FileNotFoundError(
            f"No category folder found in {data_folder}: expected one or more of {', '.join(categories)}."
        )
    return files


def read_manifest(manifest, split=None):
    """Reads a CSV manifest with columns ``path,category`` (and optionally ``split``).

    Relative paths are resolved against the manifest's folder. With ``split`` given, only the rows of that split
    are kept (the manifest must then have a ``split`` column). Returns ``{category: [paths]}``.

    Example
    -------
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "m.csv").write_text("path,category,split\\na.wav,speech,train\\nb.wav,music,test\\n")
    >>> {k: [p.name for p in v] for k, v in read_manifest(root / "m.csv", split="train").items()}
    {'speech': ['a.wav']}
    """
    manifest = Path(manifest)
    files = {}
    with open(manifest, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"path", "category"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"Manifest {manifest} lacks the column(s) {', '.join(sorted(missing))}.")
        if split is not None and "split" not in reader.fieldnames:
            raise ValueError(f"Manifest {manifest} has no 'split' column, cannot select split {split!r}.")
        for line, row in enumerate(reader, start=2):
            if split is not None and row["split"] != split:
                continue
            if not row["path"] or not row["category"]:
                raise ValueError(f"Manifest {manifest}, line {line}: empty path or category.")
            path = Path(row["path"])
            files.setdefault(row["category"], []).append(path if path.is_absolute() else manifest.parent / path)
    if not files:
        raise ValueError(f"Manifest {manifest} has no rows" + (f" for split {split!r}." if split else "."))
    return files


def split_category_files(files, valid_fraction=0.1, test_fraction=0.1, seed=0):
    """Splits ``{category: [paths]}`` into disjoint train / valid / test file lists per category.

    Files of one LibriSpeech speaker (file names ``<speaker>-<chapter>-<utterance>``, :func:`librispeech_speaker`)
    stay in one split, so the valid and test speakers are not training speakers; other files are split one by one.
    Each category's groups (speakers or files) are shuffled with ``seed``, the fractions count groups, and every
    split gets at least one, so every category needs 3 groups or more (use a manifest with a ``split`` column
    otherwise).

    Example
    -------
    >>> splits = split_category_files({"speech": [f"{i}.wav" for i in range(10)]})
    >>> [len(splits[s]["speech"]) for s in ("train", "valid", "test")]
    [8, 1, 1]
    >>> splits = split_category_files({"speech": [f"{s}-1-{u}.flac" for s in (19, 26, 32) for u in range(4)]})
    >>> speakers = [{p.split("-")[0] for p in splits[s]["speech"]} for s in ("train", "valid", "test")]
    >>> [len(s) for s in speakers], len(set.union(*speakers)), [len(splits[s]["speech"]) for s in splits]
    ([1, 1, 1], 3, [4, 4, 4])
    """
    splits = {"train": {}, "valid": {}, "test": {}}
    rng = np.random.default_rng(seed)
    for category, paths in files.items():
        groups = {}
        for path in sorted(paths):
            groups.setdefault(librispeech_speaker(path) or path, []).append(path)
        groups = list(groups.values())  # ordered by their first file
        kind = "speaker(s)" if any(len(g) > 1 or librispeech_speaker(g[0]) for g in groups) else "file(s)"
        if len(groups) < 3:
            raise ValueError(
                f"Category {category!r} has {len(groups)} {kind}; splitting into train/valid/test needs 3 or more "
                "(or give a manifest with a 'split' column)."
            )
        n_valid = max(1, round(valid_fraction * len(groups)))
        n_test = max(1, round(test_fraction * len(groups)))
        n_train = len(groups) - n_valid - n_test
        if n_train < 1:
            raise ValueError(f"Category {category!r}: no {kind} left for training with {len(groups)} {kind}.")
        parts = shuffled_partition(groups, [n_valid, n_test, None], rng)
        for split, part in zip(("valid", "test", "train"), parts):
            splits[split][category] = [p for g in part for p in g]
    return splits


class GASSMixer(EpochSeededDataset):
    """Dataset drawing a new mixture of 1 to ``max_sources`` sources for every index (see the module docstring).

    Arguments
    ---------
    files : dict
        ``{category: [audio paths]}``, e.g. from :func:`find_category_files` or :func:`read_manifest`.
    num_items : int
        Number of mixtures per epoch.
    sample_rate : int
        Output sample rate; files at other rates are resampled with torchaudio.
    segment_seconds : float
        Mixture duration.
    min_sources, max_sources : int
        Range of the number of sources per mixture (both included).
    num_outputs : int
        Number of ``s<k>_sig`` targets (absent sources are zeros); at least ``max_sources``.
    category_weights : dict, optional
        Relative probability of each category (default uniform over the categories in ``files``).
    background_prob : float
        Probability that a mixture of 2 sources or more has a background source (default 0.5).
    background_categories : tuple
        Categories a background may come from (default music and sfx; those absent from ``files`` are ignored).
    foreground_gain_db, background_gain_db : tuple
        Ranges (dB, relative to ``reference_level_db``) of the foreground (default -5..5 dB) and background
        (default -15..-5 dB) gains.
    min_foreground_fraction : float
        Shortest foreground as a fraction of the mixture (default 0.5).
    reference_level_db : float
        RMS level (dBFS) of a source at 0 dB gain (default -25).
    silence_threshold_db : float
        A crop whose RMS is below this level (dBFS) is near-silent and redrawn (default -60).
    max_retries : int
        Draws per source before giving up on near-silent crops (default 10).
    distinct_speakers : bool
        Sources of one mixture come from distinct speakers (every file needs a LibriSpeech name,
        :func:`librispeech_speaker`); without it they are only distinct files.
    seed : int
        Base seed; item ``index`` of epoch ``e`` is seeded with ``(seed, e, index)``.
    name : str
        Prefix of the item ids.

    Example
    -------
    >>> import numpy as np, soundfile as sf, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "sfx").mkdir()
    >>> for name in ("n.wav", "m.wav"):
    ...     sf.write(root / "sfx" / name, np.random.default_rng(0).normal(0, 0.1, 8000), 8000)
    >>> mixer = GASSMixer({"sfx": sorted((root / "sfx").iterdir())}, 2, 8000, 0.25, min_sources=2, max_sources=2)
    >>> item = mixer[1]
    >>> item["num_sources"], item["categories"], float(item["s3_sig"].abs().sum())
    (2, 'sfx+sfx', 0.0)
    """

    def __init__(
        self,
        files,
        num_items,
        sample_rate=8000,
        segment_seconds=4.0,
        min_sources=1,
        max_sources=4,
        num_outputs=4,
        category_weights=None,
        background_prob=0.5,
        background_categories=("music", "sfx"),
        foreground_gain_db=(-5.0, 5.0),
        background_gain_db=(-15.0, -5.0),
        min_foreground_fraction=0.5,
        reference_level_db=-25.0,
        silence_threshold_db=-60.0,
        max_retries=10,
        distinct_speakers=False,
        seed=0,
        name="gass",
    ):
        if not files or not any(files.values()):
            raise ValueError("GASSMixer needs at least one category with audio files.")
        if not 1 <= min_sources <= max_sources <= num_outputs:
            raise ValueError(
                f"Need 1 <= min_sources ({min_sources}) <= max_sources ({max_sources}) <= num_outputs ({num_outputs})."
            )
        gain_ranges = {"foreground_gain_db": foreground_gain_db, "background_gain_db": background_gain_db}
        for label, (low, high) in gain_ranges.items():
            if low > high:
                raise ValueError(f"{label} range ({low}, {high}) is reversed.")
        if not 0.0 < min_foreground_fraction <= 1.0:
            raise ValueError(f"min_foreground_fraction must be in (0, 1], got {min_foreground_fraction}.")
        if max_retries < 1:
            raise ValueError(f"max_retries must be >= 1, got {max_retries}.")
        super().__init__(num_items, seed)
        self.files = {c: [Path(p) for p in paths] for c, paths in files.items() if paths}
        self.categories = sorted(self.files)
        weights = category_weights or {c: 1.0 for c in self.categories}
        unknown = set(weights) - set(self.files)
        if category_weights and unknown:
            logger.warning("GASSMixer: no files for weighted categories %s; they are ignored.", sorted(unknown))
        probs = np.array([float(weights.get(c, 0.0)) for c in self.categories])
        if probs.sum() <= 0 or (probs < 0).any():
            raise ValueError(f"category_weights {category_weights} give no positive weight to {self.categories}.")
        self.category_probs = probs / probs.sum()
        self.background_categories = [c for c in self.categories if c in set(background_categories)]
        self.sample_rate = int(sample_rate)
        self.segment_length = int(round(segment_seconds * sample_rate))
        self.min_sources = int(min_sources)
        self.max_sources = int(max_sources)
        self.num_outputs = int(num_outputs)
        self.background_prob = float(background_prob)
        self.foreground_gain_db = tuple(float(g) for g in foreground_gain_db)
        self.background_gain_db = tuple(float(g) for g in background_gain_db)
        self.min_foreground_fraction = float(min_foreground_fraction)
        self.reference_level_db = float(reference_level_db)
        self.silence_threshold_db = float(silence_threshold_db)
        self.max_retries = int(max_retries)
        self.name = name
        self._info_cache = {}
        self.distinct_speakers = bool(distinct_speakers)
        # what must differ between the sources of one mixture: the file, or its speaker
        self.keys = {c: [self._source_key(p) for p in paths] for c, paths in self.files.items()}
        self._indices = {c: {} for c in self.keys}  # category -> key -> indices of its files
        for c, keys in self.keys.items():
            for i, key in enumerate(keys):
                self._indices[c].setdefault(key, []).append(i)
        drawn = [c for c, p in zip(self.categories, self.category_probs) if p > 0]
        capacity = len({k for c in drawn for k in self.keys[c]})
        what = "speakers" if self.distinct_speakers else "files"
        if capacity < self.min_sources:
            raise ValueError(
                f"GASSMixer {name}: min_sources={self.min_sources} distinct {what} per mixture, but the categories "
                f"{', '.join(drawn)} have {capacity}."
            )
        if capacity < self.max_sources:
            logger.warning(
                "GASSMixer %s: %d distinct %s, so mixtures have at most %d sources (max_sources %d).",
                name, capacity, what, capacity, self.max_sources,
            )  # fmt: skip
            self.max_sources = capacity

    def _source_key(self, path):
        if not self.distinct_speakers:
            return path
        speaker = librispeech_speaker(path)
        if speaker is None:
            raise ValueError(
                f"GASSMixer {self.name}: distinct_speakers needs LibriSpeech file names "
                f"<speaker>-<chapter>-<utterance>, got {path}."
            )
        return speaker

    def _frames_and_rate(self, path):
        if path not in self._info_cache:
            frames, rate = audio_info(path)
            if frames == 0:
                raise AudioReadError(f"{path}: the file holds no samples.")
            self._info_cache[path] = (frames, rate)
        return self._info_cache[path]

    def _read_crop(self, path, length, rng, loop):
        """Reads ``length`` output samples of ``path`` from a random offset (looped when ``loop`` and too short)."""
        frames, rate = self._frames_and_rate(path)
        native = int(math.ceil(length * rate / self.sample_rate)) + 1
        start = int(rng.integers(0, frames - native + 1)) if frames > native else 0
        audio, _ = read_audio(path, start=start, frames=min(frames, start + native) - start)
        if loop and audio.numel() < native:
            audio = audio.repeat(int(math.ceil(native / audio.numel())))[:native]
        return resample(audio, rate, self.sample_rate)[:length]

    def _used_indices(self, category, used):
        """Sorted indices of the files of ``category`` whose key (file or speaker) is in ``used``: a few
        (the mixture's sources), looked up rather than found by a pass over every file at each draw."""
        return sorted(i for key in used for i in self._indices[category].get(key, ()))

    def _unused_count(self, category, used):
        return len(self.files[category]) - len(self._used_indices(category, used))

    def _draw_source(self, category, length, rng, loop, used):
        """A crop of a file of ``category`` whose key is not in ``used`` (the key is added to ``used``)."""
        tried = []
        files, skipped = self.files[category], self._used_indices(category, used)
        for _ in range(self.max_retries):
            index = int(rng.integers(len(files) - len(skipped)))  # the index-th file not in use
            for i in skipped:
                index += i <= index
            path = files[index]
            crop = self._read_crop(path, length, rng, loop)
            rms = crop.pow(2).mean().sqrt().item() if crop.numel() else 0.0
            if rms > 0 and 20 * math.log10(rms) >= self.silence_threshold_db:
                used.add(self.keys[category][index])
                return crop / rms
            tried.append(str(path))
        raise RuntimeError(
            f"GASSMixer: {self.max_retries} crops of category {category!r} were all near-silent "
            f"(RMS < {self.silence_threshold_db} dBFS); files tried: {', '.join(sorted(set(tried)))}. "
            "Remove silent files or lower silence_threshold_db."
        )

    def __getitem__(self, index):
        if not 0 <= index < self.num_items:
            raise IndexError(f"Index {index} out of range for {self.num_items} mixtures.")
        rng = self.rng(index)
        length = self.segment_length
        num_sources = int(rng.integers(self.min_sources, self.max_sources + 1))
        with_background = num_sources > 1 and self.background_categories and rng.random() < self.background_prob
        reference = 10 ** (self.reference_level_db / 20)
        sources, categories, used = [], [], set()
        for k in range(num_sources):
            source = torch.zeros(length)
            if k == 0 and with_background:
                category = self.background_categories[int(rng.integers(len(self.background_categories)))]
                gain_db = rng.uniform(*self.background_gain_db)
                source[:] = self._draw_source(category, length, rng, loop=True, used=used)
            else:
                # categories with a file (speaker) not in the mixture yet; max_sources <= their number, so some left
                probs = np.array(
                    [p if self._unused_count(c, used) else 0.0 for c, p in zip(self.categories, self.category_probs)]
                )
                category = self.categories[int(rng.choice(len(self.categories), p=probs / probs.sum()))]
                gain_db = rng.uniform(*self.foreground_gain_db)
                duration = int(rng.integers(int(math.ceil(self.min_foreground_fraction * length)), length + 1))
                crop = self._draw_source(category, duration, rng, loop=False, used=used)
                offset = int(rng.integers(0, length - crop.numel() + 1))
                source[offset : offset + crop.numel()] = crop
            sources.append(source * (reference * 10 ** (gain_db / 20)))
            categories.append(category)
        order = rng.permutation(num_sources)
        sources = [sources[i] for i in order]
        categories = [categories[i] for i in order]
        stacked = torch.stack(sources)
        mixture = stacked.sum(0)
        peak = mixture.abs().max().item()
        if peak > 0.99:
            stacked = stacked * (0.99 / peak)
            mixture = stacked.sum(0)
        item = {"id": f"{self.name}_e{self.epoch}_{index:06d}", "mix_sig": mixture}
        for k in range(self.num_outputs):
            item[f"s{k + 1}_sig"] = stacked[k] if k < num_sources else torch.zeros(length)
        item["num_sources"] = num_sources
        item["categories"] = "+".join(categories)
        return item
