#!/usr/bin/env python3
"""WSJ0-2mix / WSJ0-3mix separation recipe.

    python train.py hparams/spgm.yaml --data_folder <wsj0-mix>/2speakers --output_folder results/spgm

Dynamic mixing from the WSJ0 ``si_tr_s`` speaker folders:

    python train.py hparams/spgm.yaml --data_folder <wsj0-mix>/2speakers \\
        --dynamic_mixing True --base_folder_dm <wsj0>/si_tr_s_8k

Multi-GPU (SpeechBrain DDP):

    torchrun --nproc_per_node=4 train.py hparams/spgm.yaml --data_folder ...

Training, evaluation and checkpointing live in ``spgm_lobes`` (SeparationBrain);
this file only prepares the wsj0-mix CSVs and builds the datasets.
"""

import sys

from spgm_lobes.data.csv_dataset import separation_dataset
from spgm_lobes.data.dynamic_mixing import SpeakerMixingDataset
from spgm_lobes.data.wsj0mix import prepare_wsj0mix
from spgm_lobes.recipe import run_recipe


def prepare_data(hparams):
    """Writes wsj_tr.csv, wsj_cv.csv and wsj_tt.csv into the save folder."""
    prepare_wsj0mix(
        hparams["data_folder"],
        hparams["save_folder"],
        num_spks=hparams["num_spks"],
        sample_rate=hparams["sample_rate"],
        mode=hparams["mode"],
        skip_prep=hparams["skip_prep"],
    )


def build_datasets(hparams):
    """Train (static or dynamic mixing), valid and test datasets."""
    csv = {split: f"{hparams['save_folder']}/wsj_{split}.csv" for split in ("tr", "cv", "tt")}
    num_spks = hparams["num_spks"]
    if hparams["dynamic_mixing"]:
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


if __name__ == "__main__":
    run_recipe(sys.argv[1:], prepare_data, build_datasets)
