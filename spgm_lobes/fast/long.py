"""One-pass separation of arbitrarily long inputs with memory linear in length.

In a dual-path model every layer is local to a chunk except three kinds of
operations, each of which needs only a few numbers per utterance:

* the ``GroupNorm(1, N)`` ("ln") layers need a mean and a variance;
* an SPGM block needs its pooled global vector ``g``;
* an inter transformer (Sepformer) runs along the chunks, independently for
  each of the ``K`` in-chunk positions.

:func:`separate` therefore keeps the whole ``[B, S, K, N]`` feature tensor (two
buffers, in the compute dtype) and runs every layer over slices of it: intra
layers over slices of chunks (collecting norm statistics on the way), SPGM
pooling over slices of chunks, inter transformers over slices of in-chunk
positions; the norms, the SPGM modulation and the residual sums are then
applied in place, slice by slice. The encoder input norm is done the same way,
and the output head, the masking and the decoder run over slices of frames
(the encoder output is recomputed per slice instead of being stored). The
result is the function of the plain modules, computed in one pass, with no
stitching of separately separated segments.

Peak memory ≈ ``2 * B * S * K * N`` elements of the compute dtype plus one
slice of work space: about 7.4 GB for an hour of 8 kHz audio in bfloat16
(``N = 256``, kernel stride 8).

Authors
 * spgm-lobes contributors 2026
"""

import contextlib

import torch
import torch.nn.functional as F
from speechbrain.lobes.models.dual_path import IdentityBlock
from torch import nn

from ..models.identity import IdentityInterBlock
from ..models.spgm import SPGMBlock
from .decoder import FastDecoder, overlap_add_decode, unsupported_decoder_reason
from .layers import sequence_forward
from .masknet import FastMaskNet, chunk_geometry, head_channels_last, unsupported_masknet_reason

DEFAULT_SLICE_BUDGET = 2 << 30  # bytes of work space for one slice


def _work_bytes_per_chunk(masknet, K, compute_itemsize):
    """Rough bytes of live activations per chunk inside one intra layer."""
    N = masknet.conv1d.out_channels
    d_ffn = 4 * N
    for module in masknet.modules():
        if isinstance(module, nn.Linear) and module.in_features == N and module.out_features > N:
            d_ffn = max(d_ffn, module.out_features)
    # fp32 residual + norm output + qkv + attention output + FFN hidden (x2 for activation) + slack
    return K * (4 * N * 4 + 3 * N * compute_itemsize + N * compute_itemsize + 2 * d_ffn * compute_itemsize) * 2


class _Moments:
    """Per-utterance running sum and sum of squares (float64) of slices."""

    def __init__(self, batch, device, channels=None):
        shape = (batch,) if channels is None else (batch, channels)
        self.count = 0
        self.sum = torch.zeros(shape, dtype=torch.float64, device=device)
        self.sumsq = torch.zeros(shape, dtype=torch.float64, device=device)
        self.per_channel = channels is not None

    def add(self, x):
        """Adds ``x`` ``[B, ..., N]``."""
        x = x.float()
        dims = tuple(range(1, x.dim() - 1)) if self.per_channel else tuple(range(1, x.dim()))
        self.sum += x.sum(dim=dims).double()
        self.sumsq += x.square().sum(dim=dims).double()
        self.count += x[0].numel() // (x.shape[-1] if self.per_channel else 1)

    def mean_rstd(self, eps):
        """Mean and 1/std over everything added (per utterance), float64."""
        mean = self.sum / self.count
        var = (self.sumsq / self.count - mean.square()).clamp_min(0)
        return mean, torch.rsqrt(var + eps)


def _slices(total, step):
    return [(start, min(total, start + step)) for start in range(0, total, step)]


def _encode_frames(encoder, mix, f0, f1):
    """Encoder output (channel-last ``[B, f1 - f0, N_in]``) of frames ``[f0, f1)``."""
    conv = encoder.conv1d
    kernel, stride = conv.kernel_size[0], conv.stride[0]
    seg = mix[:, f0 * stride : (f1 - 1) * stride + kernel]
    return torch.relu(F.conv1d(seg.unsqueeze(1).to(conv.weight.dtype), conv.weight, conv.bias, stride)).transpose(1, 2)


def _check_modules(encoder, masknet, decoder):
    reason = None if isinstance(masknet, FastMaskNet) else unsupported_masknet_reason(masknet)
    if reason is not None:
        raise ValueError(f"separate() cannot run this mask network: {reason}.")
    if any(block.linear_layer_after_inter_intra for block in masknet.dual_mdl):
        raise ValueError("separate() does not support linear_layer_after_inter_intra=True.")
    conv = encoder.conv1d
    if conv.in_channels != 1 or conv.padding != (0,) or conv.dilation != (1,) or conv.groups != 1:
        raise ValueError("separate() expects SpeechBrain's Encoder (1 input channel, no padding).")
    reason = None if isinstance(decoder, FastDecoder) else unsupported_decoder_reason(decoder)
    if reason is not None:
        raise ValueError(f"separate() expects SpeechBrain's Decoder (1 output channel, no padding): {reason}.")


