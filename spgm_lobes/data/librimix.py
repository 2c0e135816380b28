"""LibriMix-style mixtures from LibriSpeech-layout folders (Cosentino et al., 2020).

Two stages, as in LibriMix:

1. *metadata*: which utterances (and which WHAM! noise) make each mixture, and the linear gain of
   each part (``mixture_ID, source_1_path, source_1_gain, ..., noise_path, noise_gain``). Either
   LibriMix's published files (``libri2mix_train-clean-360.csv``, ...) or fresh ones drawn from any
   ``<root>/<split>/<speaker>/<chapter>/*.flac`` folder with :func:`generate_metadata`
   (speaker-disjoint train/dev/test, seeded).
2. *creation*: :func:`create_librimix` applies the gains at the original rate, resamples
   (torchaudio), cuts (``min``) or pads (``max``) and writes LibriMix's layout::

       Libri2Mix/wav8k/min/{train-360,dev,test}/{mix_clean,mix_both,s1,s2,noise}/<mixture_ID>.wav
       Libri2Mix/wav8k/min/metadata/mixture_<split>_<mix_type>.csv

The loudness rules live in :mod:`spgm_lobes.dsp.loudness` and are shared with
:class:`LibriMixDynamicDataset`, which draws fresh mixtures from speaker folders during training,
and :func:`prepare_librimix` lists a created corpus for the separation recipe.
"""

import csv
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from spgm_lobes.data.csv_dataset import check_speaker_count, csvs_up_to_date, record_csv_options, write_csv
from spgm_lobes.data.dynamic_mixing import SpeakerDrawingDataset
from spgm_lobes.data.splits import shuffled_partition
from spgm_lobes.dsp.audio import audio_info, read_audio, resample
from spgm_lobes.dsp.loudness import LOUDNESS_BLOCK_SECONDS, extend_noise, fit_length, librimix_gains
from spgm_lobes.workers import process_map

logger = logging.getLogger(__name__)

SPLITS = ("train-360", "dev", "test")
NOISE_FOLDERS = {"train-360": "tr", "train-100": "tr", "dev": "cv", "test": "tt"}
MIX_TYPES = ("mix_clean", "mix_both")
AUDIO_EXTENSIONS = (".flac", ".wav")
WHAM_NOISE_CHANNEL = 0
"""WHAM!'s noise has two channels; LibriMix takes the first one, on which its published noise gains are
measured (:func:`spgm_lobes.dsp.audio.read_audio` averages channels everywhere else)."""


@dataclass(frozen=True)
class Utterance:
    """One LibriSpeech-layout utterance: ``path`` is relative to the corpus root."""

    utt_id: str
    speaker: str
    path: str
    frames: int
    sample_rate: int


