"""test_results.csv: the writer and the reader agree (numbers, text, undefined values, the avg row)."""

import math

import pytest

from spgm_lobes.metrics.results import read_results_csv, write_results_csv


def test_round_trip(tmp_path):
    rows = [
        {"snt_id": "a", "categories": "speech+music", "si-snr": 7.25, "si-snr_i": math.nan, "extra": 1},
        {"snt_id": "b", "categories": "sfx", "si-snr": -1.5, "si-snr_i": 3.0, "extra": 2},
        {"snt_id": "avg", "categories": "", "si-snr": 2.875, "si-snr_i": 3.0, "extra": 3},
    ]
    path = tmp_path / "test_results.csv"
    write_results_csv(path, rows, ["snt_id", "categories", "si-snr", "si-snr_i"])
    results = read_results_csv(path)
    assert [r["snt_id"] for r in results.rows] == ["a", "b"]
    assert results.rows[1] == {"snt_id": "b", "categories": "sfx", "si-snr": -1.5, "si-snr_i": 3.0}
    assert math.isnan(results.rows[0]["si-snr_i"]) and results.rows[0]["categories"] == "speech+music"
    assert results.average["si-snr"] == 2.875 and "extra" not in results.average
    assert math.isnan(results.average["categories"])  # an empty cell


def test_without_avg_row_and_missing_file(tmp_path):
    path = tmp_path / "r.csv"
    write_results_csv(path, [{"snt_id": "a", "sdr": 1.0}])
    assert read_results_csv(path).average is None
    with pytest.raises(FileNotFoundError, match="missing.csv not found"):
        read_results_csv(tmp_path / "missing.csv")
