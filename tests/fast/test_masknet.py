"""FastMaskNet computes the SpeechBrain Dual_Path_Model function, with the same parameters."""

import pytest
import torch
from speechbrain.lobes.models.dual_path import Dual_Path_Model, SBTransformerBlock

from spgm_lobes.fast import FastMaskNet, fast_masknet_forward, unsupported_masknet_reason, use_fast_masknet
from spgm_lobes.models import IdentityInterBlock, SPGMBlock


def _batch(n_in, lengths, seed=1):
    """A batch whose items have different content (and zero tails for shorter lengths)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(len(lengths), n_in, max(lengths), generator=g)
    for i, length in enumerate(lengths):
        x[i, :, length:] = 0
    return x


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_match_speechbrain(arch_name, batch, build, relative_error):
    masknet = build(arch_name)["masknet"]
    x = _batch(16, [57, 43, 30][:batch])
    with torch.no_grad():
        ref = masknet(x)
        out = FastMaskNet(masknet)(x)
    assert out.shape == ref.shape
    assert relative_error(out, ref) < 1e-4


def test_odd_chunk_size_and_batch_items_independent(build, relative_error):
    masknet = build("spgm-ap", chunk_size=7)["masknet"]
    x = _batch(16, [40, 40], seed=3)
    with torch.no_grad():
        ref = masknet(x)
        out = fast_masknet_forward(masknet, x)
        alone = fast_masknet_forward(masknet, x[1:])
    assert relative_error(out, ref) < 1e-4
    assert relative_error(out[:, 1:], alone) < 1e-5


def test_full_size_spgm_short_input(build, relative_error):
    masknet = build(
        "spgm-ap", N_encoder_out=256, out_channels=256, nhead=8, d_ffn=1024, intra_layers=8, chunk_size=250
    )["masknet"]
    x = torch.rand(1, 256, 300)
    with torch.no_grad():
        assert relative_error(fast_masknet_forward(masknet, x), masknet(x)) < 1e-4


def test_gradients_match_speechbrain(arch_name, build, relative_error):
    masknet = build(arch_name)["masknet"].train()  # dropout is 0 in every architecture file
    x = _batch(16, [50, 37])
    weights = torch.randn(masknet.num_spks, 2, 16, 50)

    def grads(forward):
        masknet.zero_grad()
        (forward(x) * weights).sum().backward()
        return {n: p.grad.clone() for n, p in masknet.named_parameters() if p.grad is not None}

    ref = grads(masknet)
    fast = grads(FastMaskNet(masknet))
    assert ref.keys() == fast.keys()
    for name in ref:  # absolute floor: e.g. the attentive-pooling bias has a zero gradient (softmax shift)
        assert (fast[name] - ref[name]).norm() <= 1e-4 * ref[name].norm() + 1e-6, name


def test_state_dict_round_trip(tmp_path, build, relative_error):
    plain = build("spgm-ap")["masknet"]
    fast = FastMaskNet(build("spgm-ap")["masknet"])
    assert list(fast.state_dict()) == list(plain.state_dict())
    torch.save(plain.state_dict(), tmp_path / "masknet.ckpt")
    fast.load_state_dict(torch.load(tmp_path / "masknet.ckpt"))
    for (name, a), b in zip(plain.state_dict().items(), fast.state_dict().values()):
        assert torch.equal(a, b), name
    # the other way round, after changing the fast model's weights in place
    with torch.no_grad():
        next(fast.parameters()).add_(1.0)
    plain.load_state_dict(fast.state_dict())
    assert torch.equal(next(plain.parameters()), next(fast.parameters()))


def test_wrapper_shares_parameters(build, relative_error):
    masknet = build("spgm-le")["masknet"]
    fast = FastMaskNet(masknet)
    assert all(a is b for a, b in zip(fast.parameters(), masknet.parameters()))
    with torch.no_grad():
        masknet.conv1d.weight.mul_(2)
    x = _batch(16, [33])
    with torch.no_grad():
        assert relative_error(fast(x), masknet(x)) < 1e-4


def test_unsupported_model_is_refused():
    m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2), IdentityInterBlock(), K=10, norm="gln")
    assert "gln" in unsupported_masknet_reason(m)
    with pytest.raises(ValueError, match="gln"):
        FastMaskNet(m)


def test_an_spgm_chunk_size_other_than_k_is_an_error_on_either_path():
    # chunk 20 with K = 10: a batch of 2 would pass the block's own B*K check and pool the two utterances as one
    m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2), SPGMBlock(16, chunk_size=20), K=10)
    for call in (unsupported_masknet_reason, FastMaskNet, lambda m: use_fast_masknet({"masknet": m}, enabled=False)):
        with pytest.raises(ValueError, match="chunk_size = 20 differs from the mask network's K = 10"):
            call(m)


@pytest.mark.parametrize("name", ["spgm-ap", "sepformer"])
def test_only_intra_chunk_attention_is_marked_as_chunks(name, build, monkeypatch):
    # FlexAttention (compiled CUDA training) is chosen for fixed-length chunks only
    from spgm_lobes.fast import layers

    flags = []

    def recording_attention(q, k, v, chunks=False):
        flags.append((q.shape[-2], chunks))
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    monkeypatch.setattr(layers, "attention", recording_attention)
    hparams = build(name)
    masknet = hparams["modules"]["masknet"]
    with torch.no_grad():
        fast_masknet_forward(masknet, torch.rand(2, masknet.conv1d.in_channels, 57))
    K = masknet.K
    assert (K, True) in flags
    assert all(chunks == (length == K) for length, chunks in flags)
    assert any(not chunks for _, chunks in flags) == (name == "sepformer")


def test_cuda_graphs_compile_the_blocks_in_reduce_overhead_mode(build, monkeypatch):
    from spgm_lobes.fast import masknet as fast_masknet

    modes = []
    monkeypatch.setattr(fast_masknet, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", lambda fn, **options: modes.append(options.get("mode")) or fn)
    masknet = build("spgm-ap")["modules"]["masknet"]
    assert not FastMaskNet(masknet, cuda_graphs=True).cuda_graphs  # nothing to replay without compile
    graphs = FastMaskNet(masknet, compile=True, cuda_graphs=True).train()
    plain = FastMaskNet(masknet, compile=True).train()
    assert graphs.cuda_graphs and not plain.cuda_graphs
    x = torch.rand(1, masknet.conv1d.in_channels, 40)
    graphs(x), plain(x), graphs(x)
    assert modes == ["reduce-overhead", None]  # one compiled function per kind, reused


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA path of compiled training (no GPU here)")
def test_a_compiled_dual_block_is_one_graph_in_cuda_bf16_training(build):
    # the CUDA-only kernels (FlexAttention, the fused feed-forward) once broke this graph at every layer,
    # which CPU runs could not see
    from spgm_lobes.fast.masknet import dual_block_forward

    masknet = build("spgm-ap")["modules"]["masknet"].cuda().train()
    N = masknet.conv1d.out_channels
    x = torch.randn(2, 5, masknet.K, N, device="cuda", requires_grad=True)
    torch._dynamo.reset()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        explanation = torch._dynamo.explain(dual_block_forward)(masknet.dual_mdl[0], x)
    assert explanation.graph_count == 1 and explanation.graph_break_count == 0, explanation.break_reasons
