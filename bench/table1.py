#!/usr/bin/env python3
"""The SPGM paper's Table 1 at equal budget, on real speech, in one GPU call.

Each row is one :mod:`bench/time_to_quality.py <time_to_quality>` run of an architecture of ``hparams/``
(through the LibriMix recipe's file of the same name): the same Libri2Mix-style corpus, the same regime, the same
seed list and the same ``--minutes`` of training for every row. The rows are, by default, the paper's Sepformer,
IntraSepformer-16, SPGM-LE-S and SPGM-AP-S (``--rows`` adds e.g. ``spgm-le``, ``spgm`` for the 26M models).

``--parallel N`` runs N rows at a time on the one GPU, so that the four rows fit in one call of under 10 minutes
instead of four. The rows then share the GPU: still an equal budget for every row, but each trains more slowly than
alone (on an H200, four 13M rows side by side each trained about 40% as fast as one run alone). With batches of 16
4-s crops a 13M row took about 17 GiB of GPU memory and a Sepformer row more than 29 GiB; the fast regime's 2-s crops
take less. GPU run (about 9 minutes; epochs of 2,000 mixtures, since each row trains at a fraction of the GPU's
rate)::

    python bench/table1.py --librispeech ../shared/data/librispeech-mini --out results/table1 --parallel 4 \\
        --minutes 6.3 --mark_minutes 1.7 --epoch_mixtures 2000 --num_workers 3

CPU smoke run (tiny models and corpus, synthetic speech when no folder is given)::

    python bench/table1.py --quick --out /tmp/table1 --rows spgm-ap-s intra-sepformer-16

It writes ``<out>/<row>_s<seed>/`` (each run's time-to-quality files and logs), ``<out>/table1.md`` and
``<out>/table1.csv`` (the best checkpoint of each run, by validation, tested on the 25 unseen test speakers; the
mean over seeds; the last test mark that every run reached) and ``<out>/table1.png`` (every run's curve).
A row that fails (out of memory, say) is reported as failed with the last error line of its log, and the others are
kept. ``--summarize`` only writes the table of the runs already in ``--out`` (same ``--rows``, ``--seeds``,
``--regime`` and ``--mark_minutes``), e.g. of ``time_to_quality.py`` runs started by hand as
``--out <out>/<row>_s<seed>/out``.
"""

import argparse
import csv
import shutil
import statistics
import subprocess
import sys
import time
from functools import cache, partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spgm_lobes.recipe import load_script  # noqa: E402

ROWS = ["sepformer", "intra-sepformer-16", "spgm-le-s", "spgm-ap-s"]
#: the paper's names and parameter counts of the rows (the LibriMix recipe names SPGM-AP ``spgm``)
PAPER = {
    "sepformer": ("Sepformer", "25.7M"),
    "intra-sepformer-16": ("IntraSepformer-16", "13.0M"),
    "intra-sepformer-32": ("IntraSepformer-32", "25.7M"),
    "spgm-le-s": ("SPGM-LE-S", "13.3M"),
    "spgm-ap-s": ("SPGM-AP-S", "13.3M"),
    "spgm-le": ("SPGM-LE", "26.2M"),
    "spgm": ("SPGM-AP", "26.2M"),
}
COLUMNS = [
    "row",
    "paper_name",
    "parameters",
    "paper_parameters",
    "seeds",
    "si-snr_i",
    "sdr_i",
    "train_min",
    "mark_min",
    "mark_si-snr_i",
    "per_seed",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--librispeech", help="LibriSpeech-layout folder (e.g. ../shared/data/librispeech-mini)")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--rows", nargs="+", default=ROWS, help=f"LibriMix recipe hparams names (default {ROWS})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds (corpus and training)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time on the one GPU (default 1)")
    parser.add_argument("--minutes", type=float, help="training budget of every run (default 9; quick 0.2)")
    parser.add_argument("--mark_minutes", type=float, help="test-set evaluation interval (default 1; quick 0.1)")
    parser.add_argument("--regime", default="fast", help="time_to_quality.py regime (default fast)")
    parser.add_argument("--epoch_mixtures", type=int, help="dynamic-mixing mixtures per epoch (default: the bench's)")
    parser.add_argument("--num_workers", type=int, help="data workers of each run (default: the bench's)")
    parser.add_argument("--summarize", action="store_true", help="only write the table of the runs already in --out")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny models, tiny data")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further recipe options, every row")
    args = parser.parse_args(argv)
    if not args.quick and not args.librispeech:
        parser.error("--librispeech is required (only --quick runs on a synthetic corpus)")
    if args.parallel < 1:
        parser.error(f"--parallel must be at least 1, got {args.parallel}")
    unknown = [r for r in args.rows if r not in PAPER]
    if unknown:
        parser.error(f"unknown row(s) {unknown}; choose from {sorted(PAPER)}")
    for name, values in (("--rows", args.rows), ("--seeds", args.seeds)):
        repeated = sorted({str(v) for v in values if values.count(v) > 1})
        if repeated:
            parser.error(f"{name} repeats {', '.join(repeated)}: each run needs its own folder")
    args.minutes = args.minutes if args.minutes is not None else (0.2 if args.quick else 9.0)
    args.mark_minutes = args.mark_minutes if args.mark_minutes is not None else (0.1 if args.quick else 1.0)
    return args