def find_corpus_root(root):
    """The folder that holds the split folders (descends into ``LibriSpeech/`` when present)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"LibriSpeech folder {root} does not exist")
    if (root / "LibriSpeech").is_dir():
        return root / "LibriSpeech"
    return root


def scan_librispeech(root, min_duration=3.0, splits=None):
    """List the utterances of a ``<root>/<split>/<speaker>/<chapter>/*.flac`` folder.

    Utterances shorter than ``min_duration`` seconds are left out (LibriMix drops those under 3 s).

    Arguments
    ---------
    root : str or Path
        Corpus root (or its parent holding ``LibriSpeech/``).
    min_duration : float
        Shortest utterance kept, in seconds.
    splits : list of str, optional
        Split folders to read (default: all).
    """
    root = find_corpus_root(root)
    files = []
    for split_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if splits is not None and split_dir.name not in splits:
            continue
        for ext in AUDIO_EXTENSIONS:
            files.extend(split_dir.glob(f"*/*/*{ext}"))
    if not files:
        raise FileNotFoundError(f"No <split>/<speaker>/<chapter>/*.flac files under {root}")
    utterances = []
    for path in tqdm(sorted(files), desc="Scanning utterances", leave=False):
        frames, rate = audio_info(path)
        if frames < min_duration * rate:
            continue
        rel = path.relative_to(root).as_posix()
        utterances.append(Utterance(path.stem, path.parent.parent.name, rel, frames, rate))
    if not utterances:
        raise ValueError(f"No utterance of at least {min_duration} s under {root}")
    return utterances


def split_speakers(speakers, n_dev, n_test, seed=0):
    """Speaker-disjoint split: ``{"train-360": [...], "dev": [...], "test": [...]}``.

    Example
    -------
    >>> parts = split_speakers([str(i) for i in range(10)], n_dev=2, n_test=3, seed=1)
    >>> [len(parts[k]) for k in ("train-360", "dev", "test")]
    [5, 2, 3]
    >>> sorted(sum(parts.values(), [])) == sorted(str(i) for i in range(10))
    True
    """
    speakers = sorted(set(speakers))
    if n_dev + n_test >= len(speakers):
        raise ValueError(
            f"Cannot take {n_dev} dev + {n_test} test speakers out of {len(speakers)} and keep training speakers"
        )
    dev, test, train = shuffled_partition(speakers, [n_dev, n_test, None], seed)
    return {"train-360": sorted(train), "dev": sorted(dev), "test": sorted(test)}


def draw_combinations(utterances, n_src, rng, n_mixtures=None):
    """Draw groups of ``n_src`` utterances of distinct speakers.

    With ``n_mixtures=None`` every utterance is used at most once (LibriMix's training sets);
    otherwise ``n_mixtures`` distinct groups are drawn with reuse (LibriMix's dev/test sets).
    """
    by_speaker = {}
    for utt in utterances:
        by_speaker.setdefault(utt.speaker, []).append(utt)
    speakers = sorted(by_speaker)
    if len(speakers) < n_src:
        raise ValueError(f"Need at least {n_src} speakers to mix, found {len(speakers)}")
    groups = []
    if n_mixtures is None:
        pools = {spk: [by_speaker[spk][i] for i in rng.permutation(len(by_speaker[spk]))] for spk in speakers}
        while True:
            alive = [spk for spk in speakers if pools[spk]]
            if len(alive) < n_src:
                break
            # Prefer speakers with many remaining utterances so few are left unused.
            weights = np.array([len(pools[spk]) for spk in alive], dtype=np.float64)
            chosen = rng.choice(len(alive), size=n_src, replace=False, p=weights / weights.sum())
            groups.append(tuple(pools[alive[i]].pop() for i in chosen))
        return groups
    seen = set()
    attempts = 0
    while len(groups) < n_mixtures:
        attempts += 1
        if attempts > 100 * n_mixtures + 1000:
            raise ValueError(
                f"Could not draw {n_mixtures} distinct mixtures from {len(utterances)} utterances of "
                f"{len(speakers)} speakers; ask for fewer mixtures or give more speakers"
            )
        chosen = rng.choice(len(speakers), size=n_src, replace=False)
        group = tuple(by_speaker[speakers[i]][rng.integers(len(by_speaker[speakers[i]]))] for i in chosen)
        key = frozenset(u.utt_id for u in group)
        if key in seen:
            continue
        seen.add(key)
        groups.append(group)
    return groups


def list_noises(wham_root, split):
    """Noise files of a WHAM!-layout folder for ``split`` (``tr``/``cv``/``tt``), relative paths."""
    folder = Path(wham_root) / NOISE_FOLDERS.get(split, split)
    files = sorted(folder.glob("*.wav"))
    if not files:
        raise FileNotFoundError(f"No WHAM! noise *.wav files in {folder}")
    return [p.relative_to(wham_root).as_posix() for p in files]


def check_noise_files(rows, wham_root, metadata_file):
    """Raises ``FileNotFoundError`` naming the WHAM! noise files of the metadata ``rows`` missing under
    ``wham_root`` (before any mixture is written). LibriMix's train-360 metadata names speed-perturbed
    noises (``*_sp08.wav``, ``*_sp12.wav``) that only LibriMix's ``scripts/augment_train_noise.py`` creates;
    the error then says so."""
    missing = sorted({row["noise_path"] for row in rows if not (Path(wham_root) / row["noise_path"]).is_file()})
    if not missing:
        return
    message = (
        f"{len(missing)} WHAM! noise file(s) named in {metadata_file} are missing under {wham_root}, "
        f"e.g. {Path(wham_root) / missing[0]}"
    )
    if any(re.search(r"_sp(08|12)\.wav$", path) for path in missing):
        message += (
            ". LibriMix's train-360 metadata uses speed-perturbed noises (*_sp08.wav, *_sp12.wav): create them "
            f"first with LibriMix's scripts/augment_train_noise.py --wham_dir {wham_root}"
        )
    raise FileNotFoundError(message)


def read_noise(path, length, crossfade_seconds=1.0, rate=None):
    """First channel of a noise file (LibriMix's rule), resampled to ``rate`` and cut or extended to ``length``."""
    noise, noise_rate = read_audio(path, sample_rate=rate, channel=WHAM_NOISE_CHANNEL)
    return extend_noise(noise.numpy(), length, crossfade=int(crossfade_seconds * noise_rate))


def metadata_columns(n_src, with_noise):
    """Columns of LibriMix's generation metadata (``libri2mix_<split>.csv``).

    Example
    -------
    >>> metadata_columns(2, with_noise=True)
    ['mixture_ID', 'source_1_path', 'source_1_gain', 'source_2_path', 'source_2_gain', 'noise_path', 'noise_gain']
    """
    cols = ["mixture_ID"]
    for i in range(n_src):
        cols += [f"source_{i + 1}_path", f"source_{i + 1}_gain"]
    if with_noise:
        cols += ["noise_path", "noise_gain"]
    return cols


def _write_csv(path, columns, rows):
    """Write rows atomically (temporary file + rename), so a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _metadata_row(job):
    """Gains of one group of utterances (one metadata row and its info row)."""
    corpus, group, wham_root, noise_path, seed = job
    rng = np.random.default_rng(seed)
    rates = {u.sample_rate for u in group}
    if len(rates) != 1:
        raise ValueError(f"Utterances {[u.path for u in group]} have different sample rates {rates}")
    rate = rates.pop()
    length = max(u.frames for u in group)
    sources = [np.pad(read_audio(corpus / u.path)[0].numpy(), (0, length - u.frames)) for u in group]
    names = [str(corpus / u.path) for u in group]
    noise = None
    if noise_path is not None:
        noise = read_noise(Path(wham_root) / noise_path, length, rate=rate)
        names.append(str(Path(wham_root) / noise_path))
    gains, _, _ = librimix_gains(sources, rate, rng, noise=noise, names=names)
    row = {"mixture_ID": "_".join(u.utt_id for u in group)}
    info = {"mixture_ID": row["mixture_ID"]}
    for i, (utt, gain) in enumerate(zip(group, gains)):
        row[f"source_{i + 1}_path"] = utt.path
        row[f"source_{i + 1}_gain"] = repr(gain)
        info[f"speaker_{i + 1}_ID"] = utt.speaker
    if noise is not None:
        row["noise_path"], row["noise_gain"] = noise_path, repr(gains[-1])
    return row, info


def generate_metadata(
    librispeech_root,
    out_dir,
    n_src=2,
    seed=0,
    n_dev_speakers=40,
    n_test_speakers=40,
    n_mixtures=None,
    wham_root=None,
    min_duration=3.0,
    num_workers=0,
):
    """Draw fresh LibriMix metadata for a LibriSpeech-layout folder.

    Speakers are split (speaker-disjoint) into ``train-360``, ``dev`` and ``test``; mixtures group
    utterances of distinct speakers, and the gains follow LibriMix's loudness rules, measured at the
    original sample rate on the sources padded to the longest one.

    Arguments
    ---------
    librispeech_root : str or Path
        ``<root>/<split>/<speaker>/<chapter>/*.flac`` (all split folders are pooled).
    out_dir : str or Path
        Where ``libri{n}mix_<split>.csv``, ``libri{n}mix_<split>_info.csv`` (speakers of each
        mixture) and ``speakers.csv`` (split of each speaker) are written.
    n_src : int
        Sources per mixture.
    seed : int
        Seed of the speaker split, the groups and the loudness draws.
    n_dev_speakers, n_test_speakers : int
        Speakers held out for dev and test.
    n_mixtures : dict, optional
        Mixtures per split (``{"dev": 3000, ...}``); a missing split or ``None`` uses each utterance once.
    wham_root : str or Path, optional
        WHAM!-layout noise folder (``tr``, ``cv``, ``tt``); adds ``noise_path``/``noise_gain``.
    min_duration : float
        Shortest utterance used, in seconds.
    num_workers : int
        Processes measuring loudness (0: this process); the result does not depend on it.

    Returns
    -------
    dict
        Split name -> path of its metadata CSV.
    """
    corpus = find_corpus_root(librispeech_root)
    utterances = scan_librispeech(corpus, min_duration=min_duration)
    parts = split_speakers([u.speaker for u in utterances], n_dev_speakers, n_test_speakers, seed)
    n_mixtures = n_mixtures or {}
    out_dir = Path(out_dir)
    _write_csv(
        out_dir / "speakers.csv",
        ["speaker", "split"],
        [{"speaker": spk, "split": split} for split in SPLITS for spk in parts[split]],
    )
    written = {}
    with process_map(num_workers) as worker_map:
        for split_index, split in enumerate(SPLITS):
            rng = np.random.default_rng([seed, split_index])
            speakers = set(parts[split])
            split_utts = [u for u in utterances if u.speaker in speakers]
            if len(speakers) < n_src:
                raise ValueError(
                    f"Split {split} has {len(speakers)} speakers, fewer than the {n_src} sources of a mixture "
                    f"({len(parts['train-360'])} train / {n_dev_speakers} dev / {n_test_speakers} test speakers)"
                )
            groups = draw_combinations(split_utts, n_src, rng, n_mixtures.get(split))
            noises = list_noises(wham_root, split) if wham_root is not None else None
            jobs = []
            for index, group in enumerate(groups):
                noise_path = noises[rng.integers(len(noises))] if noises is not None else None
                jobs.append((corpus, group, wham_root, noise_path, [seed, split_index, index]))
            rows, info_rows = [], []
            for row, info in tqdm(worker_map(_metadata_row, jobs), total=len(jobs), desc=f"Metadata {split}"):
                rows.append(row)
                info_rows.append(info)
            path = out_dir / f"libri{n_src}mix_{split}.csv"
            _write_csv(path, metadata_columns(n_src, noises is not None), rows)
            _write_csv(
                out_dir / f"libri{n_src}mix_{split}_info.csv",
                ["mixture_ID"] + [f"speaker_{i + 1}_ID" for i in range(n_src)],
                info_rows,
            )
            written[split] = path
    return written


def read_metadata(path):
    """Rows of a LibriMix generation metadata CSV, with ``n_src`` inferred from its columns."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        columns = reader.fieldnames or []
    n_src = sum(1 for c in columns if re.fullmatch(r"source_\d+_path", c))
    if "mixture_ID" not in columns or n_src == 0:
        raise ValueError(f"{path} is not a LibriMix metadata file (columns: {columns})")
    return rows, n_src, "noise_path" in columns


def split_name(metadata_path, n_src):
    """Split folder of a metadata file: ``libri2mix_train-clean-360.csv`` -> ``train-360``.

    Example
    -------
    >>> split_name("metadata/libri2mix_test-clean.csv", 2)
    'test'
    >>> split_name("libri3mix_train-360.csv", 3)
    'train-360'
    """
    name = Path(metadata_path).name
    prefix = f"libri{n_src}mix_"
    if not name.startswith(prefix) or not name.endswith(".csv"):
        raise ValueError(f"Metadata file name {name!r} should look like {prefix}<split>.csv")
    return name[len(prefix) : -len(".csv")].replace("-clean", "")


def build_mixture(row, n_src, librispeech_root, sample_rate, modes, wham_root=None):
    """Signals of one metadata row for each length mode.

    Gains are applied at the original rate, then every part is resampled to ``sample_rate`` and
    cut/padded; mixtures are sums in float32 (``mix_clean = s1 + ... + sn``,
    ``mix_both = mix_clean + noise``), so the written files add up exactly.

    Returns
    -------
    dict
        mode -> ``{"s1": ..., "noise": ..., "mix_clean": ..., "mix_both": ...}`` (float32 arrays;
        ``noise``/``mix_both`` only with ``wham_root``).
    """
    corpus = find_corpus_root(librispeech_root)
    sources, rates = [], set()
    for i in range(n_src):
        signal, rate = read_audio(corpus / row[f"source_{i + 1}_path"])
        sources.append(signal.numpy().astype(np.float64) * float(row[f"source_{i + 1}_gain"]))
        rates.add(rate)
    if len(rates) != 1:
        raise ValueError(f"Sources of mixture {row['mixture_ID']} have different sample rates {rates}")
    rate = rates.pop()
    noise = None
    if wham_root is not None:
        if "noise_path" not in row:
            raise ValueError(f"Metadata of mixture {row['mixture_ID']} has no noise_path; cannot make mix_both")
        length = max(len(s) for s in sources)
        noise = read_noise(Path(wham_root) / row["noise_path"], length, rate=rate) * float(row["noise_gain"])
    # Gains are applied in float64 at the original rate; resampling runs in float32 (several times faster).
    parts = [resample(s.astype(np.float32), rate, sample_rate) for s in sources]
    if noise is not None:
        parts.append(resample(noise.astype(np.float32), rate, sample_rate))
    out = {}
    for mode in modes:
        fitted = fit_length(parts[:n_src], mode)
        signals = {f"s{i + 1}": fitted[i].astype(np.float32) for i in range(n_src)}
        mix = signals["s1"].copy()
        for i in range(1, n_src):
            mix = mix + signals[f"s{i + 1}"]
        signals["mix_clean"] = mix
        if noise is not None:
            noise_fit = parts[-1][: len(mix)]
            noise_fit = np.pad(noise_fit, (0, len(mix) - len(noise_fit))).astype(np.float32)
            signals["noise"] = noise_fit
            signals["mix_both"] = mix + noise_fit
        out[mode] = signals
    return out


def _write_wav(path, signal, sample_rate, subtype):
    """Write through a temporary name, so an interrupted run never leaves a truncated ``.wav``."""
    tmp = path.with_name(path.name + ".partial")
    sf.write(str(tmp), signal, sample_rate, subtype=subtype, format="WAV")
    os.replace(tmp, path)


def _create_mixture_files(job):
    """Writes the missing files of one mixture for every (rate, mode); returns their lengths."""
    row, n_src, librispeech_root, wham_root, split_dirs, folders, subtype = job
    mix_id = row["mixture_ID"]
    lengths, todo = {}, []
    for config, split_dir in split_dirs.items():
        paths = [split_dir / folder / f"{mix_id}.wav" for folder in folders]
        if all(p.is_file() for p in paths):
            lengths[config] = audio_info(paths[0])[0]
        else:
            todo.append(config)
    for rate in sorted({rate for rate, _ in todo}):
        rate_modes = [mode for r, mode in todo if r == rate]
        for mode, signals in build_mixture(row, n_src, librispeech_root, rate, rate_modes, wham_root).items():
            for folder in folders:
                _write_wav(split_dirs[rate, mode] / folder / f"{mix_id}.wav", signals[folder], rate, subtype)
            lengths[rate, mode] = len(signals["s1"])
    return lengths


def _claim_output(split_dir, metadata_file):
    """Keeps a copy of the generation metadata next to the output (``metadata/libri{n}mix_<split>.csv``).

    Finished files are reused on a re-run, which is only right for the same metadata: an output
    folder made from other metadata (another seed, other files) is an error, never mixed in.
    """
    copy = split_dir.parent / "metadata" / Path(metadata_file).name
    text = Path(metadata_file).read_text()
    if copy.is_file():
        if copy.read_text() != text:
            raise ValueError(
                f"{split_dir} was created from other metadata ({copy} differs from {metadata_file}); "
                "write to another output folder or delete it first"
            )
        return
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text)


def create_librimix(
    metadata_files,
    librispeech_root,
    out_root,
    sample_rates=(8000,),
    modes=("min",),
    mix_types=("mix_clean",),
    wham_root=None,
    subtype="FLOAT",
    num_workers=0,
):
    """Write LibriMix's layout from metadata files.

    Finished files are skipped, so an interrupted run can be resumed. Files are written as 32-bit
    float WAV by default, so ``mix == s1 + s2 (+ noise)`` holds exactly after reading back; with
    ``subtype="PCM_16"`` (LibriMix's own choice) each file carries up to 2**-15 quantisation error.

    Arguments
    ---------
    metadata_files : list of str or Path
        ``libri{n}mix_<split>.csv`` files (published by LibriMix, or from :func:`generate_metadata`);
        the speaker lists ``*_info.csv`` beside them are skipped.
    librispeech_root : str or Path
        Folder the ``source_*_path`` columns are relative to.
    out_root : str or Path
        Where ``Libri{n}Mix/`` is created.
    sample_rates : tuple of int
        Output rates (8000 -> ``wav8k``, 16000 -> ``wav16k``).
    modes : tuple of str
        ``min`` and/or ``max``.
    mix_types : tuple of str
        ``mix_clean`` and/or ``mix_both`` (the latter needs ``wham_root``).
    wham_root : str or Path, optional
        WHAM!-layout noise folder the ``noise_path`` column is relative to.
    subtype : str
        soundfile subtype of the written WAV files.
    num_workers : int
        Processes writing mixtures (0: this process).

    Returns
    -------
    Path
        The ``Libri{n}Mix`` folder.
    """
    unknown = set(mix_types) - set(MIX_TYPES)
    if unknown:
        raise ValueError(f"Unknown mixture types {sorted(unknown)}; use {MIX_TYPES}")
    if "mix_both" in mix_types and wham_root is None:
        raise ValueError("mix_both needs a WHAM! noise folder (wham_root)")
    for mode in modes:
        fit_length([np.zeros(1)], mode)  # validates the mode name early
    info = [f for f in metadata_files if Path(f).name.endswith("_info.csv")]
    if info:  # LibriMix's metadata folders hold them beside the split files; a glob picks them up
        logger.info("Skipping speaker lists (not mixture metadata): %s", ", ".join(str(f) for f in info))
    out_dir = None
    with process_map(num_workers) as worker_map:
        for metadata_file in [f for f in metadata_files if f not in info]:
            out_dir = _create_split(
                metadata_file,
                librispeech_root,
                out_root,
                sample_rates,
                modes,
                mix_types,
                wham_root,
                subtype,
                worker_map,
            )
    return out_dir


def _create_split(
    metadata_file, librispeech_root, out_root, sample_rates, modes, mix_types, wham_root, subtype, worker_map
):
    """Writes the audio and mixture metadata of one metadata file; returns the ``Libri{n}Mix`` folder."""
    use_noise = "mix_both" in mix_types
    rows, n_src, has_noise = read_metadata(metadata_file)
    if use_noise and not has_noise:
        raise ValueError(f"{metadata_file} has no noise columns; cannot make mix_both")
    if use_noise:
        check_noise_files(rows, wham_root, metadata_file)
    split = split_name(metadata_file, n_src)
    out_dir = Path(out_root) / f"Libri{n_src}Mix"
    folders = [f"s{i + 1}" for i in range(n_src)] + list(mix_types) + (["noise"] if use_noise else [])
    split_dirs = {}
    for rate in sample_rates:
        for mode in modes:
            split_dirs[rate, mode] = out_dir / f"wav{rate // 1000}k" / mode / split
            _claim_output(split_dirs[rate, mode], metadata_file)
            for folder in folders:
                (split_dirs[rate, mode] / folder).mkdir(parents=True, exist_ok=True)
    lengths = {config: {} for config in split_dirs}
    noise_root = wham_root if use_noise else None
    jobs = [(row, n_src, librispeech_root, noise_root, split_dirs, folders, subtype) for row in rows]
    results = worker_map(_create_mixture_files, jobs)
    for row, row_lengths in tqdm(zip(rows, results), total=len(rows), desc=f"Libri{n_src}Mix {split}"):
        for config, length in row_lengths.items():
            lengths[config][row["mixture_ID"]] = length
    for config, split_dir in split_dirs.items():
        for mix_type in mix_types:
            _write_mixture_metadata(split_dir, mix_type, [r["mixture_ID"] for r in rows], n_src, lengths[config])
    return out_dir


def _write_mixture_metadata(split_dir, mix_type, mixture_ids, n_src, lengths):
    """LibriMix's ``metadata/mixture_<split>_<mix_type>.csv`` (absolute paths and lengths in samples)."""
    columns = ["mixture_ID", "mixture_path"] + [f"source_{i + 1}_path" for i in range(n_src)]
    columns += (["noise_path"] if mix_type == "mix_both" else []) + ["length"]
    rows = []
    for mix_id in mixture_ids:
        row = {"mixture_ID": mix_id, "mixture_path": str((split_dir / mix_type / f"{mix_id}.wav").resolve())}
        for i in range(n_src):
            row[f"source_{i + 1}_path"] = str((split_dir / f"s{i + 1}" / f"{mix_id}.wav").resolve())
        if mix_type == "mix_both":
            row["noise_path"] = str((split_dir / "noise" / f"{mix_id}.wav").resolve())
        row["length"] = lengths[mix_id]
        rows.append(row)
    _write_csv(split_dir.parent / "metadata" / f"mixture_{split_dir.name}_{mix_type}.csv", columns, rows)


class LibriMixDynamicDataset(SpeakerDrawingDataset):
    """LibriMix-style dynamic mixing: fresh mixtures from speaker folders at every epoch.

    Each item takes ``num_spks`` distinct random speakers, one random utterance of each and a
    random window of at most ``segment_samples`` (all cut to the shortest, LibriMix's ``min``
    mode), resamples to ``sample_rate``, and applies LibriMix's loudness rules
    (:func:`~spgm_lobes.dsp.loudness.librimix_gains`: sources at -33...-25 LUFS, WHAM! noise 5 LU
    lower, clipping guard at 0.9). Items are seeded with ``(seed, epoch, index)``
    (:class:`~spgm_lobes.data.dynamic_mixing.EpochSeededDataset`).

    Arguments
    ---------
    speaker_folder : str
        ``<root>/<speaker>/**/<utt>.flac`` folder, e.g. ``LibriSpeech/train-clean-360``.
    num_spks : int
        Sources per mixture.
    num_mixtures : int
        Mixtures per epoch.
    sample_rate : int
        Output rate.
    segment_samples : int, optional
        Longest mixture (at ``sample_rate``); ``None`` keeps whole utterances.
    noise_folder : str, optional
        WHAM! noise folder (``wham_noise/tr``); adds noise to ``mix_sig`` and returns ``noise_sig``.
    seed : int
        Seed of the mixture draws.

    Example
    -------
    >>> import tempfile
    >>> root = write_toy_librispeech(tempfile.mkdtemp(), n_speakers=3, n_utterances=1, seconds=(0.6, 0.6))
    >>> ds = LibriMixDynamicDataset(root / "train-clean-100", num_spks=2, num_mixtures=2, sample_rate=8000)
    >>> item = ds[0]
    >>> item["mix_sig"].shape, bool(torch.equal(item["mix_sig"], item["s1_sig"] + item["s2_sig"]))
    (torch.Size([4800]), True)
    """

    max_attempts = 10

    def __init__(
        self,
        speaker_folder,
        num_spks,
        num_mixtures,
        sample_rate=8000,
        segment_samples=None,
        noise_folder=None,
        seed=1234,
    ):
        super().__init__(speaker_folder, num_spks, num_mixtures, sample_rate, segment_samples, seed)
        if self.segment_samples is not None and self.segment_samples < LOUDNESS_BLOCK_SECONDS * self.sample_rate:
            raise ValueError(
                f"segment_samples={self.segment_samples} is shorter than the {LOUDNESS_BLOCK_SECONDS} s that "
                f"loudness measurement needs at {self.sample_rate} Hz"
            )
        self.noise_files = None
        if noise_folder is not None:
            self.noise_files = sorted(str(p) for p in Path(noise_folder).glob("*.wav"))
            if not self.noise_files:
                raise FileNotFoundError(f"No WHAM! noise *.wav files in {noise_folder}")

    def _window(self, path, length, rng, channel=None):
        """A random window of ``length`` output samples (whole file when shorter), resampled."""
        frames, rate = audio_info(path)
        native = frames if length is None else min(frames, int(np.ceil(length * rate / self.sample_rate)))
        start = int(rng.integers(0, frames - native + 1))
        signal, _ = read_audio(path, self.sample_rate, start=start, frames=native, channel=channel)
        return signal.numpy().astype(np.float64)

    def _draw(self, rng):
        files = self.draw_speaker_files(rng)
        sources = fit_length([self._window(f, self.segment_samples, rng) for f in files], "min")
        length = len(sources[0])
        noise = None
        if self.noise_files is not None:
            path = self.noise_files[rng.integers(len(self.noise_files))]
            window = self._window(path, length, rng, channel=WHAM_NOISE_CHANNEL)
            noise = extend_noise(window, length, crossfade=self.sample_rate)
            files.append(path)
        gains, _, _ = librimix_gains(sources, self.sample_rate, rng, noise=noise, names=files)
        return files, sources, noise, gains

    def __getitem__(self, index):
        rng = self.rng(index)
        for _ in range(self.max_attempts):
            try:
                files, sources, noise, gains = self._draw(rng)
                break
            except ValueError as err:  # silent or too short window: draw again (deterministically)
                error = err
        else:
            raise RuntimeError(
                f"Could not draw a usable mixture for item {index} in {self.max_attempts} attempts; last error: {error}"
            )
        scaled = [torch.from_numpy((s * g).astype(np.float32)) for s, g in zip(sources, gains)]
        mix = scaled[0].clone()
        for s in scaled[1:]:
            mix = mix + s
        item = {"id": f"dm_e{self.epoch}_{index}"}
        item.update({f"s{i + 1}_sig": s for i, s in enumerate(scaled)})
        if noise is not None:
            item["noise_sig"] = torch.from_numpy((noise * gains[-1]).astype(np.float32))
            mix = mix + item["noise_sig"]
        item["mix_sig"] = mix
        return item


def write_toy_librispeech(root, n_speakers=6, n_utterances=3, seconds=(1.0, 2.0), sample_rate=16000, seed=0):
    """Write a tiny LibriSpeech-layout corpus of synthetic voiced sounds (tests and smoke runs).

    Each speaker has its own pitch; each utterance is a harmonic tone with a syllable-like
    envelope plus a little noise, saved as ``<root>/train-clean-100/<spk>/<chapter>/<spk>-<chapter>-<n>.flac``.

    Example
    -------
    >>> import tempfile
    >>> root = write_toy_librispeech(tempfile.mkdtemp(), n_speakers=2, n_utterances=1, seconds=(0.5, 0.5))
    >>> len(list(root.glob("*/*/*/*.flac")))
    2
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    for spk in range(n_speakers):
        speaker = str(100 + spk)
        chapter = str(1000 + spk)
        folder = root / "train-clean-100" / speaker / chapter
        folder.mkdir(parents=True, exist_ok=True)
        pitch = 90.0 + 220.0 * spk / max(1, n_speakers - 1)
        for utt in range(n_utterances):
            n = int(rng.uniform(*seconds) * sample_rate)
            t = np.arange(n) / sample_rate
            f0 = pitch * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            voiced = sum(np.sin(k * phase) / k for k in range(1, 6))
            envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t + rng.uniform(0, 2 * np.pi))
            signal = rng.uniform(0.05, 0.3) * envelope * voiced / 2 + 0.003 * rng.standard_normal(n)
            sf.write(str(folder / f"{speaker}-{chapter}-{utt:04d}.flac"), signal, sample_rate, subtype="PCM_16")
    return root


