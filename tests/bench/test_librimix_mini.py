"""Smoke test of bench/librimix_mini.py --quick (synthetic corpus, tiny model, CPU)."""

import json

import pytest

from spgm_lobes.listen import page_metrics
from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT


@pytest.mark.slow
def test_quick_benchmark_runs_end_to_end(tmp_path):
    bench = load_script(REPO_ROOT / "bench" / "librimix_mini.py", "librimix_mini")
    out = tmp_path / "out"
    work = tmp_path / "work"
    argv = ["--quick", "--out", str(out), "--work_dir", str(work), "--n_train", "4", "--n_dev", "1", "--n_test", "2"]
    result = bench.main([*argv, "--html", str(tmp_path / "page")])
    assert result["test_mixtures"] == 2 and result["epochs"] >= 1
    assert json.loads((out / "results.json").read_text())["si-snr_i"] == result["si-snr_i"]
    assert "SI-SNRi" in (out / "results.md").read_text()
    # Created audio and checkpoints are removed, the metadata and results stay.
    assert not (work / "data" / "Libri2Mix" / "wav8k").exists() and not (work / "save").exists()
    assert (out / "metadata" / "libri2mix_test.csv").is_file() and (out / "train" / "test_results.csv").is_file()
    # the listening page of the test split: every test mixture, the metrics of test_results.csv
    rows = {r["snt_id"]: r for r in read_results_csv(out / "train" / "test_results.csv").rows}
    summary = page_metrics(tmp_path / "page" / "index.html")["summary"]
    assert summary == {snt_id: {k: v for k, v in row.items() if k != "snt_id"} for snt_id, row in rows.items()}
    assert (tmp_path / "page" / "index.html").read_text().count("<audio") == 5 * 2
    assert not (out / "train" / "audio_results").exists()


@pytest.mark.parametrize("script", ["librimix_mini", "time_to_quality"])
def test_a_page_folder_that_cannot_take_the_page_is_refused_before_training(script, tmp_path, capsys):
    bench = load_script(REPO_ROOT / "bench" / f"{script}.py", script)
    (tmp_path / "page").mkdir()
    (tmp_path / "page" / "notes.txt").write_text("mine")
    work = ["--work_dir", str(tmp_path / "work")]
    for html, named in [(tmp_path / "page", "notes.txt"), (tmp_path / "out", "would hold"), (tmp_path, "would hold")]:
        with pytest.raises(SystemExit, match=named):
            bench.main(["--quick", "--out", str(tmp_path / "out"), "--html", str(html), *work])
    assert not (tmp_path / "work").exists() and (tmp_path / "page" / "notes.txt").read_text() == "mine"
