"""Triton kernels of the fast path (CUDA, half precision; optional).

:func:`relu_masked_matmul` is the backward of a ReLU feed-forward block's
inner activation in one pass: ``(grad @ weight) * (activation > 0)`` and its
column sums (the first layer's bias gradient). Done with library kernels it is
a matrix product, a separate ReLU-mask pass over the largest tensor of the
layer (``[rows, d_ffn]``, read twice and written once more) and a third pass
for the sums; here the mask and the sums are the product's epilogue.

Triton ships with PyTorch's CUDA builds; without it (or on the CPU, or in
float32) :func:`relu_masked_matmul_available` is false and callers use the
library kernels.

Authors
 * spgm-lobes contributors 2026
"""

import math

import torch

try:
    import triton
    import triton.language as tl
    from torch.library import triton_op, wrap_triton
except ImportError:  # CPU-only PyTorch builds come without Triton
    triton = None

#: ``(BLOCK_M, BLOCK_N, programs per SM, num_warps, num_stages)``: the fastest of 52 configurations
#: measured on an H200 at SPGM's training shape (272,000 x 256 @ 256 x 1,024, bf16; 44 persistent tiles
#: that fit in shared memory, 8 of a kernel computing one tile per program): 0.53 ms, against 0.61 ms for
#: the best one-tile-per-program kernel and 0.80 ms for cuBLAS's product (0.25 ms) + the mask pass + the
#: bias-gradient sums
TILE = (64, 128, 2.0, 8, 3)

#: the largest ``K`` (the layer's model dimension) the kernel takes: one program keeps a ``K x BLOCK_N``
#: slice of the weight in shared memory and loads ``BLOCK_M x K`` of ``grad`` per step
MAX_K = 256


def shared_memory_bytes(block_m, block_n, block_k, num_stages, itemsize=2):
    """Shared memory of the kernel's tile, as this module estimates it: the
    resident weight slice plus ``num_stages`` buffered steps of ``grad`` and
    activation rows (208 KiB for :data:`TILE` at ``K = 256``; Triton lays out
    its buffers differently, and the tile compiles within an H200's 227 KiB).

    Example
    -------
    >>> shared_memory_bytes(64, 128, 256, 3) // 1024
    208
    """
    return itemsize * (block_k * block_n + num_stages * block_m * (block_k + block_n))


def relu_masked_matmul_available(grad, weight, activation):
    """Whether :func:`relu_masked_matmul` can run on these tensors: CUDA,
    Triton present, one half-precision dtype, 2-D, ``K`` a multiple of 16 and
    at most :data:`MAX_K`, and a GPU with the shared memory of :data:`TILE`
    (H100 / H200 and newer data-centre GPUs; the tile was measured on an H200).

    Example
    -------
    >>> relu_masked_matmul_available(torch.ones(4, 16), torch.ones(16, 8), torch.ones(4, 8))
    False
    """
    if triton is None or not grad.is_cuda:
        return False
    if not (grad.dtype == weight.dtype == activation.dtype) or grad.dtype not in (torch.bfloat16, torch.float16):
        return False
    if grad.dim() != 2 or weight.dim() != 2 or activation.shape != (grad.shape[0], weight.shape[1]):
        return False
    K = grad.shape[1]
    if K != weight.shape[0] or K % 16 or K > MAX_K:
        return False
    return tile_fits(grad.device)


def tile_fits(device):
    """Whether the CUDA ``device`` offers the shared memory per block that
    :data:`TILE` needs at ``K =`` :data:`MAX_K` in half precision (H100 / H200:
    227 KiB; A100: 163 KiB, too little)."""
    block_m, block_n, _, _, num_stages = TILE
    needed = shared_memory_bytes(block_m, block_n, MAX_K, num_stages)
    return _device_properties(device).shared_memory_per_block_optin >= needed


_PROPERTIES = {}


