"""Runs a script and records which CSV files this process opened for writing (for the DDP tests).

    python csv_writes.py <record_prefix> <watched_folder> <script> [script arguments...]

A Python audit hook (``spgm_lobes.testing.watch_file_writes``) sees every ``open`` for writing, whatever code does
it; at exit the CSV files under ``<watched_folder>`` that were opened are written to ``<record_prefix>.<RANK>``, one
path a line.
"""

import atexit
import collections
import os
import runpy
import subprocess
import sys
import time


def main(argv):
    from spgm_lobes.testing import watch_file_writes

    record, watched, script = argv[0], argv[1], argv[2]
    writes = []

    def save():
        with open(f"{record}.{os.environ.get('RANK', '0')}", "w", encoding="utf-8") as handle:
            handle.write("".join(f"{path}\n" for path in writes))

    watch_file_writes(watched, writes.append, suffixes=(".csv",))
    atexit.register(save)
    sys.argv = [script, *argv[3:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


def rank_skewed_clock():
    """``time.monotonic()`` that runs 1000 times faster on rank 1: a process whose own clock disagrees
    (``TimeBudgetEpochCounter(clock=...)`` in a DDP test)."""
    return time.monotonic() * (1 + 999 * int(os.environ.get("RANK", "0")))


def run_two_process_ddp(script, args, watched, record, cwd, env):
    """Runs ``script args`` in 2 CPU processes (torchrun, gloo, a free port); returns how many times the processes
    opened each CSV file under ``watched`` for writing (path -> count). Fails with the output when a process fails."""
    from spgm_lobes.testing import free_port

    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}"]
    cmd += [__file__, str(record), str(watched), str(script), *args, "--distributed_backend", "gloo"]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=dict(env, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    records = [f"{record}.{rank}" for rank in (0, 1)]
    return collections.Counter(line for path in records for line in open(path, encoding="utf-8").read().split())


if __name__ == "__main__":
    main(sys.argv[1:])
