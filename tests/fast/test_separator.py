"""CompiledSeparator: whole-input inference on a bfloat16 copy of the model."""

import pytest
import torch

from spgm_lobes.fast import CompiledSeparator


@pytest.mark.parametrize("name", ["spgm-ap", "spgm-le-s", "sepformer"])
def test_bfloat16_copy_is_close_to_float32(build, relative_error, name):
    m = build(name)["modules"]
    mix = torch.randn(2, 1200)
    with torch.no_grad():
        w = m["encoder"](mix)
        masks = m["masknet"](w)
        ref = torch.stack([m["decoder"](w * masks[i]) for i in range(2)], dim=-1)
    est = CompiledSeparator(m["encoder"], m["masknet"], m["decoder"]).__call__(mix)
    assert est.dtype == torch.float32 and est.shape == (2, 1200, 2)
    assert relative_error(est[:, : ref.shape[1]], ref) < 0.05


def test_originals_untouched_and_changed_weights_are_copied_again(build):
    m = build("spgm-ap")["modules"]
    separator = CompiledSeparator(m["encoder"], m["masknet"], m["decoder"])
    assert all(p.dtype == torch.float32 for mod in m.values() for p in mod.parameters())
    mix = torch.randn(1, 800)
    before = separator(mix)
    copy = separator.masknet
    assert torch.equal(separator(mix), before) and separator.masknet is copy  # unchanged weights: no new copy
    with torch.no_grad():
        m["decoder"].weight.mul_(2.0)  # in place, as an optimizer step
    assert torch.allclose(separator(mix), 2 * before, rtol=0.05, atol=1e-3)
    state = {k: v * 0.5 for k, v in m["decoder"].state_dict().items()}
    m["decoder"].load_state_dict(state)
    torch.testing.assert_close(separator(mix), before, rtol=0.05, atol=1e-3)


def test_errors(build):
    m = build("spgm-ap")["modules"]
    with pytest.raises(ValueError, match=r"mix must be \[B, T\]"):
        CompiledSeparator(m["encoder"], m["masknet"], m["decoder"])(torch.randn(800))
    with pytest.raises(ValueError, match="CompiledSeparator cannot run"):
        CompiledSeparator(m["encoder"], torch.nn.Identity(), m["decoder"])