def _device_properties(device):
    """``torch.cuda.get_device_properties``, cached per device index."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _PROPERTIES:
        _PROPERTIES[index] = torch.cuda.get_device_properties(index)
    return _PROPERTIES[index]


if triton is not None:

    @triton.jit
    def relu_masked_matmul_kernel(
        grad_ptr,
        weight_ptr,
        act_ptr,
        out_ptr,
        sums_ptr,
        M,
        N,
        K,
        stride_gm,
        stride_gk,
        stride_wk,
        stride_wn,
        stride_am,
        stride_an,
        stride_om,
        stride_on,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        EVEN_K: tl.constexpr,
        NUM_STAGES: tl.constexpr,
    ):
        """``(grad @ weight) * (act > 0)`` for the ``BLOCK_N`` columns of
        program ``(pid_n, worker)``, on row bands ``worker``, ``worker +
        workers``, ...: the ``K x BLOCK_N`` weight slice is loaded once and
        stays resident (``K <= BLOCK_K``: one product per band, the loads of
        the next bands are pipelined), and the program's column sums are
        accumulated in registers and written once (float32, row ``worker`` of
        ``sums``). Programs of one row band are launched side by side, so its
        ``grad`` rows are read from L2 by all of them."""
        pid_n = tl.program_id(0)
        worker = tl.program_id(1)
        workers = tl.num_programs(1)
        cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        ks = tl.arange(0, BLOCK_K)
        col_ok = cols < N
        w_ptrs = weight_ptr + ks[:, None] * stride_wk + cols[None, :] * stride_wn
        if EVEN_K:  # K == BLOCK_K (d_model 256): no bound check along K
            weight = tl.load(w_ptrs, mask=col_ok[None, :], other=0.0)
        else:
            weight = tl.load(w_ptrs, mask=(ks[:, None] < K) & col_ok[None, :], other=0.0)
        sums = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for band in tl.range(worker, tl.cdiv(M, BLOCK_M), workers, num_stages=NUM_STAGES):
            rows = band * BLOCK_M + tl.arange(0, BLOCK_M)
            row_ok = rows < M
            inside = row_ok[:, None] & col_ok[None, :]
            g_ptrs = grad_ptr + rows[:, None] * stride_gm + ks[None, :] * stride_gk
            if EVEN_K:
                g = tl.load(g_ptrs, mask=row_ok[:, None], other=0.0)
            else:
                g = tl.load(g_ptrs, mask=row_ok[:, None] & (ks[None, :] < K), other=0.0)
            act = tl.load(act_ptr + rows[:, None] * stride_am + cols[None, :] * stride_an, mask=inside, other=0.0)
            out = tl.where(act > 0, tl.dot(g, weight), 0.0).to(out_ptr.dtype.element_ty)
            tl.store(out_ptr + rows[:, None] * stride_om + cols[None, :] * stride_on, out, mask=inside)
            sums += tl.sum(out.to(tl.float32), axis=0)
        tl.store(sums_ptr + worker * N + cols, sums, mask=col_ok)

    def launch_relu_masked_matmul(grad, weight, activation, kernel=relu_masked_matmul_kernel, tile=None, programs=None):
        """Runs ``kernel`` (:func:`relu_masked_matmul_kernel`, possibly wrapped
        for ``torch.compile``) and returns the masked product and its column
        sums in ``grad``'s dtype. ``programs`` is the number of programs per
        column block (default: :data:`TILE`'s programs per SM times the SM
        count, spread over the column blocks; on the CPU, in Triton's
        interpreter, as if there were one SM)."""
        block_m, block_n, per_sm, num_warps, num_stages = tile or TILE
        M, K = grad.shape
        N = weight.shape[1]
        block_k = max(16, triton.next_power_of_2(K))
        column_blocks = triton.cdiv(N, block_n)
        if programs is None:
            sms = _device_properties(grad.device).multi_processor_count if grad.is_cuda else 1
            programs = max(1, math.ceil(per_sm * sms / column_blocks))
        out = torch.empty((M, N), device=grad.device, dtype=grad.dtype)
        sums = torch.empty((programs, N), device=grad.device, dtype=torch.float32)
        kernel[(column_blocks, programs)](
            grad,
            weight,
            activation,
            out,
            sums,
            M,
            N,
            K,
            *grad.stride(),
            *weight.stride(),
            *activation.stride(),
            *out.stride(),
            BLOCK_M=block_m,
            BLOCK_N=block_n,
            BLOCK_K=block_k,
            EVEN_K=K == block_k,
            NUM_STAGES=num_stages,
            num_warps=num_warps,
        )
        return out, sums.sum(0).to(grad.dtype)

    @triton_op("spgm_lobes::relu_masked_matmul", mutates_args={})
    def _relu_masked_matmul(
        grad: torch.Tensor, weight: torch.Tensor, activation: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return launch_relu_masked_matmul(grad, weight, activation, kernel=wrap_triton(relu_masked_matmul_kernel))


def relu_masked_matmul(grad, weight, activation):
    """``((grad @ weight) * (activation > 0), column sums of that)`` for
    ``grad`` ``[M, K]``, ``weight`` ``[K, N]``, ``activation`` ``[M, N]`` (the
    ReLU output): the gradient before a ReLU layer and its bias gradient, in
    ``grad``'s dtype. One Triton kernel when
    :func:`relu_masked_matmul_available`; library kernels otherwise (same
    numbers up to the summation order of the products).

    Example
    -------
    >>> g, w, a = torch.randn(5, 16), torch.randn(16, 8), torch.relu(torch.randn(5, 8))
    >>> out, sums = relu_masked_matmul(g, w, a)
    >>> torch.allclose(out, (g @ w) * (a > 0)), torch.allclose(sums, out.sum(0))
    (True, True)
    """
    if relu_masked_matmul_available(grad, weight, activation):
        return torch.ops.spgm_lobes.relu_masked_matmul(grad, weight, activation)
    out = torch.ops.aten.threshold_backward(grad @ weight, activation, 0)
    return out, out.sum(0)
