"""A fast forward pass for SpeechBrain's ``Dual_Path_Model`` mask network.

:class:`FastMaskNet` wraps a built ``Dual_Path_Model`` (from any architecture
file of ``hparams/``) and computes the same function with fewer copies:

* the features stay channel-last in one ``[B, S, K, N]`` layout (``S`` chunks of
  ``K`` frames) from segmentation to overlap-add, so the intra model reads
  ``[B*S, K, N]`` as a view and an SPGM block pools without any permute copy;
* transformer blocks use fused SDPA attention (:mod:`spgm_lobes.fast.layers`);
* the ``GroupNorm(1, N)`` layers ("ln") are computed on the channel-last layout;
* the output head overlap-adds *before* the ``num_spks``-fold 1x1 convolution,
  so the largest tensor of the plain model (``[B*num_spks, N, K, S]``) is never
  built.

The wrapper registers the very modules of the wrapped model under the same
names: its ``state_dict()`` keys are exactly the ``Dual_Path_Model`` ones, its
parameters are the same ``Parameter`` objects (no copy can go stale), and a
``masknet.ckpt`` written from either loads into the other.

Authors
 * spgm-lobes contributors 2026
"""

import warnings

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import Dual_Path_Model, IdentityBlock
from torch import nn

from ..models.identity import IdentityInterBlock
from ..models.spgm import SPGMBlock
from .layers import compile_options, sequence_forward


def unsupported_masknet_reason(masknet):
    """Why ``masknet`` cannot run on the fast path (``None`` if it can).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import SBTransformerBlock
    >>> m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2), IdentityInterBlock(), K=10)
    >>> unsupported_masknet_reason(m) is None
    True
    >>> unsupported_masknet_reason(Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2),
    ...     IdentityInterBlock(), K=10, norm="gln"))
    "norm 'gln' (only 'ln' is supported)"
    """
    if not isinstance(masknet, Dual_Path_Model):
        return f"{type(masknet).__name__} is not a speechbrain Dual_Path_Model"
    if masknet.use_global_pos_enc:
        return "use_global_pos_enc=True is not supported"
    norms = [masknet.norm]
    for block in masknet.dual_mdl:
        if block.norm is not None:
            norms += [block.intra_norm, block.inter_norm]
    for mod in norms:
        if not (isinstance(mod, nn.GroupNorm) and mod.num_groups == 1):
            kind = {"GlobalLayerNorm": "gln", "CumulativeLayerNorm": "cln", "BatchNorm1d": "bn"}.get(
                type(mod).__name__, type(mod).__name__
            )
            return f"norm {kind!r} (only 'ln' is supported)"
    check_spgm_chunk_size(masknet)  # not a path to fall back from: an error on either
    return None


def check_spgm_chunk_size(masknet):
    """Raises ``ValueError`` when an SPGM block's ``chunk_size`` differs from the ``K`` of its
    ``Dual_Path_Model``: the block would then group rows of several utterances (or parts of them) as
    one, silently, whenever ``B*K`` happens to be a multiple of its ``chunk_size``.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import SBTransformerBlock
    >>> m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2), SPGMBlock(16, chunk_size=20), K=10)
    >>> check_spgm_chunk_size(m)
    Traceback (most recent call last):
    ...
    ValueError: dual_mdl.0.inter_mdl.chunk_size = 20 differs from the mask network's K = 10; set chunk_size to K.
    """
    for i, block in enumerate(getattr(masknet, "dual_mdl", ())):
        inter = getattr(block, "inter_mdl", None)
        if isinstance(inter, SPGMBlock) and inter.chunk_size != masknet.K:
            raise ValueError(
                f"dual_mdl.{i}.inter_mdl.chunk_size = {inter.chunk_size} differs from the mask network's "
                f"K = {masknet.K}; set chunk_size to K."
            )


