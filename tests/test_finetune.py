"""Tests of loading a separator with more outputs through SpeechBrain's Pretrainer (spgm_lobes.finetune)."""

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from spgm_lobes.architectures import architecture_path
from spgm_lobes.fast import encode_mask_decode
from spgm_lobes.finetune import TransferReport, load_pretrained_separator, transfer_units
from spgm_lobes.testing import TINY_ARCH_OVERRIDES

TINY = TINY_ARCH_OVERRIDES


def _modules(num_spks, seed):
    torch.manual_seed(seed)
    with open(architecture_path("spgm-ap-s")) as f:
        modules = load_hyperpyyaml(f, {**TINY, "num_spks": num_spks})["modules"]
    return {name: module.eval() for name, module in modules.items()}


def _save(modules, folder):
    folder.mkdir(parents=True)
    for name, module in modules.items():
        torch.save(module.state_dict(), folder / f"{name}.ckpt")


def test_four_output_checkpoint_initialises_two_output_model(tmp_path):
    gass = _modules(4, seed=0)
    _save(gass, tmp_path / "CKPT+gass")
    two = _modules(2, seed=1)
    load_pretrained_separator(two, tmp_path / "CKPT+gass", tmp_path / "collected")
    mix = torch.randn(1, 400)
    with torch.no_grad():
        expected = encode_mask_decode(gass, mix)[..., :2]
        got = encode_mask_decode(two, mix)
    # everything after the output convolution is shared by the speakers: the first two outputs are reproduced
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(two["masknet"].conv2d.weight, gass["masknet"].conv2d.weight[:32])


def test_random_output_init_keeps_fresh_layer_and_loads_the_rest(tmp_path):
    gass = _modules(4, seed=0)
    _save(gass, tmp_path / "ckpt")
    two = _modules(2, seed=1)
    fresh = two["masknet"].conv2d.weight.detach().clone()
    load_pretrained_separator(two, tmp_path / "ckpt", tmp_path / "collected", output_init="random")
    torch.testing.assert_close(two["masknet"].conv2d.weight, fresh)
    torch.testing.assert_close(two["encoder"].conv1d.weight, gass["encoder"].conv1d.weight)
    torch.testing.assert_close(two["masknet"].end_conv1x1.weight, gass["masknet"].end_conv1x1.weight)


def test_fewer_outputs_or_missing_files_are_errors(tmp_path):
    _save(_modules(2, seed=0), tmp_path / "two")
    with pytest.raises(ValueError, match="conv2d"):
        load_pretrained_separator(_modules(4, seed=1), tmp_path / "two", tmp_path / "collected")
    (tmp_path / "two" / "decoder.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match="decoder.ckpt"):
        load_pretrained_separator(_modules(2, seed=1), tmp_path / "two", tmp_path / "collected2")


def _arch(name, seed, **overrides):
    torch.manual_seed(seed)
    with open(architecture_path(name)) as f:
        return {n: m.eval() for n, m in load_hyperpyyaml(f, {**TINY, **overrides})["modules"].items()}


def test_sepformer_starts_an_spgm_with_the_parts_that_fit(tmp_path):
    sepformer = _arch("sepformer", 0, inter_layers=1)
    _save(sepformer, tmp_path / "sepformer")
    spgm = _arch("spgm-ap", 1)  # 4 blocks of (1 intra layer + SPGM), the sepformer has 2 of (1 + 1 transformer)
    fresh = {k: v.clone() for k, v in spgm["masknet"].state_dict().items()}
    report = TransferReport()
    load_pretrained_separator(spgm, tmp_path / "sepformer", tmp_path / "collected", partial=True, report=report)
    assert sorted(report.loaded) == ["decoder", "encoder", "masknet", "masknet.dual_mdl.0.intra",
                                     "masknet.dual_mdl.1.intra", "masknet.output"]  # fmt: skip
    assert sorted(report.fresh) == [f"masknet.dual_mdl.{i}.{part}" for i in range(4) for part in ("inter", "intra")
                                    if (i, part) not in ((0, "intra"), (1, "intra"))]  # fmt: skip
    assert report.fresh["masknet.dual_mdl.0.inter"].startswith("another structure in the source")
    assert report.fresh["masknet.dual_mdl.2.intra"] == "not in the source"
    assert report.ignored == []
    source = sepformer["masknet"].state_dict()
    for key, value in spgm["masknet"].state_dict().items():
        loaded = transfer_units(key) in ("io", "output", "dual_mdl.0.intra", "dual_mdl.1.intra")
        expected = source[key] if loaded else fresh[key]
        torch.testing.assert_close(value, expected, msg=key)
    torch.testing.assert_close(spgm["encoder"].state_dict(), sepformer["encoder"].state_dict())


def test_transfer_errors_name_the_parameter(tmp_path):
    _save(_arch("spgm-ap-s", 0), tmp_path / "narrow")
    with pytest.raises(ValueError, match=r"masknet.dual_mdl.0.intra_mdl.mdl.layers.0.pos_ffn.ffn.0.weight has shape "
                                         r"\(32, 16\) in the source and \(64, 16\) in the model"):  # fmt: skip
        load_pretrained_separator(_arch("spgm-ap-s", 1, d_ffn=64), tmp_path / "narrow", tmp_path / "c1", partial=True)
    _save(_arch("sepformer", 0, intra_layers=2, inter_layers=1), tmp_path / "deep")
    with pytest.raises(ValueError, match="no dual-path block of the source fits the model"):
        load_pretrained_separator(_arch("intra-sepformer-16", 1), tmp_path / "deep", tmp_path / "c2", partial=True)
    strict = r"deep/masknet.ckpt does not fit the masknet: .*masknet.dual_mdl.0.inter: another structure"
    with pytest.raises(ValueError, match=strict):
        load_pretrained_separator(_arch("spgm-ap-s", 1), tmp_path / "deep", tmp_path / "c3")  # strict by default


def test_partial_transfer_to_more_outputs_keeps_a_fresh_output_layer(tmp_path):
    _save(_modules(2, seed=0), tmp_path / "two")
    four = _modules(4, seed=1)
    fresh = four["masknet"].conv2d.weight.detach().clone()
    report = TransferReport()
    load_pretrained_separator(four, tmp_path / "two", tmp_path / "collected", partial=True, report=report)
    why = "the source has fewer outputs (32 channels in the source, 64 in the model)"
    assert report.fresh == {"masknet.output": why}
    torch.testing.assert_close(four["masknet"].conv2d.weight, fresh)
    source = torch.load(tmp_path / "two" / "masknet.ckpt")
    torch.testing.assert_close(four["masknet"].end_conv1x1.weight, source["end_conv1x1.weight"])
