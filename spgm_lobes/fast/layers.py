"""Fused forward passes of SpeechBrain transformer blocks, computed on the
blocks' own parameters.

Every function here takes a SpeechBrain module and reads its weights at call
time (nothing is copied), so a module trained with the fast path and one
trained with the plain path are interchangeable. The computation is the one of
:class:`speechbrain.lobes.models.dual_path.SBTransformerBlock`:

* positional encoding added once at the block input;
* per layer (``normalize_before=True``): ``x + att(LN1(x))`` then
  ``x + FFN(LN2(x))`` (post-norm is supported too);
* a final ``LayerNorm``.

The pre-norm ReLU layers (SPGM's) run as one pure-tensor function with the
feed-forward bias and ReLU fused into the first GEMM (cuBLASLt epilogue) and,
backwards, the ReLU mask and bias gradient fused into the GEMM that produces
them (a Triton kernel, :mod:`spgm_lobes.fast.kernels`), and
``compiled=True`` puts whole blocks under ``torch.compile`` (residual adds,
layer norms and dtype casts fused; there the feed-forward is two plain
linears and a ReLU that Inductor fuses, so each block stays one graph).

Attention goes through :func:`torch.nn.functional.scaled_dot_product_attention`
(flash / memory-efficient kernels on the GPU, no attention-weight tensors), on
``in_proj_weight`` / ``out_proj`` of SpeechBrain's ``MultiheadAttention``;
compiled training on CUDA uses FlexAttention instead (see :func:`attention`).
Dropout modules are the blocks' own, so train/eval behaviour follows the module;
attention dropout is applied by SDPA with the same probability (same
distribution, different random draws).

Authors
 * spgm-lobes contributors 2026
"""

import math

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import SBTransformerBlock
from speechbrain.lobes.models.transformer.Transformer import TransformerEncoderLayer
from speechbrain.nnet.attention import MultiheadAttention, PositionalwiseFeedForward
from torch.nn.attention.flex_attention import flex_attention

from .kernels import relu_masked_matmul


def unsupported_transformer_reason(block):
    """Why ``block`` cannot use :func:`transformer_block_forward` (``None`` if it can).

    Example
    -------
    >>> unsupported_transformer_reason(SBTransformerBlock(1, 16, 2, d_ffn=32)) is None
    True
    >>> unsupported_transformer_reason(torch.nn.Identity())
    'Identity is not an SBTransformerBlock'
    """
    if not isinstance(block, SBTransformerBlock):
        return f"{type(block).__name__} is not an SBTransformerBlock"
    mdl = block.mdl
    if getattr(mdl, "layerdrop_prob", 0.0) != 0.0:
        return "layerdrop is not supported"
    for layer in mdl.layers:
        if not isinstance(layer, TransformerEncoderLayer):
            return f"{type(layer).__name__} is not a TransformerEncoderLayer"
        if not isinstance(layer.self_att, MultiheadAttention):
            return f"attention {type(layer.self_att).__name__} is not regularMHA"
        att = layer.self_att.att
        if not att._qkv_same_embed_dim or att.bias_k is not None or att.add_zero_attn or att.in_proj_bias is None:
            return "MultiheadAttention with kdim/vdim, bias_kv, zero_attn or no bias is not supported"
        if not isinstance(layer.pos_ffn, PositionalwiseFeedForward):
            return "only the regular position-wise feed-forward is supported"
    return None


def positional_encoding(pos_enc, length):
    """Rows ``[0, length)`` of a SpeechBrain ``PositionalEncoding``, ``[length, N]``.

    Lengths beyond the stored table (``max_len``, 2,500) are extended with the
    same sinusoid formula instead of failing; the stored rows are kept as they
    are.

    Example
    -------
    >>> from speechbrain.lobes.models.transformer.Transformer import PositionalEncoding
    >>> pe = PositionalEncoding(16, max_len=10)
    >>> torch.equal(positional_encoding(pe, 7), pe.pe[0, :7])
    True
    >>> long = positional_encoding(pe, 30)
    >>> long.shape, torch.equal(long[:10], pe.pe[0])
    (torch.Size([30, 16]), True)
    """
    table = pos_enc.pe[0]
    if length <= table.shape[0]:
        return table[:length]
    n = table.shape[1]
    positions = torch.arange(0, length, device=table.device).unsqueeze(1).float()
    denominator = torch.exp(torch.arange(0, n, 2, device=table.device).float() * -(math.log(10000.0) / n))
    extended = torch.zeros(length, n, device=table.device, dtype=table.dtype)
    extended[:, 0::2] = torch.sin(positions * denominator)
    extended[:, 1::2] = torch.cos(positions * denominator)
    extended[: table.shape[0]] = table
    return extended


