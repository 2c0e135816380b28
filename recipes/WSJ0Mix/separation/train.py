#!/usr/bin/env python3
"""WSJ0-2mix / WSJ0-3mix separation recipe.

    python train.py hparams/spgm.yaml --data_folder <wsj0-mix>/2speakers --output_folder results/spgm

Dynamic mixing from the WSJ0 ``si_tr_s`` speaker folders:

    python train.py hparams/spgm.yaml --data_folder <wsj0-mix>/2speakers \\
        --dynamic_mixing True --base_folder_dm <wsj0>/si_tr_s_8k

Multi-GPU (SpeechBrain DDP):

    torchrun --nproc_per_node=4 train.py hparams/spgm.yaml --data_folder ...

Training, evaluation and checkpointing live in ``spgm_lobes`` (SeparationBrain);
the wsj0-mix CSVs and datasets come from ``spgm_lobes.data.wsj0mix`` (``prepare_data``,
``build_datasets``; the quickstart runs the same recipe from there).
"""

import sys

from spgm_lobes.data.wsj0mix import build_datasets, prepare_data
from spgm_lobes.recipe import run_recipe

__all__ = ["build_datasets", "prepare_data"]

if __name__ == "__main__":
    run_recipe(sys.argv[1:], prepare_data, build_datasets)
