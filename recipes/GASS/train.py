#!/usr/bin/env python3
"""GASS recipe: general audio source separation of speech, music and sound events (1-4 sources, 4 outputs).

    python recipes/GASS/train.py recipes/GASS/hparams/spgm.yaml --data_folder <speech/ music/ sfx/ folder> \\
        --output_folder results/gass-spgm   # from the repository root

The data folder holds one sub-folder per category (``speech``, ``music``, ``sfx``; any audio files soundfile
reads, at any rate, in any sub-folders), or give a manifest CSV (``path,category[,split]``) with ``--manifest``.
Files are split per category into disjoint train / valid / test lists (written to ``<save_folder>/gass_*.csv``;
a LibriSpeech speaker's files stay in one split) unless the manifest has a ``split`` column. Every epoch draws
new training mixtures of 1 to 4 sources
(:class:`spgm_lobes.data.gass.GASSMixer`); validation and test mixtures are fixed.

The separator always predicts 4 sources; the targets of absent sources are zeros. Training minimises the
permutation-invariant log-MSE with a -30 dB soft threshold (:mod:`spgm_lobes.losses.log_mse`). The test stage writes
``test_results.csv`` (one row per mixture: source count, categories, SI-SNR and SI-SNRi of the active sources,
energy of the outputs matched to silent references relative to the mixture) and ``test_summary_by_count.csv``.

Training, checkpointing and the command line live in ``spgm_lobes`` (SeparationBrain, run_recipe); this file only
prepares the file lists, builds the mixers and swaps the loss and the test metrics.
"""

import csv
import logging
import os
import sys
from pathlib import Path

from spgm_lobes.data.gass import GASSMixer, find_category_files, read_manifest, split_category_files
from spgm_lobes.losses.log_mse import permutation_invariant_log_mse
from spgm_lobes.metrics.gass import gass_scores, summarize_by_count
from spgm_lobes.metrics.results import RESULTS_FILE
from spgm_lobes.recipe import run_recipe
from spgm_lobes.separation import SeparationBrain

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")
RESULT_COLUMNS = ["snt_id", "num_sources", "categories", "si-snr", "si-snr_i", "silent_energy_db"]
SUMMARY_COLUMNS = ["num_sources", "count", "si-snr", "si-snr_i", "silent_energy_db"]
SUMMARY_FILE = "test_summary_by_count.csv"


class GASSBrain(SeparationBrain):
    """SeparationBrain with the GASS objective and test metrics (see the module docstring)."""

    def compute_loss(self, est_source, targets, lengths, mix):
        """Permutation-invariant log-MSE with a soft threshold, per mixture ``[B]``."""
        threshold = self._hp("loss_threshold_db", -30.0)
        return permutation_invariant_log_mse(est_source.float(), targets.float(), mix.float(), lengths, threshold)

    def utterance_metrics(self, est_source, targets, mix):
        """SI-SNR(i) of the active sources and silent-output energy, outputs matched with the training criterion."""
        _, perm = permutation_invariant_log_mse(
            est_source[None].float(), targets[None].float(), mix[None].float(), return_permutation=True
        )
        scores = gass_scores(est_source.float()[:, perm[0]], targets.float(), mix.float())
        return {k: scores[k] for k in ("si-snr", "si-snr_i", "silent_energy_db")}

    def utterance_info(self, batch, index):
        """Source count and categories of a test mixture."""
        return {"num_sources": int(batch.num_sources[index]), "categories": batch.categories[index]}

    def test_result_tables(self, rows):
        """``test_results.csv`` (per mixture, with an ``avg`` row) and ``test_summary_by_count.csv``, and the
        overall averages (NaNs — undefined values — ignored)."""
        summary = summarize_by_count(rows)
        average = {"snt_id": "avg", "num_sources": "all", "categories": "", **summary[-1]}
        tables = {RESULTS_FILE: (RESULT_COLUMNS, rows + [average]), SUMMARY_FILE: (SUMMARY_COLUMNS, summary)}
        return tables, {k: summary[-1][k] for k in ("si-snr", "si-snr_i", "silent_energy_db")}


def _manifest_path(hparams, split):
    return Path(hparams["save_folder"]) / f"gass_{split}.csv"


def prepare_data(hparams):
    """Writes ``gass_train.csv``, ``gass_valid.csv`` and ``gass_test.csv`` (``path,category,split``)."""
    if hparams["skip_prep"] and all(_manifest_path(hparams, s).is_file() for s in SPLITS):
        return
    if hparams["manifest"]:
        with open(hparams["manifest"], newline="") as f:
            has_split = "split" in (csv.DictReader(f).fieldnames or ())
        if has_split:
            splits = {s: read_manifest(hparams["manifest"], split=s) for s in SPLITS}
        else:
            splits = split_category_files(
                read_manifest(hparams["manifest"]), hparams["valid_fraction"], hparams["test_fraction"], hparams["seed"]
            )
    else:
        files = find_category_files(hparams["data_folder"], hparams["categories"])
        splits = split_category_files(files, hparams["valid_fraction"], hparams["test_fraction"], hparams["seed"])
    os.makedirs(hparams["save_folder"], exist_ok=True)
    for split in SPLITS:
        with open(_manifest_path(hparams, split), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path", "category", "split"])
            for category, paths in sorted(splits[split].items()):
                writer.writerows([str(Path(p).resolve()), category, split] for p in paths)
        counts = {c: len(p) for c, p in splits[split].items()}
        logger.info("GASS %s files per category: %s", split, counts)


def build_datasets(hparams):
    """Training mixer (new mixtures every epoch) and fixed validation / test mixers."""
    options = {
        key: hparams[key]
        for key in (
            "sample_rate",
            "min_sources",
            "max_sources",
            "category_weights",
            "background_prob",
            "background_categories",
            "foreground_gain_db",
            "background_gain_db",
            "min_foreground_fraction",
            "reference_level_db",
            "silence_threshold_db",
            "max_retries",
        )
    }
    options["num_outputs"] = hparams["num_spks"]
    datasets = []
    for offset, split in enumerate(SPLITS):
        seconds = hparams["segment_seconds"] if split == "train" else hparams["test_segment_seconds"]
        datasets.append(
            GASSMixer(
                read_manifest(_manifest_path(hparams, split), split=split),
                hparams[f"{split}_mixtures"],
                segment_seconds=seconds,
                seed=hparams["seed"] + offset,
                name=f"gass_{split}",
                **options,
            )
        )
    return tuple(datasets)


if __name__ == "__main__":
    run_recipe(sys.argv[1:], prepare_data, build_datasets, brain_class=GASSBrain)