def estimate_separate_memory(encoder, masknet, num_samples, batch=1, dtype=torch.bfloat16, slice_budget_bytes=None):
    """Rough peak bytes of :func:`separate` on ``batch`` inputs of
    ``num_samples``: the two chunk buffers, one slice of work space, the input
    and the float32 output (model parameters excluded).

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from spgm_lobes.architectures import architecture_path
    >>> with open(architecture_path("spgm-ap")) as f:
    ...     m = load_hyperpyyaml(f)["modules"]
    >>> hour = estimate_separate_memory(m["encoder"], m["masknet"], 3600 * 8000)
    >>> round(hour / 2**30, 1)
    9.4
    """
    kernel, stride = encoder.conv1d.kernel_size[0], encoder.conv1d.stride[0]
    L = (num_samples - kernel) // stride + 1
    _, _, S1 = chunk_geometry(L, masknet.K)
    itemsize = torch.finfo(dtype).bits // 8
    buffers = 2 * batch * 2 * S1 * masknet.K * masknet.conv1d.out_channels * itemsize
    work = DEFAULT_SLICE_BUDGET if slice_budget_bytes is None else slice_budget_bytes
    return buffers + work + batch * num_samples * 4 * (1 + 2 * masknet.num_spks)


@torch.inference_mode()
def separate(
    encoder,
    masknet,
    decoder,
    mix,
    num_spks=None,
    *,
    dtype=None,
    slice_budget_bytes=DEFAULT_SLICE_BUDGET,
    chunks_per_slice=None,
    compiled=False,
    progress=False,
):
    """Separates ``mix`` ``[B, T]`` in one pass; returns ``[B, T, num_spks]``.

    Computes ``decoder(encoder(mix) * masknet(encoder(mix))[i])`` for every
    source ``i``, trimmed / zero-padded to ``T`` (what
    ``SepformerSeparation.separate_batch`` returns), with memory linear in
    ``T`` (see the module docstring).

    Arguments
    ---------
    encoder, masknet, decoder : torch.nn.Module
        SpeechBrain's ``Encoder``, ``Dual_Path_Model`` (or a
        :class:`~spgm_lobes.fast.FastMaskNet`) and ``Decoder``.
    mix : torch.Tensor
        Mixtures ``[B, T]`` (or ``[T]``), on the modules' device.
    num_spks : int, optional
        Checked against ``masknet.num_spks`` when given.
    dtype : torch.dtype, optional
        Compute dtype: ``torch.bfloat16`` runs matrix products under autocast
        and stores the two big buffers in bfloat16 (residual sums inside a
        slice stay float32); default float32. Parameters must be float32.
    slice_budget_bytes : int
        Work space per slice, used to choose the slice size.
    chunks_per_slice : int, optional
        Force the number of chunks per slice (tests use tiny values).
    compiled : bool
        Run each transformer block through ``torch.compile`` (GPU).
    progress : bool
        Show a tqdm bar over the blocks.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import Encoder, Decoder, Dual_Path_Model, SBTransformerBlock
    >>> from spgm_lobes.models import SPGMBlock
    >>> enc, dec = Encoder(16, 16), Decoder(16, 1, 16, stride=8, bias=False)
    >>> intra, inter = SBTransformerBlock(1, 16, 2, d_ffn=32), SPGMBlock(16, chunk_size=10)
    >>> mask = Dual_Path_Model(16, 16, intra, inter, K=10, linear_layer_after_inter_intra=False)
    >>> separate(enc, mask.eval(), dec, torch.randn(2, 800), chunks_per_slice=3).shape
    torch.Size([2, 800, 2])
    """
    _check_modules(encoder, masknet, decoder)
    if num_spks is not None and int(num_spks) != masknet.num_spks:
        raise ValueError(f"num_spks={num_spks} but the mask network has num_spks={masknet.num_spks}.")
    if mix.dim() == 1:
        mix = mix.unsqueeze(0)
    if mix.dim() != 2:
        raise ValueError(f"mix must be [B, T] or [T], got shape {tuple(mix.shape)}.")
    param_dtype = masknet.conv1d.weight.dtype
    if param_dtype != torch.float32:
        raise ValueError(
            f"separate() expects float32 parameters (got {param_dtype}); keep the model in float32 and pass "
            "dtype=torch.bfloat16 for bfloat16 compute."
        )
    dtype = dtype or param_dtype
    device = mix.device
    autocast = torch.autocast(device.type, dtype=dtype) if dtype != param_dtype else contextlib.nullcontext()
    with autocast:
        return _separate(
            encoder, masknet, decoder, mix, dtype, slice_budget_bytes, chunks_per_slice, compiled, progress
        )


