"""Preparation of the wsj0-2mix / wsj0-3mix corpora.

The standard layout (as written by the wsj0-mix MATLAB scripts)::

    <data_folder>/wav8k/{min,max}/{tr,cv,tt}/{mix,s1,s2[,s3]}/<name>.wav

is turned into ``wsj_tr.csv``, ``wsj_cv.csv`` and ``wsj_tt.csv`` with the
columns ``ID, duration, mix_wav, s1_wav, ...``, readable by
:func:`spgm_lobes.data.csv_dataset.separation_dataset`.

:func:`prepare_data` and :func:`build_datasets` are the data part of the WSJ0Mix recipe
(``recipes/WSJ0Mix/separation/train.py``), kept in the package so that the quickstart runs the same
recipe from an installed package.
"""

import os

from tqdm import tqdm

from ..dsp.audio import audio_info
from .csv_dataset import check_speaker_count, csvs_up_to_date, record_csv_options, separation_dataset, write_csv
from .dynamic_mixing import SpeakerMixingDataset

SPLITS = {"tr": "wsj_tr.csv", "cv": "wsj_cv.csv", "tt": "wsj_tt.csv"}


def wsj0mix_folder(data_folder, sample_rate=8000, mode="min"):
    """The ``wav8k/min``-style folder of a wsj0-mix corpus."""
    return os.path.join(data_folder, f"wav{int(sample_rate) // 1000}k", mode)


def prepare_wsj0mix(data_folder, save_folder, num_spks=2, sample_rate=8000, mode="min", skip_prep=False):
    """Writes the three CSVs of a wsj0-mix corpus into ``save_folder``.

    Raises ``FileNotFoundError`` naming every missing folder, and ``ValueError``
    naming the files that have no counterpart in the other folders (e.g. a
    mixture without its ``s2`` file), or a folder ``s<num_spks + 1>`` (a corpus of more speakers). CSVs
    already present are kept when they were written for the same corpus folder and speaker count, else
    written again (:func:`~spgm_lobes.data.csv_dataset.csvs_up_to_date`).

    Returns the dict ``{split: csv_path}``.

    Example
    -------
    >>> import tempfile
    >>> prepare_wsj0mix(tempfile.mkdtemp(), tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: wsj0-mix folders missing under .../wav8k/min: tr/mix, tr/s1, ...
    """
    os.makedirs(save_folder, exist_ok=True)
    csvs = {split: os.path.join(save_folder, name) for split, name in SPLITS.items()}
    root = wsj0mix_folder(data_folder, sample_rate, mode)
    options = {"data_folder": os.path.abspath(root), "num_spks": num_spks}
    if skip_prep or csvs_up_to_date(save_folder, csvs, options):
        return csvs
    parts = ["mix"] + [f"s{i + 1}" for i in range(num_spks)]
    missing = [
        f"{split}/{part}" for split in SPLITS for part in parts if not os.path.isdir(os.path.join(root, split, part))
    ]
    if missing:
        raise FileNotFoundError(f"wsj0-mix folders missing under {root}: {', '.join(missing)}")
    check_speaker_count(root, SPLITS, num_spks)
    for split, csv_path in csvs.items():
        names = {part: _wav_names(os.path.join(root, split, part)) for part in parts}
        _check_matching(names, os.path.join(root, split))
        rows = []
        for name in tqdm(sorted(names["mix"]), desc=f"wsj0-mix {split}", disable=len(names["mix"]) < 200):
            mix_path = os.path.join(root, split, "mix", name)
            frames, rate = audio_info(mix_path)
            row = {"ID": os.path.splitext(name)[0], "duration": frames / rate, "mix_wav": mix_path}
            for part in parts[1:]:
                row[f"{part}_wav"] = os.path.join(root, split, part, name)
            rows.append(row)
        if not rows:
            raise FileNotFoundError(f"No .wav files in {os.path.join(root, split, 'mix')}")
        write_csv(csv_path, rows)
    record_csv_options(save_folder, options)
    return csvs


def _wav_names(folder):
    return {f for f in os.listdir(folder) if f.lower().endswith(".wav")}


def _check_matching(names, split_folder):
    reference = set().union(*names.values())
    problems = []
    for part, files in names.items():
        for name in sorted(reference - files)[:5]:
            problems.append(f"{os.path.join(split_folder, part, name)} is missing")
        extra = len(reference - files) - 5
        if extra > 0:
            problems.append(f"... and {extra} more missing in {os.path.join(split_folder, part)}")
    if problems:
        raise ValueError("Unmatched wsj0-mix files: " + "; ".join(problems))


def prepare_data(hparams):
    """The WSJ0Mix recipe's preparation: writes wsj_tr.csv, wsj_cv.csv and wsj_tt.csv into ``save_folder``."""
    prepare_wsj0mix(
        hparams["data_folder"],
        hparams["save_folder"],
        num_spks=hparams["num_spks"],
        sample_rate=hparams["sample_rate"],
        mode=hparams["mode"],
        skip_prep=hparams["skip_prep"],
    )


def build_datasets(hparams):
    """The WSJ0Mix recipe's datasets: train (static or dynamic mixing), valid and test."""
    csv = {split: os.path.join(hparams["save_folder"], name) for split, name in SPLITS.items()}
    num_spks = hparams["num_spks"]
    if hparams["dynamic_mixing"]:
        if hparams["base_folder_dm"] is None:
            raise ValueError("dynamic_mixing needs base_folder_dm (e.g. <wsj0>/si_tr_s_8k, one folder per speaker)")
        static = separation_dataset(csv["tr"], num_spks)
        train = SpeakerMixingDataset(
            hparams["base_folder_dm"],
            num_spks=num_spks,
            num_mixtures=hparams["dm_mixtures_per_epoch"] or len(static),
            sample_rate=hparams["sample_rate"],
            segment_samples=hparams["training_signal_len"] if hparams["limit_training_signal_len"] else None,
            max_relative_db=hparams["dm_max_relative_db"],
            seed=hparams["seed"],
        )
    else:
        train = separation_dataset(csv["tr"], num_spks)
    return train, separation_dataset(csv["cv"], num_spks), separation_dataset(csv["tt"], num_spks)
