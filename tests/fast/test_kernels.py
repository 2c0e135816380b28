"""The fused ReLU-mask product: the library fallback, the Triton kernel in
Triton's interpreter (CPU), and the compiled kernel on CUDA."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from spgm_lobes.fast import kernels
from spgm_lobes.fast.kernels import relu_masked_matmul, relu_masked_matmul_available


def _reference(grad, weight, activation):
    out = ((grad.float() @ weight.float()) * (activation > 0)).to(grad.dtype)
    return out, out.float().sum(0)


def test_fallback_is_the_masked_product_and_its_column_sums():
    torch.manual_seed(0)
    grad, weight = torch.randn(37, 16), torch.randn(24, 16).t()  # a transposed weight, as in the layer
    activation = torch.relu(torch.randn(37, 24))
    assert not relu_masked_matmul_available(grad, weight, activation)  # CPU
    out, sums = relu_masked_matmul(grad, weight, activation)
    ref, ref_sums = _reference(grad, weight, activation)
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(sums, ref_sums, atol=1e-4)
    assert (out[activation == 0] == 0).all()


def test_kernel_in_the_triton_interpreter():
    triton = pytest.importorskip("triton")
    if tuple(int(part) for part in triton.__version__.split(".")[:2]) < (3, 7):
        # before 3.7 the interpreter cannot use a program id as a loop bound (the kernel's persistent loop): numpy
        # refuses int() of its 1-element array; compiled for a GPU the kernel is not affected (test_kernel_on_cuda)
        pytest.skip(f"Triton {triton.__version__}'s interpreter cannot run the kernel's loop (Triton >= 3.7 can)")
    # the interpreter runs the kernel on CPU tensors (float16 / float32: numpy has no bfloat16); row and
    # column counts that are not multiples of the tile exercise the edge masks, four programs per column
    # block (1-2 row bands each, one with none for M = 33) the persistent loop and the per-program sums
    script = textwrap.dedent(
        """
        import torch
        from spgm_lobes.fast.kernels import launch_relu_masked_matmul
        torch.manual_seed(0)
        for dtype in (torch.float16, torch.float32):
            for M, K, N in ((70, 32, 40), (33, 40, 16)):  # K = 40: padded to 64 inside the kernel
                grad = torch.randn(M, K).to(dtype)
                weight = torch.randn(N, K).to(dtype).t()
                act = torch.relu(torch.randn(M, N)).to(dtype)
                out, sums = launch_relu_masked_matmul(grad, weight, act, tile=(16, 16, 1, 4, 2), programs=4)
                ref = ((grad.float() @ weight.float()) * (act > 0)).to(dtype)
                assert out.dtype == sums.dtype == dtype, (out.dtype, sums.dtype)
                assert torch.allclose(out.float(), ref.float(), atol=1e-2, rtol=1e-3), (dtype, M, K, N)
                assert torch.allclose(sums.float(), ref.float().sum(0), atol=0.1, rtol=1e-2), (dtype, M, K, N)
        print("ok")
        """
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the Triton kernel runs on CUDA (no GPU here)")
@pytest.mark.parametrize("compiled", [False, True])
def test_kernel_on_cuda(compiled):
    pytest.importorskip("triton")
    torch.manual_seed(0)
    grad = torch.randn(1000, 256, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(1024, 256, device="cuda", dtype=torch.bfloat16).t()
    activation = torch.relu(torch.randn(1000, 1024, device="cuda")).to(torch.bfloat16)
    if not kernels.tile_fits(grad.device):
        pytest.skip("this GPU has less shared memory per block than the kernel's tile (library kernels run)")
    assert relu_masked_matmul_available(grad, weight, activation)
    fn = torch.compile(relu_masked_matmul, fullgraph=True) if compiled else relu_masked_matmul
    out, sums = fn(grad, weight, activation)
    ref, ref_sums = _reference(grad, weight, activation)
    assert out.dtype == sums.dtype == torch.bfloat16
    assert (out.float() - ref.float()).abs().max() <= 2**-7 * ref.float().abs().max()  # one bf16 rounding
    assert torch.allclose(sums.float(), ref_sums, rtol=1e-2, atol=0.5)
