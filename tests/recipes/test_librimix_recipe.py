"""End-to-end runs of the LibriMix separation recipe in --debug mode on a generated corpus."""

import csv

import numpy as np
import pytest
import soundfile as sf

from spgm_lobes.data.librimix import create_librimix, generate_metadata, write_toy_librispeech
from spgm_lobes.metrics.results import RESULTS_FILE, read_results_csv
from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH

RECIPE = REPO_ROOT / "recipes" / "LibriMix" / "separation"


def _load_recipe():
    module = load_script(RECIPE / "train.py", "librimix_train")
    return module


@pytest.fixture
def libri2mix(tmp_path):
    corpus = write_toy_librispeech(tmp_path / "LibriSpeech", n_speakers=6, n_utterances=2, seconds=(0.6, 0.8))
    wham = tmp_path / "wham"
    rng = np.random.default_rng(0)
    for folder in ("tr", "cv", "tt"):
        (wham / folder).mkdir(parents=True)
        sf.write(str(wham / folder / "n.wav"), 0.02 * rng.standard_normal(12000), 16000)
    md = generate_metadata(
        corpus,
        tmp_path / "md",
        n_dev_speakers=2,
        n_test_speakers=2,
        n_mixtures={"train-360": 2, "dev": 1, "test": 2},
        wham_root=wham,
        min_duration=0.5,
    )
    root = create_librimix(list(md.values()), corpus, tmp_path, mix_types=("mix_clean", "mix_both"), wham_root=wham)
    return root, corpus, wham


def _run(hparams, root, out, *extra):
    argv = [str(RECIPE / "hparams" / hparams), "--data_folder", str(root), "--output_folder", str(out), "--debug"]
    argv += ["--debug_batches", "1", "--num_workers", "0", "--training_signal_len", "4000"]
    argv += ["--arch", TINY_ARCH, *extra]
    recipe = _load_recipe()
    recipe.run_recipe(argv, recipe.prepare_data, recipe.build_datasets)
    results = read_results_csv(out / RESULTS_FILE)
    return results.rows + [results.average]


@pytest.mark.slow
def test_recipe_static_clean(libri2mix, tmp_path):
    root, _, _ = libri2mix
    rows = _run("spgm.yaml", root, tmp_path / "exp")
    assert list(rows[0]) == ["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i"]
    assert rows[-1]["snt_id"] == "avg" and len(rows) >= 2
    assert all(np.isfinite(float(r["si-snr_i"])) for r in rows)
    assert (tmp_path / "exp" / "save" / "libri2mix_train-360.csv").is_file()


@pytest.mark.slow
def test_recipe_dynamic_mixing_with_noise(libri2mix, tmp_path):
    root, corpus, wham = libri2mix
    rows = _run(
        "spgm-le-s.yaml", root, tmp_path / "exp", "--use_wham_noise", "True", "--dynamic_mixing", "True",
        "--base_folder_dm", str(corpus / "train-clean-100"), "--noise_folder_dm", str(wham / "tr"),
    )  # fmt: skip
    assert rows[-1]["snt_id"] == "avg" and len(rows) >= 2
    with open(tmp_path / "exp" / "save" / "libri2mix_test.csv", newline="") as f:
        assert all("/mix_both/" in r["mix_wav"] for r in csv.DictReader(f))


@pytest.mark.parametrize("name", sorted(p.name for p in (RECIPE / "hparams").glob("*.yaml")))
def test_hparams_mirror_wsj0mix(name):
    """Every LibriMix hparams file has the keys of its WSJ0Mix counterpart (same structure)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    libri = yaml.load((RECIPE / "hparams" / name).read_text(), Loader=Loader)
    wsj = yaml.load((REPO_ROOT / "recipes" / "WSJ0Mix" / "separation" / "hparams" / name).read_text(), Loader=Loader)
    assert libri["architecture"] == wsj["architecture"]
    assert set(wsj) - set(libri) == {"dm_max_relative_db"}  # WSJ0-2mix's relative levels; LibriMix uses LUFS
    assert libri["training_signal_len"] == 40000


def test_noise_is_added_back_after_speed_perturbation():
    """With use_wham_noise, training mixtures are the perturbed sources plus the noise."""
    import speechbrain as sb
    import torch
    from speechbrain.augment.time_domain import SpeedPerturb
    from speechbrain.dataio.batch import PaddedBatch

    from spgm_lobes.separation import SeparationBrain

    brain = SeparationBrain(
        modules={},
        hparams={"num_spks": 2, "use_speedperturb": True, "speed_perturb": SpeedPerturb(8000, speeds=[100])},
    )
    item = {"id": "a", "mix_sig": torch.zeros(800), "s1_sig": torch.randn(800), "s2_sig": torch.randn(800)}
    item["noise_sig"] = torch.ones(800)
    mix, targets, _ = brain.prepare_batch(PaddedBatch([item]), sb.Stage.TRAIN)
    torch.testing.assert_close(mix, targets.sum(-1) + 1.0)
