"""Fused transformer blocks compute SBTransformerBlock's function, on its own parameters."""

import pytest
import torch
from speechbrain.lobes.models.dual_path import SBTransformerBlock

from spgm_lobes.fast.layers import _pure_layer_arguments, transformer_block_forward


def _block(**kwargs):
    torch.manual_seed(0)
    options = dict(d_ffn=32, use_positional_encoding=True, norm_before=True, dropout=0.0)
    options.update(kwargs)
    block = SBTransformerBlock(2, 16, 4, **options)
    for p in block.parameters():
        if p.dim() == 1:
            p.data.add_(0.2 * torch.randn_like(p))
    return block


@pytest.mark.parametrize(
    "options",
    [{}, {"norm_before": False}, {"activation": "gelu"}, {"use_positional_encoding": False}, {"dropout": 0.3}],
)
def test_block_matches_speechbrain_in_eval(options, relative_error):
    block = _block(**options).eval()
    x = torch.randn(5, 12, 16)
    with torch.no_grad():
        assert relative_error(transformer_block_forward(block, x), block(x)) < 1e-5


def test_general_layers_take_the_module_path():
    assert _pure_layer_arguments(_block().mdl.layers[0]) is not None
    assert _pure_layer_arguments(_block(norm_before=False).mdl.layers[0]) is None
    assert _pure_layer_arguments(_block(activation="gelu").mdl.layers[0]) is None
    layer = _block(dropout=0.3).mdl.layers[0]
    assert _pure_layer_arguments(layer.eval()) is not None
    assert _pure_layer_arguments(layer.train()) is None


def test_dropout_is_active_in_training_and_differentiable():
    block = _block(dropout=0.5).train()
    x = torch.randn(4, 12, 16, requires_grad=True)
    a, b = transformer_block_forward(block, x), transformer_block_forward(block, x)
    assert not torch.allclose(a, b)
    (a.sum() + b.sum()).backward()
    assert torch.isfinite(x.grad).all()
    block.eval()
    with torch.no_grad():
        assert torch.allclose(transformer_block_forward(block, x), block(x), atol=1e-5)
