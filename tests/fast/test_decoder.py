"""FastDecoder: SpeechBrain's Decoder as a matrix product and an overlap-add."""

import pytest
import torch
from speechbrain.lobes.models.dual_path import Decoder

from spgm_lobes.fast import FastDecoder, overlap_add_decode, unsupported_decoder_reason, use_fast_decoder


@pytest.mark.parametrize(
    "kernel,stride,bias", [(16, 8, False), (32, 16, True), (8, 8, False), (24, 8, True), (12, 8, False), (5, 3, True)]
)
@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_and_gradients_equal_speechbrain(kernel, stride, bias, batch):
    torch.manual_seed(0)
    plain = Decoder(12, 1, kernel, stride=stride, bias=bias).double()
    fast = FastDecoder(plain)
    x = torch.randn(batch, 12, 37, dtype=torch.float64, requires_grad=True)
    ref = plain(x)
    out = fast(x)
    assert out.shape == ref.shape  # SpeechBrain's squeezing included ([1, T] for a batch of one)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grads = torch.autograd.grad(out.square().sum(), [x] + list(plain.parameters()))
    ref_grads = torch.autograd.grad(ref.square().sum(), [x] + list(plain.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-10)


def test_state_dict_and_parameters_are_shared():
    plain = Decoder(8, 1, 16, stride=8, bias=True)
    fast = FastDecoder(plain)
    assert list(fast.state_dict()) == list(plain.state_dict()) == ["weight", "bias"]
    assert fast.weight is plain.weight
    with torch.no_grad():
        plain.weight.add_(1.0)
    x = torch.randn(2, 8, 10)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-5, atol=1e-5)
    fast.load_state_dict({k: torch.zeros_like(v) for k, v in plain.state_dict().items()})
    assert plain.weight.abs().sum() == 0


def test_bfloat16_autocast_is_close_and_float32_out():
    torch.manual_seed(0)
    plain = Decoder(16, 1, 16, stride=8, bias=False)
    x = torch.randn(2, 16, 100)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = FastDecoder(plain)(x)
    assert out.dtype == torch.float32
    ref = plain(x)
    assert ((out - ref).norm() / ref.norm()).item() < 1e-2


def test_unsupported_decoders_stay_plain():
    padded = torch.nn.ConvTranspose1d(8, 1, 16, stride=8, padding=4)
    assert "padding" in unsupported_decoder_reason(padded)
    assert "out_channels" in unsupported_decoder_reason(torch.nn.ConvTranspose1d(8, 2, 16, stride=8))
    assert "not a ConvTranspose1d" in unsupported_decoder_reason(torch.nn.Linear(2, 2))
    assert use_fast_decoder({"decoder": padded})["decoder"] is padded
    with pytest.raises(ValueError, match="padding"):
        FastDecoder(padded)


def test_overlap_add_matches_conv_transpose_on_long_inputs():
    x, w = torch.randn(1, 16, 3000), torch.randn(16, 1, 32)
    ref = torch.nn.functional.conv_transpose1d(x, w, None, 16)[:, 0]
    torch.testing.assert_close(overlap_add_decode(x, w, None, 16), ref, rtol=1e-4, atol=1e-4)