def run_command(args, row, seed, folder):
    cmd = [sys.executable, str(REPO / "bench" / "time_to_quality.py"), "--out", str(folder / "out"),
           "--work_dir", str(folder / "work"), "--regime", args.regime, "--hparams", row, "--seed", str(seed),
           "--minutes", str(args.minutes), "--mark_minutes", str(args.mark_minutes)]  # fmt: skip
    if args.quick:
        cmd.append("--quick")
    if args.librispeech:
        cmd += ["--librispeech", args.librispeech]
    if args.num_workers is not None:
        cmd += ["--num_workers", str(args.num_workers)]
    if args.epoch_mixtures is not None:
        cmd += ["--epoch_mixtures", str(args.epoch_mixtures)]
    if args.extra:
        cmd += ["--extra", *args.extra]
    return cmd


def run_folder(out, row, seed):
    return out / f"{row}_s{seed}"


def run_all(args, out):
    """Runs every (row, seed), ``args.parallel`` at a time, each in a fresh ``<out>/<row>_s<seed>`` folder;
    returns {(row, seed): returncode}. Interrupted (Ctrl-C, an error), it stops the runs it started."""
    jobs = [(row, seed) for seed in args.seeds for row in args.rows]
    running, done = {}, {}
    try:
        while jobs or running:
            while jobs and len(running) < args.parallel:
                row, seed = jobs.pop(0)
                folder = run_folder(out, row, seed)
                shutil.rmtree(folder, ignore_errors=True)  # nothing of an earlier run is read back
                folder.mkdir(parents=True)
                log = open(folder / "run.log", "w")
                print(f"[table1] start {row} seed {seed} -> {folder}", flush=True)
                proc = subprocess.Popen(run_command(args, row, seed, folder), stdout=log, stderr=log)
                running[(row, seed)] = (proc, log)
            for key, (proc, log) in list(running.items()):
                if proc.poll() is not None:
                    log.close()
                    done[key] = proc.returncode
                    print(f"[table1] {key[0]} seed {key[1]} ended with code {proc.returncode}", flush=True)
                    del running[key]
            time.sleep(0.5)
    finally:
        for proc, log in running.values():
            proc.terminate()
            proc.wait()
            log.close()
    return done


def parameter_count(row, quick):
    """Parameters of the row's architecture (the ``architecture`` its recipe file names; the tiny sizes under
    ``--quick``), counted on the meta device."""
    from spgm_lobes.architectures import recipe_hparams_path
    from spgm_lobes.card import architecture_keys
    from spgm_lobes.pretrained import build_architecture
    from spgm_lobes.profile import count_parameters
    from spgm_lobes.testing import TINY_ARCH_OVERRIDES

    architecture = architecture_keys(recipe_hparams_path("LibriMix/separation", row))["architecture"]
    modules = build_architecture(architecture, TINY_ARCH_OVERRIDES if quick else None, device="meta")
    return sum(count_parameters(m) for m in modules.values())


@cache
def time_to_quality():
    """``bench/time_to_quality.py`` as a module (its run CSV reader and plot), loaded once."""
    return load_script(REPO / "bench" / "time_to_quality.py", "table1_time_to_quality")


def read_run_rows(folder, regime, row, seed):
    """The run's CSV rows (marks, then the final one), or None when the run wrote none."""
    path = folder / "out" / f"ttq_{regime}_{row}_s{seed}.csv"
    return time_to_quality().read_rows_of(path) if path.is_file() else None


