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
