"""End-to-end --debug run of recipes/GASS/train.py on generated category folders (tiny model, CPU)."""

import csv
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from csv_writes import run_two_process_ddp

from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "GASS"
TINY_ARCH = "{num_spks: 4, N_encoder_out: 16, out_channels: 16, nhead: 2, d_ffn: 32, intra_layers: 1, chunk_size: 10}"


def _load_recipe():
    module = load_script(RECIPE / "train.py", "gass_train")
    return module


def _write_category_folders(root):
    rng = np.random.default_rng(0)
    for category, rate in (("speech", 16000), ("music", 22050), ("sfx", 8000)):
        folder = root / category / "sub"
        folder.mkdir(parents=True)
        t = np.arange(rate) / rate
        for i in range(3):
            if category == "speech":
                f0 = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
                signal = sum(np.sin(k * 2 * np.pi * np.cumsum(f0) / rate) / k for k in range(1, 6))
            elif category == "music":
                signal = sum(np.sin(2 * np.pi * rng.uniform(200, 800) * k * t) / k for k in range(1, 4))
            else:
                signal = rng.normal(size=t.size) * (np.sin(2 * np.pi * 2 * t) > 0)
            sf.write(folder / f"{category}{i}.wav", (0.2 * signal / np.abs(signal).max()).astype("float32"), rate)
    return root


