"""SPGMSeparation and spgm-separate: any rate, channels, length; silence; unreadable files; missing model."""

import time

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.separation import SepformerSeparation

from spgm_lobes import inference
from spgm_lobes.architectures import architecture_path
from spgm_lobes.card import inference_card
from spgm_lobes.dsp.audio import read_audio
from spgm_lobes.inference import AudioReadError, ModelLoadError, SPGMSeparation, load_model, main
from spgm_lobes.listen import page_metrics
from spgm_lobes.metrics import separation_metrics
from spgm_lobes.testing import TINY_ARCH_OVERRIDES

TINY = TINY_ARCH_OVERRIDES


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model folder as from_hparams expects it: flattened card + three random-weight checkpoints."""
    folder = tmp_path_factory.mktemp("model")
    card = inference_card(architecture_path("spgm-ap-s"), TINY, sample_rate=8000, num_spks=2)
    (folder / "hyperparams.yaml").write_text(card)
    torch.manual_seed(3)
    modules = load_hyperpyyaml(card)["modules"]
    for name, module in modules.items():
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
        torch.save(module.state_dict(), folder / f"{name}.ckpt")
    return folder


@pytest.fixture(scope="module")
def model(model_dir):
    return load_model(model_dir)


def speechlike(rate, seconds, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    sig = np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) + 0.3 * rng.standard_normal(t.shape)
    sig = 0.4 * sig / np.abs(sig).max()
    return np.stack([sig * (0.5 + 0.5 * c) for c in range(channels)], axis=1) if channels > 1 else sig


def test_loads_as_speechbrain_and_matches_parent(model_dir, model, tmp_path):
    parent = SepformerSeparation.from_hparams(source=str(model_dir), savedir=str(tmp_path / "sd"))
    mix = torch.randn(2, 1203)
    assert isinstance(model, SPGMSeparation)
    assert torch.allclose(model.separate_batch(mix), parent.separate_batch(mix), atol=1e-6)


def test_short_and_silent_batches(model):
    for length in (1, 5, 15, 16, 17):
        est = model.separate_batch(torch.randn(1, length))
        assert est.shape == (1, length, 2) and torch.isfinite(est).all()
    assert not model.separate_batch(torch.zeros(1, 800)).any()
    tiny = model.separate_batch(1e-7 * torch.randn(1, 800))
    assert torch.isfinite(tiny).all()


@pytest.mark.parametrize(
    "rate, channels, seconds",
    [(16000, 1, 0.3), (44100, 2, 0.25), (8000, 1, 0.1), (22050, 3, 0.1)],
)
def test_cli_rates_channels_lengths(model_dir, tmp_path, rate, channels, seconds):
    wav = tmp_path / "mix.wav"
    sf.write(wav, speechlike(rate, seconds, channels), rate)
    for out_rate, expect_rate, expect_len in (
        ("model", 8000, round(seconds * 8000)),
        ("input", rate, round(seconds * rate)),
    ):
        out = tmp_path / out_rate
        assert main([str(wav), "--model", str(model_dir), "--out", str(out), "--rate", out_rate]) == 0
        for i in (1, 2):
            est, est_rate = sf.read(out / f"mix_source{i}.wav")
            assert est_rate == expect_rate and est.shape == (expect_len,)
            assert np.isfinite(est).all() and 0 < np.abs(est).max() <= 1


def test_resampled_input_separates_like_its_model_rate_version(model):
    sig16 = speechlike(16000, 0.2).astype("float32")
    est, rate = model.separate_signal(sig16, 16000)
    sig8 = torchaudio.functional.resample(torch.from_numpy(sig16), 16000, 8000)
    direct = model.separate_batch(sig8.unsqueeze(0))[0]
    direct = direct * (float(sig8.abs().max()) / direct.abs().amax(dim=0, keepdim=True))
    assert rate == 8000 and torch.allclose(est, direct, atol=1e-5)


def test_channels_first_signals_separate_like_channels_last(model):
    stereo = speechlike(16000, 0.2, channels=2).astype("float32")  # [time, channels], as soundfile reads
    last, _ = model.separate_signal(stereo, 16000, "input")
    first, _ = model.separate_signal(torch.from_numpy(stereo.T.copy()), 16000, "input")  # as torchaudio.load
    mono, _ = model.separate_signal(stereo[:, :1].T, 16000)  # [1, time]
    assert last.shape == (3200, 2) and torch.allclose(first, last, atol=1e-6)
    assert mono.shape == (1600, 2)


def test_silent_file_gives_silent_sources(model_dir, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros((4410, 2)), 44100)
    assert main([str(tmp_path / "quiet.wav"), "--model", str(model_dir), "--out", str(tmp_path / "o")]) == 0
    for i in (1, 2):
        est, _ = sf.read(tmp_path / "o" / f"quiet_source{i}.wav")
        assert est.shape == (800,) and not est.any()


def test_unreadable_files_are_reported_and_others_separated(model_dir, tmp_path, capsys):
    good = tmp_path / "good.wav"
    sf.write(good, speechlike(8000, 0.2), 8000)
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    missing = tmp_path / "missing.wav"
    out = tmp_path / "out"
    status = main([str(broken), str(good), str(missing), "--model", str(model_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 1
    assert "broken.wav: not a readable audio file" in err and "missing.wav: no such file" in err
    assert "2 of 3 files could not be read or separated" in err
    assert sorted(p.name for p in out.iterdir()) == ["good_source1.wav", "good_source2.wav"]


def test_a_file_that_fails_to_separate_is_reported_and_others_separated(model_dir, tmp_path, monkeypatch, capsys):
    for name in ("a", "b"):
        sf.write(tmp_path / f"{name}.wav", speechlike(8000, 0.2), 8000)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a_source1.wav").mkdir()  # a folder where a's first source would be written
    status = main([str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), "--model", str(model_dir),
                   "--out", str(tmp_path / "out")])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 1 and "skipped " + str(tmp_path / "a.wav") in err and "1 of 2 files" in err
    assert (tmp_path / "out" / "b_source2.wav").is_file()
    with pytest.raises(SystemExit):  # --out names a file: refused before anything is loaded or written
        main([str(tmp_path / "b.wav"), "--model", str(model_dir), "--out", str(tmp_path / "a.wav")])
    assert "--out " + str(tmp_path / "a.wav") + " is a file" in capsys.readouterr().err
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):  # a page folder holding other files: refused before separating
        main([str(tmp_path / "b.wav"), "--model", str(model_dir), "--out", str(tmp_path / "o2"),
              "--html", str(tmp_path / "page")])  # fmt: skip
    assert "notes.txt" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    with pytest.raises(SystemExit):  # --out inside the page folder: the page could not be written at the end
        main([str(tmp_path / "b.wav"), "--model", str(model_dir), "--out", str(tmp_path / "p2" / "sep"),
              "--html", str(tmp_path / "p2")])  # fmt: skip
    assert "would hold" in capsys.readouterr().err and not (tmp_path / "p2").exists()


def test_missing_or_incomplete_model(tmp_path, model_dir, capsys):
    sf.write(tmp_path / "m.wav", speechlike(8000, 0.1), 8000)
    assert main([str(tmp_path / "m.wav"), "--model", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "neither an existing folder nor a Hub repo id" in capsys.readouterr().err
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "hyperparams.yaml").write_text((model_dir / "hyperparams.yaml").read_text())
    (partial / "encoder.ckpt").write_bytes((model_dir / "encoder.ckpt").read_bytes())
    with pytest.raises(ModelLoadError, match="lacks masknet.ckpt, decoder.ckpt"):
        load_model(partial)
    assert main([str(tmp_path / "m.wav"), "--model", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "has no hyperparams.yaml" in capsys.readouterr().err


def test_same_names_refused(model_dir, tmp_path, capsys):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        sf.write(tmp_path / sub / "mix.wav", speechlike(8000, 0.1), 8000)
    args = [str(tmp_path / "a" / "mix.wav"), str(tmp_path / "b" / "mix.wav"), "--model", str(model_dir)]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "would all write mix_source*.wav" in capsys.readouterr().err


def test_long_input_is_one_pass(model, monkeypatch):
    """Long inputs go through separate_sources once, whole (no segments to stitch)."""
    calls = []
    real = inference.separate_sources

    def spy(modules, mix, num_spks, **kwargs):
        calls.append(mix.shape)
        return real(modules, mix, num_spks, **kwargs)

    monkeypatch.setattr(inference, "separate_sources", spy)
    est, _ = model.separate_signal(speechlike(8000, 3.0), 8000)
    assert calls == [torch.Size([1, 24000])] and est.shape == (24000, 2)


def test_separate_file_matches_separate_signal(model, tmp_path, monkeypatch):
    sig = speechlike(16000, 0.2, channels=2).astype("float32")
    sf.write(tmp_path / "m.flac", sig, 16000)
    est = model.separate_file(tmp_path / "m.flac", output_rate="input")
    ref, _ = model.separate_signal(sf.read(tmp_path / "m.flac", dtype="float32")[0], 16000, "input")
    assert est.shape == (1, 3200, 2) and torch.equal(est[0], ref)
    with pytest.raises(AudioReadError, match="nobody/nothing/x.wav"):
        model.separate_file(tmp_path / "nobody" / "nothing" / "x.wav")
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    with pytest.raises(AudioReadError, match="sub/missing.wav: no such file"):  # not looked for on the Hub
        model.separate_file("sub/missing.wav")
    assert time.monotonic() - start < 5


def test_fast_path_matches_plain_modules(model_dir, monkeypatch):
    """Default: spgm_lobes.fast.separate (memory linear in length); --plain: SpeechBrain's modules. Same output."""
    calls = []
    real = inference.fast_separate
    monkeypatch.setattr(inference, "fast_separate", lambda *a, **k: calls.append(a[3].shape) or real(*a, **k))
    fast = load_model(model_dir)
    plain = load_model(model_dir, use_fast_path=False)
    mix = torch.from_numpy(speechlike(8000, 2.0, seed=1)).float().unsqueeze(0)
    est_fast, est_plain = fast.separate_batch(mix), plain.separate_batch(mix)
    assert calls == [torch.Size([1, 16000])]
    assert (est_fast - est_plain).abs().max() <= 1e-4 * est_plain.abs().max()
    assert inference.fast_path_unsupported_reason({"m": torch.nn.Linear(2, 2).double()}) == "parameters are not float32"


