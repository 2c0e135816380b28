"""Tests of LibriMix-style metadata generation, mixture creation and dynamic mixing."""

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spgm_lobes.data.librimix import (
    LibriMixDynamicDataset,
    create_librimix,
    generate_metadata,
    prepare_librimix,
    read_metadata,
    scan_librispeech,
    write_toy_librispeech,
)
from spgm_lobes.dsp.loudness import MAX_LOUDNESS, MIN_LOUDNESS, measure_loudness


@pytest.fixture
def toy_corpus(tmp_path):
    return write_toy_librispeech(tmp_path / "LibriSpeech", n_speakers=7, n_utterances=2, seconds=(0.8, 1.2))


def _toy_wham(root, rate=16000):
    rng = np.random.default_rng(5)
    for folder in ("tr", "cv", "tt"):
        (root / folder).mkdir(parents=True)
        for i in range(2):
            sf.write(str(root / folder / f"n{i}.wav"), 0.05 * rng.standard_normal((int(0.7 * rate), 2)), rate)
    return root


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _make(corpus, out, seed=0, wham=None, **kwargs):
    md = generate_metadata(
        corpus, out / "md", n_src=2, seed=seed, n_dev_speakers=2, n_test_speakers=2, wham_root=wham, min_duration=0.5
    )
    return md, create_librimix(list(md.values()), corpus, out, wham_root=wham, **kwargs)


def test_layout_metadata_and_exact_sums(toy_corpus, tmp_path):
    wham = _toy_wham(tmp_path / "wham")
    md, root = _make(toy_corpus, tmp_path / "out", wham=wham, mix_types=("mix_clean", "mix_both"))
    assert root.name == "Libri2Mix"
    rows, n_src, has_noise = read_metadata(md["dev"])
    assert n_src == 2 and has_noise
    assert list(rows[0]) == [
        "mixture_ID", "source_1_path", "source_1_gain", "source_2_path", "source_2_gain", "noise_path", "noise_gain"
    ]  # fmt: skip
    # Speaker-disjoint splits, distinct speakers inside each mixture.
    speakers = {}
    for split in ("train-360", "dev", "test"):
        info = _rows(tmp_path / "out" / "md" / f"libri2mix_{split}_info.csv")
        assert all(r["speaker_1_ID"] != r["speaker_2_ID"] for r in info)
        speakers[split] = {r[k] for r in info for k in ("speaker_1_ID", "speaker_2_ID")}
    assert not speakers["train-360"] & speakers["dev"] and not speakers["dev"] & speakers["test"]
    assert not speakers["train-360"] & speakers["test"]
    for split in ("train-360", "dev", "test"):
        split_dir = root / "wav8k" / "min" / split
        assert sorted(p.name for p in split_dir.iterdir()) == ["mix_both", "mix_clean", "noise", "s1", "s2"]
        mixtures = _rows(root / "wav8k" / "min" / "metadata" / f"mixture_{split}_mix_both.csv")
        assert mixtures and list(mixtures[0]) == [
            "mixture_ID", "mixture_path", "source_1_path", "source_2_path", "noise_path", "length"
        ]  # fmt: skip
        for m in mixtures:
            mix, rate = sf.read(m["mixture_path"], dtype="float32")
            s1, s2, noise = (
                sf.read(m[k], dtype="float32")[0] for k in ("source_1_path", "source_2_path", "noise_path")
            )
            clean = sf.read(str(split_dir / "mix_clean" / f"{m['mixture_ID']}.wav"), dtype="float32")[0]
            assert rate == 8000 and len(mix) == int(m["length"]) == len(s1) == len(s2) == len(noise)
            np.testing.assert_array_equal(clean, s1 + s2)
            np.testing.assert_array_equal(mix, clean + noise)
            assert np.max(np.abs(mix)) <= 0.9 + 1e-6


