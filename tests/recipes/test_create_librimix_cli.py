"""The LibriMix creation command line (recipes/LibriMix/create_librimix.py)."""

import numpy as np
import pytest
import soundfile as sf

from spgm_lobes.data.librimix import write_toy_librispeech
from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT


def _cli():
    module = load_script(REPO_ROOT / "recipes/LibriMix/create_librimix.py", "create_librimix")
    return module


def test_fresh_then_from_metadata(tmp_path):
    corpus = write_toy_librispeech(tmp_path / "LibriSpeech", n_speakers=6, n_utterances=2, seconds=(0.8, 1.0))
    cli = _cli()
    common = ["--librispeech", str(corpus), "--min_duration", "0.5", "--n_dev_speakers", "2", "--n_test_speakers", "2"]
    cli.main([*common, "--out", str(tmp_path / "a"), "--n_test", "3", "--freqs", "8k", "16k"])
    root = tmp_path / "a" / "Libri2Mix"
    assert len(list((root / "wav16k" / "min" / "test" / "mix_clean").glob("*.wav"))) == 3
    assert (root / "wav8k" / "min" / "metadata" / "mixture_dev_mix_clean.csv").is_file()
    # The same metadata regenerates the same corpus elsewhere (the official-LibriMix path).
    metadata = sorted(str(p) for p in (root / "metadata").glob("libri2mix_*.csv") if "_info" not in p.name)
    cli.main(["--librispeech", str(corpus), "--out", str(tmp_path / "b"), "--metadata", *metadata])
    a, b = (
        sorted(p.name for p in (d / "Libri2Mix/wav8k/min/test/s1").iterdir()) for d in (tmp_path / "a", tmp_path / "b")
    )
    assert a == b and len(a) == 3
    for name in a:
        rel = f"Libri2Mix/wav8k/min/test/s1/{name}"
        np.testing.assert_array_equal(sf.read(str(tmp_path / "a" / rel))[0], sf.read(str(tmp_path / "b" / rel))[0])
    with pytest.raises(SystemExit, match="--wham"):
        cli.main([*common, "--out", str(tmp_path / "c"), "--types", "mix_both"])
