"""spgm-import and the from_hparams hook: every layout round-trips, bad sources are refused by name (offline)."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.separation import SepformerSeparation

from spgm_lobes import pretrained
from spgm_lobes.inference import SPGMSeparation, load_model, separate_sources
from spgm_lobes.inference import main as separate_main
from spgm_lobes.pretrained import PretrainedFormatError, import_model, imported_from, prepare_source, read_source
from spgm_lobes.testing import (
    TINY_SPGM_CONFIG,
    authors_layout_modules,
    local_snapshot,
    make_run_folder,
    write_hub_mixin_folder,
)

QUIET = {"log": lambda msg: None}


def _separate(modules, mix, num_spks=2):
    """The plain encoder -> masknet -> decoder pass (the authors' SPGMWrapper.forward at batch 1)."""
    with torch.no_grad():
        return separate_sources(modules, mix, num_spks, fast=False)


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def _mix(seconds=0.3, rate=8000, seed=1):
    return torch.randn(1, int(seconds * rate), generator=torch.Generator().manual_seed(seed))


def _authors_reference(config, seed=0):
    return {name: m.eval() for name, m in authors_layout_modules(config, seed).items()}


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    return write_hub_mixin_folder(tmp_path_factory.mktemp("authors") / "spgm-tiny", TINY_SPGM_CONFIG)


@pytest.fixture(scope="module")
def imported(hub_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("imported") / "spgm-tiny"
    info = import_model(hub_folder, out, **QUIET)
    return out, info


# --- round trips -------------------------------------------------------------------------------------------------


def test_hub_mixin_folder_round_trip(hub_folder, imported, tmp_path):
    out, info = imported
    assert sorted(p.name for p in out.iterdir()) == sorted(pretrained.IMPORT_FILES)
    assert info["layout"] == "hub-mixin" and info["architecture"] == "spgm-ap-s"
    assert info["overrides"] == {"N_encoder_out": 16, "out_channels": 16, "chunk_size": 10, "intra_layers": 1,
                                 "nhead": 2, "d_ffn": 32}  # fmt: skip
    assert 0 <= info["relative_difference"] <= 1e-4
    assert json.loads((out / "spgm_import.json").read_text())["source"] == str(hub_folder.resolve())
    # plain SpeechBrain loads it and separates exactly like the published weights
    model = SepformerSeparation.from_hparams(source=str(out), savedir=str(tmp_path / "sb"))
    mix = _mix()
    assert _relative(model.separate_batch(mix), _separate(_authors_reference(TINY_SPGM_CONFIG), mix)) <= 1e-4
    # the checkpoints hold the published tensors, unchanged
    from safetensors.torch import load_file

    published = load_file(str(hub_folder / "model.safetensors"))
    for name in ("encoder", "masknet", "decoder"):
        ckpt = torch.load(out / f"{name}.ckpt", weights_only=True)
        assert set(ckpt) == {k.split(".", 1)[1] for k in published if k.startswith(name + ".")}
        for key, value in ckpt.items():
            assert torch.equal(value, published[f"{name}.{key}"])


def test_model_card_names_the_source_license_and_results(hub_folder, tmp_path):
    from huggingface_hub import ModelCard

    root = tmp_path / "hub"
    repo = root / "yipjiaqi" / "spgm-base"
    write_hub_mixin_folder(repo, TINY_SPGM_CONFIG)
    (repo / "README.md").write_text("---\nlicense: apache-2.0\n---\n# spgm-base\n")
    info = import_model("yipjiaqi/spgm-base", tmp_path / "out", downloader=local_snapshot(root), **QUIET)
    assert info["source"] == "yipjiaqi/spgm-base"
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model == "yipjiaqi/spgm-base"
    (result,) = card.data.eval_results
    assert (result.dataset_name, result.metric_type, result.metric_value) == ("WSJ0-2mix", "si-snri", 22.7)
    assert "huggingface.co/yipjiaqi/spgm-base" in card.text and "22.7" in card.text
    assert "arxiv.org/abs/2309.12608" in card.text


@pytest.mark.parametrize("variant", ["config-under-key+bin", "bin"])
def test_older_hub_mixin_variants(variant, tmp_path):
    src = write_hub_mixin_folder(
        tmp_path / "src", TINY_SPGM_CONFIG, weights="bin", config_under_key=variant.startswith("config"), seed=5
    )
    assert (src / "pytorch_model.bin").is_file() and not (src / "model.safetensors").exists()
    if variant.startswith("config"):
        assert list(json.loads((src / "config.json").read_text())) == ["config"]
    import_model(src, tmp_path / "out", **QUIET)
    model = SepformerSeparation.from_hparams(source=str(tmp_path / "out"), savedir=str(tmp_path / "sb"))
    mix = _mix()
    assert _relative(model.separate_batch(mix), _separate(_authors_reference(TINY_SPGM_CONFIG, 5), mix)) <= 1e-4


def _checkpoint_folder(folder, config, seed=2):
    """The SpeechBrain-style layout of ``yipjiaqi/spgm``: encoder.ckpt, masknet.ckpt, decoder.ckpt."""
    folder.mkdir(parents=True)
    modules = _authors_reference(config, seed)
    for name, module in modules.items():
        torch.save(module.state_dict(), folder / f"{name}.ckpt")
    return modules


def test_checkpoint_folder_round_trip(tmp_path):
    config = {**TINY_SPGM_CONFIG, "masknet_chunksize": 250, "masknet_numlayers": 4}
    modules = _checkpoint_folder(tmp_path / "spgm", config)
    with pytest.warns(pretrained.AssumedValuesWarning, match=r"ASSUMED.*chunk size K = 250.*intra block nhead = 8"):
        info = import_model(tmp_path / "spgm", tmp_path / "out", **QUIET)
    # chunk size, heads, pre-norm ... are not stored in weights: the architecture's defaults are used, and said so
    assert info["layout"] == "checkpoints" and info["architecture"] == "spgm-ap"
    assert info["assumed"]["chunk_size"] == 250 and info["assumed"]["sample_rate"] == 8000
    assert "**Assumed:** not stored in the source" in (tmp_path / "out" / "README.md").read_text()
    assert info["assumed"]["intra_nhead"] == 8  # the source has 2: weights cannot tell
    # a training hyperparams.yaml beside the checkpoints says what the weights cannot
    (tmp_path / "spgm" / "hyperparams.yaml").write_text("sample_rate: 16000\nnhead: 2\nchunk_size: 250\nlr: 0.1\n")
    info = import_model(tmp_path / "spgm", tmp_path / "out2", **QUIET)
    assert info["overrides"]["nhead"] == 2 and info["sample_rate"] == 16000 and "chunk_size" not in info["assumed"]
    model = SepformerSeparation.from_hparams(source=str(tmp_path / "out2"), savedir=str(tmp_path / "sb2"))
    assert model.hparams.sample_rate == 16000
    mix = _mix()
    assert _relative(model.separate_batch(mix), _separate(modules, mix)) <= 1e-4


def _published_and_checkpoint(tmp_path):
    """A tiny recipe run (chunk 10, 2 heads: not the architecture's defaults), spgm-publish's folder of its
    best checkpoint, and that checkpoint's folder."""
    from spgm_lobes import publish

    run = tmp_path / "run"
    make_run_folder(run)
    staged = publish.publish(run, "me/tiny", dry_run=True, stage_dir=tmp_path / "published", log=lambda _: None)
    return staged["stage_dir"], staged["checkpoint"]


def test_recipe_checkpoint_imports_as_published(tmp_path):
    published, ckpt = _published_and_checkpoint(tmp_path)
    mix = _mix()
    expected = SepformerSeparation.from_hparams(source=str(published), savedir=str(tmp_path / "sb0")).separate_batch(
        mix
    )
    # save/CKPT+* alone: the run's hyperparams.yaml two levels up says the architecture (under arch:)
    info = import_model(ckpt, tmp_path / "out", **QUIET)
    assert info["overrides"]["chunk_size"] == 10 and info["overrides"]["nhead"] == 2 and info["assumed"] == {}
    model = SepformerSeparation.from_hparams(source=str(tmp_path / "out"), savedir=str(tmp_path / "sb1"))
    assert torch.equal(model.separate_batch(mix), expected)
    # the run's hyperparams.yaml copied beside the checkpoints
    beside = tmp_path / "beside"
    beside.mkdir()
    for path in [*ckpt.glob("*.ckpt"), ckpt.parent.parent / "hyperparams.yaml"]:
        (beside / path.name).write_bytes(path.read_bytes())
    model = SPGMSeparation.from_hparams(source=str(beside), savedir=str(tmp_path / "sb2"), use_fast_path=False)
    assert torch.equal(model.separate_batch(mix), expected)
    # a file that contradicts the weights is refused, naming its key
    text = (beside / "hyperparams.yaml").read_text().replace("N_encoder_out: 16", "N_encoder_out: 32")
    (beside / "hyperparams.yaml").write_text(text)
    with pytest.raises(PretrainedFormatError, match=r"hyperparams.yaml: N_encoder_out = 32, but the checkpoints have"):
        import_model(beside, tmp_path / "out3", **QUIET)


SEPFORMER_CARD = """
sample_rate: 8000
num_spks: 2
Encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    kernel_size: 16
    out_channels: 16
SBtfintra: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: 1
    d_model: 16
    nhead: 2
    d_ffn: 32
    dropout: 0
    use_positional_encoding: true
    norm_before: true
SBtfinter: !new:speechbrain.lobes.models.dual_path.SBTransformerBlock
    num_layers: 1
    d_model: 16
    nhead: 2
    d_ffn: 32
    dropout: 0
    use_positional_encoding: true
    norm_before: true
MaskNet: !new:speechbrain.lobes.models.dual_path.Dual_Path_Model
    num_spks: !ref <num_spks>
    in_channels: 16
    out_channels: 16
    num_layers: 2
    K: 10
    intra_model: !ref <SBtfintra>
    inter_model: !ref <SBtfinter>
    norm: ln
    linear_layer_after_inter_intra: false
    skip_around_intra: true
Decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    in_channels: 16
    out_channels: 1
    kernel_size: 16
    stride: 8
    bias: false
modules:
    encoder: !ref <Encoder>
    decoder: !ref <Decoder>
    masknet: !ref <MaskNet>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <Encoder>
        masknet: !ref <MaskNet>
        decoder: !ref <Decoder>
"""


def write_sepformer_folder(folder, card=SEPFORMER_CARD, seed=4):
    """A folder like SpeechBrain's ``speechbrain/sepformer-wsj02mix`` (its card's names), tiny and random."""
    folder.mkdir(parents=True)
    (folder / "hyperparams.yaml").write_text(card)
    torch.manual_seed(seed)
    for name, module in load_hyperpyyaml(card)["modules"].items():
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
        torch.save(module.state_dict(), folder / f"{name}.ckpt")
    return folder


def test_speechbrain_sepformer_folder_round_trip(tmp_path):
    src = write_sepformer_folder(tmp_path / "sepformer-wsj02mix")
    info = import_model(src, tmp_path / "out", **QUIET)
    assert info["layout"] == "speechbrain" and info["architecture"] == "sepformer"
    assert info["overrides"] == {"N_encoder_out": 16, "out_channels": 16, "chunk_size": 10, "intra_layers": 1,
                                 "inter_layers": 1, "nhead": 2, "d_ffn": 32}  # fmt: skip
    original = SepformerSeparation.from_hparams(source=str(src), savedir=str(tmp_path / "sb1"))
    ours = SepformerSeparation.from_hparams(source=str(tmp_path / "out"), savedir=str(tmp_path / "sb2"))
    mix = _mix()
    assert _relative(ours.separate_batch(mix), original.separate_batch(mix)) <= 1e-4


# --- refused sources: each error names what is wrong -------------------------------------------------------------


def _hub(tmp_path, **changes):
    config = {k: v for k, v in {**TINY_SPGM_CONFIG, **changes}.items() if v is not ...}
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    src = write_hub_mixin_folder(tmp_path / "weights", TINY_SPGM_CONFIG)
    (folder / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    return folder


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"masknet_chunksize": ...}, "lacks the key 'masknet_chunksize' (chunk size K)"),
        ({"spgm_block_pool": "median"}, "spgm_block_pool = 'median' is not a known SPGM pooling"),
        ({"sample_rate": 8}, "sample_rate = 8 is not a sample rate in Hz"),
        ({"sample_rate": "8k"}, "sample_rate = '8k' is not a positive integer"),
        ({"masknet_norm": "gln"}, "masknet_norm = 'gln': spgm-ap-s has 'ln'"),
        ({"masknet_useextralinearlayer": True}, "masknet_useextralinearlayer = True"),
        ({"intra_use_positional": False}, "intra_use_positional = False"),
        ({"spgm_block_att_h": 64}, "spgm_block_att_h = 64"),
        ({"encoder_in_nchannels": 2}, "encoder_in_nchannels = 2"),
        ({"model_type": "mossformer2"}, "model_type = 'mossformer2' is not an SPGM model"),
        ({"intra_nhead": 3}, "intra_nhead = 3 does not divide encoder_out_nchannels = 16"),
        ({"intra_dffn": 64}, "masknet.dual_mdl.0.intra_mdl.mdl.layers.0.pos_ffn.ffn.0.weight is (32, 16)"),
    ],
)
def test_bad_configs_are_refused_by_key_and_value(changes, message, tmp_path):
    src = _hub(tmp_path, **changes)
    with pytest.raises(PretrainedFormatError) as err:
        import_model(src, tmp_path / "out", **QUIET)
    assert message in str(err.value)
    assert "config.json" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_config_under_key_is_named_in_errors(tmp_path):
    src = _hub(tmp_path, spgm_block_pool="median")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({"config": config}))
    with pytest.raises(PretrainedFormatError, match=r'config.json\["config"\]: spgm_block_pool'):
        read_source(src)