def failure_tail(folder, width=100):
    """The last error line of a failed run's log (else its last line), cut to ``width`` characters."""
    log = folder / "run.log"
    text = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
    errors = [line for line in text if "Error" in line]
    line = (errors or text or ["no output"])[-1].strip()
    return line if len(line) <= width else line[: width - 3] + "..."


def mark_index(row, args):
    """Which test mark (1, 2, ...) a CSV row of kind ``mark`` is: a mark is evaluated at the first step end past
    its time (``train_min`` is rounded to 1e-3), and a step longer than the interval skips to the latest mark."""
    return int((float(row["train_min"]) + 1e-3) / args.mark_minutes)


def mean_over_seeds(finals, key):
    """Mean of column ``key`` of the runs' final rows, as text ("failed" when no run finished)."""
    if not finals:
        return "failed"
    return f"{statistics.mean(float(rows[-1][key]) for rows in finals.values()):.2f}"


def format_count(n):
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n:,}"


def summarize(args, out, codes=None):
    """One table row per architecture: the test scores of each run's best checkpoint (mean over seeds) and the
    test SI-SNRi at the last mark that every finished run reached (the same training time for all).

    ``codes`` maps (row, seed) to the run's exit status; without it (``--summarize``), a run counts as finished
    when its CSV ends with the final test."""
    runs = {}
    for row in args.rows:
        for seed in args.seeds:
            folder = run_folder(out, row, seed)
            rows = read_run_rows(folder, args.regime, row, seed)
            ok = (codes is None or codes[(row, seed)] == 0) and rows and rows[-1]["kind"] != "mark"
            runs[(row, seed)] = rows if ok else failure_tail(folder)
    finished = [rows for rows in runs.values() if not isinstance(rows, str)]
    last = min((max(mark_index(r, args) for r in rows if r["kind"] == "mark") for rows in finished
                if any(r["kind"] == "mark" for r in rows)), default=None)  # fmt: skip
    table = []
    for row in args.rows:
        finals = {s: runs[(row, s)] for s in args.seeds if not isinstance(runs[(row, s)], str)}
        at_mark = []  # each run's latest mark at or before the common one (a long step may skip a mark)
        for rows in finals.values():
            before = [r for r in rows if r["kind"] == "mark" and last is not None and mark_index(r, args) <= last]
            if before:
                at_mark.append(float(before[-1]["si-snr_i"]))
        per_seed = [f"seed {s}: {float(rows[-1]['si-snr_i']):.2f}" for s, rows in finals.items()]
        per_seed += [f"seed {s}: failed ({runs[(row, s)]})" for s in args.seeds if s not in finals]
        mean = partial(mean_over_seeds, finals)
        table.append({
            "row": row,
            "paper_name": PAPER[row][0],
            "parameters": format_count(parameter_count(row, args.quick)),
            "paper_parameters": PAPER[row][1],
            "seeds": len(finals),
            "si-snr_i": mean("si-snr_i"),
            "sdr_i": mean("sdr_i"),
            "train_min": mean("train_min"),
            "mark_min": f"{last * args.mark_minutes:g}" if last is not None else "",
            "mark_si-snr_i": f"{statistics.mean(at_mark):.2f}" if at_mark else "",
            "per_seed": "; ".join(per_seed),
        })  # fmt: skip
    return table


def write_outputs(args, out, table):
    lines = [
        "| architecture (paper) | recipe hparams | parameters (ours / paper) | runs | test SI-SNRi (dB) | SDRi (dB) | "
        "training minutes (whole run) | SI-SNRi at the last common mark | per seed (best checkpoint) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['paper_name']} | `{r['row']}` | {r['parameters']} / {r['paper_parameters']} | {r['seeds']} | "
            f"{r['si-snr_i']} | {r['sdr_i']} | {r['train_min']} | "
            f"{r['mark_si-snr_i'] or 'failed'} ({r['mark_min']} min) | {r['per_seed']} |"
        )
    lines.append(
        f"\n{args.regime} regime, {args.minutes:g} minutes of training per run, {args.parallel} run(s) at a time on "
        f"one device; seeds {args.seeds}."
    )
    text = "\n".join(lines)
    (out / "table1.md").write_text(text + "\n")
    with open(out / "table1.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    folders = [run_folder(out, row, seed) / "out" for row in args.rows for seed in args.seeds]
    time_to_quality().plot([f for f in folders if f.is_dir()], out / "table1.png")
    return text


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    codes = None if args.summarize else run_all(args, out)
    table = summarize(args, out, codes)
    text = write_outputs(args, out, table)
    print(text)
    return table


if __name__ == "__main__":
    main()