def self_attention(mha, x):
    """Self-attention of SpeechBrain's ``MultiheadAttention`` ``mha`` on ``x``
    ``[M, T, E]`` with fused SDPA; returns ``[M, T, E]``.

    Example
    -------
    >>> mha = MultiheadAttention(nhead=2, d_model=16).eval()
    >>> x = torch.randn(3, 5, 16)
    >>> torch.allclose(self_attention(mha, x), mha(x, x, x)[0], atol=1e-5)
    True
    """
    att = mha.att
    M, T, E = x.shape
    H = att.num_heads
    qkv = F.linear(x, att.in_proj_weight, att.in_proj_bias)
    q, k, v = qkv.view(M, T, 3, H, E // H).permute(2, 0, 3, 1, 4).unbind(0)
    dropout_p = att.dropout if (mha.training and att.dropout > 0) else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    out = out.transpose(1, 2).reshape(M, T, E)
    return F.linear(out, att.out_proj.weight, att.out_proj.bias)


def encoder_layer_forward(layer, x):
    """One SpeechBrain ``TransformerEncoderLayer`` on ``x`` ``[M, T, E]``."""
    if layer.normalize_before:
        x = x + layer.dropout1(self_attention(layer.self_att, layer.norm1.norm(x)))
        return x + layer.dropout2(layer.pos_ffn.ffn(layer.norm2.norm(x)))
    x = layer.norm1.norm(x + layer.dropout1(self_attention(layer.self_att, x)))
    return layer.norm2.norm(x + layer.dropout2(layer.pos_ffn.ffn(x)))


class _FeedForwardReLU(torch.autograd.Function):
    """``relu(x @ w1.T + b1) @ w2.T + b2`` for 2-D ``x``: the first product
    with its bias and ReLU as a cuBLASLt epilogue (``torch._addmm_activation``),
    and in the backward the ReLU mask and the first bias gradient as the
    epilogue of the product that needs them (:func:`relu_masked_matmul`), so
    the ``[rows, d_ffn]`` activation gradient is written once instead of
    twice and not read back for the bias gradient."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        hidden = torch._addmm_activation(b1, x, w1.t())
        ctx.save_for_backward(x, w1, hidden, w2)
        return torch.addmm(b2, hidden, w2.t())

    @staticmethod
    def backward(ctx, grad):
        x, w1, hidden, w2 = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_w2 = grad.t() @ hidden if needs[3] else None
        grad_b2 = grad.sum(0) if needs[4] else None
        if not any(needs[:3]):
            return None, None, None, grad_w2, grad_b2
        grad_hidden, grad_b1 = relu_masked_matmul(grad, w2, hidden)
        grad_x = grad_hidden @ w1 if needs[0] else None
        grad_w1 = grad_hidden.t() @ x if needs[1] else None
        return grad_x, grad_w1, grad_b1 if needs[2] else None, grad_w2, grad_b2


def feed_forward_relu(x, w1, b1, w2, b2):
    """``F.linear(relu(F.linear(x, w1, b1)), w2, b2)`` with fused epilogues in
    both directions (see :class:`_FeedForwardReLU`; autocast dtype respected);
    under ``torch.compile``, the plain operations, which Inductor fuses.

    Example
    -------
    >>> x, w1, b1, w2, b2 = torch.randn(2, 3, 4), torch.randn(5, 4), torch.randn(5), torch.randn(4, 5), torch.randn(4)
    >>> ref = F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2)
    >>> torch.allclose(feed_forward_relu(x, w1, b1, w2, b2), ref, atol=1e-6)
    True
    """
    if torch.compiler.is_compiling():
        # Inductor fuses the bias and ReLU into its own kernels; the autograd.Function with the Triton
        # backward broke the compiled graph at every layer (a CUDA-only graph break: 50 compiled-graph
        # calls per training step instead of 4), and one graph per block is what CUDA graphs replay.
        return F.linear(torch.relu(F.linear(x, w1, b1)), w2, b2)
    dtype = x.dtype
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
    rows = x.reshape(-1, x.shape[-1]).to(dtype)
    out = _FeedForwardReLU.apply(rows, *(p.to(dtype) for p in (w1, b1, w2, b2)))
    return out.view(*x.shape[:-1], w2.shape[0])


def attention(q, k, v, chunks=False):
    """``softmax(q kᵀ / √D) v`` of ``[M, H, T, D]`` tensors (no mask, no dropout);
    ``chunks=True`` says the sequences are fixed-length chunks (intra-chunk
    attention), whose length does not change between calls.

    Inside ``torch.compile`` on CUDA, in bfloat16 / float16 when gradients are
    recorded, this is FlexAttention: a Triton kernel Inductor generates for the
    shape. At SPGM's shape (head size 32, chunks of 250) its forward + backward
    take 27 ms of a compiled training step at batch 16 instead of 32 ms for
    cuDNN's SDPA, and the CPU queues it faster (H200, 4 s segments:
    ``bench/speed.py`` 475 / 580 audio-s/s at batch 8 / 32, against 352 / 551
    with cuDNN). It is used for chunks only, the shape it was measured on;
    attention over a varying number of chunks (Sepformer's inter-chunk blocks,
    a dynamic sequence length in the compiled graph) keeps SDPA.

    Everywhere else this is
    :func:`torch.nn.functional.scaled_dot_product_attention`: FlexAttention
    has no CPU backward and is unfused outside ``torch.compile``, and
    inference keeps the kernel it was measured with.

    Example
    -------
    >>> q, k, v = torch.randn(3, 2, 2, 5, 8).unbind(0)
    >>> torch.allclose(attention(q, k, v), torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, -1) @ v, atol=1e-6)
    True
    """
    half = q.dtype in (torch.bfloat16, torch.float16)
    if chunks and q.is_cuda and half and q.requires_grad and torch.compiler.is_compiling():
        return flex_attention(q, k, v, kernel_options=flex_kernel_options(q.shape[-1]))
    return F.scaled_dot_product_attention(q, k, v)


def flex_kernel_options(head_dim):
    """FlexAttention ``kernel_options`` for :func:`attention`: no mask, so every
    row is safe (``ROWS_GUARANTEED_SAFE``); for heads of up to 64 the backward
    tile measured fastest at SPGM's shape (chunks of 250, head size 32, H200:
    2.01 ms for forward + backward at batch 32 against 2.12 ms with the default
    tile; Inductor's autotuning picked the same tile).

    Example
    -------
    >>> flex_kernel_options(32)["bwd_BLOCK_N1"], flex_kernel_options(128)
    (64, {'ROWS_GUARANTEED_SAFE': True})
    """
    options = {"ROWS_GUARANTEED_SAFE": True}
    if head_dim <= 64:
        tile = {"bwd_BLOCK_M1": 32, "bwd_BLOCK_N1": 64, "bwd_BLOCK_M2": 64, "bwd_BLOCK_N2": 32}
        options.update(tile, bwd_num_warps=4, bwd_num_stages=3)
    return options


def prenorm_relu_layer(x, norm1, attention_weights, norm2, ffn1, ffn2, nhead, chunks=False):
    """Pure-tensor pre-norm transformer layer with ReLU feed-forward and no
    dropout. Each of ``norm1`` ... ``ffn2`` is a ``(weight, bias)`` pair
    (``norm*`` with ``eps``); ``attention_weights`` is
    ``(in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias)``;
    ``chunks`` as in :func:`attention`."""
    M, T, E = x.shape
    in_w, in_b, out_w, out_b = attention_weights
    y = F.layer_norm(x, (E,), norm1[0], norm1[1], norm1[2])
    q, k, v = F.linear(y, in_w, in_b).view(M, T, 3, nhead, E // nhead).permute(2, 0, 3, 1, 4).unbind(0)
    a = attention(q, k, v, chunks).transpose(1, 2).reshape(M, T, E)
    x = x + F.linear(a, out_w, out_b)
    y = F.layer_norm(x, (E,), norm2[0], norm2[1], norm2[2])
    return x + feed_forward_relu(y, ffn1[0], ffn1[1], ffn2[0], ffn2[1])


def _pure_layer_arguments(layer):
    """Arguments of :func:`prenorm_relu_layer` for ``layer``, or ``None`` when the
    layer is not a pre-norm ReLU layer running without dropout."""
    ffn = layer.pos_ffn.ffn
    att = layer.self_att.att
    dropouts = (att.dropout, layer.dropout1.p, ffn[2].p, layer.dropout2.p)
    dropout_active = layer.training and any(p > 0 for p in dropouts)
    if not layer.normalize_before or not isinstance(ffn[1], torch.nn.ReLU) or dropout_active:
        return None
    n1, n2 = layer.norm1.norm, layer.norm2.norm
    return (
        (n1.weight, n1.bias, n1.eps),
        (att.in_proj_weight, att.in_proj_bias, att.out_proj.weight, att.out_proj.bias),
        (n2.weight, n2.bias, n2.eps),
        (ffn[0].weight, ffn[0].bias),
        (ffn[3].weight, ffn[3].bias),
        att.num_heads,
    )


def compile_options(cuda_graphs=False):
    """Keyword arguments of every ``torch.compile`` call of the fast path;
    raises the recompilation limit (one graph per dtype / grad mode / block
    structure, then one dynamic-shape graph per kind).

    ``cuda_graphs=True`` is ``torch.compile``'s ``mode="reduce-overhead"``: each
    compiled graph, forward and backward, is replayed as a CUDA graph (one launch
    instead of one per kernel), for training steps whose host time exceeds
    their GPU time; static shapes only.

    Example
    -------
    >>> compile_options(cuda_graphs=True)
    {'dynamic': None, 'mode': 'reduce-overhead'}
    """
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))
    return {"dynamic": None, "mode": "reduce-overhead"} if cuda_graphs else {"dynamic": None}


# Phases of ``torch._dynamo.utils.compile_times()`` reported by :func:`compile_time_summary`.
COMPILE_PHASES = {
    "Dynamo tracing": "bytecode_tracing",
    "forward graph (AOTAutograd, Inductor)": "OutputGraph.call_user_compiler",
    "backward graph (Inductor)": "compile_fx.<locals>.bw_compiler",
    "waiting for kernel builds": "async_compile.wait",
}


def compile_time_summary():
    """Seconds spent so far in this process in the main phases of ``torch.compile``
    (:data:`COMPILE_PHASES`, from Dynamo's own timers), ``{}`` when nothing was
    compiled. The backward graph compiles during the first backward pass;
    waiting for kernel builds (Triton, C++) is part of the two graph phases.

    Example
    -------
    >>> torch._dynamo.reset()
    >>> compile_time_summary()
    {}
    >>> f = torch.compile(lambda x: x * 2, backend="eager")
    >>> f(torch.ones(2)).tolist()
    [2.0, 2.0]
    >>> list(compile_time_summary())[0]
    'Dynamo tracing'
    """
    try:
        from torch._dynamo.utils import compile_times

        names, seconds = compile_times(repr="csv", aggregate=True)
    except Exception:  # a private API: no summary rather than a failed run
        return {}
    spent = dict(zip(names, seconds))
    return {phase: float(spent[key]) for phase, key in COMPILE_PHASES.items() if key in spent}


_COMPILED = {}


def compiled_transformer_block_forward():
    """:func:`transformer_block_forward` under ``torch.compile`` (shared by
    every block: weights are graph inputs, not constants)."""
    if "block" not in _COMPILED:
        _COMPILED["block"] = torch.compile(transformer_block_forward, **compile_options())
    return _COMPILED["block"]


def transformer_block_forward(block, x, chunks=False):
    """Same function as ``block(x)`` for an ``SBTransformerBlock`` ``block``,
    ``x`` of shape ``[M, T, E]`` (``chunks=True``: ``T`` is a fixed chunk
    length, see :func:`attention`).

    Example
    -------
    >>> block = SBTransformerBlock(2, 16, 2, d_ffn=32, use_positional_encoding=True, norm_before=True).eval()
    >>> x = torch.randn(4, 10, 16)
    >>> torch.allclose(transformer_block_forward(block, x), block(x), atol=1e-5)
    True
    """
    if block.use_positional_encoding:
        x = x + positional_encoding(block.pos_enc, x.shape[1]).to(x.dtype)
    for layer in block.mdl.layers:
        arguments = _pure_layer_arguments(layer)
        if arguments is None:
            x = encoder_layer_forward(layer, x)
        else:
            x = prenorm_relu_layer(x, *arguments, chunks=chunks)
    return block.mdl.norm.norm(x)


def sequence_forward(module, x, compiled=False, chunks=False):
    """Applies a sequence model (``[M, T, E] -> [M, T, E]``) the fastest way
    available: fused for ``SBTransformerBlock`` (``compiled=True``: under
    ``torch.compile``; ``chunks=True``: ``T`` is the fixed chunk length, see
    :func:`attention`), the module itself otherwise."""
    if unsupported_transformer_reason(module) is None:
        if compiled:
            return compiled_transformer_block_forward()(module, x, chunks)
        return transformer_block_forward(module, x, chunks)
    return module(x)