def test_unknown_config_keys_are_reported_not_guessed(tmp_path):
    src = _hub(tmp_path, future_key=1)
    messages = []
    info = import_model(src, tmp_path / "out", log=messages.append)
    assert info["ignored_config_keys"] == ["future_key"] and any("future_key" in m for m in messages)


def test_broken_folders_name_their_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "config.json").write_text("{}")
    with pytest.raises(PretrainedFormatError, match="has config.json but neither model.safetensors"):
        import_model(tmp_path / "a", tmp_path / "out", **QUIET)
    (tmp_path / "a" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(PretrainedFormatError, match="lacks the key 'sample_rate'"):
        import_model(tmp_path / "a", tmp_path / "out", **QUIET)
    (tmp_path / "a" / "config.json").write_text(json.dumps(TINY_SPGM_CONFIG))
    with pytest.raises(PretrainedFormatError, match="model.safetensors is not a readable weights file"):
        import_model(tmp_path / "a", tmp_path / "out", **QUIET)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "encoder.ckpt").write_bytes(b"")
    with pytest.raises(PretrainedFormatError, match="lacks masknet.ckpt, decoder.ckpt"):
        import_model(tmp_path / "b", tmp_path / "out", **QUIET)
    with pytest.raises(PretrainedFormatError, match="neither an existing folder nor a Hub repo id"):
        import_model(tmp_path / "c" / "d", tmp_path / "out", **QUIET)


