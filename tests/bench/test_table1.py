"""bench/table1.py: Table 1 at equal budget (run orchestration, summary of finished and failed runs)."""

import csv

import pytest

from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT

TTQ_COLUMNS = ["regime", "hparams", "seed", "kind", "train_min", "si-snr_i", "sdr_i", "epoch", "lr", "audio_h"]


@pytest.fixture(scope="module")
def table1():
    return load_script(REPO_ROOT / "bench" / "table1.py", "table1_under_test")


def write_run(out, row, seed, marks, final, regime="fast"):
    """A finished time_to_quality run in table1's layout: marks [(minutes, si-snr_i)], then the final test."""
    folder = out / f"{row}_s{seed}" / "out"
    folder.mkdir(parents=True, exist_ok=True)
    rows = [dict(zip(TTQ_COLUMNS, [regime, row, seed, "mark", m, v, v + 0.5])) for m, v in marks]
    rows.append(
        dict(zip(TTQ_COLUMNS, [regime, row, seed, "final (best checkpoint)", final[0], final[1], final[1] + 0.5]))
    )
    with open(folder / f"ttq_{regime}_{row}_s{seed}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TTQ_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def test_summary_keeps_finished_rows_and_names_a_failure(table1, tmp_path):
    args = table1.parse_args(["--quick", "--out", str(tmp_path), "--rows", "spgm-ap-s", "sepformer", "spgm-le-s",
                              "--seeds", "0", "1", "--mark_minutes", "1.7"])  # fmt: skip
    # marks as time_to_quality.py records them: at the first step end past each 1.7-minute mark, rounded to 1e-3
    # (5.1 / 1.7 is 2.9999... in floating point); spgm-ap-s seed 1 evaluated its second mark late (5.0 minutes,
    # after a long step) and spgm-le-s seed 1 had a step so long that it skipped its second mark
    write_run(tmp_path, "spgm-ap-s", 0, [(1.7, 1.0), (3.4, 2.0), (5.1, 3.0)], (5.6, 3.5))
    write_run(tmp_path, "spgm-ap-s", 1, [(1.701, 1.5), (5.0, 2.5)], (5.3, 2.9))  # mark 2 late
    write_run(tmp_path, "spgm-le-s", 0, [(1.7, 0.5), (3.4, 1.0), (5.16, 4.0)], (5.5, 4.0))
    write_run(tmp_path, "spgm-le-s", 1, [(1.702, 0.7), (5.2, 1.4)], (5.5, 1.6))
    write_run(tmp_path, "spgm-le-s", 1, [(1.0, 9.0)], (2.0, 9.0), regime="speechbrain")  # another regime: not read
    codes = {(row, seed): 0 for row in ("spgm-ap-s", "spgm-le-s") for seed in (0, 1)}
    for seed in (0, 1):  # Sepformer ran out of memory: a log and no CSV
        folder = tmp_path / f"sepformer_s{seed}"
        folder.mkdir()
        log = "Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory. " + "x" * 200 + "\n"
        (folder / "run.log").write_text(log)
        codes[("sepformer", seed)] = 1

    table = {r["row"]: r for r in table1.summarize(args, tmp_path, codes)}

    assert table["spgm-ap-s"]["si-snr_i"] == "3.20" and table["spgm-ap-s"]["seeds"] == 2  # mean of 3.5 and 2.9
    assert table["spgm-le-s"]["sdr_i"] == "3.30"
    # the last mark every finished run reached is the second one: the same training time for every row
    assert table["spgm-ap-s"]["mark_min"] == "3.4" and table["spgm-ap-s"]["mark_si-snr_i"] == "2.25"
    assert table["spgm-le-s"]["mark_si-snr_i"] == "0.85"  # seed 1 skipped mark 2: its value at mark 1 counts
    assert table["sepformer"]["si-snr_i"] == "failed" and table["sepformer"]["seeds"] == 0
    assert "CUDA out of memory" in table["sepformer"]["per_seed"] and len(table["sepformer"]["per_seed"]) < 250

    text = table1.write_outputs(args, tmp_path, list(table.values()))
    assert "| Sepformer | `sepformer` |" in text and "failed" in text
    with open(tmp_path / "table1.csv", newline="") as f:
        assert [r["row"] for r in csv.DictReader(f)] == ["spgm-ap-s", "sepformer", "spgm-le-s"]
    assert (tmp_path / "table1.png").stat().st_size > 0

    # --summarize reads the same folders without exit codes: a run counts when its CSV ends with the final test
    rows = table1.main(["--quick", "--summarize", "--out", str(tmp_path), "--rows", "spgm-ap-s", "sepformer",
                        "--seeds", "0", "1", "--mark_minutes", "1.7"])  # fmt: skip
    assert [(r["row"], r["seeds"]) for r in rows] == [("spgm-ap-s", 2), ("sepformer", 0)]


def test_bad_options_are_named(table1, capsys):
    for argv, named in [
        (["--rows", "spgm-ap-s", "conv-tasnet"], "conv-tasnet"),
        (["--parallel", "0"], "--parallel"),
        (["--rows", "spgm-ap-s", "spgm-ap-s"], "--rows repeats spgm-ap-s"),
        (["--seeds", "0", "1", "0"], "--seeds repeats 0"),
    ]:
        with pytest.raises(SystemExit):
            table1.parse_args(["--quick", "--out", "x", *argv])
        assert named in capsys.readouterr().err
    with pytest.raises(SystemExit):
        table1.parse_args(["--out", "x"])  # real runs need speech
    assert "--librispeech" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_of_two_rows_side_by_side(table1, tmp_path):
    stale = tmp_path / "spgm-ap-s_s0" / "out"
    stale.mkdir(parents=True)
    (stale / "ttq_fast_spgm-ap-s_s0.csv").write_text("an earlier run's file\n")
    rows = table1.main(["--quick", "--out", str(tmp_path), "--rows", "spgm-ap-s", "intra-sepformer-16",
                        "--parallel", "2"])  # fmt: skip
    assert [r["row"] for r in rows] == ["spgm-ap-s", "intra-sepformer-16"]
    assert all(r["seeds"] == 1 and r["si-snr_i"] != "failed" and r["mark_si-snr_i"] for r in rows)
    assert rows[0]["parameters"] != rows[1]["parameters"]  # two different (tiny) architectures
    assert (tmp_path / "table1.md").is_file() and (tmp_path / "table1.png").is_file()
    assert (tmp_path / "spgm-ap-s_s0" / "run.log").is_file()
