"""A seconds-long ``--debug`` pass of the quickstart (corpus, recipe, test, example, model folder)."""

import math

import pytest
import soundfile as sf

from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.quickstart import main, make_corpus


@pytest.mark.slow
def test_quickstart_debug(tmp_path, capsys):
    # --minutes 0: the time budget ends training after the first of the two debug epochs
    result = main(["--output", str(tmp_path), "--debug", "--minutes", "0"])
    printed = capsys.readouterr().out
    assert "SI-SNRi" in printed and "SDRi" in printed and "Example separation" in printed
    assert f"Listening page (best, median and worst test mixtures by SI-SNRi): {tmp_path / 'listen'}" in printed
    rows = read_results_csv(tmp_path / "run" / "test_results.csv").rows
    assert rows and all(math.isfinite(r["si-snr_i"]) and math.isfinite(r["sdr_i"]) for r in rows)
    assert math.isfinite(result["si_snr_i"])
    log = (tmp_path / "run" / "train_log.txt").read_text()
    assert "epoch: 1," in log and "epoch: 2," not in log
    assert (tmp_path / "corpus" / "README.txt").read_text().startswith("SYNTHETIC")
    example = tmp_path / "example"
    mix, rate = sf.read(example / "mixture.wav")
    assert rate == 8000
    for name in ("estimate1", "estimate2", "reference1", "reference2"):
        assert len(sf.read(example / f"{name}.wav")[0]) == len(mix)
    assert result["png"].read_bytes()[:4] == b"\x89PNG"
    # staged by spgm-publish --dry-run, which checks that from_hparams loads it
    for name in ("hyperparams.yaml", "encoder.ckpt", "masknet.ckpt", "decoder.ckpt", "README.md"):
        assert (result["model"] / name).is_file()
    # a second run reuses the corpus
    corpus = make_corpus(tmp_path, debug=True)
    assert "Reusing the corpus" in capsys.readouterr().out and corpus["data_folder"].is_dir()
