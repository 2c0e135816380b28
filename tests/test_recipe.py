"""run_recipe builds the Brain on the fast path unless told otherwise."""

import pytest

from spgm_lobes.fast import FastMaskNet
from spgm_lobes.recipe import run_recipe
from spgm_lobes.separation import SeparationBrain
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH

RECIPE = str(REPO_ROOT / "recipes" / "WSJ0Mix" / "separation" / "hparams" / "spgm.yaml")


class _Stop(Exception):
    pass


@pytest.mark.parametrize("fast", [True, False])
def test_fast_path_switch(tmp_path, fast):
    seen = {}

    class RecordingBrain(SeparationBrain):
        def __init__(self, modules, **kwargs):
            seen["masknet"] = modules["masknet"]
            seen["checkpointed"] = kwargs["checkpointer"].recoverables["masknet"]
            raise _Stop

    argv = [RECIPE, "--data_folder", str(tmp_path), "--output_folder", str(tmp_path / "out"),
            "--arch", TINY_ARCH, "--use_fast_path", str(fast)]  # fmt: skip
    with pytest.raises(_Stop):
        run_recipe(argv, lambda hparams: None, lambda hparams: (None, None, None), RecordingBrain)
    assert isinstance(seen["masknet"], FastMaskNet) == fast
    # checkpoints always hold the plain SpeechBrain module (same parameters)
    assert not isinstance(seen["checkpointed"], FastMaskNet)
    assert set(seen["masknet"].state_dict()) == set(seen["checkpointed"].state_dict())


def _recorded_hparams(tmp_path, *extra):
    seen = {}

    class RecordingBrain(SeparationBrain):
        def __init__(self, modules, **kwargs):
            seen.update(kwargs["hparams"])
            raise _Stop

    argv = [RECIPE, "--data_folder", str(tmp_path), "--output_folder", str(tmp_path / "out"), "--arch", TINY_ARCH]
    with pytest.raises(_Stop):
        run_recipe(argv + list(extra), lambda hparams: None, lambda hparams: (None, None, None), RecordingBrain)
    return seen


def test_fast_regime_switch(tmp_path):
    paper = _recorded_hparams(tmp_path)
    assert (paper["batch_size"], paper["lr"], paper["precision"]) == (1, 1.5e-4, "fp32")
    assert not paper["compile_fast_path"] and not paper["static_training_shapes"] and paper["lr_warmup_steps"] == 0
    assert paper["lr_anneal_fraction"] == 0

    fast = _recorded_hparams(tmp_path, "--regime", "fast", "--batch_size", "8")
    assert fast["batch_size"] == 8  # the command line wins over the regime
    assert fast["dataloader_opts"]["batch_size"] == 8
    assert fast["lr"] > paper["lr"] and fast["lr_warmup_steps"] > 0
    assert fast["precision"] == "bf16" and fast["compile_fast_path"] and fast["static_training_shapes"]
    assert fast["training_signal_len"] == 2 * fast["sample_rate"]  # the regime's !ref resolves in the recipe
    assert 0 < fast["lr_anneal_fraction"] <= 1


def test_unknown_regime_is_named(tmp_path):
    with pytest.raises(ValueError, match="Unknown training regime 'turbo'; choose one of fast"):
        _recorded_hparams(tmp_path, "--regime", "turbo")
