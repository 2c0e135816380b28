"""Tiny random-weight architectures for the fast-path tests."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from spgm_lobes.architectures import ARCHITECTURES, architecture_path
from spgm_lobes.testing import TINY_ARCH_OVERRIDES

TINY = TINY_ARCH_OVERRIDES


def _build(name, **overrides):
    """Modules of architecture ``name`` with tiny sizes and randomised weights (eval mode)."""
    sizes = dict(TINY)
    if name == "sepformer":
        sizes["inter_layers"] = 1
    sizes.update(overrides)
    with open(architecture_path(name)) as f:
        hparams = load_hyperpyyaml(f, overrides=sizes)
    torch.manual_seed(0)
    for module in hparams["modules"].values():
        for p in module.parameters():  # matrices keep their random init; biases and norms get noise
            if p.dim() == 1:
                p.data.add_(0.2 * torch.randn_like(p))
        module.eval()
    return hparams


def _relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.fixture
def build():
    """``build(name, **overrides)``: hparams of a tiny random-weight architecture."""
    return _build


@pytest.fixture
def relative_error():
    """``relative_error(a, b) = |a - b| / |b|``."""
    return _relative_error


@pytest.fixture(params=ARCHITECTURES)
def arch_name(request):
    return request.param