def librimix_folder(data_folder, sample_rate=8000, mode="min"):
    """The ``wav8k/min``-style folder of a ``Libri{n}Mix`` corpus."""
    return os.path.join(data_folder, f"wav{int(sample_rate) // 1000}k", mode)


def prepare_librimix(
    data_folder,
    save_folder,
    num_spks=2,
    sample_rate=8000,
    mode="min",
    splits=SPLITS,
    use_wham_noise=False,
    skip_prep=False,
):
    """Lists a ``Libri{n}Mix`` corpus in CSVs for :func:`~spgm_lobes.data.csv_dataset.separation_dataset`.

    Reads ``<data_folder>/wav8k/min/<split>/{mix_clean|mix_both,s1,s2[,s3],noise}/`` and writes
    ``libri{n}mix_<split>.csv`` (columns ``ID, duration, mix_wav, s1_wav, ...[, noise_wav]``) into
    ``save_folder``. With ``use_wham_noise`` the mixtures are ``mix_both`` and ``noise_wav`` is listed
    (the Brain adds the noise back after speed perturbation). CSVs already present are kept when they
    were written for the same corpus folder, speaker count and noise option, else written again
    (:func:`~spgm_lobes.data.csv_dataset.csvs_up_to_date`).

    Returns the dict ``{split: csv_path}``.

    Example
    -------
    >>> import tempfile
    >>> prepare_librimix(tempfile.mkdtemp(), tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: LibriMix folders missing under .../wav8k/min: train-360/mix_clean, ...
    """
    os.makedirs(save_folder, exist_ok=True)
    csvs = {split: os.path.join(save_folder, f"libri{num_spks}mix_{split}.csv") for split in splits}
    root = librimix_folder(data_folder, sample_rate, mode)
    options = {"data_folder": os.path.abspath(root), "num_spks": num_spks, "use_wham_noise": bool(use_wham_noise)}
    if skip_prep or csvs_up_to_date(save_folder, csvs, options):
        return csvs
    mix_dir = "mix_both" if use_wham_noise else "mix_clean"
    parts = [mix_dir] + [f"s{i + 1}" for i in range(num_spks)] + (["noise"] if use_wham_noise else [])
    missing = [
        f"{split}/{part}" for split in splits for part in parts if not os.path.isdir(os.path.join(root, split, part))
    ]
    if missing:
        raise FileNotFoundError(f"LibriMix folders missing under {root}: {', '.join(missing)}")
    check_speaker_count(root, splits, num_spks)
    for split, csv_path in csvs.items():
        names = {part: {f for f in os.listdir(os.path.join(root, split, part)) if f.endswith(".wav")} for part in parts}
        unmatched = sorted(
            os.path.join(root, split, part, name)
            for part in parts
            for name in set().union(*names.values()) - names[part]
        )
        if unmatched:
            more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
            raise ValueError(f"Unmatched LibriMix files, missing: {', '.join(unmatched[:5])}{more}")
        if not names[mix_dir]:
            raise FileNotFoundError(f"No .wav files in {os.path.join(root, split, mix_dir)}")
        rows = []
        for name in tqdm(sorted(names[mix_dir]), desc=f"LibriMix {split}", disable=len(names[mix_dir]) < 200):
            mix_path = os.path.join(root, split, mix_dir, name)
            frames, rate = audio_info(mix_path)
            row = {"ID": os.path.splitext(name)[0], "duration": frames / rate, "mix_wav": mix_path}
            for part in parts[1:]:
                row[f"{part}_wav"] = os.path.join(root, split, part, name)
            rows.append(row)
        write_csv(csv_path, rows)
    record_csv_options(save_folder, options)
    return csvs
