"""spgm-publish: best checkpoint -> staged Hub folder -> from_hparams round trip, upload against a stand-in."""

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from huggingface_hub import ModelCard
from speechbrain.inference.separation import SepformerSeparation

from spgm_lobes import publish
from spgm_lobes.fast import encode_mask_decode
from spgm_lobes.listen import page_metrics
from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.publish import PublishError
from spgm_lobes.recipe import load_script
from spgm_lobes.testing import TINY_ARCH_OVERRIDES, make_run_folder

TINY = TINY_ARCH_OVERRIDES


class RecordingHub:
    """Stand-in for huggingface_hub.HfApi: records calls and the files present at upload time."""

    def __init__(self):
        self.calls = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        files = sorted(p.name for p in __import__("pathlib").Path(kwargs["folder_path"]).iterdir())
        self.calls.append(("upload_folder", {**kwargs, "files": files}))
        return "commit-url"


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / "run"
    best_masknet = make_run_folder(run_dir)
    return run_dir, best_masknet


def test_round_trip_dry_run_then_from_hparams(run, tmp_path):
    run_dir, best_masknet = run
    out = publish.publish(run_dir, "me/tiny-spgm", dry_run=True, stage_dir=tmp_path / "stage", log=lambda _: None)
    stage = out["stage_dir"]
    assert sorted(p.name for p in stage.iterdir()) == sorted(publish.STAGED_FILES)
    assert out["max_diff"] < 1e-5
    staged_masknet = torch.load(stage / "masknet.ckpt", weights_only=True)
    assert all(torch.equal(staged_masknet[k], v) for k, v in best_masknet.items())
    card = (stage / "hyperparams.yaml").read_text()
    assert "!include" not in card and "!ref" not in card

    loaded = SepformerSeparation.from_hparams(source=str(stage), savedir=str(tmp_path / "sd"))
    reference = publish.load_checkpoint_modules(publish.read_run_architecture(run_dir), out["checkpoint"])
    mix = torch.randn(2, 1600)
    with torch.no_grad():
        ref = encode_mask_decode(reference, mix)
    est = loaded.separate_batch(mix)
    assert est.shape == (2, 1600, 2)
    assert (est - ref).abs().max() < 1e-5


