"""Inference card template and its flattening for every architecture."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from spgm_lobes.architectures import ARCHITECTURES, architecture_path
from spgm_lobes.card import TEMPLATE_PATH, architecture_keys, inference_card
from spgm_lobes.testing import TINY_ARCH_OVERRIDES

TINY = TINY_ARCH_OVERRIDES


def test_template_loads_as_is():
    with open(TEMPLATE_PATH) as f:
        hp = load_hyperpyyaml(f, {"arch": TINY, "num_spks": 3})
    assert hp["sample_rate"] == 8000 and hp["modules"]["masknet"].num_spks == 3
    assert hp["pretrainer"].loadables["masknet"] is hp["modules"]["masknet"]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_flattened_card_builds_the_architecture(name):
    overrides = {k: v for k, v in TINY.items() if k in architecture_keys(architecture_path(name))}
    text = inference_card(architecture_path(name), overrides, sample_rate=16000, num_spks=3)
    assert "!include" not in text and "!ref" not in text
    hp = load_hyperpyyaml(text)
    with open(architecture_path(name)) as f:
        direct = load_hyperpyyaml(f, {**overrides, "num_spks": 3})["modules"]
    assert hp["sample_rate"] == 16000 and hp["num_spks"] == 3
    for key in ("encoder", "masknet", "decoder"):
        got = {k: v.shape for k, v in hp["modules"][key].state_dict().items()}
        assert got == {k: v.shape for k, v in direct[key].state_dict().items()}
        assert hp["pretrainer"].loadables[key] is hp["modules"][key]
    torch.manual_seed(0)
    with torch.no_grad():
        w = hp["modules"]["encoder"](torch.randn(1, 400))
        assert hp["modules"]["masknet"](w).shape[0] == 3


def test_unknown_architecture_key():
    with pytest.raises(ValueError, match="Not top-level keys of spgm-ap.yaml: N_layers"):
        inference_card(architecture_path("spgm-ap"), {"N_layers": 3})


def test_missing_architecture_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        inference_card(tmp_path / "nope.yaml")
