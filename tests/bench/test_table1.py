"""bench/table1.py: Table 1 at equal budget (run orchestration, summary of finished and failed runs)."""

import csv

import pytest

from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT

TTQ_COLUMNS = ["regime", "hparams", "seed", "kind", "train_min", "si-snr_i", "sdr_i", "epoch", "lr", "audio_h"]


@pytest.fixture(scope="module")
def table1():
    return load_script(REPO_ROOT / "bench" / "table1.py", "table1_under_test")


def write_run(folder, marks, final):
    """A finished time_to_quality run: marks [(minutes, si-snr_i)] then its best checkpoint (minutes, si-snr_i)."""
    (folder / "out").mkdir(parents=True)
    rows = [dict(zip(TTQ_COLUMNS, ["fast", "x", 0, "mark", m, v, v + 0.5, 1, 3e-4, 1.0])) for m, v in marks]
    rows.append(dict(zip(TTQ_COLUMNS, ["fast", "x", 0, "final (best checkpoint)", final[0], final[1], final[1] + 0.5])))
    with open(folder / "out" / "ttq_fast_x_s0.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TTQ_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_summary_keeps_finished_rows_and_names_a_failure(table1, tmp_path):
    args = table1.parse_args(["--quick", "--out", str(tmp_path), "--rows", "spgm-ap-s", "sepformer", "spgm-le-s",
                              "--seeds", "0", "1", "--mark_minutes", "1"])  # fmt: skip
    done = {}
    for row, seed, marks, final in [
        ("spgm-ap-s", 0, [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)], (3.4, 3.5)),
        ("spgm-ap-s", 1, [(1.0, 1.5), (2.0, 2.5)], (2.6, 2.9)),
        ("spgm-le-s", 0, [(1.0, 0.5), (2.0, 1.0), (3.0, 4.0)], (3.2, 4.0)),
        ("spgm-le-s", 1, [(1.0, 0.7), (2.0, 1.4)], (2.2, 1.6)),
    ]:
        write_run(tmp_path / f"{row}_s{seed}", marks, final)
        done[(row, seed)] = (0, tmp_path / f"{row}_s{seed}")
    for seed in (0, 1):  # Sepformer ran out of memory: a log and no CSV
        folder = tmp_path / f"sepformer_s{seed}"
        folder.mkdir()
        (folder / "run.log").write_text(
            "Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory.\n"
        )
        done[("sepformer", seed)] = (1, folder)

    table = {r["row"]: r for r in table1.summarize(args, done)}

    assert table["spgm-ap-s"]["si-snr_i"] == "3.20" and table["spgm-ap-s"]["seeds"] == 2  # mean of 3.5 and 2.9
    assert table["spgm-le-s"]["sdr_i"] == "3.30"
    # the last mark every finished run reached is the second one: the same training time for every row
    assert table["spgm-ap-s"]["mark_min"] == "2" and table["spgm-ap-s"]["mark_si-snr_i"] == "2.25"
    assert table["spgm-le-s"]["mark_si-snr_i"] == "1.20"
    assert table["sepformer"]["si-snr_i"] == "failed" and table["sepformer"]["seeds"] == 0
    assert "CUDA out of memory" in table["sepformer"]["per_seed"]

    text = table1.write_outputs(args, tmp_path, list(table.values()), done)
    assert "| Sepformer | `sepformer` |" in text and "failed" in text
    with open(tmp_path / "table1.csv", newline="") as f:
        assert [r["row"] for r in csv.DictReader(f)] == ["spgm-ap-s", "sepformer", "spgm-le-s"]
    assert (tmp_path / "table1.png").stat().st_size > 0


def test_bad_options_are_named(table1, capsys):
    with pytest.raises(SystemExit):
        table1.parse_args(["--quick", "--out", "x", "--rows", "spgm-ap-s", "conv-tasnet"])
    assert "conv-tasnet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table1.parse_args(["--quick", "--out", "x", "--parallel", "0"])
    assert "--parallel" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table1.parse_args(["--out", "x"])  # real runs need speech
    assert "--librispeech" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_of_two_rows_side_by_side(table1, tmp_path):
    rows = table1.main(["--quick", "--out", str(tmp_path), "--rows", "spgm-ap-s", "intra-sepformer-16",
                        "--parallel", "2"])  # fmt: skip
    assert [r["row"] for r in rows] == ["spgm-ap-s", "intra-sepformer-16"]
    assert all(r["seeds"] == 1 and r["si-snr_i"] != "failed" for r in rows)
    assert rows[0]["parameters"] != rows[1]["parameters"]  # two different (tiny) architectures
    assert (tmp_path / "table1.md").is_file() and (tmp_path / "table1.png").is_file()
    assert (tmp_path / "spgm-ap-s_s0" / "run.log").is_file()
