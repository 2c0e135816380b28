#!/usr/bin/env python3
"""Libri2Mix / Libri3Mix separation recipe.

    python train.py hparams/spgm.yaml --data_folder <root>/Libri2Mix --output_folder results/spgm

Create the corpus first with ``../create_librimix.py`` (official LibriMix from LibriSpeech + WHAM!
with the published metadata, or LibriMix-style mixtures from any LibriSpeech-layout folder).

Noisy mixtures (``mix_both``, WHAM! noise):

    python train.py hparams/spgm.yaml --data_folder <root>/Libri2Mix --use_wham_noise True

Dynamic mixing straight from LibriSpeech speaker folders, with LibriMix's loudness rules:

    python train.py hparams/spgm.yaml --data_folder <root>/Libri2Mix \\
        --dynamic_mixing True --base_folder_dm <LibriSpeech>/train-clean-360 \\
        [--use_wham_noise True --noise_folder_dm <wham_noise>/tr]

Training, evaluation and checkpointing live in ``spgm_lobes`` (SeparationBrain);
this file only prepares the LibriMix CSVs and builds the datasets.
"""

import sys

from spgm_lobes.data.csv_dataset import separation_dataset
from spgm_lobes.data.librimix import LibriMixDynamicDataset, prepare_librimix
from spgm_lobes.recipe import run_recipe


def splits(hparams):
    """Training, validation and test split folders."""
    return hparams["train_split"], "dev", "test"


def prepare_data(hparams):
    """Writes libri{n}mix_<split>.csv for the three splits into the save folder."""
    prepare_librimix(
        hparams["data_folder"],
        hparams["save_folder"],
        num_spks=hparams["num_spks"],
        sample_rate=hparams["sample_rate"],
        mode=hparams["mode"],
        splits=splits(hparams),
        use_wham_noise=hparams["use_wham_noise"],
        skip_prep=hparams["skip_prep"],
    )


def build_datasets(hparams):
    """Train (static or dynamic mixing), valid and test datasets."""
    num_spks = hparams["num_spks"]
    train_split, valid_split, test_split = splits(hparams)
    csv = {split: f"{hparams['save_folder']}/libri{num_spks}mix_{split}.csv" for split in splits(hparams)}
    noise = hparams["use_wham_noise"]
    static = separation_dataset(csv[train_split], num_spks, with_noise=noise)
    if hparams["dynamic_mixing"]:
        if hparams["base_folder_dm"] is None:
            raise ValueError("dynamic_mixing needs base_folder_dm (e.g. <LibriSpeech>/train-clean-360)")
        if noise and hparams["noise_folder_dm"] is None:
            raise ValueError("dynamic_mixing with use_wham_noise needs noise_folder_dm (e.g. <wham_noise>/tr)")
        train = LibriMixDynamicDataset(
            hparams["base_folder_dm"],
            num_spks=num_spks,
            num_mixtures=hparams["dm_mixtures_per_epoch"] or len(static),
            sample_rate=hparams["sample_rate"],
            segment_samples=hparams["training_signal_len"] if hparams["limit_training_signal_len"] else None,
            noise_folder=hparams["noise_folder_dm"] if noise else None,
            seed=hparams["seed"],
        )
    else:
        train = static
    return train, separation_dataset(csv[valid_split], num_spks), separation_dataset(csv[test_split], num_spks)


if __name__ == "__main__":
    run_recipe(sys.argv[1:], prepare_data, build_datasets)
