"""Smoke test of bench/long_separation.py --quick (CPU, tiny model, 3 s through spgm-separate)."""

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spgm_lobes.recipe import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "long_separation.py"


def _load_bench():
    module = load_script(SCRIPT, "long_separation")
    return module


@pytest.mark.slow
def test_quick_run_reports_time_and_peak_rss(tmp_path, capsys):
    bench = _load_bench()
    assert bench.main(["--quick", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"wall time [\d.]+ s .* peak RSS [\d.]+ GiB, outputs 24000 samples each", out)
    written = sorted(p.name for p in (tmp_path / "separated").iterdir())
    assert written == ["mixture_3s_source1.wav", "mixture_3s_source2.wav"]


@pytest.mark.slow
def test_given_mixture_and_plain_modules(tmp_path, capsys):
    sf.write(tmp_path / "m.wav", 0.1 * np.random.default_rng(0).standard_normal(4000), 8000)
    bench = _load_bench()
    args = ["--quick", "--plain", "--mixture", str(tmp_path / "m.wav"), "--workdir", str(tmp_path / "w")]
    assert bench.main(args) == 0
    assert "plain modules" in capsys.readouterr().out
