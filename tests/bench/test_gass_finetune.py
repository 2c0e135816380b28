"""Smoke test of bench/gass_finetune.py --quick (CPU, tiny model, a few steps)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.recipe import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gass_finetune.py"


def _load_bench():
    module = load_script(SCRIPT, "gass_finetune")
    return module


def _fake_librispeech(root, speakers=5, utterances=2):
    """LibriSpeech layout with voiced-like signals (harmonics of a gliding pitch, syllable envelope) at 16 kHz."""
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    for s in range(speakers):
        folder = root / "LibriSpeech" / "train-clean-100" / str(100 + s) / "7"
        folder.mkdir(parents=True)
        for u in range(utterances):
            f0 = rng.uniform(90, 250) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
            phase = 2 * np.pi * np.cumsum(f0) / 16000
            voiced = sum(np.sin(k * phase) / k for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
            sf.write(folder / f"{100 + s}-7-{u:04d}.flac", (0.2 * voiced).astype("float32"), 16000)
    return root


@pytest.mark.slow
def test_quick_mode_runs_and_reports(tmp_path, capsys):
    bench = _load_bench()
    speech = _fake_librispeech(tmp_path / "speech", speakers=10)  # 2 held-out speakers: 2-speaker test mixtures
    results = bench.main(["--speech", str(speech), "--quick", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "| GASS pre-trained + fine-tuned |" in printed and "| 2-speaker model from scratch |" in printed
    assert results["pretrain"]["steps"] == 3
    assert results["finetuned"]["steps"] == results["scratch"]["steps"] == 2
    scores = [results["finetuned"]["si_snri"], results["scratch"]["si_snri"], results["pretrained_zero_shot_si_snri"]]
    assert np.isfinite(scores).all()
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["finetuned"]["si_snri"] == results["finetuned"]["si_snri"]
    checkpoint = Path(results["pretrain"]["checkpoint"])
    assert checkpoint.parent == tmp_path / "out" / "pretrain" / "save"
    assert {"decoder.ckpt", "encoder.ckpt", "masknet.ckpt"} <= {p.name for p in checkpoint.iterdir()}
    # each run is a recipe run: its test stage wrote test_results.csv, where the reported SI-SNRi comes from
    for name in ("pretrain", "finetuned", "scratch"):
        average = read_results_csv(tmp_path / "out" / name / "test_results.csv").average
        expected = results[name]["si_snri"]
        assert average["si-snr_i"] == expected
    # fine-tuning started from the GASS checkpoint (SpeechBrain's Pretrainer collected it), scratch did not
    assert (tmp_path / "out" / "finetuned" / "save" / "gass_pretrained" / "masknet.ckpt").resolve().parent == checkpoint
    assert (tmp_path / "out" / "scratch" / "save" / "gass_pretrained" / "masknet.ckpt").resolve().parent.name == (
        "scratch_init"
    )
    assert len(list((tmp_path / "out" / "synthetic" / "music").glob("*.wav"))) == 8


def test_speaker_split_is_disjoint(tmp_path):
    bench = _load_bench()
    speakers = bench.librispeech_files(_fake_librispeech(tmp_path, speakers=5, utterances=1))
    train, test = bench.split_speakers(speakers, 0.2, seed=0)
    assert len(test) == 1 and len(train) == 4
    assert {p.name.split("-")[0] for p in train}.isdisjoint({p.name.split("-")[0] for p in test})