def group_norm_channels_last(x, norm):
    """``GroupNorm(1, N)`` of a channel-last tensor ``[B, ..., N]``: statistics
    over everything but the batch, affine per channel.

    The statistics come from a parallel ``var_mean`` reduction (float32; two
    passes, mean then squared deviations, on the CPU) and
    the normalisation is one fused ``x * scale + shift`` with per-utterance,
    per-channel ``[B, N]`` factors. (A ``layer_norm`` over ``x.shape[1:]`` gives
    the same numbers, but its GPU kernel reduces each row in one thread block:
    one block for a whole utterance of millions of elements.)

    Example
    -------
    >>> norm = nn.GroupNorm(1, 8)
    >>> x = torch.randn(2, 5, 3, 8)
    >>> ref = norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    >>> torch.allclose(group_norm_channels_last(x, norm), ref, atol=1e-5)
    True
    """
    dims, xf = tuple(range(1, x.dim())), x.float()
    if x.device.type == "cpu":  # the CPU var_mean kernel (Welford) is ~15x slower than two plain passes
        mean = xf.mean(dim=dims)
        var = (xf - mean.view((-1,) + (1,) * len(dims))).square().mean(dim=dims)
    else:
        var, mean = torch.var_mean(xf, dim=dims, correction=0)
    scale = torch.rsqrt(var + norm.eps)[:, None] * norm.weight.float()  # [B, N]
    shift = norm.bias.float() - mean[:, None] * scale
    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return torch.addcmul(shift.view(shape), x, scale.view(shape)).to(x.dtype)


def chunk_geometry(num_frames, K):
    """``(P, gap, S1)`` of SpeechBrain's segmentation of ``num_frames`` frames
    into chunks of ``K`` with hop ``K // 2``: front padding ``P``, end padding
    ``gap + P`` and ``S1`` chunks per half (``S = 2 * S1`` chunks in all).

    Example
    -------
    >>> chunk_geometry(100, 20)
    (10, 10, 6)
    """
    P = K // 2
    gap = K - (P + num_frames % K) % K
    S1 = (num_frames + gap + P) // K
    return P, gap, S1


def segment_channels_last(x, K):
    """Splits ``x`` ``[B, L, N]`` into ``[B, S, K, N]`` chunks, exactly as
    ``Dual_Path_Model._Segmentation`` does (padding included); returns the
    chunks and ``gap``.

    Example
    -------
    >>> x = torch.randn(2, 8, 37)
    >>> ref, gap = Dual_Path_Model(8, 8, None, None, num_layers=0, K=6)._Segmentation(x, 6)
    >>> out, gap2 = segment_channels_last(x.transpose(1, 2), 6)
    >>> torch.equal(out.permute(0, 3, 2, 1), ref), gap == gap2
    (True, True)
    """
    B, L, N = x.shape
    P, gap, S1 = chunk_geometry(L, K)
    padded = F.pad(x, (0, 0, P, gap + P))
    first = padded[:, : S1 * K].reshape(B, S1, K, N)
    second = padded[:, P : P + S1 * K].reshape(B, S1, K, N)
    return torch.stack((first, second), dim=2).view(B, 2 * S1, K, N), gap