def test_model_card_front_matter_and_example(run, tmp_path):
    run_dir, _ = run
    stage = publish.publish(run_dir, "me/tiny-spgm", dry_run=True, stage_dir=tmp_path / "s", log=lambda _: None)[
        "stage_dir"
    ]
    text = (stage / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "speechbrain"
    assert front["license"] == "apache-2.0"
    assert front["datasets"] == ["tiny-mix"]
    assert "spgm-ap-s" in front["tags"]
    metrics = {m["name"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"SI-SNRi": 10.5, "SDRi": 11.0}
    assert 'from_hparams(source="me/tiny-spgm"' in text
    card = ModelCard.load(stage / "README.md")  # huggingface_hub reads the model-index back
    assert [(r.metric_type, r.metric_value, r.dataset_name, r.dataset_split) for r in card.data.eval_results] == [
        ("si-snri", 10.5, "tiny-mix", "test"),
        ("sdri", 11.0, "tiny-mix", "test"),
    ]
    assert card.data.model_name == "tiny-spgm" and card.text.lstrip().startswith(
        "# tiny-spgm: spgm-ap-s speech separation"
    )
    wav, rate = sf.read(stage / publish.EXAMPLE_NAME)
    assert rate == 8000 and wav.ndim == 1 and 0 < np.abs(wav).max() <= 1


def test_model_card_counts_parameters_not_buffers(run, tmp_path):
    run_dir, _ = run
    stage = publish.publish(run_dir, "me/x", dry_run=True, stage_dir=tmp_path / "s", log=lambda _: None)["stage_dir"]
    modules = publish.build_modules(publish.read_run_architecture(run_dir))
    params = sum(p.numel() for m in modules.values() for p in m.parameters())
    buffers = sum(b.numel() for m in modules.values() for b in m.buffers())
    assert buffers > 0  # the positional encodings `pe` are in the checkpoints, not parameters
    text = (stage / "README.md").read_text()
    assert f", {params / 1e6:.3f}M parameters" in text
    assert f"{(params + buffers) / 1e6:.3f}M" not in text


def test_example_is_first_test_mixture(run, tmp_path):
    run_dir, _ = run
    mix = 0.3 * np.random.default_rng(0).standard_normal((16000, 2))
    sf.write(tmp_path / "m1.wav", mix, 16000)
    (run_dir / "test.csv").write_text(f"ID,duration,mix_wav\nm1,1.0,{tmp_path / 'm1.wav'}\n")
    stage = publish.publish(run_dir, "me/x", dry_run=True, stage_dir=tmp_path / "s", log=lambda _: None)["stage_dir"]
    wav, rate = sf.read(stage / publish.EXAMPLE_NAME)
    assert rate == 8000 and wav.shape == (8000,)


def test_upload_with_recording_stand_in(run, tmp_path, monkeypatch):
    run_dir, _ = run
    monkeypatch.delenv("HF_TOKEN", raising=False)
    hub = RecordingHub()
    out = publish.publish(
        run_dir, "me/tiny-spgm", private=True, stage_dir=tmp_path / "stage", api=hub, token="hf_x", log=lambda _: None
    )
    assert out["commit"] == "commit-url"
    assert [name for name, _ in hub.calls] == ["create_repo", "upload_folder"]
    create, upload = hub.calls[0][1], hub.calls[1][1]
    assert create["repo_id"] == "me/tiny-spgm" and create["private"] is True and create["exist_ok"] is True
    assert upload["repo_id"] == "me/tiny-spgm" and upload["token"] == "hf_x"
    assert upload["folder_path"] == str(tmp_path / "stage")
    assert upload["files"] == sorted(publish.STAGED_FILES)


def test_token_from_environment_and_main(run, tmp_path, monkeypatch, capsys):
    run_dir, _ = run
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    hub = RecordingHub()
    assert publish.main([str(run_dir), "--repo", "me/m", "--stage-dir", str(tmp_path / "s")], api=hub) == 0
    assert hub.calls[1][1]["token"] == "hf_env" and hub.calls[0][1]["private"] is False
    assert "Uploaded" in capsys.readouterr().out


def test_refuses_without_token(run, tmp_path, monkeypatch, capsys):
    run_dir, _ = run
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(publish, "get_token", lambda: None)
    hub = RecordingHub()
    assert publish.main([str(run_dir), "--repo", "me/m", "--stage-dir", str(tmp_path / "s")], api=hub) == 1
    assert "No Hugging Face token" in capsys.readouterr().err
    assert hub.calls == [] and not (tmp_path / "s").exists()


def test_refuses_without_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    make_run_folder(run_dir, metas=())
    with pytest.raises(PublishError, match="No checkpoint with a 'si-snr' meta"):
        publish.publish(run_dir, "me/m", dry_run=True)
    with pytest.raises(PublishError, match="no save/ folder"):
        publish.publish(tmp_path, "me/m", dry_run=True)


def test_refuses_without_results(tmp_path, capsys):
    run_dir = tmp_path / "run"
    make_run_folder(run_dir, results=None)
    assert publish.main([str(run_dir), "--repo", "me/m", "--dry-run"]) == 1
    assert "test_results.csv not found" in capsys.readouterr().err
    (run_dir / "test_results.csv").write_text("snt_id,sdr,sdr_i,si-snr,si-snr_i\na,1,2,3,4\n")
    with pytest.raises(PublishError, match="no 'avg' row"):
        publish.publish(run_dir, "me/m", dry_run=True)


def test_refuses_when_staged_model_does_not_load_back(run, tmp_path, monkeypatch):
    run_dir, _ = run
    real_card = publish.inference_card

    def wrong_card(path, overrides, *args, **kwargs):  # same weights shapes, different chunking
        return real_card(path, {**overrides, "chunk_size": 7}, *args, **kwargs)

    monkeypatch.setattr(publish, "inference_card", wrong_card)
    with pytest.raises(PublishError, match="does not load back identically"):
        publish.publish(run_dir, "me/m", dry_run=True, stage_dir=tmp_path / "s", log=lambda _: None)

    monkeypatch.setattr(publish, "inference_card", lambda *a, **k: "modules: {}\n")
    with pytest.raises(PublishError, match="does not load back"):
        publish.publish(run_dir, "me/m", dry_run=True, stage_dir=tmp_path / "s", log=lambda _: None)


def test_refuses_checkpoint_of_another_architecture(tmp_path):
    run_dir = tmp_path / "run"
    make_run_folder(run_dir, metas=(-1.0,), with_architecture_key=False)
    with pytest.raises(PublishError, match="does not fit architecture intra-sepformer-16"):
        publish.publish(run_dir, "me/m", dry_run=True, architecture="intra-sepformer-16", log=lambda _: None)


def test_architecture_option_must_match_the_run(run, tmp_path, capsys):
    run_dir, _ = run  # trained spgm-ap-s
    argv = [str(run_dir), "--repo", "me/x", "--dry-run", "--stage-dir", str(tmp_path / "s")]
    assert publish.main(argv + ["--architecture", "spgm-ap"]) == 1
    err = capsys.readouterr().err
    assert "--architecture spgm-ap differs" in err and "(spgm-ap-s, in " in err
    assert not (tmp_path / "s").exists()
    assert publish.main(argv + ["--architecture", "spgm-ap-s"]) == 0
    assert "# x: spgm-ap-s speech separation" in (tmp_path / "s" / "README.md").read_text()


def test_needs_architecture_key(tmp_path):
    run_dir = tmp_path / "run"
    make_run_folder(run_dir, metas=(-1.0,), with_architecture_key=False)
    with pytest.raises(PublishError, match="no 'architecture' key"):
        publish.publish(run_dir, "me/m", dry_run=True)
    out = publish.publish(run_dir, "me/m", dry_run=True, architecture="spgm-ap-s", log=lambda _: None)
    assert out["max_diff"] < 1e-5


def test_reads_architecture_keys_of_the_run(run):
    run_dir, _ = run
    arch = publish.read_run_architecture(run_dir)
    assert arch.name == "spgm-ap-s" and arch.sample_rate == 8000 and arch.num_spks == 2
    assert {k: arch.overrides[k] for k in TINY} == TINY


def test_keeps_foreign_files_in_stage_dir(run, tmp_path):
    run_dir, _ = run
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "notes.txt").write_text("mine")
    with pytest.raises(PublishError, match="notes.txt"):
        publish.publish(run_dir, "me/m", dry_run=True, stage_dir=stage, log=lambda _: None)
    assert (stage / "notes.txt").read_text() == "mine"


def test_bad_repo_id(run):
    with pytest.raises(PublishError, match="user/name"):
        publish.publish(run[0], "no-slash", dry_run=True)


@pytest.mark.slow
def test_round_trip_train_publish_dry_run_from_hparams(wsj0mix_corpus, tmp_path):
    """Train a tiny SPGM with the WSJ0Mix recipe (1 epoch) -> spgm-publish --dry-run -> from_hparams: same output."""

    from spgm_lobes.recipe import run_recipe

    recipe_dir = Path(__file__).resolve().parent.parent / "recipes" / "WSJ0Mix" / "separation"
    train = load_script(recipe_dir / "train.py", "wsj0mix_train")
    run_dir = tmp_path / "run"
    argv = [str(recipe_dir / "hparams" / "spgm-ap-s.yaml"), "--data_folder", str(wsj0mix_corpus)]
    argv += ["--output_folder", str(run_dir), "--N_epochs", "1", "--num_workers", "0", "--device", "cpu"]
    argv += ["--training_signal_len", "1600", "--arch", "{" + ", ".join(f"{k}: {v}" for k, v in TINY.items()) + "}"]
    brain = run_recipe(argv, train.prepare_data, train.build_datasets)

    stage = tmp_path / "stage"
    argv = [str(run_dir), "--repo", "me/tiny", "--dry-run", "--stage-dir", str(stage), "--listening-page"]
    assert publish.main(argv) == 0
    # the listening page of the example: the first test mixture, its references from the test CSV, metrics
    page = stage / "listen" / "index.html"
    assert "listen/index.html" in (stage / "README.md").read_text()
    assert page.read_text().count("<audio") == 5 and "spgm-ap-s" in page.read_text()
    (metrics,) = page_metrics(page)["sources"].values()
    assert len(metrics["si-snr_i"]) == 2 and all(np.isfinite(metrics["sdr_i"]))
    front = yaml.safe_load((stage / "README.md").read_text().split("---")[1])
    avg = read_results_csv(run_dir / "test_results.csv").average
    metrics = {m["name"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
    assert metrics == {"SI-SNRi": round(float(avg["si-snr_i"]), 2), "SDRi": round(float(avg["sdr_i"]), 2)}
    example, rate = sf.read(stage / publish.EXAMPLE_NAME)
    with open(run_dir / "save" / "wsj_tt.csv") as f:
        first_test_mix, _ = sf.read(next(csv.DictReader(f))["mix_wav"])
    assert rate == 8000 and np.abs(example - first_test_mix).max() < 1e-4  # 16-bit PCM copy

    loaded = SepformerSeparation.from_hparams(source=str(stage), savedir=str(tmp_path / "sd"))
    mix = torch.randn(1, 2400)
    brain.modules.eval()
    with torch.no_grad():
        trained = brain.separate(mix)
    assert (loaded.separate_batch(mix) - trained).abs().max() < 1e-5


def test_results_without_sdr_columns(tmp_path):
    """GASS-style results (SI-SNR columns only) publish with SI-SNRi alone."""
    run_dir = tmp_path / "run"
    make_run_folder(run_dir, metas=(-1.0,))
    (run_dir / "test_results.csv").write_text(
        "snt_id,num_sources,categories,si-snr,si-snr_i,silent_energy_db\na,2,speech,5.0,7.0,-60\navg,,,5.0,7.0,-60\n"
    )
    stage = publish.publish(run_dir, "me/g", dry_run=True, stage_dir=tmp_path / "s", log=lambda _: None)["stage_dir"]
    text = (stage / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["model-index"][0]["results"][0]["metrics"] == [{"type": "si-snri", "name": "SI-SNRi", "value": 7.0}]
    assert "| SI-SNRi (dB) | SI-SNR (dB) |\n|---|---|\n| 7.00 | 5.00 |" in text
    (run_dir / "test_results.csv").write_text("snt_id,si-snr\navg,5.0\n")
    with pytest.raises(PublishError, match="no numeric si-snr_i"):
        publish.publish(run_dir, "me/g", dry_run=True)


def test_listening_page_of_a_synthetic_example(run, tmp_path):
    """No test CSV: the page has the synthetic example and its estimates, no references; restaging without
    --listening-page removes the earlier page."""
    run_dir, _ = run
    stage = tmp_path / "s"
    publish.publish(run_dir, "me/x", dry_run=True, stage_dir=stage, log=lambda _: None, listening_page=True)
    text = (stage / "listen" / "index.html").read_text()
    assert text.count("<audio") == 3 and "Reference" not in text
    assert sorted(p.name for p in (stage / "listen").iterdir()) == ["audio", "img", "index.html"]
    publish.publish(run_dir, "me/x", dry_run=True, stage_dir=stage, log=lambda _: None)
    assert sorted(p.name for p in stage.iterdir()) == sorted(publish.STAGED_FILES)
    assert "listen/index.html" not in (stage / "README.md").read_text()
