"""A seconds-long ``--debug`` pass of the quickstart (corpus, recipe, test, example, model folder), and the
folders it keeps apart (corpus and run per configuration) or refuses to overwrite."""

import json
import math

import pytest
import soundfile as sf
import yaml

from spgm_lobes import quickstart
from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.quickstart import QuickstartError, main, make_corpus, stage_model, train_and_test
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
    assert result["run"] == tmp_path / "run" / "spgm-ap-tiny" / "synthetic-debug-seed0"
    assert result["corpus"] == tmp_path / "corpus" / "synthetic-debug-seed0"
    rows = read_results_csv(result["run"] / "test_results.csv").rows
    assert rows and all(math.isfinite(r["si-snr_i"]) and math.isfinite(r["sdr_i"]) for r in rows)
    assert math.isfinite(result["si_snr_i"])
    log = (result["run"] / "train_log.txt").read_text()
    assert "epoch: 1," in log and "epoch: 2," not in log
    assert (result["corpus"] / "README.txt").read_text().startswith("SYNTHETIC")
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
    assert (result["model"] / "masknet.ckpt").is_file() and (result["run"] / "test_results.csv").is_file()


def test_corpus_per_options(tmp_path, capsys):
    """Another seed (or debug, or LibriSpeech) gets its own corpus folder: nothing reused, nothing removed."""
    first = make_corpus(tmp_path, debug=True, seed=0)
    other = make_corpus(tmp_path, debug=True, seed=5)
    assert "Reusing" not in capsys.readouterr().out
    assert first["root"].name == "synthetic-debug-seed0" and other["root"].name == "synthetic-debug-seed5"
    assert (first["data_folder"] / "DONE").is_file() and (other["data_folder"] / "DONE").is_file()
    assert json.loads((other["root"] / "quickstart.json").read_text())["seed"] == 5
    assert make_corpus(tmp_path, debug=True, seed=5)["root"] == other["root"]
    assert "Reusing the corpus" in capsys.readouterr().out


def test_corpus_of_other_options_under_the_same_name_is_kept(tmp_path, monkeypatch, capsys):
    first = make_corpus(tmp_path, debug=True)
    # the same name, other sizes (e.g. written by another version of the quickstart)
    monkeypatch.setitem(quickstart.CORPUS, "debug", {"tr": 3, "cv": 2, "tt": 2})
    second = make_corpus(tmp_path, debug=True)
    assert second["root"] == first["root"].with_name("synthetic-debug-seed0-2")
    assert "was made with other options (n_mixtures" in capsys.readouterr().out
    assert (first["data_folder"] / "DONE").is_file() and len(list(first["root"].glob("2speakers/*/*/tr/mix/*"))) == 4


def test_corpus_write_keeps_user_files(tmp_path):
    # <output>/corpus with a file of the user's and no DONE: not an interrupted write to remove
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "mine.txt").write_text("x")
    make_corpus(tmp_path, debug=True)
    assert (tmp_path / "corpus" / "mine.txt").read_text() == "x"
    # an interrupted write (no DONE) that holds a file of the user's: refused, not removed
    root = tmp_path / "corpus" / "synthetic-debug-seed0"
    (root / "2speakers" / "DONE").unlink()
    (root / "notes.txt").write_text("x")
    with pytest.raises(QuickstartError, match=r"synthetic-debug-seed0 holds files .* \(notes.txt\)"):
        make_corpus(tmp_path, debug=True)
    assert (root / "notes.txt").is_file() and (root / "2speakers").is_dir()
    # without it, the interrupted write is written again
    (root / "notes.txt").unlink()
    assert (make_corpus(tmp_path, debug=True)["data_folder"] / "DONE").is_file()


def test_run_folder_per_model_and_corpus(tmp_path, monkeypatch, capsys):
    """The debug, CPU and GPU models train in their own folders: a --debug call never resumes or touches a real
    run (resuming one of another size failed with a size mismatch), and the same options resume the same run."""
    calls = []

    def fake_recipe(argv, prepare, build):
        output = argv[argv.index("--output_folder") + 1]
        calls.append(output)
        return type("Brain", (), {"hparams": None})()

    monkeypatch.setattr(quickstart, "run_recipe", fake_recipe)
    monkeypatch.setattr(quickstart, "cpu_threads", lambda: 1)
    corpus = make_corpus(tmp_path, debug=True)
    real = train_and_test(tmp_path, corpus, minutes=0, device="cpu").quickstart_run
    (real / "test_results.csv").write_text("a finished real run")
    debug = train_and_test(tmp_path, corpus, minutes=0, debug=True, device="cpu").quickstart_run
    gpu = train_and_test(tmp_path, corpus, minutes=0, device="cuda:0").quickstart_run
    assert calls == [str(real), str(debug), str(gpu)]
    assert [p.relative_to(tmp_path / "run").parts[0] for p in (real, debug, gpu)] == [
        "spgm-ap-small",
        "spgm-ap-tiny",
        "spgm-ap-s-fast",
    ]
    assert (real / "test_results.csv").read_text() == "a finished real run"
    assert train_and_test(tmp_path, corpus, minutes=5, device="cpu").quickstart_run == real  # a budget resumes
    recorded = json.loads((debug / "quickstart.json").read_text())
    assert recorded["corpus"]["debug"] is True and recorded["arch"]["architecture"] == "spgm-ap"
    assert "site-packages" not in json.dumps(recorded) and "hparams/" not in json.dumps(recorded)  # no install path
    # another corpus (seed) is another run
    other = train_and_test(tmp_path, make_corpus(tmp_path, debug=True, seed=5), minutes=0, device="cpu")
    assert other.quickstart_run == tmp_path / "run" / "spgm-ap-small" / "synthetic-debug-seed5"


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
