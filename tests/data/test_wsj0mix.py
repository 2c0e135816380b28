import csv
import os

import pytest
import torch

from spgm_lobes.data.csv_dataset import separation_dataset
from spgm_lobes.data.wsj0mix import prepare_wsj0mix


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


def test_unmatched_file_is_named(wsj0mix_corpus, tmp_path):
    os.remove(wsj0mix_corpus / "wav8k/min/tr/s1/tr_001.wav")
    with pytest.raises(ValueError, match=r"tr/s1/tr_001.wav is missing"):
        prepare_wsj0mix(wsj0mix_corpus, tmp_path / "save")
    assert not (tmp_path / "save" / "wsj_tr.csv").exists()