def _separate(encoder, masknet, decoder, mix, dtype, slice_budget_bytes, chunks_per_slice, compiled, progress):
    B, T = mix.shape
    device = mix.device
    K = masknet.K
    kernel, stride = encoder.conv1d.kernel_size[0], encoder.conv1d.stride[0]
    if T < kernel:
        raise ValueError(f"mix has {T} samples, fewer than the encoder kernel ({kernel}).")
    L = (T - kernel) // stride + 1
    P, gap, S1 = chunk_geometry(L, K)
    S = 2 * S1
    N = masknet.conv1d.out_channels
    itemsize = torch.finfo(dtype).bits // 8
    if chunks_per_slice is None:
        chunks_per_slice = max(1, int(slice_budget_bytes // (B * _work_bytes_per_chunk(masknet, K, itemsize))))
        chunks_per_slice = min(chunks_per_slice, max(1, 32768 // B))
    chunks_per_slice = max(2, int(chunks_per_slice) // 2 * 2)
    frames_per_slice = chunks_per_slice * K // 2

    # 1. input norm statistics over the encoder output
    norm = masknet.norm
    moments = _Moments(B, device)
    for f0, f1 in _slices(L, frames_per_slice):
        moments.add(_encode_frames(encoder, mix, f0, f1))
    mean, rstd = (t.float()[:, None, None] for t in moments.mean_rstd(norm.eps))

    def features(f0, f1):
        """Normalised, projected features of padded frames [f0, f1), zeros in the padding."""
        out = torch.zeros(B, f1 - f0, N, device=device, dtype=dtype)
        o0, o1 = max(f0 - P, 0), min(f1 - P, L)
        if o1 > o0:
            e = (_encode_frames(encoder, mix, o0, o1).float() - mean) * rstd * norm.weight + norm.bias
            out[:, o0 + P - f0 : o1 + P - f0] = F.linear(e, masknet.conv1d.weight[..., 0])
        return out

    # 2. segmentation, written straight into the chunk buffer [B, S1, 2, K, N]
    h = torch.empty(B, S1, 2, K, N, device=device, dtype=dtype)
    for j0, j1 in _slices(S1, max(1, chunks_per_slice // 2)):
        z = features(j0 * K, j1 * K + P)
        h[:, j0:j1, 0] = z[:, : (j1 - j0) * K].view(B, j1 - j0, K, N)
        h[:, j0:j1, 1] = z[:, P : P + (j1 - j0) * K].view(B, j1 - j0, K, N)
        del z
    h = h.view(B, S, K, N)
    t = torch.empty_like(h)

    # 3. the dual-path blocks
    chunk_slices = _slices(S, chunks_per_slice)
    blocks = masknet.dual_mdl
    if progress:
        from tqdm import tqdm  # only needed for the progress bar (bench/speed.py imports no tqdm)

        blocks = tqdm(blocks, desc="dual-path blocks")
    for block in blocks:
        h, t = _dual_block_sliced(block, h, t, chunk_slices, K, compiled)

    # 4. head, masking and decoding over slices of frames
    halves = h.view(B, S1, 2, K, N)
    weight = decoder.weight  # [N_in, 1, kernel]
    d_kernel, d_stride = decoder.kernel_size[0], decoder.stride[0]
    spks = masknet.num_spks
    out = torch.zeros(B, spks, (L - 1) * d_stride + d_kernel, device=device, dtype=torch.float32)
    for l0, l1 in _slices(L, frames_per_slice):
        feats = _overlap_add_frames(halves, P, K, l0, l1, masknet.prelu)
        masks = head_channels_last(masknet, feats)  # [B, l, spks, N_in]
        sep = masks * _encode_frames(encoder, mix, l0, l1).unsqueeze(2)
        sep = sep.permute(0, 2, 3, 1).reshape(B * spks, -1, l1 - l0)
        wav = overlap_add_decode(sep, weight, None, d_stride)
        out[:, :, l0 * d_stride : l0 * d_stride + wav.shape[-1]] += wav.view(B, spks, -1).float()
    if decoder.bias is not None:
        out += decoder.bias.float()
    out = out.transpose(1, 2)
    if out.shape[1] >= T:
        return out[:, :T].contiguous()
    return F.pad(out, (0, 0, 0, T - out.shape[1]))


def _overlap_add_frames(halves, P, K, l0, l1, fn):
    """Overlap-added features of frames ``[l0, l1)`` from chunks ``[B, S1, 2, K, N]``."""
    B, N = halves.shape[0], halves.shape[-1]

    def take(part, a0, a1):
        j0, j1 = a0 // K, -(-a1 // K)
        return fn(halves[:, j0:j1, part].reshape(B, -1, N)[:, a0 - j0 * K : a1 - j0 * K].float())

    return take(0, P + l0, P + l1) + take(1, l0, l1)


def _affine_(x, scale, shift):
    """In place ``x = x * scale + shift`` with per-utterance, per-channel ``[B, N]`` factors."""
    x.mul_(scale.to(x.dtype)[:, None, None, :]).add_(shift.to(x.dtype)[:, None, None, :])


def _dual_block_sliced(block, h, t, chunk_slices, K, compiled):
    """One ``Dual_Computation_Block`` on buffer ``h``, using ``t`` as the second
    buffer; returns ``(output buffer, free buffer)``."""
    B, S, _, N = h.shape
    norm_on = block.norm is not None
    # intra model, chunk slices: t = intra(h)
    moments = _Moments(B, h.device)
    for s0, s1 in chunk_slices:
        rows = h[:, s0:s1].reshape(-1, K, N).float()
        y = sequence_forward(block.intra_mdl, rows, compiled, chunks=True).view(B, s1 - s0, K, N)
        if norm_on:
            moments.add(y)
        t[:, s0:s1] = y
        del y
    # t = intra_norm(t) + h, with per-channel moments of the result and SPGM pooling
    inter = block.inter_mdl
    channel_moments = _Moments(B, h.device, channels=N)
    pooled = torch.zeros(B, N, dtype=torch.float64, device=h.device)
    if norm_on:
        mean, rstd = moments.mean_rstd(block.intra_norm.eps)
        w, b = block.intra_norm.weight.double(), block.intra_norm.bias.double()
        scale = (rstd[:, None] * w).float()
        shift = (b - mean[:, None] * rstd[:, None] * w).float()
    for s0, s1 in chunk_slices:
        ts = t[:, s0:s1]
        if norm_on:
            y = ts.float() * scale[:, None, None, :] + shift[:, None, None, :]
        else:
            y = ts.float()
        if block.skip_around_intra:
            y = y + h[:, s0:s1].float()
        ts.copy_(y)
        y = ts.float()  # what later stages read (rounded to the buffer dtype)
        channel_moments.add(y)
        if isinstance(inter, SPGMBlock):
            pooled += inter.pool(y.transpose(1, 2)).float().sum(dim=1).double()
        del y
    # inter model
    if isinstance(inter, (SPGMBlock, IdentityInterBlock, IdentityBlock, nn.Identity)):
        if isinstance(inter, SPGMBlock):
            g = (pooled / S).float()
            factor = (torch.sigmoid(inter.s_lin(g)) + inter.g_lin(g)).double()  # [B, N]
        else:
            factor = torch.ones(B, N, dtype=torch.float64, device=h.device)
        # out = inter_norm(t * factor) + t = t * (1 + factor * a) + c, per channel
        if norm_on:
            count = channel_moments.count * N
            mean = (factor * channel_moments.sum).sum(dim=1) / count
            var = ((factor.square() * channel_moments.sumsq).sum(dim=1) / count - mean.square()).clamp_min(0)
            rstd = torch.rsqrt(var + block.inter_norm.eps)
            a = rstd[:, None] * block.inter_norm.weight.double()
            scale = 1 + factor * a
            shift = block.inter_norm.bias.double() - mean[:, None] * a
        else:
            scale, shift = 1 + factor, torch.zeros_like(factor)
        for s0, s1 in chunk_slices:
            _affine_(t[:, s0:s1], scale.float(), shift.float())
        return t, h
    # a sequence model along the chunks (Sepformer): h = inter(t) over slices of in-chunk positions
    k_step = max(1, (chunk_slices[0][1] - chunk_slices[0][0]) * K // max(S, 1))
    moments = _Moments(B, h.device)
    for k0, k1 in _slices(K, k_step):
        rows = t[:, :, k0:k1].transpose(1, 2).reshape(B * (k1 - k0), S, N).float()
        y = sequence_forward(inter, rows, compiled).view(B, k1 - k0, S, N).transpose(1, 2)
        if norm_on:
            moments.add(y)
        h[:, :, k0:k1] = y
        del y, rows
    if norm_on:
        mean, rstd = moments.mean_rstd(block.inter_norm.eps)
        w, b = block.inter_norm.weight.double(), block.inter_norm.bias.double()
        scale = (rstd[:, None] * w).float()
        shift = (b - mean[:, None] * rstd[:, None] * w).float()
    for s0, s1 in chunk_slices:
        hs = h[:, s0:s1]
        y = hs.float()
        if norm_on:
            y = y * scale[:, None, None, :] + shift[:, None, None, :]
        hs.copy_(y + t[:, s0:s1].float())
        del y
    return h, t