def test_nothing_written_is_lost(hub_folder, imported, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PretrainedFormatError, match=r"holds files spgm-import did not write \(notes.txt\)"):
        import_model(hub_folder, out, **QUIET)
    assert (out / "notes.txt").read_text() == "mine"
    # an import that fails its check leaves an earlier import in place, and no staging folder behind
    done, _ = imported
    before = {p.name: p.read_bytes() for p in done.iterdir()}
    monkeypatch.setattr(pretrained, "VERIFY_TOLERANCE", -1.0)
    with pytest.raises(PretrainedFormatError, match="separates differently from the source weights"):
        import_model(hub_folder, done, **QUIET)
    assert {p.name: p.read_bytes() for p in done.iterdir()} == before
    assert not [p for p in done.parent.iterdir() if p.name.startswith(".")]


def test_an_import_never_overwrites_files_it_did_not_write(hub_folder, tmp_path, capsys):
    _, ckpt = _published_and_checkpoint(tmp_path)
    source = tmp_path / "ckpt"
    source.mkdir()
    for path in [*ckpt.glob("*.ckpt"), ckpt.parent.parent / "hyperparams.yaml"]:
        (source / path.name).write_bytes(path.read_bytes())
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    # --out the source itself, or a folder above it
    assert pretrained.main([str(source), "--out", str(source)]) == 1
    assert f"--out {source} is the source folder" in capsys.readouterr().err
    with pytest.raises(PretrainedFormatError, match=r"--out .* holds the source folder"):
        import_model(source, tmp_path, **QUIET)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    # --out another SpeechBrain model folder: same file names, not written by spgm-import
    sepformer = write_sepformer_folder(tmp_path / "sepformer")
    kept = {p.name: p.read_bytes() for p in sepformer.iterdir()}
    with pytest.raises(PretrainedFormatError, match=r"holds hyperparams.yaml, encoder.ckpt, .*which spgm-import did"):
        import_model(hub_folder, sepformer, **QUIET)
    assert {p.name: p.read_bytes() for p in sepformer.iterdir()} == kept
    # an earlier import is replaced, unless a file of it was changed since
    out = tmp_path / "out"
    import_model(source, out, **QUIET)
    import_model(hub_folder, out, **QUIET)
    (out / "hyperparams.yaml").write_text((out / "hyperparams.yaml").read_text() + "# my note\n")
    with pytest.raises(PretrainedFormatError, match=r"holds hyperparams.yaml, which spgm-import did not write"):
        import_model(source, out, **QUIET)
    assert (out / "hyperparams.yaml").read_text().endswith("# my note\n")


