"""Smoke test of bench/time_to_quality.py --quick with a listening page of its final test (CPU, tiny model)."""

import re

import pytest

from spgm_lobes.listen import page_metrics
from spgm_lobes.metrics.results import read_results_csv
from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT


@pytest.mark.slow
def test_quick_run_writes_a_listening_page_of_its_final_test(tmp_path):
    bench = load_script(REPO_ROOT / "bench" / "time_to_quality.py", "time_to_quality")
    out, page = tmp_path / "out", tmp_path / "page"
    rows = bench.main(["--quick", "--out", str(out), "--work_dir", str(tmp_path / "work"), "--html", str(page)])
    assert rows[-1]["kind"] == "final (best checkpoint)"
    (train_dir,) = out.glob("train_*")
    results = {r["snt_id"]: r for r in read_results_csv(train_dir / "test_results.csv").rows}
    summary = page_metrics(page / "index.html")["summary"]
    assert len(results) == 4
    assert summary == {snt_id: {k: v for k, v in row.items() if k != "snt_id"} for snt_id, row in results.items()}
    assert not (train_dir / "audio_results").exists()  # the saved test audio is gone once the page is written


def test_extra_options_replace_the_bench_s_own():
    bench = load_script(REPO_ROOT / "bench" / "time_to_quality.py", "time_to_quality")
    args = bench.parse_args(["--quick", "--out", "o", "--extra", "--training_signal_len", "6000", "--flag"])
    argv = bench.recipe_argv(args, "libri2mix", "dm", "train", "save", "cpu")
    assert argv.count("--training_signal_len") == 1
    assert argv[argv.index("--training_signal_len") + 1] == "6000"
    assert argv[-1] == "--flag" and argv.count("--batch_size") == 1


def test_step_profiler_reports_time_per_step_and_host_operations():
    import torch

    bench = load_script(REPO_ROOT / "bench" / "time_to_quality.py", "time_to_quality")
    profiler = bench.StepProfiler("cpu")
    a = torch.randn(64, 64)
    for _ in range(3):
        (a @ a).relu().sum()
        steps = profiler.step()
    text = profiler.finish(host_rows=2)
    assert steps == 3
    assert text.startswith("#### Profile of 3 training steps")
    assert "ms per step, on cpu." in text
    assert "GPU kernel" not in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "ms per step" not in line]
    assert len(rows) == 3 and re.fullmatch(r"\| \(\d+ other host operations\) \| [\d.]+ \| \d+ \|", rows[-1])


def test_a_mark_falls_due_once_training_time_passes_it():
    from types import SimpleNamespace

    bench = load_script(REPO_ROOT / "bench" / "time_to_quality.py", "time_to_quality")
    clock = {"now": 0.0, "excluded": 0.0}
    counter = SimpleNamespace(
        training_seconds=lambda: clock["now"],
        exclude=lambda s: clock.update(excluded=clock["excluded"] + s),
    )
    evaluated = []
    brain = SimpleNamespace(
        hparams=SimpleNamespace(epoch_counter=counter),
        marks={"next_s": 6.0, "mark_s": 6.0},
        finish_profile=lambda: None,
        evaluate_mark=lambda kind, trained: evaluated.append((kind, trained)) or 0.5,  # took 0.5 s
    )
    for now in (5.9, 6.6, 7.0, 19.0):  # 19 s: one step (or the last validation) passed two marks
        clock["now"] = now
        bench.MarkedBrain.evaluate_due_mark(brain)
    assert evaluated == [("mark", 6.6), ("mark", 19.0)]
    assert brain.marks["next_s"] == 24.0 and clock["excluded"] == 1.0
