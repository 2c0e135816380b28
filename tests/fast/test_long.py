"""separate() over slices equals the full computation of the SpeechBrain modules."""

import pytest
import torch
import torch.nn.functional as F

from spgm_lobes.fast import FastMaskNet, separate


def reference_separation(hparams, mix):
    """What SepformerSeparation.separate_batch computes, with the plain modules."""
    encoder, masknet, decoder = (hparams["modules"][k] for k in ("encoder", "masknet", "decoder"))
    with torch.no_grad():
        mix_w = encoder(mix)
        masks = masknet(mix_w)
        est = torch.stack([decoder(mix_w * masks[i]) for i in range(masknet.num_spks)], dim=-1)
    T = mix.shape[1]
    return F.pad(est, (0, 0, 0, T - est.shape[1])) if est.shape[1] < T else est[:, :T]


@pytest.mark.parametrize("chunks_per_slice", [3, None])
def test_sliced_equals_full(arch_name, build, relative_error, chunks_per_slice):
    hparams = build(arch_name)
    g = torch.Generator().manual_seed(5)
    mix = torch.randn(3, 1203, generator=g)  # 149 frames: 32 chunks of 10, many slices
    mix[2, 900:] = 0
    ref = reference_separation(hparams, mix)
    m = hparams["modules"]
    out = separate(m["encoder"], m["masknet"], m["decoder"], mix, chunks_per_slice=chunks_per_slice)
    assert out.shape == ref.shape == (3, 1203, hparams["num_spks"])
    assert relative_error(out, ref) < 1e-4


def test_accepts_fast_masknet_and_1d_input(build, relative_error):
    hparams = build("spgm-le", chunk_size=9)  # odd chunk size
    m = hparams["modules"]
    mix = torch.randn(1, 700)
    ref = reference_separation(hparams, mix)
    out = separate(m["encoder"], FastMaskNet(m["masknet"]), m["decoder"], mix[0], num_spks=2, chunks_per_slice=4)
    assert relative_error(out, ref) < 1e-4


def test_bfloat16_is_close(build, relative_error):
    hparams = build("spgm-ap")
    m = hparams["modules"]
    mix = torch.randn(2, 900)
    ref = reference_separation(hparams, mix)
    out = separate(m["encoder"], m["masknet"], m["decoder"], mix, dtype=torch.bfloat16, chunks_per_slice=4)
    assert out.dtype == torch.float32
    assert relative_error(out, ref) < 0.05


def test_bad_input_is_refused(build):
    m = build("spgm-ap")["modules"]
    with pytest.raises(ValueError, match="num_spks"):
        separate(m["encoder"], m["masknet"], m["decoder"], torch.randn(1, 500), num_spks=3)
    with pytest.raises(ValueError, match="samples"):
        separate(m["encoder"], m["masknet"], m["decoder"], torch.randn(1, 5))
    with pytest.raises(ValueError, match="float32 parameters"):
        separate(m["encoder"], m["masknet"].double(), m["decoder"], torch.randn(1, 500))
