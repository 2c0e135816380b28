#!/usr/bin/env python3
"""Libri2Mix-style benchmark on a small real-speech LibriSpeech folder, end to end in one call.

1. builds a Libri2Mix-style corpus (8 kHz, ``min`` mode, ``mix_clean``) from a LibriSpeech-layout
   folder with the package's LibriMix creation (speaker-disjoint train/dev/test speakers, LibriMix's
   loudness rules), utterances reused across mixtures when a speaker has few;
2. trains a separator with the real LibriMix recipe (``recipes/LibriMix/separation/train.py``, the
   package's SeparationBrain) until ``--minutes`` of training are spent (stops at an epoch end);
3. evaluates the best checkpoint on the test speakers and prints an SI-SNRi / SDRi table, also
   written to ``<out>/results.md`` and ``<out>/results.json``.

GPU run (about 7 minutes in all: 4.5 of training, then testing 150 mixtures)::

    python bench/librimix_mini.py --librispeech ../shared/data/librispeech-mini --out results/librimix_mini

CPU smoke run (tiny model, a few mixtures, under a minute; a synthetic corpus when no folder is given)::

    python bench/librimix_mini.py --quick --out /tmp/librimix_quick [--librispeech ../shared/data/librispeech-mini]

``--html DIR`` also writes a listening page of the whole test split to ``DIR``
(:mod:`spgm_lobes.listen`: every test mixture, its estimates and references, with the metrics of
``test_results.csv``), from the audio the recipe saves at test time (``--save_audio``).

Nothing is downloaded. Bulky files live in ``--work_dir`` (default: ``librimix_mini`` in the system
temporary folder): the created audio (``data/``) and the checkpoints (``save/``), deleted at the end unless
``--keep_data`` / ``--keep_checkpoints`` (and replaced by the next run). ``<out>`` only gets small
files: ``results.md``, ``results.json``, ``metadata/`` (the corpus metadata) and ``train/`` (logs and
``test_results.csv``).
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from spgm_lobes.data.librimix import (  # noqa: E402
    create_librimix,
    find_corpus_root,
    generate_metadata,
    write_toy_librispeech,
)
from spgm_lobes.metrics.results import RESULTS_FILE, read_results_csv  # noqa: E402
from spgm_lobes.recipe import override_options  # noqa: E402
from spgm_lobes.testing import TINY_ARCH  # noqa: E402

RECIPE = REPO / "recipes" / "LibriMix" / "separation"
POOL_MIN_MIXTURES = 2000  # smaller corpora are created in this process (see build_corpus)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--librispeech", help="LibriSpeech-layout folder (e.g. ../shared/data/librispeech-mini)")
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--minutes", type=float, help="training time budget in minutes (default 4.5, --quick 0.1)")
    parser.add_argument("--hparams", default="spgm-ap-s", help="recipe hparams file (recipes/LibriMix/separation)")
    parser.add_argument("--n_train", type=int, help="training mixtures (default 2000, --quick 8)")
    parser.add_argument("--n_dev", type=int, help="validation mixtures (default 100, --quick 2)")
    parser.add_argument("--n_test", type=int, help="test mixtures (default 150, --quick 4)")
    parser.add_argument("--n_dev_speakers", type=int, default=20)
    parser.add_argument("--n_test_speakers", type=int, default=25)
    parser.add_argument("--dynamic_mixing", action="store_true", help="train on fresh mixtures of the train speakers")
    parser.add_argument("--batch_size", type=int, help="default 4 (--quick 2)")
    parser.add_argument("--lr", type=float, help="learning rate (recipe default 1.5e-4)")
    parser.add_argument("--device", help="default cuda:0 when available, else cpu")
    parser.add_argument("--precision", help="fp32 | bf16 | fp16 (default bf16 on GPU, fp32 on CPU)")
    parser.add_argument("--num_workers", type=int, help="data workers (default min(8, CPUs), --quick 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the corpus (speakers, pairs, loudness)")
    parser.add_argument("--work_dir", help="corpus and checkpoints (default <tmp>/librimix_mini)")
    parser.add_argument("--keep_data", action="store_true", help="keep the created audio")
    parser.add_argument("--keep_checkpoints", action="store_true", help="keep <work_dir>/save")
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: tiny model, tiny data")
    parser.add_argument("--html", help="also write a listening page of the test split to this folder")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further recipe overrides")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "minutes": 0.1 if quick else 4.5,
        "n_train": 8 if quick else 2000,
        "n_dev": 2 if quick else 100,
        "n_test": 4 if quick else 150,
        "batch_size": 2 if quick else 4,
        "num_workers": 0 if quick else min(8, os.cpu_count() or 1),
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not quick and not args.librispeech:
        parser.error("--librispeech is required (only --quick runs on a synthetic corpus)")
    return args


def pick_device(args):
    import torch

    device = args.device or ("cuda:0" if torch.cuda.is_available() and not args.quick else "cpu")
    precision = args.precision or ("bf16" if device.startswith("cuda") else "fp32")
    return device, precision


def build_corpus(args, data_dir):
    """Creates <data_dir>/Libri2Mix (8 kHz, min, mix_clean); returns its path."""
    if args.librispeech:
        corpus = find_corpus_root(args.librispeech)
    else:
        corpus = write_toy_librispeech(data_dir / "toy_librispeech", n_speakers=12, n_utterances=3, seconds=(1.5, 2.5))
    min_duration = 1.0 if args.quick else 3.0
    n_mixtures = args.n_train + args.n_dev + args.n_test
    # Worker processes are spawned and each imports torch before it works: the few hundred mixtures of these benches
    # take about 12 s in one process on a 2-core CPU, and took 39 s with a pool of 8 on a 16-core GPU host.
    workers = args.num_workers if n_mixtures >= POOL_MIN_MIXTURES else 0
    metadata = generate_metadata(
        corpus,
        data_dir / "Libri2Mix" / "metadata",
        n_src=2,
        seed=args.seed,
        n_dev_speakers=min(args.n_dev_speakers, 4) if args.quick else args.n_dev_speakers,
        n_test_speakers=min(args.n_test_speakers, 4) if args.quick else args.n_test_speakers,
        n_mixtures={"train-360": args.n_train, "dev": args.n_dev, "test": args.n_test},
        min_duration=min_duration,
        num_workers=workers,
    )
    root = create_librimix(list(metadata.values()), corpus, data_dir, num_workers=workers)
    return root, corpus


def recipe_command(args, libri2mix, train_dir, save_dir, device, precision, corpus):
    hparams = RECIPE / "hparams" / f"{Path(args.hparams).stem}.yaml"
    if not hparams.is_file():
        raise FileNotFoundError(f"No recipe hparams {hparams}")
    # Positional arguments (a YAML sequence) replace the recipe's EpochCounter node as a whole.
    counter = f"!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [10000, {args.minutes}]"
    cmd = [
        sys.executable,
        str(RECIPE / "train.py"),
        str(hparams),
        "--data_folder", str(libri2mix),
        "--output_folder", str(train_dir),
        "--save_folder", str(save_dir),
        "--epoch_counter", counter,
        "--batch_size", str(args.batch_size),
        "--num_workers", str(args.num_workers),
        "--device", device,
        "--precision", precision,
        "--ckpt_interval_minutes", "0",
    ]  # fmt: skip
    if args.lr is not None:
        cmd += ["--lr", str(args.lr)]
    if args.dynamic_mixing:
        cmd += ["--dynamic_mixing", "True", "--base_folder_dm", str(train_speaker_folder(libri2mix, corpus))]
    if args.quick:
        cmd += ["--arch", TINY_ARCH, "--training_signal_len", "8000"]
    if args.html:  # the test estimates, for the listening page
        cmd += ["--save_audio", "True", "--n_audio_to_save", str(args.n_test)]
    return override_options(cmd, args.extra)


def train_speaker_folder(libri2mix, corpus):
    """A folder of links to the training speakers' folders (dynamic mixing must not see dev/test speakers)."""
    with open(libri2mix / "metadata" / "speakers.csv", newline="") as f:
        speakers = [r["speaker"] for r in csv.DictReader(f) if r["split"] == "train-360"]
    folder = libri2mix / "dm_train_speakers"
    folder.mkdir(exist_ok=True)
    for speaker_dir in sorted(corpus.glob("*/*")):
        link = folder / speaker_dir.name
        if speaker_dir.name in speakers and not link.exists():
            link.symlink_to(speaker_dir.resolve(), target_is_directory=True)
    return folder