def overlap_add_channels_last(x, num_frames, fn=None):
    """Inverse of :func:`segment_channels_last`: sums the two chunks covering
    each frame of ``x`` ``[B, S, K, N]`` and returns ``[B, num_frames, N]``;
    ``fn`` (element-wise) is applied to the chunks first.

    Example
    -------
    >>> x = torch.randn(2, 8, 37)
    >>> chunks, gap = segment_channels_last(x.transpose(1, 2), 6)
    >>> torch.allclose(overlap_add_channels_last(chunks, 37), 2 * x.transpose(1, 2))
    True
    """
    B, S, K, N = x.shape
    P = K // 2
    halves = x.view(B, S // 2, 2, K, N)
    first = halves[:, :, 0].reshape(B, -1, N)[:, P : P + num_frames]
    second = halves[:, :, 1].reshape(B, -1, N)[:, :num_frames]
    if fn is not None:
        first, second = fn(first), fn(second)
    return first + second


def head_channels_last(masknet, x):
    """Output head of ``Dual_Path_Model`` on overlap-added features ``x``
    ``[B, L, N]`` (PReLU already applied): the ``num_spks``-fold 1x1 conv (its
    bias counted twice, once per overlapping chunk), the gated output, the
    final 1x1 conv and ReLU. Returns masks ``[B, L, num_spks, N_in]``."""
    B, L, N = x.shape
    conv = masknet.conv2d
    y = F.linear(x, conv.weight.view(conv.out_channels, -1), 2 * conv.bias)
    y = y.view(B, L, masknet.num_spks, -1)
    out, gate = masknet.output[0], masknet.output_gate[0]
    y = torch.tanh(F.linear(y, out.weight[..., 0], out.bias)) * torch.sigmoid(
        F.linear(y, gate.weight[..., 0], gate.bias)
    )
    return torch.relu(F.linear(y, masknet.end_conv1x1.weight[..., 0]))


def spgm_scale(spgm, x):
    """Per-utterance modulation factor ``sigmoid(W_s g) + W_g g`` ``[B, N]`` of an
    SPGM block for chunks ``x`` ``[B, S, K, N]``."""
    g = spgm.global_vector(x.transpose(1, 2))
    return torch.sigmoid(spgm.s_lin(g)) + spgm.g_lin(g)


def inter_forward(inter, x, compiled=False):
    """The inter-chunk model on chunks ``x`` ``[B, S, K, N]``."""
    B, S, K, N = x.shape
    if isinstance(inter, SPGMBlock):
        return x * spgm_scale(inter, x).to(x.dtype)[:, None, None, :]
    if isinstance(inter, (IdentityInterBlock, IdentityBlock, nn.Identity)):
        return x
    y = sequence_forward(inter, x.transpose(1, 2).reshape(B * K, S, N), compiled=compiled)
    return y.view(B, K, S, N).transpose(1, 2)


def dual_block_forward(block, x, compiled=False):
    """One ``Dual_Computation_Block`` on chunks ``x`` ``[B, S, K, N]``
    (``compiled=True``: its transformer blocks under ``torch.compile``)."""
    B, S, K, N = x.shape
    intra = sequence_forward(block.intra_mdl, x.reshape(B * S, K, N), compiled, chunks=True).view(B, S, K, N)
    if block.linear_layer_after_inter_intra:
        intra = block.intra_linear(intra)
    if block.norm is not None:
        intra = group_norm_channels_last(intra, block.intra_norm)
    if block.skip_around_intra:
        intra = intra + x
    inter = inter_forward(block.inter_mdl, intra, compiled=compiled)
    if block.linear_layer_after_inter_intra:
        inter = block.inter_linear(inter)
    if block.norm is not None:
        inter = group_norm_channels_last(inter, block.inter_norm)
    return inter + intra


def input_features(masknet, x):
    """Input norm and 1x1 conv of ``Dual_Path_Model``: ``[B, N_in, L]`` ->
    channel-last ``[B, L, N]``."""
    y = group_norm_channels_last(x.transpose(1, 2), masknet.norm)
    return F.linear(y, masknet.conv1d.weight[..., 0])


_COMPILED = {}


def compiled_dual_block_forward(cuda_graphs=False):
    """:func:`dual_block_forward` under ``torch.compile`` (replayed as CUDA
    graphs with ``cuda_graphs=True``, see
    :func:`~spgm_lobes.fast.layers.compile_options`): one graph per dual
    block (transformer layers, norms, SPGM modulation and residuals fused),
    shared by the blocks of a model (weights are graph inputs)."""
    key = ("dual_block", bool(cuda_graphs))
    if key not in _COMPILED:
        _COMPILED[key] = torch.compile(dual_block_forward, **compile_options(cuda_graphs))
    return _COMPILED[key]


def fast_masknet_forward(masknet, x, compiled=False, cuda_graphs=False):
    """Same function as ``masknet(x)`` for a ``Dual_Path_Model``: ``[B, N_in, L]``
    -> ``[num_spks, B, N_in, L]``. Differentiable (use it for training).
    ``compiled=True`` runs each dual-path block through ``torch.compile``
    (GPU; the first call of each input shape / dtype compiles; ``cuda_graphs``:
    replayed as CUDA graphs, see :func:`~spgm_lobes.fast.layers.compile_options`).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import SBTransformerBlock
    >>> m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2, d_ffn=32), SPGMBlock(16, chunk_size=10), K=10).eval()
    >>> x = torch.rand(2, 16, 53)
    >>> torch.allclose(fast_masknet_forward(m, x), m(x), atol=1e-5)
    True
    """
    L = x.shape[-1]
    h, _ = segment_channels_last(input_features(masknet, x), masknet.K)
    block_forward = compiled_dual_block_forward(cuda_graphs) if compiled else dual_block_forward
    for block in masknet.dual_mdl:
        h = block_forward(block, h)
    h = overlap_add_channels_last(h, L, fn=masknet.prelu)
    masks = head_channels_last(masknet, h)  # [B, L, spks, N_in]
    return masks.permute(2, 0, 3, 1)


class FastMaskNet(nn.Module):
    """Fast drop-in replacement of a built ``Dual_Path_Model`` ``masknet``.

    It registers the wrapped model's own sub-modules under their own names, so
    ``state_dict()`` has exactly the ``Dual_Path_Model`` keys and the
    parameters are shared (moving, training or loading either one changes
    both). ``forward`` is :func:`fast_masknet_forward`.

    Arguments
    ---------
    masknet : speechbrain.lobes.models.dual_path.Dual_Path_Model
        The model to run; must pass :func:`unsupported_masknet_reason`.
    compile : bool
        In training mode, run each dual-path block through ``torch.compile``
        (one graph shared by the blocks; GPU; the first call of each input
        shape and dtype compiles; off by default). Evaluation (``eval()``)
        runs the same blocks uncompiled: validation and test utterances
        have many lengths, and each new one would compile again
        (:class:`spgm_lobes.fast.CompiledSeparator` is the compiled
        inference path).
    cuda_graphs : bool
        With ``compile``, replay the compiled blocks as CUDA graphs
        (``torch.compile``'s ``mode="reduce-overhead"``; static training shapes;
        call ``torch.compiler.cudagraph_mark_step_begin()`` before each training
        step, as :class:`~spgm_lobes.separation.SeparationBrain` does).

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import SBTransformerBlock
    >>> m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2), IdentityInterBlock(), K=10)
    >>> fast = FastMaskNet(m)
    >>> list(fast.state_dict()) == list(m.state_dict())
    True
    >>> fast(torch.rand(1, 16, 40)).shape
    torch.Size([2, 1, 16, 40])
    """

    def __init__(self, masknet, compile=False, cuda_graphs=False):
        super().__init__()
        reason = unsupported_masknet_reason(masknet)
        if reason is not None:
            raise ValueError(f"FastMaskNet cannot run this mask network: {reason}.")
        if len(masknet._parameters) or len(masknet._buffers):
            raise ValueError("FastMaskNet expects a Dual_Path_Model whose parameters all live in sub-modules.")
        for name, module in masknet.named_children():
            self.add_module(name, module)
        self.K = masknet.K
        self.num_spks = masknet.num_spks
        self.num_layers = masknet.num_layers
        self.use_global_pos_enc = False
        self.compiled = bool(compile)
        self.cuda_graphs = bool(compile) and bool(cuda_graphs)
        self.train(masknet.training)

    def forward(self, x):
        """``[B, N_in, L]`` -> masks ``[num_spks, B, N_in, L]``."""
        return fast_masknet_forward(self, x, compiled=self.compiled and self.training, cuda_graphs=self.cuda_graphs)


def use_fast_masknet(modules, enabled=True, compile=False, cuda_graphs=False):
    """Returns a copy of the ``modules`` dict whose ``"masknet"`` runs on the
    fast path (a :class:`FastMaskNet` over the same parameters).

    The mask network is left as it is, with a warning, when ``enabled`` is
    false or it is not supported (see :func:`unsupported_masknet_reason`). The
    state dict is unchanged, so checkpoints are the same either way.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import SBTransformerBlock
    >>> m = Dual_Path_Model(16, 16, SBTransformerBlock(1, 16, 2), IdentityInterBlock(), K=10)
    >>> type(use_fast_masknet({"masknet": m})["masknet"]).__name__
    'FastMaskNet'
    >>> use_fast_masknet({"masknet": m}, enabled=False)["masknet"] is m
    True
    """
    modules = dict(modules)
    masknet = modules.get("masknet")
    if masknet is not None and not isinstance(masknet, FastMaskNet):
        check_spgm_chunk_size(masknet)  # on either path: a mismatch mixes utterances
    if not enabled or masknet is None or isinstance(masknet, FastMaskNet):
        return modules
    reason = unsupported_masknet_reason(masknet)
    if reason is not None:
        warnings.warn(f"Fast path disabled, using the plain SpeechBrain mask network: {reason}.", stacklevel=2)
        return modules
    modules["masknet"] = FastMaskNet(masknet, compile=compile, cuda_graphs=cuda_graphs)
    return modules