def test_sources_loudness_in_drawn_range(toy_corpus, tmp_path):
    # Native rate and max mode: the written sources are the scaled originals (zero padding is gated out).
    md, root = _make(toy_corpus, tmp_path / "out", sample_rates=(16000,), modes=("max",))
    rows, _, _ = read_metadata(md["train-360"])
    assert len(rows) >= 3
    for row in rows:
        for i in (1, 2):
            src, rate = sf.read(str(root / "wav16k" / "max" / "train-360" / f"s{i}" / f"{row['mixture_ID']}.wav"))
            assert MIN_LOUDNESS - 0.05 <= measure_loudness(src, rate) <= MAX_LOUDNESS + 0.05
            original, _ = sf.read(str(toy_corpus / row[f"source_{i}_path"]))
            np.testing.assert_allclose(src[: len(original)], original * float(row[f"source_{i}_gain"]), atol=1e-6)


def test_determinism_and_resume(toy_corpus, tmp_path):
    md_a, root_a = _make(toy_corpus, tmp_path / "a", seed=3)
    md_b, root_b = _make(toy_corpus, tmp_path / "b", seed=3)
    md_c, _ = _make(toy_corpus, tmp_path / "c", seed=4)
    assert Path(md_a["test"]).read_text() == Path(md_b["test"]).read_text()
    # Worker processes do not change the result.
    md_w = generate_metadata(
        toy_corpus, tmp_path / "w", seed=3, n_dev_speakers=2, n_test_speakers=2, min_duration=0.5, num_workers=2
    )
    create_librimix([md_w["dev"]], toy_corpus, tmp_path / "w", num_workers=2)
    assert all(Path(md_a[k]).read_text() == Path(md_w[k]).read_text() for k in md_a)
    for path in (root_a / "wav8k" / "min" / "dev").glob("*/*.wav"):  # (float WAV headers hold a timestamp)
        other = tmp_path / "w" / path.relative_to(tmp_path / "a")
        np.testing.assert_array_equal(sf.read(str(path))[0], sf.read(str(other))[0])
    assert Path(md_a["train-360"]).read_text() != Path(md_c["train-360"]).read_text()
    first = next((root_a / "wav8k" / "min" / "dev" / "mix_clean").iterdir())
    np.testing.assert_array_equal(sf.read(str(first))[0], sf.read(str(root_b / first.relative_to(root_a)))[0])
    # Re-running skips finished files (mtime unchanged) and rewrites a removed one.
    mtime = first.stat().st_mtime_ns
    removed = next((root_a / "wav8k" / "min" / "test" / "s2").iterdir())
    removed.unlink()
    create_librimix(list(md_a.values()), toy_corpus, tmp_path / "a")
    assert first.stat().st_mtime_ns == mtime and removed.is_file()
    # Other metadata (another seed) into the same folder is refused, nothing is overwritten.
    with pytest.raises(ValueError, match="created from other metadata"):
        create_librimix([md_c["train-360"]], toy_corpus, tmp_path / "a")
    assert first.stat().st_mtime_ns == mtime


def test_unreadable_audio_is_reported_by_path(toy_corpus, tmp_path):
    bad = toy_corpus / "train-clean-100" / "100" / "1000" / "100-1000-0000.flac"
    bad.write_bytes(b"not audio")
    with pytest.raises(RuntimeError, match="100-1000-0000.flac"):
        scan_librispeech(toy_corpus)