def test_cli_plain_switch(model_dir, tmp_path):
    sf.write(tmp_path / "m.wav", speechlike(8000, 0.5), 8000)
    for flag in ([], ["--plain"]):
        out = tmp_path / ("plain" if flag else "fast")
        assert main([str(tmp_path / "m.wav"), "--model", str(model_dir), "--out", str(out), *flag]) == 0
    a, _ = sf.read(tmp_path / "fast" / "m_source1.wav")
    b, _ = sf.read(tmp_path / "plain" / "m_source1.wav")
    assert np.abs(a - b).max() <= 2 / 32768  # 16-bit PCM of the same function


def test_bfloat16_whole_input_path_and_long_inputs_sliced(model_dir, monkeypatch):
    """fast_dtype=bfloat16: short inputs run whole on a bfloat16 copy (CompiledSeparator), longer ones sliced."""
    sliced = []
    real = inference.fast_separate
    monkeypatch.setattr(inference, "fast_separate", lambda *a, **k: sliced.append(a[3].shape) or real(*a, **k))
    fp32 = load_model(model_dir)
    bf16 = load_model(model_dir, fast_dtype=torch.bfloat16)
    mix = torch.from_numpy(speechlike(8000, 1.0, seed=2)).float().unsqueeze(0)
    ref = fp32.separate_batch(mix)
    sliced.clear()
    est = bf16.separate_batch(mix)
    assert sliced == [] and isinstance(bf16._full_pass, inference.CompiledSeparator)
    assert ((est - ref).norm() / ref.norm()).item() < 0.05
    bf16.full_pass_max_seconds = 0.5  # longer inputs: the sliced path, memory linear in length
    est_sliced = bf16.separate_batch(mix)
    assert sliced == [torch.Size([1, 8000])] and ((est_sliced - ref).norm() / ref.norm()).item() < 0.05


