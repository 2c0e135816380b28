"""The one audio reader: channel rule, rate rule, sample ranges, errors naming the file; training data follows it."""

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from spgm_lobes.data.csv_dataset import separation_dataset, write_csv
from spgm_lobes.data.dynamic_mixing import SpeakerMixingDataset
from spgm_lobes.dsp.audio import AudioReadError, audio_info, read_audio, resample


@pytest.fixture
def stereo(tmp_path):
    """1 s at 16 kHz, two different channels."""
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((16000, 2))).astype("float32")
    path = tmp_path / "stereo.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    return path, audio


def test_channels_are_averaged_unless_one_is_picked(stereo):
    path, audio = stereo
    signal, rate = read_audio(path)
    assert rate == 16000 and signal.dtype == torch.float32
    np.testing.assert_allclose(signal.numpy(), audio.mean(axis=1), atol=1e-7)
    np.testing.assert_array_equal(read_audio(path, channel=1)[0].numpy(), audio[:, 1])
    with pytest.raises(AudioReadError, match=r"stereo.wav: has 2 channel\(s\), no channel 2"):
        read_audio(path, channel=2)


def test_rate_rule_and_sample_ranges(stereo):
    path, audio = stereo
    signal, rate = read_audio(path, sample_rate=8000)
    expected = torchaudio.functional.resample(torch.from_numpy(audio.mean(axis=1)), 16000, 8000)
    assert rate == 8000 and signal.shape == (8000,)
    torch.testing.assert_close(signal, expected, atol=1e-5, rtol=0)
    part, _ = read_audio(path, start=1000, frames=300)
    np.testing.assert_allclose(part.numpy(), audio[1000:1300].mean(axis=1), atol=1e-7)
    assert audio_info(path) == (16000, 16000)
    assert resample(signal, 8000, 8000) is signal


def test_errors_name_the_file(tmp_path, stereo):
    with pytest.raises(AudioReadError, match="missing.wav: no such file"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(AudioReadError, match="text.wav: not a readable audio file"):
        read_audio(tmp_path / "text.wav")
    with pytest.raises(AudioReadError, match="text.wav: not a readable audio file"):
        audio_info(tmp_path / "text.wav")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 8000)
    with pytest.raises(AudioReadError, match="empty.wav: the file holds no samples"):
        read_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioReadError, match="stereo.wav: the file holds no samples from sample 20000"):
        read_audio(stereo[0], start=20000)
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.0]), 8000, subtype="FLOAT")
    with pytest.raises(AudioReadError, match="nan.wav: the file holds NaN or infinite samples"):
        read_audio(tmp_path / "nan.wav")
    assert issubclass(AudioReadError, RuntimeError)


def test_training_data_follows_the_same_rule(tmp_path, stereo):
    """A two-channel file gives the same signal to the CSV datasets, to dynamic mixing and to inference."""
    path, audio = stereo
    write_csv(tmp_path / "d.csv", [{"ID": "a", "duration": 1.0, "mix_wav": path, "s1_wav": path, "s2_wav": path}])
    item = separation_dataset(tmp_path / "d.csv", 2)[0]
    np.testing.assert_allclose(item["mix_sig"].numpy(), audio.mean(axis=1), atol=1e-7)
    for speaker in ("a", "b"):
        (tmp_path / "spk" / speaker).mkdir(parents=True)
        sf.write(tmp_path / "spk" / speaker / "u.wav", audio, 16000, subtype="FLOAT")
    mixed = SpeakerMixingDataset(tmp_path / "spk", num_spks=2, num_mixtures=1, sample_rate=16000, max_relative_db=0)
    source = mixed[0]["s1_sig"]
    mono = torch.from_numpy(audio.mean(axis=1))
    torch.testing.assert_close(source / source.norm(), mono / mono.norm(), atol=1e-6, rtol=0)