def test_an_import_by_the_earlier_version_is_imported_again(hub_folder, tmp_path):
    out = tmp_path / "out"
    import_model(hub_folder, out, **QUIET)
    record = json.loads((out / "spgm_import.json").read_text())
    del record["files"]  # as the earlier version wrote it (file names only)
    (out / "spgm_import.json").write_text(json.dumps(record))
    (out / "encoder.ckpt").write_bytes(b"an earlier import's weights")
    assert not imported_from(out, hub_folder)  # not trusted: imported again ...
    folder, _ = prepare_source(str(hub_folder), savedir=str(out), log=lambda *a: None)
    assert folder == str(out) and imported_from(out, hub_folder)  # ... into the same folder, its files replaced
    assert (out / "encoder.ckpt").read_bytes() != b"an earlier import's weights"


def test_command_line(hub_folder, tmp_path, capsys):
    assert pretrained.main([str(hub_folder), "--out", str(tmp_path / "out")]) == 0
    assert "spgm-ap-s" in capsys.readouterr().out
    assert pretrained.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    assert "spgm-import: error: Model" in capsys.readouterr().err


# --- SPGMSeparation.from_hparams and spgm-separate take any layout ------------------------------------------------


def test_from_hparams_imports_a_hub_repo_once(tmp_path, monkeypatch):
    root = tmp_path / "hub"
    write_hub_mixin_folder(root / "yipjiaqi" / "spgm-base", TINY_SPGM_CONFIG, seed=7)
    download = local_snapshot(root)
    savedir = tmp_path / "pretrained_models" / "spgm-base"
    model = SPGMSeparation.from_hparams(source="yipjiaqi/spgm-base", savedir=str(savedir), downloader=download)
    mix = _mix()
    expected = _separate(_authors_reference(TINY_SPGM_CONFIG, 7), mix)
    assert _relative(model.separate_batch(mix), expected) <= 1e-4
    assert [patterns for _, patterns in download.calls] == [("hyperparams.yaml", "config.json"),
                                                           pretrained.HUB_PATTERNS]  # fmt: skip
    # converted once: the second load neither downloads nor imports
    monkeypatch.setattr(pretrained, "import_model", lambda *a, **k: pytest.fail("imported twice"))
    again = SPGMSeparation.from_hparams(source="yipjiaqi/spgm-base", savedir=str(savedir), downloader=download)
    assert len(download.calls) == 2
    assert _relative(again.separate_batch(mix), expected) <= 1e-4