def test_cli_compile_needs_bf16(model_dir, tmp_path, capsys):
    sf.write(tmp_path / "m.wav", speechlike(8000, 0.5), 8000)
    with pytest.raises(SystemExit):
        main([str(tmp_path / "m.wav"), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--compile"])
    assert "--compile needs --bf16" in capsys.readouterr().err


def test_cli_device_cuda_reaches_speechbrain_with_its_index(model_dir, tmp_path, monkeypatch, capsys):
    """``--device cuda`` is given to SpeechBrain as ``cuda:0`` (a bare "cuda" makes it warn that it cannot parse it)."""
    devices = []

    def from_hparams(**kwargs):
        devices.append(kwargs["run_opts"]["device"])
        raise RuntimeError("stop here: no GPU in the test")

    monkeypatch.setattr(SPGMSeparation, "from_hparams", from_hparams)
    mix = tmp_path / "m.wav"
    sf.write(mix, speechlike(8000, 0.1), 8000)
    for device in ("cuda", "cuda:1", "cpu"):
        assert main([str(mix), "--model", str(model_dir), "--out", str(tmp_path / "o"), "--device", device]) == 2
    assert devices == ["cuda:0", "cuda:1", "cpu"]
    assert "stop here" in capsys.readouterr().err


def test_cli_listening_page_with_references(model_dir, tmp_path, capsys):
    """--html with wsj0-mix-layout reference folders: one row per mixture, metrics of the written estimates."""
    rng = np.random.default_rng(4)
    for folder in ("mix", "s1", "s2"):
        (tmp_path / folder).mkdir()
    for name, rate in (("a.wav", 8000), ("b.wav", 16000)):
        refs = [speechlike(rate, 0.4, seed=int(rng.integers(100))), 0.5 * rng.standard_normal(int(0.4 * rate))]
        sf.write(tmp_path / "s1" / name, refs[0], rate)
        sf.write(tmp_path / "s2" / name, refs[1], rate)
        sf.write(tmp_path / "mix" / name, refs[0] + refs[1], rate)
    mixtures = [str(tmp_path / "mix" / n) for n in ("a.wav", "b.wav")]
    out, page = tmp_path / "out", tmp_path / "page"
    refs = [str(tmp_path / "s1"), str(tmp_path / "s2")]
    assert (
        main([*mixtures, "--model", str(model_dir), "--out", str(out), "--html", str(page), "--references", *refs]) == 0
    )
    assert f"Listening page: {page / 'index.html'}" in capsys.readouterr().out
    text = (page / "index.html").read_text()
    assert str(model_dir) in text and "SPGMBlock" in text and "parameters" in text
    metrics = page_metrics(page / "index.html")
    assert sorted(metrics["summary"]) == ["a", "b"]
    # the summary: the metrics of the written estimates against the references, at the model rate
    est = torch.stack([read_audio(out / f"b_source{i}.wav")[0] for i in (1, 2)], 1)
    ref = torch.stack([read_audio(tmp_path / s / "b.wav", sample_rate=8000)[0] for s in ("s1", "s2")], 1)
    mix = read_audio(tmp_path / "mix" / "b.wav", sample_rate=8000)[0]
    expected = separation_metrics(est, ref, mix)
    for key, value in expected.items():
        assert metrics["summary"]["b"][key] == pytest.approx(value, abs=0.05)  # 16-bit estimates on the page side


def test_cli_listening_page_errors(model_dir, tmp_path, capsys):
    sf.write(tmp_path / "m.wav", speechlike(8000, 0.3), 8000)
    (tmp_path / "s1").mkdir()
    sf.write(tmp_path / "s1" / "m.wav", speechlike(8000, 0.3), 8000)
    args = [str(tmp_path / "m.wav"), "--model", str(model_dir), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit):
        main([*args, "--references", str(tmp_path / "s1")])
    assert "--references needs --html" in capsys.readouterr().err
    assert main([*args, "--html", str(tmp_path / "p"), "--references", str(tmp_path / "s1")]) == 2
    assert "1 --references folders for a model of 2 sources" in capsys.readouterr().err
    # a missing reference: the mixture is still separated, the page is written without it, status 1
    sf.write(tmp_path / "n.wav", speechlike(8000, 0.3), 8000)
    refs = [str(tmp_path / "s1"), str(tmp_path / "s1")]
    status = main([*args[:1], str(tmp_path / "n.wav"), *args[1:], "--html", str(tmp_path / "p"), "--references", *refs])
    err = capsys.readouterr().err
    assert status == 1 and "left off the listening page: " in err and "s1/n.wav: no such file" in err
    assert (tmp_path / "o" / "n_source1.wav").is_file()
    assert sorted(page_metrics(tmp_path / "p" / "index.html")["summary"]) == ["m"]
    # without references: players and spectrograms, no metrics
    assert main([*args, "--html", str(tmp_path / "q")]) == 0
    assert (tmp_path / "q" / "index.html").read_text().count("<audio") == 3
