#!/usr/bin/env python3
"""Time to quality: test SI-SNRi on real speech against training minutes, in one GPU run.

1. builds a Libri2Mix-style corpus (8 kHz, ``min``, ``mix_clean``) from a LibriSpeech-layout folder
   (``bench/librimix_mini.py``'s corpus: speaker-disjoint train / dev / test speakers, LibriMix's
   loudness rules);
2. trains with the real LibriMix recipe and :class:`spgm_lobes.separation.SeparationBrain`, dynamic
   mixing from the training speakers, for ``--minutes`` of training (compilation included; the
   run stops at the last epoch end that fits);
3. every ``--mark_minutes`` of training it evaluates the current weights on the whole test split
   (SI-SNRi, SDRi); the evaluation's time is excluded from the training clock and the budget;
4. at the end the recipe tests its best checkpoint (by validation) on the test split; that is the
   run's result, plotted at the training time it took.

Regimes (``--regime``):

* ``fast``: the recipes' ``--regime fast`` (``hparams/regimes/fast.yaml``): compiled bf16 fast path,
  batches of fixed-shape 2-s crops, LR warm-up, the paper's halving on plateau, and the LR annealed
  to zero over the second half of the budget;
* ``speechbrain``: as SpeechBrain's Sepformer recipe trains: plain SpeechBrain modules, fp32,
  batch 1, Adam at 1.5e-4, no compilation (the recipe's defaults, with ``use_fast_path: False``).

It writes ``<out>/ttq_<regime>_<hparams>_s<seed>.csv`` (one row per mark, rewritten at each mark so that
a run stopped early keeps its curve, then the final one),
``<out>/time_to_quality.png`` (every ``ttq_*.csv`` of ``<out>`` and of ``--compare`` folders on one
plot) and ``<out>/time_to_quality.md`` (the table). GPU run (under 10 minutes)::

    python bench/time_to_quality.py --librispeech ../shared/data/librispeech-mini --out results/ttq --regime fast
    python bench/time_to_quality.py --librispeech ../shared/data/librispeech-mini --out results/ttq \\
        --regime speechbrain

CPU smoke run (tiny model and corpus, synthetic speech when no folder is given)::

    python bench/time_to_quality.py --quick --out /tmp/ttq

``--html DIR`` also writes a listening page of the test split as the best checkpoint separates it
(:mod:`spgm_lobes.listen`, metrics from the run's ``test_results.csv``), so the run can be heard.

``--summarize DIR [DIR ...]`` only re-reads finished runs' CSVs and prints their final rows.
"""

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402

from spgm_lobes.recipe import load_script, override_options  # noqa: E402
from spgm_lobes.separation import SeparationBrain  # noqa: E402
from spgm_lobes.testing import TINY_ARCH  # noqa: E402

