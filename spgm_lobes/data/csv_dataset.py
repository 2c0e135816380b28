"""SpeechBrain datasets of separation examples listed in CSV files.

Every preparation script of spgm-lobes writes CSVs with the columns ``ID``,
``duration``, ``mix_wav``, ``s1_wav`` ... ``s<n>_wav`` (and optionally
``noise_wav``); this module turns them into ``DynamicItemDataset`` s that yield
the batch keys the :class:`~spgm_lobes.separation.SeparationBrain` expects.
"""

import csv

import speechbrain as sb

from ..dsp.audio import read_audio


def write_csv(path, rows):
    """Writes ``rows`` (list of dicts with the same keys) to ``path``."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


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
