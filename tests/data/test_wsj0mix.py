import csv
import os
from pathlib import Path

import pytest
import torch

from spgm_lobes.data.csv_dataset import separation_dataset
from spgm_lobes.data.dynamic_mixing import SpeakerMixingDataset
from spgm_lobes.data.wsj0mix import build_datasets, prepare_data, prepare_wsj0mix
from spgm_lobes.recipe import run_recipe
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH


def test_prepare_writes_csvs_and_dataset_reads_them(wsj0mix_corpus, tmp_path):
    csvs = prepare_wsj0mix(wsj0mix_corpus, tmp_path / "save")
    with open(csvs["tt"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["ID"] for r in rows] == ["tt_000", "tt_001", "tt_002"]
    assert set(rows[0]) == {"ID", "duration", "mix_wav", "s1_wav", "s2_wav"}
    item = separation_dataset(csvs["tt"], 2)[0]
    torch.testing.assert_close(item["mix_sig"], item["s1_sig"] + item["s2_sig"], atol=1e-5, rtol=0)


def test_missing_folder_is_named(wsj0mix_corpus, tmp_path):
    os.rename(wsj0mix_corpus / "wav8k/min/cv/s2", wsj0mix_corpus / "wav8k/min/cv/s2_moved")
    with pytest.raises(FileNotFoundError, match="cv/s2"):
        prepare_wsj0mix(wsj0mix_corpus, tmp_path / "save")


def test_three_speakers_need_s3(wsj0mix_corpus, tmp_path):
    with pytest.raises(FileNotFoundError, match="tr/s3"):
        prepare_wsj0mix(wsj0mix_corpus, tmp_path / "save", num_spks=3)


def test_a_corpus_of_more_speakers_is_refused(wsj0mix_corpus, tmp_path):
    s3 = wsj0mix_corpus / "wav8k/min/tr/s3"
    s3.mkdir()  # 3speakers/ read with the default num_spks: 2
    with pytest.raises(ValueError, match=f"{s3} exists.*num_spks = 2"):
        prepare_wsj0mix(wsj0mix_corpus, tmp_path / "save")
    assert not (tmp_path / "save" / "wsj_tr.csv").exists()


def test_csvs_of_other_options_are_written_again(wsj0mix_corpus, tmp_path):
    save = tmp_path / "save"
    first = prepare_wsj0mix(wsj0mix_corpus, save)
    moved = tmp_path / "moved"
    wsj0mix_corpus.rename(moved)  # the same CSV folder, another corpus folder: listed again, from there
    with open(prepare_wsj0mix(moved, save)["tt"]) as f:
        assert all(str(moved) in r["mix_wav"] for r in csv.DictReader(f))
    stamp = os.stat(first["tt"]).st_mtime_ns
    prepare_wsj0mix(moved, save)  # the same options: kept
    assert os.stat(first["tt"]).st_mtime_ns == stamp


def test_unmatched_file_is_named(wsj0mix_corpus, tmp_path):
    os.remove(wsj0mix_corpus / "wav8k/min/tr/s1/tr_001.wav")
    with pytest.raises(ValueError, match=r"tr/s1/tr_001.wav is missing"):
        prepare_wsj0mix(wsj0mix_corpus, tmp_path / "save")
    assert not (tmp_path / "save" / "wsj_tr.csv").exists()


class _Stop(Exception):
    pass


WSJ0MIX_YAMLS = sorted((REPO_ROOT / "recipes" / "WSJ0Mix" / "separation" / "hparams").glob("*.yaml")) + [
    REPO_ROOT / "recipes" / "GASS" / "hparams" / "finetune-wsj0-2mix.yaml"  # also run with the WSJ0Mix train.py
]


def _train_set(hparams_file, corpus, out, *extra):
    """The training set the WSJ0Mix recipe builds from ``hparams_file`` (the run stops there)."""
    seen = {}

    def build(hparams):
        seen["train"] = build_datasets(hparams)[0]
        raise _Stop

    argv = [str(hparams_file), "--data_folder", str(corpus), "--output_folder", str(out), "--arch", TINY_ARCH]
    if "gass_checkpoint" in Path(hparams_file).read_text():  # the pretrainer is not reached
        argv += ["--gass_checkpoint", str(out / "unused")]
    argv += extra
    with pytest.raises(_Stop):
        run_recipe(argv, prepare_data, build)
    return seen["train"]


@pytest.mark.parametrize("hparams_file", WSJ0MIX_YAMLS, ids=lambda p: p.parent.parent.name + "/" + p.name)
def test_every_wsj0mix_hparams_file_takes_the_dynamic_mixing_options(hparams_file, wsj0mix_corpus, tmp_path):
    dm = ["--dynamic_mixing", "True", "--base_folder_dm", str(wsj0mix_corpus / "si_tr_s")]
    train = _train_set(hparams_file, wsj0mix_corpus, tmp_path / "a", *dm, "--dm_mixtures_per_epoch", "4")
    assert isinstance(train, SpeakerMixingDataset) and len(train) == 4
    assert len(_train_set(hparams_file, wsj0mix_corpus, tmp_path / "b", *dm)) == 3  # default: the static set's size


def test_a_dynamic_mixing_key_missing_from_the_yaml_is_named_with_the_file(wsj0mix_corpus, tmp_path):
    source = REPO_ROOT / "recipes" / "WSJ0Mix" / "separation" / "hparams" / "spgm.yaml"
    text = source.read_text().replace("!include:../../../../hparams/", f"!include:{REPO_ROOT}/hparams/")
    hparams_file = tmp_path / "old.yaml"
    hparams_file.write_text("\n".join(line for line in text.splitlines() if "dm_mixtures_per_epoch" not in line))
    dm = ["--dynamic_mixing", "True", "--base_folder_dm", str(wsj0mix_corpus / "si_tr_s")]
    with pytest.raises(KeyError, match=f"{hparams_file} does not define 'dm_mixtures_per_epoch'"):
        _train_set(hparams_file, wsj0mix_corpus, tmp_path / "out", *dm)


def test_dynamic_mixing_without_a_speaker_folder_is_named(wsj0mix_corpus, tmp_path):
    with pytest.raises(ValueError, match="dynamic_mixing needs base_folder_dm"):
        _train_set(WSJ0MIX_YAMLS[0], wsj0mix_corpus, tmp_path / "out", "--dynamic_mixing", "True")