def test_speechbrain_sources_pass_through(tmp_path):
    src = write_sepformer_folder(tmp_path / "hub" / "speechbrain" / "sepformer-tiny")
    assert prepare_source(str(src), None) == (str(src), None)
    download = local_snapshot(tmp_path / "hub")
    repo = "speechbrain/sepformer-tiny"
    assert prepare_source(repo, str(tmp_path / "sd"), downloader=download) == (repo, str(tmp_path / "sd"))
    assert download.calls == [("speechbrain/sepformer-tiny", ("hyperparams.yaml", "config.json"))]
    assert isinstance(SPGMSeparation.from_hparams(source=str(src), savedir=str(tmp_path / "sd2")), SPGMSeparation)


@pytest.mark.parametrize(
    "config", [{"speechbrain": {"speechbrain_interface": "SepformerSeparation"}}, {"speechbrain_interface": "X"}]
)
def test_speechbrain_repos_with_their_widget_config_pass_through(config, tmp_path):
    src = write_sepformer_folder(tmp_path / "hub" / "speechbrain" / "resepformer-tiny")
    (src / "config.json").write_text(json.dumps(config))
    download = local_snapshot(tmp_path / "hub")
    repo, savedir = "speechbrain/resepformer-tiny", str(tmp_path / "sd")
    assert prepare_source(repo, savedir, downloader=download, **QUIET) == (repo, savedir)
    assert download.calls == [(repo, ("hyperparams.yaml", "config.json"))]
    # the same folder, local: SpeechBrain's config.json does not make it the authors' layout, with or without a card
    assert prepare_source(str(src), None) == (str(src), None)
    (src / "hyperparams.yaml").unlink()
    assert pretrained.detect_layout(src) == "checkpoints"