def test_dynamic_mixing_is_deterministic_per_epoch(toy_corpus, tmp_path):
    wham = _toy_wham(tmp_path / "wham", rate=8000)
    ds = LibriMixDynamicDataset(
        toy_corpus / "train-clean-100",
        2,
        num_mixtures=4,
        sample_rate=8000,
        segment_samples=4800,
        noise_folder=wham / "tr",
    )
    a, again = ds[2], ds[2]
    ds.set_epoch(1)
    b = ds[2]
    np.testing.assert_array_equal(a["mix_sig"].numpy(), again["mix_sig"].numpy())
    assert not np.array_equal(a["mix_sig"].numpy(), b["mix_sig"].numpy())
    assert sorted(a) == ["id", "mix_sig", "noise_sig", "s1_sig", "s2_sig"]
    assert a["mix_sig"].shape == (4800,)
    np.testing.assert_array_equal(a["mix_sig"].numpy(), (a["s1_sig"] + a["s2_sig"] + a["noise_sig"]).numpy())
    for key in ("s1_sig", "s2_sig"):
        assert MIN_LOUDNESS - 0.05 <= measure_loudness(a[key].numpy().astype(np.float64), 8000) <= MAX_LOUDNESS + 0.05
    assert measure_loudness(a["noise_sig"].numpy().astype(np.float64), 8000) <= MAX_LOUDNESS - 5 + 0.05


def test_prepare_librimix_csvs(toy_corpus, tmp_path):
    wham = _toy_wham(tmp_path / "wham")
    _, root = _make(toy_corpus, tmp_path / "out", wham=wham, mix_types=("mix_clean", "mix_both"))
    csvs = prepare_librimix(root, tmp_path / "save", use_wham_noise=True)
    rows = _rows(csvs["dev"])
    assert list(rows[0]) == ["ID", "duration", "mix_wav", "s1_wav", "s2_wav", "noise_wav"]
    assert all("/mix_both/" in r["mix_wav"] for r in rows)
    clean = prepare_librimix(root, tmp_path / "save")  # the same folder without noise: listed again
    assert all("/mix_clean/" in r["mix_wav"] and "noise_wav" not in r for r in _rows(clean["dev"]))
    (root / "wav8k" / "min" / "test" / "s2" / f"{_rows(csvs['test'])[0]['ID']}.wav").unlink()
    with pytest.raises(ValueError, match="s2"):
        prepare_librimix(root, tmp_path / "save2")


def test_on_real_speech(librispeech_mini, tmp_path):
    # A few real speakers, cropped to 1.5 s, keep this test to seconds.
    src_root = librispeech_mini / "LibriSpeech" / "train-clean-100"
    corpus = tmp_path / "LibriSpeech"
    for speaker in sorted(p.name for p in src_root.iterdir())[:6]:
        for flac in sorted((src_root / speaker).glob("*/*.flac"))[:2]:
            dest = corpus / "train-clean-100" / speaker / flac.parent.name / flac.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            signal, rate = sf.read(str(flac), frames=int(1.5 * 16000))
            sf.write(str(dest), signal, rate, subtype="PCM_16")
    md, root = _make(corpus, tmp_path / "out")
    mixtures = _rows(root / "wav8k" / "min" / "metadata" / "mixture_test_mix_clean.csv")
    assert mixtures
    for m in mixtures:
        mix = sf.read(m["mixture_path"], dtype="float32")[0]
        s1, s2 = (sf.read(m[k], dtype="float32")[0] for k in ("source_1_path", "source_2_path"))
        np.testing.assert_array_equal(mix, s1 + s2)
        # 8 kHz resampling removes the upper band, so loudness moves slightly from the 16 kHz target.
        for s in (s1, s2):
            assert MIN_LOUDNESS - 1.5 <= measure_loudness(s.astype(np.float64), 8000) <= MAX_LOUDNESS + 1.5
    shutil.rmtree(tmp_path / "out")