def _debug_args(data, out):
    return [
        str(RECIPE / "hparams" / "spgm.yaml"),
        "--data_folder", str(data),
        "--output_folder", str(out),
        "--debug",
        "--arch", TINY_ARCH,
        "--segment_seconds", "0.3",
        "--test_segment_seconds", "0.3",
        "--batch_size", "2",
        "--num_workers", "0",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gass")
    data = _write_category_folders(root / "data")
    recipe = _load_recipe()
    brain = recipe.run_recipe(
        _debug_args(data, root / "out"), recipe.prepare_data, recipe.build_datasets, brain_class=recipe.GASSBrain
    )
    return root, brain


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_debug_run_writes_split_lists_checkpoints_and_results(debug_run):
    root, brain = debug_run
    out = root / "out"
    assert brain.hparams.num_spks == 4 and brain.modules.masknet.num_spks == 4
    lists = {s: _read(out / "save" / f"gass_{s}.csv") for s in ("train", "valid", "test")}
    assert [len(lists[s]) for s in ("train", "valid", "test")] == [3, 3, 3]  # one file per category each
    assert not {r["path"] for r in lists["train"]} & {r["path"] for r in lists["test"]}
    # --debug checkpoints to a temporary folder (SpeechBrain), with the recoverables the fine-tuning loads
    assert list(Path(brain.checkpointer.checkpoints_dir).glob("CKPT+*/masknet.ckpt"))
    results = read_results_csv(out / "test_results.csv")
    assert results.average["num_sources"] == "all"
    per_mixture = results.rows
    assert len(per_mixture) == 2  # --debug: 2 test batches of 1 mixture
    for row in per_mixture:
        count = int(row["num_sources"])
        assert 1 <= count <= 4 and len(row["categories"].split("+")) == count
        assert math.isfinite(row["si-snr"])
        assert math.isnan(row["si-snr_i"]) == (count == 1)  # undefined (an empty cell) for a single source
        assert math.isnan(row["silent_energy_db"]) == (count == 4)  # no silent reference with 4 sources


@pytest.mark.slow
def test_summary_by_count(debug_run):
    root, _ = debug_run
    rows = read_results_csv(root / "out" / "test_results.csv").rows
    summary = read_results_csv(root / "out" / "test_summary_by_count.csv").rows
    assert summary[-1]["num_sources"] == "all" and int(summary[-1]["count"]) == len(rows)
    counts = sorted({int(r["num_sources"]) for r in rows})
    assert [int(s["num_sources"]) for s in summary[:-1]] == counts
    for entry in summary[:-1]:
        group = [float(r["si-snr"]) for r in rows if int(r["num_sources"]) == int(entry["num_sources"])]
        assert float(entry["si-snr"]) == pytest.approx(np.mean(group), abs=1e-3)


@pytest.mark.slow
def test_gass_loss_is_used(debug_run):
    import torch

    _, brain = debug_run
    targets = torch.zeros(1, 800, 4)
    targets[0, :, 0] = torch.randn(800)
    est = torch.zeros(1, 800, 4)
    loss = brain.compute_loss(est, targets, torch.ones(1), targets.sum(-1))
    energy = targets.pow(2).sum().item()
    # active pair: 10·log10(E + 1e-3·E); three silent pairs: 10·log10(1e-3·E)
    expected = (10 * np.log10(energy * 1.001) + 3 * 10 * np.log10(1e-3 * energy)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("name", ["spgm", "sepformer"])
def test_hparams_build_four_output_models(name, tmp_path):
    from hyperpyyaml import load_hyperpyyaml

    with open(RECIPE / "hparams" / f"{name}.yaml") as f:
        tiny = dict(part.split(": ") for part in TINY_ARCH.strip("{}").split(", "))
        hparams = load_hyperpyyaml(f, {"data_folder": str(tmp_path), "arch": {k: int(v) for k, v in tiny.items()}})
    masknet = hparams["modules"]["masknet"]
    assert masknet.num_spks == 4 and masknet.conv2d.out_channels == 16 * 4
    assert hparams["checkpointer"].recoverables["masknet"] is masknet
    assert hparams["threshold_byloss"] is False


@pytest.mark.slow
def test_finetune_wsj0_2mix_loads_the_gass_checkpoint(debug_run, wsj0mix_corpus, tmp_path):
    import torch

    _, gass_brain = debug_run
    gass_ckpt = sorted(Path(gass_brain.checkpointer.checkpoints_dir).glob("CKPT+*"))[-1]
    wsj0mix_train = RECIPE.parent / "WSJ0Mix" / "separation" / "train.py"
    wsj0mix = load_script(wsj0mix_train, "wsj0mix_train")
    argv = [
        str(RECIPE / "hparams" / "finetune-wsj0-2mix.yaml"),
        "--data_folder", str(wsj0mix_corpus),
        "--gass_checkpoint", str(gass_ckpt),
        "--output_folder", str(tmp_path / "finetune"),
        "--arch", TINY_ARCH.replace("num_spks: 4", "num_spks: 2"),
        "--test_only",
        "--debug",
        "--num_workers", "0",
    ]  # fmt: skip
    brain = wsj0mix.run_recipe(argv, wsj0mix.prepare_data, wsj0mix.build_datasets)
    gass = {name: torch.load(gass_ckpt / f"{name}.ckpt") for name in ("encoder", "masknet", "decoder")}
    finetuned = brain.modules.masknet.state_dict()
    assert brain.modules.masknet.num_spks == 2
    torch.testing.assert_close(finetuned["conv2d.weight"], gass["masknet"]["conv2d.weight"][: 2 * 16])
    torch.testing.assert_close(finetuned["conv2d.bias"], gass["masknet"]["conv2d.bias"][: 2 * 16])
    for name, value in finetuned.items():
        if not name.startswith("conv2d."):
            torch.testing.assert_close(value, gass["masknet"][name])
    torch.testing.assert_close(brain.modules.encoder.state_dict(), gass["encoder"])
    assert (tmp_path / "finetune" / "test_results.csv").is_file()


@pytest.mark.slow
def test_ddp_two_cpu_processes_write_each_csv_once(tmp_path):
    """Under DDP every process runs the test stage; only the main one writes the result files (and the file lists)."""
    data = _write_category_folders(tmp_path / "data")
    out = tmp_path / "out"
    args = [a for a in _debug_args(data, out) if a != "--debug"]
    args += ["--N_epochs", "1", "--train_mixtures", "4", "--valid_mixtures", "2", "--test_mixtures", "2"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    writes = run_two_process_ddp(RECIPE / "train.py", args, out, tmp_path / "writes", tmp_path, env)
    results, summary = str(out / "test_results.csv"), str(out / "test_summary_by_count.csv")
    assert writes[results] == 1 and writes[summary] == 1, writes
    assert set(writes.values()) == {1}, writes  # gass_{train,valid,test}.csv too
    assert len(read_results_csv(results).rows) == 2


def test_prepare_data_from_manifest(tmp_path):
    recipe = _load_recipe()
    data = _write_category_folders(tmp_path / "data")
    files = sorted(data.rglob("*.wav"))
    with_split = tmp_path / "with_split.csv"
    rows = [
        f"{p.relative_to(tmp_path)},{p.parent.parent.name},{('train', 'valid', 'test')[i % 3]}"
        for i, p in enumerate(files)
    ]
    with_split.write_text("path,category,split\n" + "\n".join(rows) + "\n")
    hparams = {
        "skip_prep": False,
        "manifest": str(with_split),
        "save_folder": str(tmp_path / "save"),
        "valid_fraction": 0.1,
        "test_fraction": 0.1,
        "seed": 0,
    }
    recipe.prepare_data(hparams)
    written = {s: _read(tmp_path / "save" / f"gass_{s}.csv") for s in ("train", "valid", "test")}
    assert [len(written[s]) for s in ("train", "valid", "test")] == [3, 3, 3]
    assert {Path(r["path"]).name for r in written["test"]} == {p.name for p in files[2::3]}
    without_split = tmp_path / "without_split.csv"
    without_split.write_text("path,category\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
    recipe.prepare_data({**hparams, "manifest": str(without_split), "save_folder": str(tmp_path / "save2")})
    written = [_read(tmp_path / "save2" / f"gass_{s}.csv") for s in ("train", "valid", "test")]
    assert sorted(Path(r["path"]).name for part in written for r in part) == sorted(p.name for p in files)
