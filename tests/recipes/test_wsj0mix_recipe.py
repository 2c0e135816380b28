"""End-to-end tests of recipes/WSJ0Mix/separation/train.py on a generated wsj0-mix folder."""

import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from csv_writes import run_two_process_ddp

from spgm_lobes.checkpoints import latest_complete_checkpoint
from spgm_lobes.metrics.results import RESULTS_FILE, read_results_csv
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH

pytestmark = pytest.mark.slow  # end-to-end recipe runs, kill/resume, DDP

RECIPE_DIR = REPO_ROOT / "recipes" / "WSJ0Mix" / "separation"
# the recipe runs in child processes: they import this checkout's spgm_lobes, not another installed one
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))


def train_cmd(data, out, *extra, hparams="hparams/spgm.yaml"):
    return [
        sys.executable, "train.py", hparams, "--data_folder", str(data), "--output_folder", str(out),
        "--arch", TINY_ARCH, "--num_workers", "0", "--training_signal_len", "1600", *extra,
    ]  # fmt: skip


def run(cmd, timeout=300):
    proc = subprocess.run(cmd, cwd=RECIPE_DIR, capture_output=True, text=True, timeout=timeout, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def read_results(out):
    """The rows of test_results.csv, its ``avg`` row last."""
    results = read_results_csv(Path(out) / RESULTS_FILE)
    return results.rows + [results.average]


def test_debug_run_writes_finite_results(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    run(train_cmd(wsj0mix_corpus, out, "--debug", "--batch_size", "2", "--save_audio", "True"))
    rows = read_results(out)
    assert list(rows[0]) == ["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i"]
    assert rows[-1]["snt_id"] == "avg" and len(rows) >= 2
    for row in rows:
        assert all(math.isfinite(float(row[k])) for k in ("sdr", "sdr_i", "si-snr", "si-snr_i"))
    assert (out / "hyperparams.yaml").exists() and (out / "train_log.txt").exists()
    assert any(p.name.endswith("_source1hat.wav") for p in (out / "audio_results").iterdir())


def test_dynamic_mixing_run(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    run(train_cmd(wsj0mix_corpus, out, "--debug", "--dynamic_mixing", "True",
                  "--base_folder_dm", str(wsj0mix_corpus / "si_tr_s"), "--batch_size", "2"))  # fmt: skip
    assert read_results(out)[-1]["snt_id"] == "avg"


def _latest_checkpoint(save):
    """The newest checkpoint the next run can recover (a kill can land in the middle of a save)."""
    return latest_complete_checkpoint(save, ["counter", "optimizer", "lr_scheduler", "brain"])


def test_killed_run_resumes_with_its_epoch_and_learning_rate(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    # lr 1e-3 and patience 1 make the schedule move; the resumed run asks for another lr on purpose.
    first = train_cmd(wsj0mix_corpus, out, "--N_epochs", "50", "--lr", "0.001", "--lr_patience", "1")
    proc = subprocess.Popen(first, cwd=RECIPE_DIR, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            ckpt = _latest_checkpoint(out / "save")
            if ckpt is not None and int((ckpt / "counter.ckpt").read_text()) >= 3:
                break
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    ckpt = _latest_checkpoint(out / "save")
    epoch = int((ckpt / "counter.ckpt").read_text())
    saved_lr = torch.load(ckpt / "optimizer.ckpt", weights_only=False)["param_groups"][0]["lr"]
    saved_sched = torch.load(ckpt / "lr_scheduler.ckpt", weights_only=False)
    log_before = (out / "train_log.txt").read_text().strip().splitlines()

    run(train_cmd(wsj0mix_corpus, out, "--N_epochs", str(epoch + 1), "--lr", "0.0005", "--lr_patience", "1"))
    log = (out / "train_log.txt").read_text().strip().splitlines()
    resumed = [line for line in log[len(log_before) :] if line.startswith("epoch:")]
    assert resumed, log
    assert resumed[0].startswith(f"epoch: {epoch + 1}, lr: {saved_lr:.2e}"), (resumed[0], epoch, saved_lr)
    assert len(saved_sched["losses"]) == epoch  # the scheduler's history came back too
    assert read_results(out)[-1]["snt_id"] == "avg"


def test_a_checkpoint_cut_short_by_a_kill_is_set_aside_and_the_previous_one_resumes(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    run(train_cmd(wsj0mix_corpus, out, "--N_epochs", "1"))
    (done,) = (out / "save").glob("CKPT+*")
    # What a SIGKILL during the next save leaves: a newer folder whose optimizer file is cut short.
    killed = out / "save" / "CKPT+2099-01-01+00-00-00+00"
    shutil.copytree(done, killed)
    (killed / "counter.ckpt").write_text("2")
    data = (killed / "optimizer.ckpt").read_bytes()
    (killed / "optimizer.ckpt").write_bytes(data[: len(data) // 3])

    run(train_cmd(wsj0mix_corpus, out, "--N_epochs", "2"))
    log = (out / "train_log.txt").read_text()
    assert "epoch: 2," in log and "epoch: 3," not in log  # resumed after epoch 1, not after the broken "2"
    assert (out / "save" / "incomplete" / killed.name / "optimizer.ckpt").exists()
    assert read_results(out)[-1]["snt_id"] == "avg"


def test_a_run_resumed_with_a_warmup_continues_from_its_checkpoint(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    run(train_cmd(wsj0mix_corpus, out, "--N_epochs", "2"))  # the paper's regime: no warm-up
    proc = run(train_cmd(wsj0mix_corpus, out, "--N_epochs", "3", "--lr_warmup_steps", "2"))
    epochs = [line.split(",")[0] for line in (out / "train_log.txt").read_text().splitlines()]
    assert [e for e in epochs if e.startswith("epoch:")] == ["epoch: 1", "epoch: 2", "epoch: 3"], epochs
    assert not (out / "save" / "incomplete").exists()
    assert "has no lr_warmup.ckpt" in proc.stdout + proc.stderr


def test_a_finished_budgeted_run_started_again_trains_no_more(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    budget = ["--epoch_counter", "!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [5, 0]"]  # one epoch
    for _ in range(2):
        run(train_cmd(wsj0mix_corpus, out, *budget))
    epochs = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    assert len(epochs) == 1, epochs  # the second start recovered the spent budget


def test_ddp_two_cpu_processes(wsj0mix_corpus, tmp_path):
    out = tmp_path / "out"
    # SpeechBrain's --debug gives each process its own temporary checkpoint folder and hangs under DDP:
    # run two real (tiny) epochs instead.
    script, *args = train_cmd(wsj0mix_corpus, out, "--N_epochs", "2")[1:]
    writes = run_two_process_ddp(script, args, out, tmp_path / "writes", RECIPE_DIR, ENV)
    assert writes[str(out / "test_results.csv")] == 1 and set(writes.values()) == {1}, writes
    rows = read_results(out)
    assert rows[-1]["snt_id"] == "avg"
    ids = [r["snt_id"] for r in rows[:-1]]
    assert ids == ["tt_000", "tt_001", "tt_002"]  # written once, by the main process
    assert len((out / "train_log.txt").read_text().splitlines()) == 3


def test_ddp_two_cpu_processes_with_a_time_budget_and_its_decay(wsj0mix_corpus, tmp_path):
    # rank 1's clock runs 1000 times faster: alone it would stop after an epoch while rank 0 goes on (and
    # waits for it forever); the main process decides each epoch start and plans the decay for both
    out = tmp_path / "out"
    counter = "!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [3, 1, !name:csv_writes.rank_skewed_clock ]"
    budget = ["--epoch_counter", counter]
    script, *args = train_cmd(wsj0mix_corpus, out, *budget, "--lr_anneal_fraction", "0.5")[1:]
    run_two_process_ddp(script, args, out, tmp_path / "writes", RECIPE_DIR, ENV)
    epochs = [line for line in (out / "train_log.txt").read_text().splitlines() if line.startswith("epoch:")]
    assert len(epochs) == 3 and all("lr_scale" in line for line in epochs), epochs
    assert read_results(out)[-1]["snt_id"] == "avg"
