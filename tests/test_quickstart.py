"""A seconds-long ``--debug`` pass of the quickstart (corpus, recipe, test, example, model folder), and the
model folder it stages: a truthful card, and no file of the user's overwritten."""

import math

import pytest
import soundfile as sf
import yaml

from spgm_lobes import quickstart
from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.quickstart import QuickstartError, main, make_corpus, stage_model
from spgm_lobes.testing import make_run_folder


def card_datasets(model_dir):
    """The dataset ids of a staged model card: front matter and model-index."""
    text = (model_dir / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    index = [r["dataset"]["name"] for r in front["model-index"][0]["results"]]
    return text, front["datasets"], index


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
    # the card names the synthetic corpus, not wsj0-2mix (the recipe's own dataset key)
    text, datasets, index = card_datasets(result["model"])
    assert datasets == ["spgm-lobes-synthetic-2mix"] and index == ["spgm-lobes-synthetic-2mix"]
    assert "wsj0-2mix" not in text and "Results on the spgm-lobes-synthetic-2mix test set" in text
    # a second run reuses the corpus
    corpus = make_corpus(tmp_path, debug=True)
    assert "Reusing the corpus" in capsys.readouterr().out and corpus["data_folder"].is_dir()

    # a file of the user's in the model folder: refused, named, kept (and the run is kept too)
    (tmp_path / "model" / "mine.txt").write_text("x")
    with pytest.raises(QuickstartError, match=r"model holds files the quickstart did not write \(mine.txt\)"):
        main(["--output", str(tmp_path), "--debug", "--minutes", "0"])
    assert (tmp_path / "model" / "mine.txt").read_text() == "x"
    assert (result["model"] / "masknet.ckpt").is_file() and (tmp_path / "run" / "test_results.csv").is_file()


def test_stage_model_names_the_corpus_and_keeps_user_files(tmp_path):
    run_dir = tmp_path / "run"
    make_run_folder(run_dir)
    hparams = run_dir / "hyperparams.yaml"
    hparams.write_text(hparams.read_text().replace("dataset: tiny-mix", "dataset: wsj0-2mix"))  # as the recipe's
    dataset = quickstart.CARD_DATASETS["synthetic"]
    model = stage_model(tmp_path, run_dir, dataset)
    text, datasets, index = card_datasets(model)
    assert "wsj0" not in text and datasets == [dataset] and index == [dataset]
    stage_model(tmp_path, run_dir, dataset)  # staged again over its own files
    (model / "mine.txt").write_text("x")
    with pytest.raises(QuickstartError, match=rf"{model} holds files the quickstart did not write \(mine.txt\)"):
        stage_model(tmp_path, run_dir, dataset)
    assert (model / "mine.txt").read_text() == "x" and (model / "README.md").is_file()
