"""SpeechBrain datasets of separation examples listed in CSV files.

Every preparation script of spgm-lobes writes CSVs with the columns ``ID``,
``duration``, ``mix_wav``, ``s1_wav`` ... ``s<n>_wav`` (and optionally
``noise_wav``); this module turns them into ``DynamicItemDataset`` s that yield
the batch keys the :class:`~spgm_lobes.separation.SeparationBrain` expects.
"""

import csv
import json
import logging
import os

import speechbrain as sb

from ..dsp.audio import read_audio


def write_csv(path, rows):
    """Writes ``rows`` (list of dicts with the same keys) to ``path``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


logger = logging.getLogger(__name__)

OPTIONS_FILE = "prepare_options.json"


def csvs_up_to_date(save_folder, csvs, options):
    """Whether the preparation CSVs ``csvs`` (dict of paths) can be kept: all present, and written
    for these ``options`` (recorded in ``<save_folder>/prepare_options.json`` by
    :func:`record_csv_options`). CSVs written for other options (another corpus folder, speaker
    count, noise) are written again, with a log line; CSVs without a record (an earlier version) are
    kept, as before.

    Example
    -------
    >>> import tempfile, os
    >>> save = tempfile.mkdtemp()
    >>> csvs = {"train": os.path.join(save, "train.csv")}
    >>> _ = open(csvs["train"], "w").write("ID")
    >>> record_csv_options(save, {"num_spks": 2})
    >>> csvs_up_to_date(save, csvs, {"num_spks": 2}), csvs_up_to_date(save, csvs, {"num_spks": 3})
    (True, False)
    """
    if not all(os.path.isfile(p) for p in csvs.values()):
        return False
    path = os.path.join(save_folder, OPTIONS_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        recorded = None
    if recorded == options:
        return True
    logger.info("Preparing the CSVs in %s again: they were written for %s, not %s.", save_folder, recorded, options)
    return False


def record_csv_options(save_folder, options):
    """Writes the options the CSVs of ``save_folder`` were prepared with (see :func:`csvs_up_to_date`)."""
    with open(os.path.join(save_folder, OPTIONS_FILE), "w", encoding="utf-8") as f:
        json.dump(options, f, indent=2, sort_keys=True)


def check_speaker_count(root, splits, num_spks):
    """Raises ``ValueError`` when a split folder of ``root`` has an ``s<num_spks + 1>`` folder: the
    corpus has more speakers per mixture than ``num_spks`` (e.g. 3speakers read with ``num_spks: 2``)."""
    extra = [os.path.join(root, split, f"s{num_spks + 1}") for split in splits]
    extra = [path for path in extra if os.path.isdir(path)]
    if extra:
        raise ValueError(
            f"{extra[0]} exists: the corpus under {root} has more than num_spks = {num_spks} sources per mixture; "
            f"set num_spks (--num_spks) to its speaker count."
        )


def separation_dataset(csv_path, num_spks, with_noise=False, sort_by_duration=False):
    """A ``DynamicItemDataset`` yielding ``id``, ``mix_sig``, ``s1_sig`` ...
    (and ``noise_sig`` when ``with_noise``) from a preparation CSV.

    Example
    -------
    >>> import tempfile, os, torch, soundfile as sf
    >>> tmp = tempfile.mkdtemp()
    >>> for name in ("mix", "s1", "s2"):
    ...     sf.write(os.path.join(tmp, name + ".wav"), torch.zeros(80).numpy(), 8000)
    >>> write_csv(os.path.join(tmp, "d.csv"), [{"ID": "a", "duration": 0.01,
    ...     **{f"{n}_wav": os.path.join(tmp, n + ".wav") for n in ("mix", "s1", "s2")}}])
    >>> ds = separation_dataset(os.path.join(tmp, "d.csv"), 2)
    >>> sorted(ds[0]), ds[0]["mix_sig"].shape
    (['id', 'mix_sig', 's1_sig', 's2_sig'], torch.Size([80]))
    """
    data = sb.dataio.dataset.DynamicItemDataset.from_csv(csv_path=csv_path)
    if sort_by_duration:
        data = data.filtered_sorted(sort_key="duration")
    keys = ["mix"] + [f"s{i + 1}" for i in range(num_spks)] + (["noise"] if with_noise else [])
    for key in keys:
        data.add_dynamic_item(_reader(key), takes=f"{key}_wav", provides=f"{key}_sig")
    sb.dataio.dataset.set_output_keys([data], ["id"] + [f"{k}_sig" for k in keys])
    return data


def _reader(key):
    def read(path):
        return read_audio(path)[0]  # channels averaged, at the file's rate

    read.__name__ = f"read_{key}"
    return read