def test_a_savedir_never_returns_the_model_of_another_source(hub_folder, tmp_path):
    mix = _mix()
    sepformer = write_sepformer_folder(tmp_path / "sepformer")
    expected = SepformerSeparation.from_hparams(source=str(sepformer), savedir=str(tmp_path / "sb")).separate_batch(mix)
    savedir = str(tmp_path / "S")
    first = SPGMSeparation.from_hparams(source=str(sepformer), savedir=savedir, use_fast_path=False)
    assert torch.equal(first.separate_batch(mix), expected)
    again = SPGMSeparation.from_hparams(source=str(sepformer), savedir=savedir, use_fast_path=False)
    assert torch.equal(again.separate_batch(mix), expected)
    # the authors' layout into the savedir of a SpeechBrain folder: refused, naming both (SpeechBrain would reuse it)
    with pytest.raises(PretrainedFormatError, match=r"savedir .*S already holds the model of '.*sepformer'") as err:
        SPGMSeparation.from_hparams(source=str(hub_folder), savedir=savedir)
    assert str(hub_folder.resolve()) in str(err.value)
    # a savedir that SpeechBrain filled before anything was recorded: refused too, unless its files are the source's
    (tmp_path / "S" / "spgm_import.json").unlink()
    with pytest.raises(PretrainedFormatError, match="whose source is not recorded"):
        SPGMSeparation.from_hparams(source=str(hub_folder), savedir=savedir)
    other = write_sepformer_folder(tmp_path / "other", seed=9)
    with pytest.raises(PretrainedFormatError, match="whose source is not recorded"):
        SPGMSeparation.from_hparams(source=str(other), savedir=savedir)
    assert prepare_source(str(sepformer), savedir) == (str(sepformer), savedir)
    # an import of one source is replaced by the import of another
    authors2 = write_hub_mixin_folder(tmp_path / "authors2", TINY_SPGM_CONFIG, seed=3)
    savedir = str(tmp_path / "I")
    SPGMSeparation.from_hparams(source=str(hub_folder), savedir=savedir, use_fast_path=False)
    model = SPGMSeparation.from_hparams(source=str(authors2), savedir=savedir, use_fast_path=False)
    expected = _separate(_authors_reference(TINY_SPGM_CONFIG, 3), mix)
    assert _relative(model.separate_batch(mix), expected) <= 1e-4
    with pytest.raises(PretrainedFormatError, match=r"already holds the model of '.*authors2'"):
        SPGMSeparation.from_hparams(source=str(sepformer), savedir=savedir)


def test_a_hub_repo_is_not_taken_from_a_savedir_it_did_not_fill(tmp_path):
    root = tmp_path / "hub"
    write_hub_mixin_folder(root / "yipjiaqi" / "spgm-base", TINY_SPGM_CONFIG, seed=7)
    savedir = tmp_path / "S"
    write_sepformer_folder(savedir)  # an earlier model, its source not recorded
    with pytest.raises(PretrainedFormatError, match=r"whose source is not recorded; loading 'yipjiaqi/spgm-base'"):
        prepare_source("yipjiaqi/spgm-base", str(savedir), downloader=local_snapshot(root), **QUIET)


def test_spgm_separate_takes_the_authors_layout(hub_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    sf.write(tmp_path / "mix.wav", 0.1 * rng.standard_normal(4000), 16000)
    assert separate_main([str(tmp_path / "mix.wav"), "--model", str(hub_folder), "--out", "sep"]) == 0
    assert sorted(p.name for p in (tmp_path / "sep").iterdir()) == ["mix_source1.wav", "mix_source2.wav"]
    # imported into pretrained_models/<folder>-<hash> of the working folder, and reused from there
    (imported_dir,) = (tmp_path / "pretrained_models").iterdir()
    assert imported_dir.name.startswith("spgm-tiny-") and (imported_dir / "spgm_import.json").is_file()
    assert isinstance(load_model(hub_folder), SPGMSeparation)
