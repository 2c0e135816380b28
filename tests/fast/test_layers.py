"""Fused transformer blocks compute SBTransformerBlock's function, on its own parameters."""

import pytest
import torch
from speechbrain.lobes.models.dual_path import SBTransformerBlock
from torch.nn.attention.flex_attention import flex_attention

from spgm_lobes.fast.layers import _pure_layer_arguments, feed_forward_relu, transformer_block_forward


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


def _ffn_reference(x, w1, b1, w2, b2):
    return torch.nn.functional.linear(torch.relu(torch.nn.functional.linear(x, w1, b1)), w2, b2)


def test_fused_feed_forward_gradients():
    torch.manual_seed(0)
    shapes = [(3, 5, 4), (6, 4), (6,), (4, 6), (4,)]
    args = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
    assert torch.autograd.gradcheck(feed_forward_relu, args)
    assert torch.allclose(feed_forward_relu(*args), _ffn_reference(*args))
    frozen = [args[0]] + [a.detach() for a in args[1:]]  # only the input needs a gradient
    assert torch.autograd.gradcheck(feed_forward_relu, frozen)


def test_fused_feed_forward_follows_autocast():
    args = [torch.randn(2, 3, 4), torch.randn(5, 4), torch.randn(5), torch.randn(4, 5), torch.randn(4)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = feed_forward_relu(*args)
    assert out.dtype == torch.bfloat16
    assert torch.allclose(out.float(), _ffn_reference(*args), atol=0.1)


def test_compiled_feed_forward_is_plain_ops_in_the_graph():
    # Under torch.compile the layer is left to Inductor (two linears and a ReLU): the autograd.Function
    # with its Triton backward broke the compiled graph at every layer on CUDA.
    torch._dynamo.reset()
    x = torch.randn(2, 3, 4, requires_grad=True)
    args = [x, torch.randn(5, 4), torch.randn(5), torch.randn(4, 5), torch.randn(4)]
    explanation = torch._dynamo.explain(feed_forward_relu)(*args)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0
    calls = [node.target for node in explanation.graphs[0].graph.nodes if node.op == "call_function"]
    assert calls == [torch.nn.functional.linear, torch.relu, torch.nn.functional.linear]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention trains on CUDA only (no GPU here)")
def test_compiled_bf16_training_on_cuda_uses_flex_attention(monkeypatch, relative_error):
    from spgm_lobes.fast import layers

    calls = []

    def counted_flex_attention(*args, **kwargs):
        calls.append(args[0].shape)
        return flex_attention(*args, **kwargs)

    monkeypatch.setattr(layers, "flex_attention", counted_flex_attention)
    torch.manual_seed(0)
    block = SBTransformerBlock(2, 64, 2, d_ffn=128, use_positional_encoding=True, norm_before=True, dropout=0.0)
    block = block.cuda().train()
    x = torch.randn(6, 40, 64, device="cuda", requires_grad=True)
    weighting = torch.randn(6, 40, 64, device="cuda")  # a loss whose gradients do not cancel in the final norm
    inputs = [x, *block.parameters()]

    def output_and_grads(forward, bf16):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            out = forward(block, x, True).float()  # chunks=True: the sequences are fixed-length chunks
        return [out, *torch.autograd.grad((out * weighting).sum(), inputs)]

    reference = output_and_grads(transformer_block_forward, bf16=False)  # float32, SDPA
    eager = output_and_grads(transformer_block_forward, bf16=True)  # bfloat16, SDPA
    assert not calls
    torch._dynamo.reset()
    compiled = output_and_grads(torch.compile(transformer_block_forward), bf16=True)
    assert calls, "the compiled bf16 training graph did not use FlexAttention"
    eager_errors = [relative_error(e, r) for e, r in zip(eager, reference)]
    compiled_errors = [relative_error(c, r) for c, r in zip(compiled, reference)]
    print("relative errors vs float32, eager SDPA:", [f"{e:.1e}" for e in eager_errors])
    print("relative errors vs float32, compiled Flex:", [f"{e:.1e}" for e in compiled_errors])
    for compiled_error, eager_error in zip(compiled_errors, eager_errors):
        assert compiled_error < 2 * eager_error + 1e-3  # bf16 rounding either way; a wrong scale or layout is O(1)
