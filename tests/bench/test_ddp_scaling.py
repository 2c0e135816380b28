"""bench/ddp_scaling.py: the CPU (gloo) run with N = 1 and 2, the exit without enough GPUs, and the checks failing
on records that disagree."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from spgm_lobes.recipe import load_script
from spgm_lobes.testing import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "ddp_scaling.py"
bench = load_script(SCRIPT, "ddp_scaling")


@pytest.mark.slow
def test_cpu_run_with_one_and_two_processes_scales_agrees_and_resumes(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    status = bench.main(["--device", "cpu", "--quick", "--nproc", "1", "2", "--out", str(out), "--work_dir", str(work)])
    report = json.loads((out / "ddp_scaling.json").read_text())
    assert status == 0, (report["failed_runs"], report["trajectory"], report["resume"])
    assert report["nvlink_multicast_off"] is True  # every process saw NCCL_NVLS_ENABLE=0 and the others

    rows = {row["nproc"]: row for row in report["throughput"]}
    assert sorted(rows) == [1, 2] and all(row["status"] == "ok" for row in rows.values())
    assert rows[2]["global_batch"] == 2 * rows[1]["global_batch"] == 8
    for row in rows.values():
        # 4 mixtures of 0.2 s per process and step
        assert row["audio_s_per_s"] == pytest.approx(row["global_batch"] * 0.2 / row["seconds_per_step"])
        assert row["peak_gib_per_gpu"] > 0 and 0 <= row["data_wait"] < 1
    assert rows[2]["efficiency"] == pytest.approx(rows[2]["audio_s_per_s"] / rows[1]["audio_s_per_s"] / 2)
    with open(out / "ddp_scaling.csv", newline="") as f:
        assert [r["nproc"] for r in csv.DictReader(f)] == ["1", "2"]

    (trajectory,) = report["trajectory"]
    assert trajectory["nproc"] == 2 and trajectory["per_gpu_batch"] == 2 and trajectory["verdict"] == "agree"
    # fp32 on the CPU: the same trajectory up to rounding, while the loss itself moved by decibels
    assert trajectory["max_loss_diff_db"] < 1e-4 and trajectory["loss_moved_db"] > 0.5
    assert trajectory["weights_apart_over_travelled"] < 1e-2 and trajectory["replicas_identical"]

    resume = report["resume"]
    assert resume["verdict"] == "resumed on every rank" and resume["problems"] == []
    assert resume["expected"]["epoch"] >= 2 and resume["expected"]["optimizer_steps"] == 2 * resume["expected"]["epoch"]
    table = (out / "ddp_scaling.md").read_text()
    assert "| 2 | 8 |" in table and "agree" in table and "resumed on every rank" in table
    assert (out / "logs" / "resume_n2_killed.log").is_file() and (out / "logs" / "throughput_n2.log").is_file()


@pytest.mark.slow
def test_more_gpus_than_present_exits_with_a_clear_message(tmp_path):
    asked = torch.cuda.device_count() + 1
    cmd = [sys.executable, str(SCRIPT), "--device", "cuda", "--nproc", "1", str(asked), "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == bench.EXIT_NOT_ENOUGH_GPUS == 3, proc.stderr[-2000:]
    assert f"{asked} GPU process(es) asked for, but {asked - 1} CUDA GPU(s) visible" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "o").exists()


def test_trajectory_check_fails_on_other_batches_or_losses(tmp_path):
    args = bench.parse_args(["--device", "cpu", "--quick", "--out", str(tmp_path / "o"), "--traj_steps", "2"])
    b = bench.Bench(args, [1, 2], tmp_path)
    weights = {"m.w": torch.zeros(3)}

    def run(name, per_rank):
        """A launch whose ranks saw ``per_rank[r] = [(ids, losses) per step]``; every rank ends on the same weights."""
        folder = tmp_path / name
        folder.mkdir()
        torch.save(weights, folder / "w0.pt")
        torch.save({"m.w": torch.ones(3)}, folder / "wK.pt")
        records = [
            {"steps": [{"ids": ids, "losses": losses} for ids, losses in steps], "traced_weights": "same"}
            for steps in per_rank
        ]
        return {"name": name, "nproc": len(per_rank), "status": "ok", "records": records, "record_dir": folder}

    ids = [["a", "b", "c", "d"], ["e", "f", "g", "h"]]
    reference = run("ref", [[(ids[k], [1.0, 2.0, 3.0, 4.0]) for k in range(2)]])
    good = run("good", [[(ids[k][0::2], [1.0, 3.0]) for k in range(2)], [(ids[k][1::2], [2.0, 4.0]) for k in range(2)]])
    assert b.compare_trajectories(reference, good)["verdict"] == "agree"

    shuffled = run("shuffled", [[(["a", "e"], [1.0, 1.0])] * 2, [(["b", "f"], [2.0, 2.0])] * 2])
    result = b.compare_trajectories(reference, shuffled)
    assert result["verdict"] == "failed" and "other utterances" in result["problems"][0]

    drift = 10 * args.traj_tol_db  # the second global batch's mean loss off by more than the tolerance
    drifted = run("drifted", [[(ids[k][0::2], [1.0, 3.0 + 4 * drift * k]) for k in range(2)],
                              [(ids[k][1::2], [2.0, 4.0]) for k in range(2)]])  # fmt: skip
    result = b.compare_trajectories(reference, drifted)
    assert result["verdict"] == "failed" and result["max_loss_diff_db"] == pytest.approx(drift)


def test_only_the_main_process_may_write_checkpoints(tmp_path):
    ckpt = tmp_path / "save" / "CKPT+1"
    (tmp_path / "writes0.txt").write_text(f"{ckpt / 'CKPT.yaml'}\n{ckpt / 'counter.ckpt'}\n")
    (tmp_path / "writes1.txt").write_text("")
    launch = {"name": "run", "nproc": 2, "record_dir": tmp_path}
    assert bench.Bench.checkpoint_writers(launch, ckpt) == []
    (tmp_path / "writes1.txt").write_text(f"{ckpt / 'counter.ckpt'}\n")
    (problem,) = bench.Bench.checkpoint_writers(launch, ckpt)
    assert "rank 1 wrote checkpoint files" in problem
    (tmp_path / "writes1.txt").write_text("")
    (problem,) = bench.Bench.checkpoint_writers(launch, tmp_path / "save" / "CKPT+2")
    assert "CKPT+2 was not written by the main process" in problem