RECIPE = REPO / "recipes" / "LibriMix" / "separation"
COLUMNS = ["regime", "hparams", "seed", "kind", "train_min", "si-snr_i", "sdr_i", "epoch", "lr", "audio_h", "data_wait"]
REGIMES = {
    # recipe options of each regime (the command line's further options win)
    "fast": ["--regime", "fast"],
    "speechbrain": ["--use_fast_path", "False", "--precision", "fp32", "--batch_size", "1", "--lr", "0.00015"],
}
# under a minute of training each on an H200, so that the budget's last epoch end falls near its end, and long
# enough that validating the 100 dev mixtures (about 8 s) stays a small share. Fast: 12,000 2-s crops, 750 steps of
# at most 57 ms alone on the GPU with CUDA graphs (the profiled step), under 45 s; epochs of 6,000 took 22 s with
# their validation, about 3 s of it on 30 dev mixtures. Speechbrain: ~65 audio-s/s of 5-s crops, 1 minute.
EPOCH_MIXTURES = {"fast": 12000, "speechbrain": 750}
PROFILE_FIRST_STEP = 40  # after compilation and the CUDA graphs' recording


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--librispeech", help="LibriSpeech-layout folder (e.g. ../shared/data/librispeech-mini)")
    parser.add_argument("--out", help="results folder")
    parser.add_argument("--regime", choices=sorted(REGIMES), default="fast")
    parser.add_argument("--hparams", default="spgm-ap-s", help="LibriMix recipe hparams (architecture) name")
    parser.add_argument("--minutes", type=float, help="training budget, compilation included (default 9; quick 0.3)")
    parser.add_argument("--mark_minutes", type=float, help="test-set evaluation interval (default 1; quick 0.1)")
    parser.add_argument("--epoch_mixtures", type=int, help="dynamic-mixing mixtures per epoch (default by regime)")
    parser.add_argument("--n_dev", type=int, help="validation mixtures (default 100, --quick 2)")
    parser.add_argument("--n_test", type=int, help="test mixtures (default 150, --quick 4)")
    parser.add_argument("--n_dev_speakers", type=int, default=20)
    parser.add_argument("--n_test_speakers", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus and of training")
    parser.add_argument("--device", help="default cuda:0 when available, else cpu")
    parser.add_argument("--num_workers", type=int, help="data workers (default min(8, CPUs - 1), --quick 0)")
    parser.add_argument("--work_dir", help="corpus and checkpoints (default <tmp>/ttq_<regime>_<hparams>_s<seed>)")
    parser.add_argument("--compare", nargs="*", default=[], help="other result folders to draw on the plot")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny model, tiny data")
    parser.add_argument("--sync_debug", action="store_true", help="GPU: warn about host syncs in steps 3-5")
    parser.add_argument(
        "--profile_steps",
        type=int,
        default=0,
        help=f"profile this many training steps from step {PROFILE_FIRST_STEP} (after compilation): the GPU's busy "
        "share of each step, where the host's time goes; written to <out>/profile_<run>.md",
    )
    parser.add_argument("--summarize", nargs="+", metavar="DIR", help="print the final rows of finished runs")
    parser.add_argument("--html", help="also write a listening page of the final test to this folder")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further recipe options")
    args = parser.parse_args(argv)
    if args.summarize:
        return args
    if not args.out:
        parser.error("--out is required")
    if not args.quick and not args.librispeech:
        parser.error("--librispeech is required (only --quick runs on a synthetic corpus)")
    quick = args.quick
    defaults = {
        "minutes": 0.3 if quick else 9.0,
        "mark_minutes": 0.1 if quick else 1.0,
        "epoch_mixtures": 8 if quick else EPOCH_MIXTURES[args.regime],
        "n_dev": 2 if quick else 100,
        "n_test": 4 if quick else 150,
        "num_workers": 0 if quick else max(1, min(8, (os.cpu_count() or 2) - 1)),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.n_train = 8 if quick else 50  # static training mixtures (dynamic mixing draws the epochs)
    return args


class MarkedBrain(SeparationBrain):
    """The recipes' Brain, evaluating the test split every ``mark_s`` seconds of training time
    (the epoch counter's clock, evaluation excluded) and recording a row each time."""

    marks = None  # set by run(): {"mark_s", "loader", "rows", "row"}

    def fit_batch(self, batch):
        self.steps_done = getattr(self, "steps_done", 0) + 1
        if self.marks.get("sync_debug") and self.device_type == "cuda":
            # steps 3 to 5 (after compilation): warn about every operation that waits for the GPU
            torch.cuda.set_sync_debug_mode("warn" if 3 <= self.steps_done <= 5 else "default")
        profiling = self.marks.get("profile_steps", 0) and self.steps_done == PROFILE_FIRST_STEP
        if profiling:
            self.marks["profiler"] = StepProfiler(self.device)
        loss = super().fit_batch(batch)
        profiler = self.marks.get("profiler")
        if profiler is not None and profiler.step() >= self.marks["profile_steps"]:
            self.finish_profile()
        self.mixtures_seen = getattr(self, "mixtures_seen", 0) + len(batch.id)
        self.evaluate_due_mark()
        return loss

    def evaluate_due_mark(self):
        """Evaluates the current weights once training time has passed the next mark, and moves the next mark
        past it (a long step, the compiling one, may pass several). The evaluation is excluded from training
        time. Called after each step and once more when training ends: validation counts as training time,
        so the last epoch's may pass a mark after the last step."""
        counter = self.hparams.epoch_counter
        trained = counter.training_seconds()
        if trained < self.marks["next_s"]:
            return
        self.finish_profile()  # fewer steps than asked rather than an evaluation among them
        counter.exclude(self.evaluate_mark("mark", trained))
        while self.marks["next_s"] <= trained:
            self.marks["next_s"] += self.marks["mark_s"]

    def finish_profile(self):
        """Ends a running step profile (the steps so far) and writes and prints its summary."""
        profiler = self.marks.get("profiler")
        if profiler is None:
            return
        self.marks["profiler"] = None
        text = profiler.finish()
        self.marks["profile_md"].write_text(text + "\n")
        print(text, flush=True)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.finish_profile()  # the epoch ended within the profiled steps: no validation among them
        super().on_stage_end(stage, stage_loss, epoch)

    def evaluate_mark(self, kind, train_s):
        """Evaluates the current weights on the test split; returns the seconds it took."""
        start = time.perf_counter()
        self.modules.eval()
        self.on_stage_start(sb.Stage.TEST)
        with torch.no_grad():
            for batch in self.marks["loader"]:
                self.evaluate_batch(batch, sb.Stage.TEST)
        self.modules.train()
        busy = self._data_wait_s + self._step_s
        row = self.marks["row"](
            kind=kind,
            train_min=train_s / 60,
            rows=self.test_rows,
            epoch=self.hparams.epoch_counter.current,
            lr=self.optimizer.param_groups[0]["lr"],
            mixtures=getattr(self, "mixtures_seen", 0),
            data_wait=self._data_wait_s / busy if busy else 0.0,
        )
        self.marks["rows"].append(row)
        write_csv(self.marks["csv"], self.marks["rows"])
        rate = row["audio_h"] * 3600 / max(train_s, 1e-9)
        print(
            f"[{kind} {row['train_min']:.2f} min] test SI-SNRi {row['si-snr_i']:.2f} dB, {row['audio_h']} h of "
            f"mixtures ({rate:.0f} audio-s per training s), data wait {row['data_wait']:.3f}",
            flush=True,
        )
        elapsed = time.perf_counter() - start
        self._last_step_end = time.perf_counter()  # the evaluation is no data wait
        return elapsed


class StepProfiler:
    """``torch.profiler`` over consecutive training steps: how much of each step the GPU is busy, and the
    host operations and GPU kernels that take the most time (per step). The profiler's own bookkeeping
    lengthens the host's share a little; the busy time adds up kernels and copies (overlapping streams
    would count twice)."""

    def __init__(self, device):
        self.device = torch.device(device)
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            torch.cuda.synchronize(self.device)
        self.steps = 0
        self.profile = torch.profiler.profile(activities=activities)
        self.profile.__enter__()
        self.start = time.perf_counter()

    def step(self):
        """Counts a finished step; returns the steps so far."""
        self.steps += 1
        return self.steps

    def finish(self, host_rows=15, kernel_rows=20):
        """Stops profiling; returns a markdown summary: the ``host_rows`` host operations and ``kernel_rows`` GPU
        kernels that take the most time, and a last row adding up the others."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        wall = time.perf_counter() - self.start
        self.profile.__exit__(None, None, None)
        cuda = torch.autograd.DeviceType.CUDA
        raw = self.profile.events()
        # device time of kernels and copies; annotated ranges (the optimizer step) are spans, not work
        annotations = {e.name for e in raw if e.is_user_annotation}
        gpu_us = sum(e.device_time_total for e in raw if e.device_type == cuda and not e.is_user_annotation)
        events = self.profile.key_averages()
        n = max(self.steps, 1)
        per_step = wall / n * 1e3
        busy = (
            f"of which the GPU is busy {gpu_us / 1e3 / n:.1f} ms ({gpu_us / 1e6 / wall:.0%}; kernels and copies)"
            if self.device.type == "cuda"
            else f"on {self.device.type}"
        )
        lines = [
            f"#### Profile of {n} training step{'s' if n != 1 else ''}",
            "",
            f"{per_step:.1f} ms per step, {busy}.",
            "",
            "| host operation (self time) | ms per step | calls per step |",
            "|---|---|---|",
        ]
        host = [(e.key, e.self_cpu_time_total, e.count) for e in events if e.self_cpu_time_total > 0]
        lines += top_rows(host, host_rows, n, "host operations")
        gpu = [
            (e.key, e.self_device_time_total, e.count)
            for e in events
            if e.device_type == cuda and e.self_device_time_total > 0 and e.key not in annotations
        ]
        if gpu:
            lines += ["", "| GPU kernel | ms per step | launches per step |", "|---|---|---|"]
            lines += top_rows(gpu, kernel_rows, n, "kernels")
        return "\n".join(lines)


def top_rows(items, limit, steps, kind):
    """Markdown rows of the ``limit`` ``(name, microseconds, calls)`` items that take the most time, per step of
    ``steps``, and a last row adding up the others.

    Example
    -------
    >>> print("\\n".join(top_rows([("mm", 3000, 4), ("add", 1000, 8), ("mul", 500, 2)], 1, 2, "kernels")))
    | `mm` | 1.50 | 2 |
    | (2 other kernels) | 0.75 | 5 |
    """
    items = sorted(items, key=lambda item: -item[1])
    rows = [f"| `{name[:70]}` | {us / 1e3 / steps:.2f} | {count / steps:.0f} |" for name, us, count in items[:limit]]
    rest = items[limit:]
    if rest:
        us, count = sum(item[1] for item in rest), sum(item[2] for item in rest)
        rows.append(f"| ({len(rest)} other {kind}) | {us / 1e3 / steps:.2f} | {count / steps:.0f} |")
    return rows


def build_datasets_with_marks(recipe, marks):
    """The recipe's datasets; the test split also feeds the marks."""

    def build(hparams):
        train, valid, test = recipe.build_datasets(hparams)
        marks["test_set"] = test
        return train, valid, test

    return build


def recipe_argv(args, libri2mix, dm_folder, train_dir, save_dir, device):
    hparams = RECIPE / "hparams" / f"{Path(args.hparams).stem}.yaml"
    if not hparams.is_file():
        raise FileNotFoundError(f"No LibriMix recipe hparams {hparams}")
    counter = f"!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [100000, {args.minutes}]"
    argv = [
        str(hparams),
        "--data_folder", str(libri2mix),
        "--output_folder", str(train_dir),
        "--save_folder", str(save_dir),
        "--epoch_counter", counter,
        "--dynamic_mixing", "True",
        "--base_folder_dm", str(dm_folder),
        "--dm_mixtures_per_epoch", str(args.epoch_mixtures),
        "--num_workers", str(args.num_workers),
        "--device", device,
        "--seed", str(args.seed),
        "--ckpt_interval_minutes", "0",
        "--noprogressbar",
    ]  # fmt: skip
    argv += REGIMES[args.regime]
    if args.quick:
        argv += ["--arch", TINY_ARCH, "--training_signal_len", "4000", "--batch_size", "2",
                 "--compile_fast_path", "False", "--precision", "fp32"]  # fmt: skip
    return override_options(argv, args.extra)


def make_row(args):
    def row(kind, train_min, rows, epoch, lr, mixtures, data_wait):
        n = max(len(rows), 1)
        return {
            "regime": args.regime,
            "hparams": Path(args.hparams).stem,
            "seed": args.seed,
            "kind": kind,
            "train_min": round(train_min, 3),
            "si-snr_i": round(sum(r["si-snr_i"] for r in rows) / n, 3),
            "sdr_i": round(sum(r["sdr_i"] for r in rows) / n, 3),
            "epoch": epoch,
            "lr": f"{lr:.3g}",
            "audio_h": round(mixtures * args.segment_s / 3600, 2),
            "data_wait": round(data_wait, 3),
        }

    return row


def run(args):
    lbm = load_script(REPO / "bench" / "librimix_mini.py", "ttq_librimix_mini")
    lbm.check_page_option(args, "time_to_quality")
    recipe = load_script(RECIPE / "train.py", "ttq_librimix_recipe")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    name = f"{args.regime}_{Path(args.hparams).stem}_s{args.seed}"
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / f"ttq_{name}").resolve()
    data_dir, save_dir, train_dir = work / "data", work / "save", out / f"train_{name}"
    for folder in (data_dir, save_dir, train_dir):  # a new run: nothing of an earlier one
        shutil.rmtree(folder, ignore_errors=True)
    device = args.device or ("cuda:0" if torch.cuda.is_available() and not args.quick else "cpu")

    start = time.monotonic()
    libri2mix, corpus = lbm.build_corpus(args, data_dir)
    print(f"Corpus: {libri2mix} ({(time.monotonic() - start) / 60:.2f} min)", flush=True)

    marks = {"mark_s": 60 * args.mark_minutes, "next_s": 60 * args.mark_minutes, "rows": [], "row": make_row(args)}
    marks["csv"] = out / f"ttq_{name}.csv"
    marks["csv"].unlink(missing_ok=True)
    marks["sync_debug"] = args.sync_debug
    marks["profile_steps"] = args.profile_steps
    marks["profile_md"] = out / f"profile_{name}.md"
    MarkedBrain.marks = marks
    argv = recipe_argv(args, libri2mix, lbm.train_speaker_folder(libri2mix, corpus), train_dir, save_dir, device)
    print("Recipe:", " ".join(argv), flush=True)

    class Brain(MarkedBrain):
        def on_fit_start(self):
            super().on_fit_start()
            marks["loader"] = self.make_dataloader(marks["test_set"], sb.Stage.TEST, batch_size=1, num_workers=2)
            args.segment_s = self.hparams.training_signal_len / self.hparams.sample_rate

        def on_evaluate_start(self, max_key=None, min_key=None):
            self.evaluate_due_mark()  # of the last weights, before the final test loads the best checkpoint
            marks["train_s"] = self.hparams.epoch_counter.training_seconds()
            # the rate of the last training step (between epochs the optimizer holds the base rate)
            last_lr = getattr(self.lr_warmup, "last_lr", None)
            marks["last_lr"] = last_lr if last_lr is not None else self.optimizer.param_groups[0]["lr"]
            if args.html:  # the final test's estimates, for the listening page (not the marks')
                self.hparams.save_audio, self.hparams.n_audio_to_save = True, args.n_test
            super().on_evaluate_start(max_key=max_key, min_key=min_key)

    start = time.monotonic()
    brain = recipe.run_recipe(argv, recipe.prepare_data, build_datasets_with_marks(recipe, marks), brain_class=Brain)
    wall_min = (time.monotonic() - start) / 60
    final = make_row(args)(
        kind="final (best checkpoint)",
        train_min=marks["train_s"] / 60,
        rows=brain.test_rows,
        epoch=brain.hparams.epoch_counter.current,
        lr=marks["last_lr"],  # the rate training ended at
        mixtures=getattr(brain, "mixtures_seen", 0),
        data_wait=0.0,
    )
    marks["rows"].append(final)
    write_csv(marks["csv"], marks["rows"])
    warmup_s = getattr(brain.hparams.epoch_counter, "warmup_s", 0.0)
    print(f"Recipe wall clock {wall_min:.2f} min (first-step compilation / warm-up {warmup_s:.0f} s)", flush=True)
    table = markdown_table(marks["rows"])
    print(table)
    (out / "time_to_quality.md").write_text(table + "\n")
    plot([out] + [Path(c) for c in args.compare], out / "time_to_quality.png")
    if args.html:
        try:
            page, megabytes, seconds = lbm.write_page(train_dir, work, Path(args.html).resolve())
            n = len(brain.test_rows)
            print(f"Listening page: {page} ({n} mixtures, {megabytes:.1f} MB, written in {seconds:.1f} s)", flush=True)
        except (OSError, ValueError) as e:  # the CSV, table and plot are written already
            print(f"No listening page: {e}", file=sys.stderr, flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return marks["rows"]


def write_csv(path, rows):
    """Writes the run's rows so far (through a temporary file: a killed run never leaves half a CSV)."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_rows_of(path):
    """The rows of one run's CSV (marks, then the final one)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_runs(folders):
    """``(path, rows)`` of every run's CSV (``ttq_*.csv``) in ``folders``."""
    return [(path, read_rows_of(path)) for folder in folders for path in sorted(Path(folder).glob("ttq_*.csv"))]


def read_rows(folders):
    return [row for _, rows in read_runs(folders) for row in rows]


def markdown_table(rows):
    head = COLUMNS
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[k]) for k in head) + " |" for r in rows]
    return "\n".join(lines)