def test_three_sources_16k_max(toy_corpus, tmp_path):
    with pytest.raises(ValueError, match="Split train-360 has 1 speakers"):
        generate_metadata(toy_corpus, tmp_path / "md", n_src=3, n_dev_speakers=3, n_test_speakers=3, min_duration=0.5)
    corpus = write_toy_librispeech(tmp_path / "LS9", n_speakers=9, n_utterances=2, seconds=(0.8, 1.2))
    md = generate_metadata(corpus, tmp_path / "md", n_src=3, n_dev_speakers=3, n_test_speakers=3, min_duration=0.5)
    toy_corpus = corpus
    root = create_librimix([md["test"]], corpus, tmp_path, sample_rates=(16000, 8000), modes=("max", "min"))
    assert root.name == "Libri3Mix"
    rows, n_src, _ = read_metadata(md["test"])
    assert n_src == 3 and len(rows) == 2  # 3 test speakers x 2 utterances, each used once
    for row in rows:
        originals = [sf.info(str(toy_corpus / row[f"source_{i}_path"])).frames for i in (1, 2, 3)]
        for rate, mode, expected in ((16000, "max", max(originals)), (8000, "min", -(-min(originals) // 2))):
            split_dir = root / f"wav{rate // 1000}k" / mode / "test"
            srcs = [
                sf.read(str(split_dir / f"s{i}" / f"{row['mixture_ID']}.wav"), dtype="float32")[0] for i in (1, 2, 3)
            ]
            mix = sf.read(str(split_dir / "mix_clean" / f"{row['mixture_ID']}.wav"), dtype="float32")[0]
            assert len(mix) == expected
            np.testing.assert_array_equal(mix, srcs[0] + srcs[1] + srcs[2])


def test_published_metadata_names_and_missing_noise(toy_corpus, tmp_path):
    # LibriMix's published files are named libri2mix_<split>-clean.csv and always carry noise columns.
    md = generate_metadata(toy_corpus, tmp_path / "md", n_dev_speakers=2, n_test_speakers=2, min_duration=0.5)
    published = tmp_path / "published" / "libri2mix_test-clean.csv"
    published.parent.mkdir()
    rows = _rows(md["test"])
    with open(published, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["noise_path", "noise_gain"])
        writer.writeheader()
        writer.writerows({**r, "noise_path": "tt/missing.wav", "noise_gain": "1.0"} for r in rows)
    info = published.with_name("libri2mix_test-clean_info.csv")  # beside it in LibriMix's metadata folder
    info.write_text("mixture_ID,speaker_1_ID,speaker_2_ID\n")
    root = create_librimix([info, published], toy_corpus, tmp_path / "out")  # mix_clean needs no noise
    assert sorted(p.name for p in (root / "wav8k" / "min" / "test").iterdir()) == ["mix_clean", "s1", "s2"]
    with pytest.raises(FileNotFoundError, match=r"1 WHAM! noise file.* missing under .*, e\.g\. .*tt/missing\.wav$"):
        create_librimix([published], toy_corpus, tmp_path / "out2", mix_types=("mix_both",), wham_root=tmp_path)
    assert not (tmp_path / "out2").exists()  # checked before anything is written
    with pytest.raises(ValueError, match="needs a WHAM"):
        create_librimix([published], toy_corpus, tmp_path / "out3", mix_types=("mix_both",))


def test_missing_speed_perturbed_noise_points_to_augment_train_noise(toy_corpus, tmp_path):
    wham = _toy_wham(tmp_path / "wham")
    md = generate_metadata(toy_corpus, tmp_path / "md", n_dev_speakers=2, n_test_speakers=2, min_duration=0.5)
    official = tmp_path / "official" / "libri2mix_train-clean-360.csv"  # names the noises as LibriMix's does
    official.parent.mkdir()
    rows = _rows(md["train-360"])
    with open(official, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) + ["noise_path", "noise_gain"])
        writer.writeheader()
        writer.writerows({**r, "noise_path": f"tr/n{i % 2}_sp08.wav", "noise_gain": "1.0"} for i, r in enumerate(rows))
    with pytest.raises(FileNotFoundError, match=r"e\.g\. .*tr/n0_sp08\.wav.*augment_train_noise\.py --wham_dir"):
        create_librimix([official], toy_corpus, tmp_path / "out", mix_types=("mix_both",), wham_root=wham)
