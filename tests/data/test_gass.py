"""Tests of the GASS dynamic mixer (spgm_lobes.data.gass)."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.dataio.batch import PaddedBatch

from spgm_lobes.data.gass import GASSMixer, find_category_files, read_manifest, split_category_files

SAMPLE_RATE = 8000


def _tone(freq, seconds, rate, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.normal(size=t.size)).astype("float32")


@pytest.fixture
def category_folders(tmp_path):
    """speech/ at 16 kHz (in a sub-folder), music/ at 44.1 kHz stereo, sfx/ at 8 kHz."""
    (tmp_path / "speech" / "spk1").mkdir(parents=True)
    (tmp_path / "music").mkdir()
    (tmp_path / "sfx").mkdir()
    for i in range(3):
        sf.write(tmp_path / "speech" / "spk1" / f"u{i}.flac", _tone(200 + 50 * i, 1.0, 16000, i), 16000)
        music = np.stack([_tone(440 + 20 * i, 0.8, 44100, 10 + i)] * 2, -1)
        sf.write(tmp_path / "music" / f"m{i}.wav", music, 44100)
        sf.write(tmp_path / "sfx" / f"e{i}.wav", _tone(1000 + 100 * i, 0.3, 8000, 20 + i), 8000)
    return tmp_path


def _mixer(root, **kwargs):
    options = dict(num_items=12, sample_rate=SAMPLE_RATE, segment_seconds=0.5, seed=3)
    options.update(kwargs)
    return GASSMixer(find_category_files(root), **options)


def test_find_category_files_recursive_and_errors(category_folders, tmp_path_factory):
    files = find_category_files(category_folders)
    assert sorted(files) == ["music", "sfx", "speech"]
    assert [p.name for p in files["speech"]] == ["u0.flac", "u1.flac", "u2.flac"]
    empty = tmp_path_factory.mktemp("empty")
    (empty / "music").mkdir()
    with pytest.raises(FileNotFoundError, match="music"):
        find_category_files(empty)
    with pytest.raises(FileNotFoundError, match="No category folder"):
        find_category_files(tmp_path_factory.mktemp("none"))


def test_manifest_and_split(category_folders):
    manifest = category_folders / "manifest.csv"
    manifest.write_text("path,category,split\nspeech/spk1/u0.flac,speech,train\nmusic/m1.wav,music,test\n")
    assert {c: [p.name for p in v] for c, v in read_manifest(manifest).items()} == {
        "speech": ["u0.flac"],
        "music": ["m1.wav"],
    }
    assert list(read_manifest(manifest, split="test")) == ["music"]
    bad = category_folders / "bad.csv"
    bad.write_text("file,category\na.wav,speech\n")
    with pytest.raises(ValueError, match="path"):
        read_manifest(bad)
    splits = split_category_files(find_category_files(category_folders), seed=0)
    for category in ("speech", "music", "sfx"):
        parts = [set(splits[s][category]) for s in ("train", "valid", "test")]
        assert all(len(p) == 1 for p in parts) and not (parts[0] & parts[1] or parts[1] & parts[2])
    with pytest.raises(ValueError, match="3 or more"):
        split_category_files({"sfx": ["a.wav", "b.wav"]})


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_source_count_and_zero_targets(category_folders, count):
    mixer = _mixer(category_folders, min_sources=count, max_sources=count, num_items=3)
    for index in range(len(mixer)):
        item = mixer[index]
        sources = torch.stack([item[f"s{k}_sig"] for k in range(1, 5)])
        assert sources.shape == (4, int(0.5 * SAMPLE_RATE))
        assert item["num_sources"] == count
        assert len(item["categories"].split("+")) == count
        energies = sources.pow(2).sum(-1)
        assert (energies[:count] > 0).all()
        assert (energies[count:] == 0).all()
        torch.testing.assert_close(item["mix_sig"], sources.sum(0))


def test_counts_and_categories_vary(category_folders):
    mixer = _mixer(category_folders, num_items=40)
    items = [mixer[i] for i in range(len(mixer))]
    assert {item["num_sources"] for item in items} == {1, 2, 3, 4}
    assert {c for item in items for c in item["categories"].split("+")} == {"speech", "music", "sfx"}


def test_foreground_gain_and_offsets(category_folders):
    mixer = _mixer(
        category_folders, min_sources=1, max_sources=1, foreground_gain_db=(-6.0, -6.0), min_foreground_fraction=0.3
    )
    lengths = set()
    for index in range(len(mixer)):
        source = mixer[index]["s1_sig"]
        active = source[source != 0]
        lengths.add(active.numel())
        assert active.numel() >= 0.3 * source.numel() - 1
        rms = active.pow(2).mean().sqrt().item()
        assert 20 * math.log10(rms) == pytest.approx(-25.0 - 6.0, abs=0.05)
    assert len(lengths) > 1  # random durations


def test_background_spans_mixture_with_its_gain(category_folders):
    mixer = _mixer(
        category_folders,
        min_sources=2,
        max_sources=2,
        background_prob=1.0,
        background_categories=("sfx",),
        background_gain_db=(-12.0, -12.0),
        foreground_gain_db=(0.0, 0.0),
        min_foreground_fraction=0.5,
    )
    for index in range(len(mixer)):
        item = mixer[index]
        sources = [item["s1_sig"], item["s2_sig"]]
        full = [s for s in sources if (s != 0).float().mean() > 0.99]
        assert full, "the background must span the whole mixture (sfx files are shorter: they are looped)"
        assert "sfx" in item["categories"]
        levels = sorted(20 * math.log10(s[s != 0].pow(2).mean().sqrt().item()) for s in sources)
        if len(full) == 1:  # the foreground is shorter: the background is the quieter one
            assert levels[0] == pytest.approx(-37.0, abs=0.05)
            assert levels[1] == pytest.approx(-25.0, abs=0.05)


def test_clipping_rescales_mixture_and_sources_together(category_folders):
    mixer = _mixer(category_folders, min_sources=4, max_sources=4, reference_level_db=0.0, foreground_gain_db=(6, 6))
    item = mixer[0]
    assert item["mix_sig"].abs().max().item() == pytest.approx(0.99, abs=1e-5)
    torch.testing.assert_close(item["mix_sig"], sum(item[f"s{k}_sig"] for k in range(1, 5)))


def test_deterministic_per_seed_epoch_index(category_folders):
    first = _mixer(category_folders)
    second = _mixer(category_folders)
    backwards = [second[i] for i in reversed(range(len(second)))][::-1]
    for a, b in zip([first[i] for i in range(len(first))], backwards):
        assert a["categories"] == b["categories"]
        torch.testing.assert_close(a["mix_sig"], b["mix_sig"], rtol=0, atol=0)
    other_seed = _mixer(category_folders, seed=4)
    assert not torch.equal(first[0]["mix_sig"], other_seed[0]["mix_sig"])
    epoch0 = first[0]["mix_sig"]
    first.set_epoch(1)
    assert not torch.equal(epoch0, first[0]["mix_sig"])
    first.set_epoch(0)
    torch.testing.assert_close(epoch0, first[0]["mix_sig"], rtol=0, atol=0)


def test_several_workers_give_the_same_mixtures(category_folders):
    mixer = _mixer(category_folders, num_items=8)
    mixer.set_epoch(2)

    def batches(workers):
        loader = torch.utils.data.DataLoader(mixer, batch_size=3, num_workers=workers, collate_fn=PaddedBatch)
        return [(b.id, b.mix_sig.data, b.s4_sig.data, b.num_sources, b.categories) for b in loader]

    single, multi = batches(0), batches(2)
    assert len(single) == len(multi) == 3
    for a, b in zip(single, multi):
        assert a[0] == b[0] and a[4] == b[4]
        assert all(i.startswith("gass_e2_") for i in a[0])
        torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)
        torch.testing.assert_close(a[2], b[2], rtol=0, atol=0)
        torch.testing.assert_close(torch.as_tensor(a[3]), torch.as_tensor(b[3]))


def test_silence_aware_selection(category_folders, tmp_path_factory):
    # A silent file next to audible ones is skipped.
    sf.write(category_folders / "sfx" / "silent.wav", np.zeros(8000, dtype="float32"), 8000)
    mixer = _mixer(category_folders, num_items=30, category_weights={"sfx": 1.0}, min_sources=1, max_sources=2)
    for index in range(len(mixer)):
        item = mixer[index]
        for k in range(1, item["num_sources"] + 1):
            assert item[f"s{k}_sig"].abs().max() > 0
    # A folder with only silence is a clear error naming the category and the file.
    root = tmp_path_factory.mktemp("silent")
    (root / "music").mkdir()
    sf.write(root / "music" / "quiet.wav", np.full(8000, 1e-5, dtype="float32"), 8000)
    with pytest.raises(RuntimeError, match=r"'music'.*quiet\.wav"):
        GASSMixer(find_category_files(root), num_items=1, segment_seconds=0.25, max_retries=3)[0]


def test_bad_arguments(category_folders):
    files = find_category_files(category_folders)
    with pytest.raises(ValueError, match="max_sources"):
        GASSMixer(files, 1, max_sources=5)
    with pytest.raises(ValueError, match="reversed"):
        GASSMixer(files, 1, foreground_gain_db=(3, -3))
    with pytest.raises(IndexError):
        GASSMixer(files, 2)[2]
    broken = category_folders / "sfx" / "broken.wav"
    broken.write_bytes(b"not audio")
    mixer = GASSMixer({"sfx": [broken]}, 1, segment_seconds=0.1)
    with pytest.raises(RuntimeError, match="broken.wav"):
        mixer[0]


def _files_read(mixer, monkeypatch):
    """Calls ``mixer[i]`` for every item and returns the files each one read."""
    read = []
    original = mixer._read_crop
    monkeypatch.setattr(mixer, "_read_crop", lambda path, *args: read.append(path) or original(path, *args))
    per_item = []
    for index in range(len(mixer)):
        read.clear()
        assert mixer[index]["num_sources"] == len(read)  # no crop was redrawn: one file per source
        per_item.append(list(read))
    return per_item


def test_sources_of_a_mixture_are_distinct_files(category_folders, monkeypatch):
    mixer = _mixer(category_folders, num_items=60, segment_seconds=0.1, min_sources=3, max_sources=4)
    for paths in _files_read(mixer, monkeypatch):
        assert len(set(paths)) == len(paths), paths
    # fewer files than max_sources: mixtures have as many sources as there are files
    one_category = {"sfx": find_category_files(category_folders)["sfx"]}
    assert GASSMixer(one_category, 1, segment_seconds=0.1, min_sources=2, max_sources=4).max_sources == 3
    with pytest.raises(ValueError, match="min_sources=4 distinct files.*have 3"):
        GASSMixer(one_category, 1, segment_seconds=0.1, min_sources=4, max_sources=4)


def test_two_speaker_mixtures_have_distinct_speakers(tmp_path, monkeypatch):
    speech = []
    for speaker in ("19", "26", "32"):
        for utterance in range(3):
            path = tmp_path / speaker / "7" / f"{speaker}-7-{utterance:04d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _tone(150 + 10 * utterance, 0.2, 16000, utterance), 16000)
            speech.append(path)
    two = dict(min_sources=2, max_sources=2, background_prob=0.0, segment_seconds=0.05, num_outputs=2)
    mixer = GASSMixer({"speech": speech}, 60, distinct_speakers=True, **two)
    for paths in _files_read(mixer, monkeypatch):
        assert len({p.name.split("-")[0] for p in paths}) == 2, paths
    with pytest.raises(ValueError, match="min_sources=2 distinct speakers.*have 1"):
        GASSMixer({"speech": speech[:3]}, 1, distinct_speakers=True, **two)
    with pytest.raises(ValueError, match=r"LibriSpeech file names.*u0\.wav"):
        GASSMixer({"speech": [tmp_path / "u0.wav"]}, 1, distinct_speakers=True, min_sources=1, max_sources=1)


def test_split_keeps_each_librispeech_speaker_in_one_split():
    speech = [f"/ls/{s}/7/{s}-7-{u:04d}.flac" for s in range(100, 110) for u in range(3)]
    music = [f"/music/m{i}.wav" for i in range(10)]
    splits = split_category_files({"speech": speech, "music": music}, seed=4)
    speakers = {s: {p.rsplit("/", 1)[1].split("-")[0] for p in splits[s]["speech"]} for s in splits}
    assert [len(speakers[s]) for s in ("train", "valid", "test")] == [8, 1, 1]
    assert not speakers["train"] & speakers["valid"] and not speakers["train"] & speakers["test"]
    assert sorted(p for s in splits for p in splits[s]["speech"]) == sorted(speech)
    assert [len(splits[s]["music"]) for s in ("train", "valid", "test")] == [8, 1, 1]  # no speakers: file by file
    with pytest.raises(ValueError, match=r"'speech' has 2 speaker\(s\)"):
        split_category_files({"speech": speech[:6]})
