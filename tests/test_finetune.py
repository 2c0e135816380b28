"""Tests of loading a separator with more outputs through SpeechBrain's Pretrainer (spgm_lobes.finetune)."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from spgm_lobes.architectures import architecture_path
from spgm_lobes.fast import encode_mask_decode
from spgm_lobes.finetune import load_pretrained_separator
from spgm_lobes.testing import TINY_ARCH_OVERRIDES

TINY = TINY_ARCH_OVERRIDES


def _modules(num_spks, seed):
    torch.manual_seed(seed)
    with open(architecture_path("spgm-ap-s")) as f:
        modules = load_hyperpyyaml(f, {**TINY, "num_spks": num_spks})["modules"]
    return {name: module.eval() for name, module in modules.items()}


def _save(modules, folder):
    folder.mkdir(parents=True)
    for name, module in modules.items():
        torch.save(module.state_dict(), folder / f"{name}.ckpt")


def test_four_output_checkpoint_initialises_two_output_model(tmp_path):
    gass = _modules(4, seed=0)
    _save(gass, tmp_path / "CKPT+gass")
    two = _modules(2, seed=1)
    load_pretrained_separator(two, tmp_path / "CKPT+gass", tmp_path / "collected")
    mix = torch.randn(1, 400)
    with torch.no_grad():
        expected = encode_mask_decode(gass, mix)[..., :2]
        got = encode_mask_decode(two, mix)
    # everything after the output convolution is shared by the speakers: the first two outputs are reproduced
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(two["masknet"].conv2d.weight, gass["masknet"].conv2d.weight[:32])


def test_random_output_init_keeps_fresh_layer_and_loads_the_rest(tmp_path):
    gass = _modules(4, seed=0)
    _save(gass, tmp_path / "ckpt")
    two = _modules(2, seed=1)
    fresh = two["masknet"].conv2d.weight.detach().clone()
    load_pretrained_separator(two, tmp_path / "ckpt", tmp_path / "collected", output_init="random")
    torch.testing.assert_close(two["masknet"].conv2d.weight, fresh)
    torch.testing.assert_close(two["encoder"].conv1d.weight, gass["encoder"].conv1d.weight)
    torch.testing.assert_close(two["masknet"].end_conv1x1.weight, gass["masknet"].end_conv1x1.weight)


def test_fewer_outputs_or_missing_files_are_errors(tmp_path):
    _save(_modules(2, seed=0), tmp_path / "two")
    with pytest.raises(ValueError, match="conv2d"):
        load_pretrained_separator(_modules(4, seed=1), tmp_path / "two", tmp_path / "collected")
    (tmp_path / "two" / "decoder.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match="decoder.ckpt"):
        load_pretrained_separator(_modules(2, seed=1), tmp_path / "two", tmp_path / "collected2")