def plot(folders, png):
    """SI-SNRi against training minutes, one line per run (``ttq_*.csv`` file) found in ``folders``; runs of
    the same regime, architecture and seed in different folders (an A/B of options) are told apart by
    their folder's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [
        (f"{rows[0]['regime']} regime, {rows[0]['hparams']} (seed {rows[0]['seed']})", path, rows)
        for path, rows in read_runs(folders)
        if rows
    ]
    labels = [label for label, _, _ in runs]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for label, path, rows in sorted(runs, key=lambda run: (run[0], str(run[1]))):
        if labels.count(label) > 1:
            label += f" [{path.parent.name}]"
        marks = [r for r in rows if r["kind"] == "mark"]
        (line,) = ax.plot(
            [float(r["train_min"]) for r in marks],
            [float(r["si-snr_i"]) for r in marks],
            marker="o",
            ms=3,
            label=label,
        )
        for r in rows:
            if r["kind"] != "mark":
                ax.plot(float(r["train_min"]), float(r["si-snr_i"]), marker="*", ms=11, color=line.get_color())
    ax.set_xlabel("training minutes (compilation included, evaluation excluded)")
    ax.set_ylabel("test SI-SNRi (dB)")
    ax.set_title("Libri2Mix-style test set, 25 unseen speakers (star: best checkpoint)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


def main(argv=None):
    args = parse_args(argv)
    if args.summarize:
        rows = [r for r in read_rows(args.summarize) if r["kind"] != "mark"]
        print(markdown_table(rows))
        return rows
    return run(args)


if __name__ == "__main__":
    main()
