import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch

from spgm_lobes.data.dynamic_mixing import SpeakerMixingDataset


@pytest.fixture
def speaker_root(tmp_path):
    rng = np.random.default_rng(0)
    for s in range(6):
        folder = tmp_path / f"spk{s}" / "chapter"
        folder.mkdir(parents=True)
        for u in range(2):
            sf.write(folder / f"u{u}.wav", rng.standard_normal(1200 + 100 * u).astype("float32") * (s + 1) * 0.01, 8000)
    return tmp_path


def level_difference_db(item):
    p1 = item["s1_sig"].pow(2).mean()
    p2 = item["s2_sig"].pow(2).mean()
    return float(10 * torch.log10(p1 / p2))


def test_levels_uniform_within_5_db(speaker_root):
    ds = SpeakerMixingDataset(speaker_root, num_spks=2, num_mixtures=400, sample_rate=8000)
    diffs = np.array([level_difference_db(ds[i]) for i in range(400)])
    assert np.abs(diffs).max() <= 5.0 + 1e-3
    # |difference| uniform on [0, 5]: mean 2.5, quartiles 1.25 / 3.75
    assert abs(np.abs(diffs).mean() - 2.5) < 0.3
    q1, q3 = np.quantile(np.abs(diffs), [0.25, 0.75])
    assert abs(q1 - 1.25) < 0.4 and abs(q3 - 3.75) < 0.4
    assert (diffs > 0).mean() == pytest.approx(0.5, abs=0.1)


def test_distinct_speakers_and_exact_sum(speaker_root):
    ds = SpeakerMixingDataset(speaker_root, num_spks=3, num_mixtures=30, sample_rate=8000, segment_samples=1000)
    for i in range(30):
        item = ds[i]
        assert item["mix_sig"].shape[0] <= 1000
        torch.testing.assert_close(item["mix_sig"], item["s1_sig"] + item["s2_sig"] + item["s3_sig"])
        assert item["mix_sig"].abs().max() <= 0.9 + 1e-6
    rng_speakers = [ds.rng(i).choice(len(ds.speaker_ids), size=3, replace=False) for i in range(30)]
    assert all(len(set(s)) == 3 for s in rng_speakers)


def test_new_mixtures_each_epoch_and_deterministic(speaker_root):
    a = SpeakerMixingDataset(speaker_root, num_spks=2, num_mixtures=4, seed=7)
    b = SpeakerMixingDataset(speaker_root, num_spks=2, num_mixtures=4, seed=7)
    torch.testing.assert_close(a[3]["mix_sig"], b[3]["mix_sig"])
    first = a[3]["mix_sig"]
    a.set_epoch(2)
    assert a[3]["mix_sig"].shape != first.shape or not torch.allclose(a[3]["mix_sig"], first)


def test_same_mixtures_with_several_workers(speaker_root):
    ds = SpeakerMixingDataset(speaker_root, num_spks=2, num_mixtures=6, seed=3)
    ds.set_epoch(5)

    def collect(workers):
        loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=workers, collate_fn=PaddedBatch)
        return [b.mix_sig.data for b in loader]

    for single, multi in zip(collect(0), collect(2)):
        torch.testing.assert_close(single, multi)


def test_too_few_speakers(tmp_path):
    (tmp_path / "only").mkdir()
    sf.write(tmp_path / "only" / "u.wav", np.zeros(100, dtype="float32"), 8000)
    with pytest.raises(ValueError, match="at least 2 speakers"):
        SpeakerMixingDataset(tmp_path, num_spks=2, num_mixtures=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SpeakerMixingDataset(tmp_path / "nope", num_spks=2, num_mixtures=1)
