"""run_recipe builds the Brain on the fast path unless told otherwise, and reads the training set shuffled."""

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from spgm_lobes.data.dynamic_mixing import SpeakerMixingDataset
from spgm_lobes.fast import FastMaskNet
from spgm_lobes.recipe import run_recipe
from spgm_lobes.separation import SeparationBrain
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH, TINY_ARCH_OVERRIDES

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


def _read_order(tmp_path, hparams_file, *extra, train_set=None):
    """The ids each stage reads, epoch by epoch, in a recipe run of 3 epochs over 8 training (or ``train_set``)
    and 8 validation items (steps and checkpoints left out)."""
    seen = {"train": [], "valid": []}

    class OrderBrain(SeparationBrain):
        def on_stage_start(self, stage, epoch=None):
            super().on_stage_start(stage, epoch)
            if stage != sb.Stage.TEST:
                seen[stage.name.lower()].append([])

        def fit_batch(self, batch):
            seen["train"][-1].extend(batch.id)
            return torch.tensor(0.0)

        def evaluate_batch(self, batch, stage):
            if stage == sb.Stage.VALID:
                seen["valid"][-1].extend(batch.id)
            return torch.tensor(0.0)

        def on_stage_end(self, stage, stage_loss, epoch=None):
            pass

    def items(prefix):
        return [{"id": f"{prefix}{i}", "mix_sig": torch.zeros(80)} for i in range(8)]

    argv = [str(hparams_file), "--data_folder", str(tmp_path), "--output_folder", str(tmp_path / "out"),
            "--arch", TINY_ARCH, "--N_epochs", "3", "--num_workers", "0", "--batch_size", "2", *extra]  # fmt: skip
    train_set = items("t") if train_set is None else train_set
    run_recipe(argv, lambda hparams: None, lambda hparams: (train_set, items("v"), items("e")), OrderBrain)
    return seen


@pytest.mark.parametrize(
    "hparams_file, extra",
    [
        (RECIPE, []),
        (RECIPE, ["--static_training_shapes", "True"]),
        (REPO_ROOT / "recipes" / "LibriMix" / "separation" / "hparams" / "spgm.yaml", []),
        (REPO_ROOT / "recipes" / "GASS" / "hparams" / "spgm.yaml", []),
    ],
    ids=["wsj0mix", "wsj0mix-static-shapes", "librimix", "gass"],
)
def test_the_training_set_is_shuffled_every_epoch_and_validation_is_not(tmp_path, hparams_file, extra):
    seen = _read_order(tmp_path, hparams_file, *extra)
    train, valid = seen["train"], seen["valid"]
    assert len(train) == 3 and all(sorted(ids) == sorted(f"t{i}" for i in range(8)) for ids in train)
    assert len({tuple(ids) for ids in train}) == 3  # a new order every epoch
    assert valid == [[f"v{i}" for i in range(8)]] * 3  # validation keeps the dataset's order
    assert _read_order(tmp_path / "again", hparams_file, *extra)["train"] == train  # seeded: the same run again


def test_dynamic_mixtures_read_shuffled_are_the_epochs_mixtures(tmp_path, wsj0mix_corpus):
    mixtures = SpeakerMixingDataset(wsj0mix_corpus / "si_tr_s", num_spks=2, num_mixtures=8, seed=3)
    train = _read_order(tmp_path, RECIPE, train_set=mixtures)["train"]
    for epoch, ids in enumerate(train, start=1):  # every mixture of the epoch (drawn for it), in a shuffled order
        assert sorted(ids) == sorted(f"dm_e{epoch}_{i}" for i in range(8)) and ids != sorted(ids)


def _checkpoint_intervals(tmp_path, *extra):
    """(minutes, steps) of the Brain a WSJ0Mix recipe run builds with ``extra`` on its command line."""
    seen = {}

    class IntervalBrain(SeparationBrain):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            seen["intervals"] = (self.ckpt_interval_minutes, self.ckpt_interval_steps)
            raise _Stop

    argv = [RECIPE, "--data_folder", str(tmp_path), "--output_folder", str(tmp_path / "out"), "--arch", TINY_ARCH]
    with pytest.raises(_Stop):
        run_recipe(argv + list(extra), lambda hparams: None, lambda hparams: (None, None, None), IntervalBrain)
    return seen["intervals"]


def test_ckpt_interval_steps_alone_replaces_the_minutes_interval(tmp_path):
    assert _checkpoint_intervals(tmp_path) == (60, 0)
    assert _checkpoint_intervals(tmp_path, "--ckpt_interval_steps", "500") == (0, 500)
    with pytest.raises(SystemExit, match="mutually exclusive"):  # both asked for: SpeechBrain's error stays
        _checkpoint_intervals(tmp_path, "--ckpt_interval_steps", "500", "--ckpt_interval_minutes", "30")


@pytest.mark.parametrize(
    "hparams_file",
    sorted((REPO_ROOT / "recipes").glob("*/separation/hparams/*.yaml")),
    ids=lambda p: f"{p.parent.parent.parent.name}/{p.name}",
)
def test_two_and_three_speaker_runs_never_share_a_default_output_folder(hparams_file):
    folders = {}
    for num_spks in (2, 3):
        with open(hparams_file) as f:
            hparams = load_hyperpyyaml(f, {"data_folder": "data", "arch": TINY_ARCH_OVERRIDES, "num_spks": num_spks})
        folders[num_spks] = hparams["output_folder"]
        assert hparams["save_folder"].startswith(hparams["output_folder"] + "/")
    assert folders[2] != folders[3] and not folders[3].startswith(folders[2] + "/")
