"""Every architecture YAML builds and has the paper's parameter count."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder

from spgm_lobes import IdentityInterBlock, SPGMBlock
from spgm_lobes.architectures import ARCHITECTURES, HPARAMS_DIR, architecture_path

PAPER_PARAMS_M = {
    "sepformer": 25.7,
    "intra-sepformer-16": 13.0,
    "intra-sepformer-32": 25.7,
    "spgm-le-s": 13.3,
    "spgm-ap-s": 13.3,
    "spgm-le": 26.2,
    "spgm-ap": 26.2,
}
INTER = {
    "sepformer": None,
    "intra-sepformer-16": IdentityInterBlock,
    "intra-sepformer-32": IdentityInterBlock,
    "spgm-le-s": SPGMBlock,
    "spgm-ap-s": SPGMBlock,
    "spgm-le": SPGMBlock,
    "spgm-ap": SPGMBlock,
    "spgm-opt": SPGMBlock,
}


def load(name, **overrides):
    with open(architecture_path(name)) as f:
        return load_hyperpyyaml(f, overrides or None)


def test_every_file_is_listed():
    assert sorted(p.stem for p in HPARAMS_DIR.glob("*.yaml")) == sorted(ARCHITECTURES)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_builds_modules(name):
    hp = load(name)
    mods = hp["modules"]
    assert set(mods) == {"encoder", "masknet", "decoder"}
    assert isinstance(mods["encoder"], Encoder)
    assert isinstance(mods["masknet"], Dual_Path_Model)
    assert isinstance(mods["decoder"], Decoder)
    inter = mods["masknet"].dual_mdl[0].inter_mdl
    if INTER[name] is not None:
        assert isinstance(inter, INTER[name])
    if isinstance(inter, SPGMBlock):
        assert inter.chunk_size == mods["masknet"].K


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_parameter_count_matches_paper(name):
    hp = load(name)
    n = sum(p.numel() for m in hp["modules"].values() for p in m.parameters())
    assert abs(n / 1e6 - PAPER_PARAMS_M[name]) <= 0.05, f"{name}: {n / 1e6:.3f}M"


def test_spgm_pooling_variants():
    assert type(load("spgm-le")["modules"]["masknet"].dual_mdl[0].inter_mdl.pool.model).__name__ == "LastElementPooling"
    assert type(load("spgm-ap")["modules"]["masknet"].dual_mdl[0].inter_mdl.pool.model).__name__ == "AttentivePooling"
    opt = load("spgm-opt")["modules"]["masknet"]
    assert opt.K == 500 and opt.num_layers == 16


@pytest.mark.parametrize("num_spks", [2, 3])
def test_num_spks_parameter_and_tiny_forward(num_spks):
    hp = load(
        "spgm-ap-s",
        num_spks=num_spks,
        N_encoder_out=16,
        out_channels=16,
        nhead=2,
        d_ffn=32,
        intra_layers=1,
        chunk_size=10,
    )
    mods = hp["modules"]
    mix = torch.randn(2, 800)
    with torch.no_grad():
        w = mods["encoder"](mix)
        masks = mods["masknet"](w)
        est = torch.stack([mods["decoder"](w * masks[i]) for i in range(num_spks)], -1)
    assert masks.shape[0] == num_spks
    assert est.shape == (2, 800, num_spks)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="Unknown architecture"):
        architecture_path("dprnn")