def read_results(train_dir):
    """Average row of test_results.csv, the number of test mixtures and the number of finished epochs."""
    results = read_results_csv(train_dir / RESULTS_FILE)
    log = (train_dir / "train_log.txt").read_text().splitlines()
    epochs = sum(1 for line in log if line.startswith("epoch:"))
    return {k: v for k, v in results.average.items() if k != "snt_id"}, len(results.rows), epochs


def check_page_option(args, prog):
    """Exits naming the problem when ``--html`` cannot take the page (a folder of other files, or one holding
    ``--out``): known before the training, not after it."""
    if not args.html:
        return
    from spgm_lobes.listen import check_page_folder

    try:
        check_page_folder(Path(args.html).resolve(), outputs=[Path(args.out)])
    except FileExistsError as e:
        sys.exit(f"{prog}: --html: {e}")


def write_page(train_dir, work, html_dir):
    """Listening page of the test split from the recipe's saved test audio (deleted afterwards);
    returns its path, size in MB and build time in s."""
    from spgm_lobes.listen import model_description, saved_examples, write_listening_page
    from spgm_lobes.publish import find_best_checkpoint, load_checkpoint_modules, read_run_architecture

    rows = read_results_csv(train_dir / RESULTS_FILE).rows
    arch = read_run_architecture(train_dir)
    modules = load_checkpoint_modules(arch, find_best_checkpoint(work).path)
    model = model_description(f"bench/librimix_mini {arch.name}", modules, architecture=arch.name)
    audio = train_dir / "audio_results"
    start = time.monotonic()
    examples = saved_examples(audio, [r["snt_id"] for r in rows], arch.num_spks)
    title = f"librimix_mini: {len(rows)} test mixtures of unseen speakers"
    page = write_listening_page(html_dir, examples, model=model, results=rows, title=title)
    seconds = time.monotonic() - start
    shutil.rmtree(audio)
    megabytes = sum(p.stat().st_size for p in page.parent.rglob("*") if p.is_file()) / 1e6
    return page, megabytes, seconds


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out).resolve()
    check_page_option(args, "librimix_mini")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir or Path(tempfile.gettempdir()) / "librimix_mini").resolve()
    data_dir, save_dir, train_dir = work / "data", work / "save", out / "train"
    for folder in (data_dir, save_dir):  # a new run: no corpus or checkpoint of an earlier one
        shutil.rmtree(folder, ignore_errors=True)
    device, precision = pick_device(args)
    times = {}

    start = time.monotonic()
    libri2mix, corpus = build_corpus(args, data_dir)
    times["data_min"] = (time.monotonic() - start) / 60
    print(f"Corpus: {libri2mix} ({times['data_min']:.2f} min)", flush=True)

    shutil.copytree(libri2mix / "metadata", out / "metadata", dirs_exist_ok=True)
    cmd = recipe_command(args, libri2mix, train_dir, save_dir, device, precision, corpus)
    print("Recipe:", " ".join(f"'{c}'" if " " in c else c for c in cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    start = time.monotonic()
    subprocess.run(cmd, check=True, env=env)
    times["train_and_test_min"] = (time.monotonic() - start) / 60

    metrics, n_test, epochs = read_results(train_dir)
    result = {
        "hparams": Path(args.hparams).stem,
        "quick": args.quick,
        "device": device,
        "precision": precision,
        "train_mixtures": args.n_train,
        "dynamic_mixing": args.dynamic_mixing,
        "test_mixtures": n_test,
        "epochs": epochs,
        "minutes_budget": args.minutes,
        **{k: round(v, 3) for k, v in times.items()},
        **{k: round(v, 3) for k, v in metrics.items()},
    }
    table = [
        "| model | train mix. | epochs | train budget (min) | test mix. | SI-SNRi (dB) | SDRi (dB) |",
        "|---|---|---|---|---|---|---|",
        f"| {result['hparams']}{' (tiny, --quick)' if args.quick else ''} | {args.n_train}"
        f"{' (DM)' if args.dynamic_mixing else ''} | {epochs} | {args.minutes:g} | {n_test} | "
        f"{metrics['si-snr_i']:.2f} | {metrics['sdr_i']:.2f} |",
    ]
    table.append(
        f"\n{device}, {precision}; corpus creation {times['data_min']:.1f} min, recipe (training + test) "
        f"{times['train_and_test_min']:.1f} min."
    )
    print("\n".join(table))
    (out / "results.md").write_text("\n".join(table) + "\n")
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.html:  # after the results: a page that cannot be written loses nothing else
        try:
            page, megabytes, seconds = write_page(train_dir, work, Path(args.html).resolve())
            print(f"Listening page: {page} ({n_test} mixtures, {megabytes:.1f} MB, written in {seconds:.1f} s)")
        except (OSError, ValueError) as e:
            print(f"No listening page: {e}", file=sys.stderr)
    if not args.keep_data:
        for folder in (data_dir / "Libri2Mix" / "wav8k", data_dir / "toy_librispeech"):
            shutil.rmtree(folder, ignore_errors=True)
    if not args.keep_checkpoints:
        shutil.rmtree(save_dir, ignore_errors=True)
    return result


if __name__ == "__main__":
    main()
