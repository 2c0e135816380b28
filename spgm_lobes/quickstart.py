"""The quickstart: the whole job in miniature, on data the package makes itself.

::

    python -m spgm_lobes.quickstart [--output quickstart] [--minutes M] [--librispeech PATH] [--debug]

1. writes the synthetic demo corpus (:mod:`spgm_lobes.data.demo_corpus`; or,
   with ``--librispeech``, a corpus cut from real speech in LibriSpeech layout)
   in the wsj0-2mix layout under ``<output>/corpus/<corpus>``;
2. trains with the real WSJ0Mix recipe (its hparams, ``prepare_data`` and
   ``build_datasets`` of :mod:`spgm_lobes.data.wsj0mix`) and
   :class:`spgm_lobes.separation.SeparationBrain`, dynamic mixing from the
   training speakers, for a time budget (``--minutes``, through
   :class:`spgm_lobes.epoch_budget.TimeBudgetEpochCounter`): on the CPU a small
   SPGM-AP for 10 minutes (``MODEL``, ``TRAINING``), on a GPU the paper's
   SPGM-AP-S in the fast regime for 8 minutes (``GPU_TRAINING``), in
   ``<output>/run/<model>/<corpus>``;
3. evaluates the best checkpoint on the test speakers and prints the SI-SNRi /
   SDRi table (``<output>/run/<model>/<corpus>/test_results.csv``);
4. separates one test mixture: ``<output>/example/*.wav`` and
   ``<output>/example/separation.png`` (spectrograms of mixture, estimates and
   references), and writes a listening page of the best, median and worst test
   mixtures (``<output>/listen/index.html``);
5. stages a publishable model folder with ``spgm-publish --dry-run``
   (``<output>/model``), loadable with
   ``SepformerSeparation.from_hparams(source=<output>/model)``; its card names
   the quickstart's corpus (``CARD_DATASETS``), not wsj0-2mix.

Corpus and run folders are per configuration, as SpeechBrain's ``results/<model>/<seed>``:
``<corpus>`` is ``synthetic-seed0``, ``synthetic-debug-seed0`` or
``librispeech-<folder name>[-debug]-seed<seed>``, ``<model>`` is ``spgm-ap-small``
(CPU), ``spgm-ap-tiny`` (``--debug``) or ``spgm-ap-s-fast`` (GPU). Each folder
records the options that made it in ``quickstart.json`` (corpus: kind, LibriSpeech
folder, seed, sizes; run: recipe, architecture, training options, seed and corpus).
A call with the same options reuses the corpus and resumes the run (the time budget
is not one of them: a larger ``--minutes`` continues a finished run); a call with
other options gets its own folders, so a ``--debug`` call never touches a real run.
A folder made with other options under the same name is kept, and the new one is
``<name>-2`` (a log line says so). Nothing is deleted but what the quickstart wrote:
an interrupted corpus write is removed only when its folder holds nothing else, and
``<output>/model`` is refused when it holds files spgm-publish does not write;
``example/``, ``listen/`` and ``model/`` show the latest call.

The default corpus is synthetic (source-filter voices): the trained model
separates such voices, not real speech. What it reaches is in the README's
results table and, dated, in ``bench/README.md``.
"""

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .architectures import architecture_path, recipe_hparams_path
from .data import wsj0mix
from .data.demo_corpus import build_librispeech_corpus, generate_demo_corpus
from .dsp.audio import read_audio
from .metrics.results import RESULTS_FILE, defined_mean, read_results_csv
from .metrics.separation import si_snr_per_source
from .recipe import run_recipe

# A small SPGM-AP (the paper's block structure, scaled down for a CPU).
MODEL = {
    "N_encoder_out": 96,
    "out_channels": 96,
    "kernel_size": 32,
    "kernel_stride": 16,
    "chunk_size": 50,
    "num_blocks": 2,
    "intra_layers": 2,
    "nhead": 4,
    "d_ffn": 256,
}
TRAINING = {
    "batch_size": 4,
    "lr": 0.0015,
    "training_signal_len": 8000,  # 1-s crops: twice the steps of 2-s crops in the same time
    "use_speedperturb": False,
    "num_workers": 0,
    "N_epochs": 200,
    "ckpt_interval_minutes": 0,
    "lr_patience": 5,  # the validation set is small and noisy: do not halve the LR on a fluke
    "lr_anneal_fraction": 0.5,  # the LR decays to zero over the budget's second half
}
CORPUS = {  # mixtures per split; training draws new mixtures every epoch (dynamic mixing)
    "full": {"tr": 200, "cv": 40, "tt": 100},
    "debug": {"tr": 4, "cv": 2, "tt": 2},
}
DEBUG_MODEL = {"N_encoder_out": 16, "out_channels": 16, "nhead": 2, "d_ffn": 32, "intra_layers": 1, "chunk_size": 10}
# On a GPU: the paper's SPGM-AP-S (13.3M parameters) in the recipes' fast regime (compiled bf16,
# fixed-shape batches, LR warm-up then halving on plateau), with crops the length of the
# synthetic utterances (2-4 s) and epochs of a few hundred steps, so the schedule can act.
GPU_ARCHITECTURE = "spgm-ap-s"
GPU_TRAINING = {
    "regime": "fast",  # batches of 24 2-s crops, LR annealed to zero over the budget's second half
    "dm_mixtures_per_epoch": 6400,
    "N_epochs": 1000,
    "ckpt_interval_minutes": 0,
}
# On an H200 (shared with another run), 8 minutes gave 10.2 dB SI-SNRi, validation flat over the last two epochs
# (bench/README.md), and keep the whole GPU quickstart under 10 minutes.
DEFAULT_MINUTES = {"cpu": 10.0, "cuda": 8.0}
RECORD_FILE = "quickstart.json"  # the options a corpus or run folder was made with
# Model-card dataset ids (spgm-publish --dataset): the quickstart's own corpora, not wsj0-2mix
CARD_DATASETS = {"synthetic": "spgm-lobes-synthetic-2mix", "librispeech": "spgm-lobes-librispeech-2mix"}


class QuickstartError(RuntimeError):
    """The quickstart refused: the message names the folder and what is wrong."""


def _yaml_mapping(values):
    return "{" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}"


def _json_value(options):
    """``options`` as JSON reads them back (tuples become lists), for comparing with a record."""
    return json.loads(json.dumps(options, sort_keys=True))


def _read_record(folder):
    """The options recorded in ``<folder>/quickstart.json``; ``None`` without a record, ``{}`` when unreadable."""
    try:
        return json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def options_folder(parent, tag, options, what):
    """The folder of ``parent`` that holds the ``what`` (corpus, run) made with ``options``.

    ``parent/tag`` when it does not exist yet (created, ``options`` recorded in its
    ``quickstart.json``) or was made with the same options; a folder made with other options
    is kept and the next of ``tag-2``, ``tag-3`` ... is tried, with a log line. A folder the
    quickstart did not make (no record, not empty) is refused.

    Example
    -------
    >>> parent = getfixture("tmp_path")
    >>> options_folder(parent, "a", {"seed": 0}, "corpus").name, options_folder(parent, "a", {"seed": 0}, "corpus").name
    ('a', 'a')
    >>> options_folder(parent, "a", {"seed": 5}, "corpus").name  # doctest: +ELLIPSIS
    The corpus in .../a was made with other options (seed 0, not 5): it is kept, and this one goes to .../a-2
    'a-2'
    """
    options = _json_value(options)
    for n in itertools.count(1):
        folder = Path(parent) / (tag if n == 1 else f"{tag}-{n}")
        recorded = _read_record(folder) if folder.is_dir() else None
        if recorded == options:
            return folder
        if recorded is None:
            if folder.exists() and not (folder.is_dir() and not any(folder.iterdir())):
                raise QuickstartError(
                    f"{folder} exists and was not made by the quickstart (no {RECORD_FILE}): "
                    "move it away or choose another --output."
                )
            folder.mkdir(parents=True, exist_ok=True)
            (folder / RECORD_FILE).write_text(json.dumps(options, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            return folder
        differ = sorted(k for k in set(recorded) | set(options) if recorded.get(k) != options.get(k))
        differ = ", ".join(f"{k} {recorded.get(k)}, not {options.get(k)}" for k in differ)
        nxt = Path(parent) / f"{tag}-{n + 1}"
        print(f"The {what} in {folder} was made with other options ({differ}): it is kept, and this one goes to {nxt}")


def corpus_options(librispeech=None, debug=False, seed=0):
    """What defines the quickstart's corpus: its kind, the LibriSpeech folder, the seed and the sizes.

    Example
    -------
    >>> corpus_options(debug=True)["n_mixtures"], corpus_tag(corpus_options(debug=True, seed=3))
    ({'tr': 4, 'cv': 2, 'tt': 2}, 'synthetic-debug-seed3')
    """
    counts = CORPUS["debug" if debug else "full"]
    if librispeech:
        return {
            "kind": "librispeech",
            "debug": debug,
            "librispeech": str(Path(librispeech).resolve()),
            "n_mixtures": counts,
            "segment_seconds": 2.0 if debug else 3.0,
            "max_segments_per_speaker": 2 if debug else 8,
            "max_speakers": 8 if debug else None,
            "seed": seed,
        }
    if debug:
        sizes = {"n_speakers": 8, "utterances_per_speaker": 2, "duration_range": [0.5, 0.8]}
    else:  # many cheap synthetic speakers: the model generalises to unseen voices only when it saw many
        sizes = {"n_speakers": 240, "utterances_per_speaker": 8, "split_fractions": [0.8, 0.1, 0.1]}
    return {"kind": "synthetic", "debug": debug, **sizes, "n_mixtures": counts, "seed": seed}


def corpus_tag(options):
    """Folder name of a corpus under ``<output>/corpus``: kind (LibriSpeech folder name), debug, seed."""
    kind = f"librispeech-{Path(options['librispeech']).name}" if options["kind"] == "librispeech" else "synthetic"
    return f"{kind}{'-debug' if options['debug'] else ''}-seed{options['seed']}"


CORPUS_ENTRIES = ("2speakers", "wsj0", "speakers.csv", "README.txt", RECORD_FILE)  # what a corpus folder holds


def make_corpus(output, librispeech=None, debug=False, seed=0):
    """Writes (or reuses) the corpus of these options, ``<output>/corpus/<tag>`` (:func:`corpus_tag`,
    :func:`options_folder`); returns the corpus info dict (with ``options`` and ``dataset``, the model card's id)."""
    options = corpus_options(librispeech, debug, seed)
    root = options_folder(Path(output) / "corpus", corpus_tag(options), options, "corpus")
    dataset = CARD_DATASETS[options["kind"]]
    done = root / "2speakers" / "DONE"
    if done.is_file():
        print(f"Reusing the corpus in {root}")
        info = {"root": root, "data_folder": root / "2speakers", "base_folder_dm": root / "wsj0" / "si_tr_s"}
        return {**info, "options": _json_value(options), "dataset": dataset}
    _remove_interrupted_corpus(root)
    start = time.time()
    kwargs = {k: v for k, v in options.items() if k not in ("kind", "debug", "librispeech")}
    if librispeech:
        info = build_librispeech_corpus(options["librispeech"], root, **kwargs)
    else:
        info = generate_demo_corpus(root, **kwargs)
    done.write_text("complete\n")
    kind = "LibriSpeech-layout speech" if librispeech else "synthetic voices"
    speakers = {k: len(v) for k, v in info["speakers"].items()}
    print(f"Corpus ({kind}) written to {root} in {time.time() - start:.1f} s: speakers {speakers}")
    return {**info, "options": _json_value(options), "dataset": dataset}


def _remove_interrupted_corpus(root):
    """Removes what an interrupted write of the corpus left in ``root`` (the quickstart's own entries only)."""
    foreign = sorted(p.name for p in root.iterdir() if p.name not in CORPUS_ENTRIES)
    if foreign:
        raise QuickstartError(
            f"{root} holds files the quickstart did not write ({', '.join(foreign)}): move them away "
            "or choose another --output."
        )
    for name in CORPUS_ENTRIES[:-1]:
        path = root / name
        if path.is_dir():
            print(f"Removing the interrupted corpus write {path}")
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def busy_cores(interval=0.5, cpus=None):
    """How many of ``cpus`` (default: this process's CPUs) other work keeps busy,
    measured from ``/proc/stat`` over ``interval`` seconds while this process sleeps.

    Returns ``None`` where ``/proc/stat`` cannot be read (not Linux).

    Example
    -------
    >>> busy = busy_cores(0.05)
    >>> busy is None or 0.0 <= busy <= len(os.sched_getaffinity(0))
    True
    """
    cpus = set(os.sched_getaffinity(0) if cpus is None else cpus)

    def times():
        busy = total = 0
        with open("/proc/stat", encoding="ascii") as handle:
            for line in handle:
                name, *fields = line.split()
                if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
                    continue
                values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
                total += sum(values)
                busy += sum(values) - values[3] - values[4]
        return busy, total

    try:
        busy0, total0 = times()
        time.sleep(interval)
        busy1, total1 = times()
    except (OSError, ValueError):
        return None
    if total1 <= total0:
        return None
    return len(cpus) * (busy1 - busy0) / (total1 - total0)


def cpu_threads(cores=None, busy=None):
    """Torch CPU threads for training: the cores not busy with other work (at least one).

    OpenMP threads that share a core with another busy process wait for each
    other at every operation; on a shared machine one thread per free core is
    several times faster than one per core. The busy cores are measured now
    (:func:`busy_cores`), not read from the load average, which still counts
    the corpus this process has just written. ``OMP_NUM_THREADS`` wins when
    set (and neither argument is given).

    Example
    -------
    >>> cpu_threads(cores=2, busy=0.1), cpu_threads(cores=2, busy=1.2), cpu_threads(cores=2, busy=5.0)
    (2, 1, 1)
    """
    if cores is None and busy is None and os.environ.get("OMP_NUM_THREADS"):
        return int(os.environ["OMP_NUM_THREADS"])
    cores = cores or len(os.sched_getaffinity(0))
    if busy is None:
        busy = busy_cores()
        busy = os.getloadavg()[0] if busy is None else busy
    return max(1, min(cores, cores - int(round(busy))))


def default_device():
    """``cuda:0`` when a GPU is available, else ``cpu``."""
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def train_and_test(output, corpus, minutes=None, debug=False, device=None, seed=1234):
    """Runs the WSJ0Mix recipe on the corpus; returns the Brain (best checkpoint loaded).

    On the CPU it trains the small SPGM-AP of ``MODEL``; on a GPU the paper's
    SPGM-AP-S in the fast regime (``GPU_TRAINING``). ``minutes`` defaults to
    ``DEFAULT_MINUTES`` of the device."""
    device = device or default_device()
    gpu = device.startswith("cuda") and not debug
    minutes = DEFAULT_MINUTES["cuda" if gpu else "cpu"] if minutes is None else minutes
    if gpu:  # the recipe's own file of the architecture (an --arch override merges sizes into one file)
        hparams_name, arch = GPU_ARCHITECTURE, []
        training = dict(GPU_TRAINING, num_workers=max(1, min(8, (os.cpu_count() or 2) - 1)))
        print(f"Training {GPU_ARCHITECTURE} on {device} in the fast regime for {minutes:g} min")
    else:
        model = dict(MODEL, **(DEBUG_MODEL if debug else {}))
        hparams_name = "spgm"  # SPGM-AP, resized
        arch = ["--arch", f"!include:{architecture_path('spgm-ap')} {_yaml_mapping({'num_spks': 2, **model})}"]
        # --debug: at most two epochs of two steps on short crops (SpeechBrain's own --debug would
        # send the checkpoints to a temporary folder, and the model folder is staged from them)
        training = dict(TRAINING, **({"training_signal_len": 2000, "N_epochs": 2, "batch_size": 2} if debug else {}))
    if device == "cpu":
        torch.set_num_threads(cpu_threads())
        print(f"Training on the CPU with {torch.get_num_threads()} thread(s)")
    # the run's folder is tied to what defines it (not the time budget: a larger --minutes continues it)
    run_options = {
        "hparams": hparams_name,
        "arch": None if gpu else {"architecture": "spgm-ap", "num_spks": 2, **model},  # not the package's path
        "training": {k: v for k, v in training.items() if k != "num_workers"},
        "seed": seed,
        "corpus": corpus.get("options", {"data_folder": str(corpus["data_folder"])}),
    }
    model_tag = GPU_ARCHITECTURE + "-fast" if gpu else ("spgm-ap-tiny" if debug else "spgm-ap-small")
    corpus_name = Path(corpus.get("root", Path(corpus["data_folder"]).parent)).name
    run_dir = options_folder(Path(output) / "run" / model_tag, corpus_name, run_options, "run")
    argv = [
        str(recipe_hparams_path("WSJ0Mix/separation", hparams_name)),
        "--data_folder",
        str(corpus["data_folder"]),
        "--output_folder",
        str(run_dir),
        "--dynamic_mixing",
        "True",
        "--base_folder_dm",
        str(corpus["base_folder_dm"]),
        *arch,
        "--seed",
        str(seed),
        "--device",
        device,
    ]
    for key, value in training.items():
        argv += [f"--{key}", str(value)]
    # the time budget: stop at the last epoch boundary that fits in ``minutes``
    budget = f"!new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [{training['N_epochs']}, {float(minutes)}]"
    argv += ["--epoch_counter", budget]
    start = time.time()
    brain = run_recipe(argv, wsj0mix.prepare_data, wsj0mix.build_datasets)
    brain.quickstart_seconds = time.time() - start
    brain.quickstart_run = run_dir
    return brain


def results_table(utterances):
    """Text table of the test metrics (mean, median, 10th-90th percentiles).

    Example
    -------
    >>> print(results_table([{"si-snr": 9.0, "si-snr_i": 9.5, "sdr": 9.2, "sdr_i": 9.7}]))  # doctest: +ELLIPSIS
    metric     mean  median    p10    p90
    SI-SNRi    9.50    9.50   9.50   9.50
    ...
    """
    lines = [f"{'metric':<8}{'mean':>7}{'median':>8}{'p10':>7}{'p90':>7}"]
    for label, key in (("SI-SNRi", "si-snr_i"), ("SDRi", "sdr_i"), ("SI-SNR", "si-snr"), ("SDR", "sdr")):
        values = np.array([u[key] for u in utterances])
        p10, p90 = np.percentile(values, [10, 90])
        lines.append(f"{label:<8}{values.mean():>7.2f}{np.median(values):>8.2f}{p10:>7.2f}{p90:>7.2f}")
    return "\n".join(lines)


def median_utterance(utterances):
    """Id of the test mixture with the median SI-SNRi (a typical one, neither the best nor the worst).

    Example
    -------
    >>> median_utterance([{"snt_id": "a", "si-snr_i": 1.0}, {"snt_id": "b", "si-snr_i": 9.0},
    ...     {"snt_id": "c", "si-snr_i": 5.0}])
    'c'
    """
    ordered = sorted(utterances, key=lambda u: u["si-snr_i"])
    return ordered[len(ordered) // 2]["snt_id"]


def separate_example(brain, corpus, output, snt_id=None):
    """Separates one test mixture (``snt_id``, default the first); writes wavs and the PNG;
    returns the PNG path and SI-SNRs."""
    from .plotting import plot_separation

    tt = Path(corpus["data_folder"]) / "wav8k" / "min" / "tt"
    mix_path = tt / "mix" / f"{snt_id}.wav" if snt_id else sorted((tt / "mix").glob("*.wav"))[0]
    if not mix_path.is_file():
        raise FileNotFoundError(f"test mixture {mix_path} does not exist")
    mix, rate = read_audio(mix_path)
    mix = mix.numpy()
    refs = [read_audio(tt / s / mix_path.name)[0].numpy() for s in ("s1", "s2")]
    brain.modules.eval()
    with torch.no_grad():
        est = brain.separate(torch.from_numpy(mix)[None].to(brain.device))[0].cpu().numpy().T
    references = torch.from_numpy(np.stack(refs, axis=1))
    scores, order = si_snr_per_source(torch.from_numpy(est.T), references)  # the permutation with the best mean
    est = est[list(order)]
    folder = Path(output) / "example"
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / "mixture.wav", mix, rate)
    for i in range(2):
        peak = max(np.abs(est[i]).max(), 1e-8)
        sf.write(folder / f"estimate{i + 1}.wav", est[i] / peak * 0.9, rate)
        sf.write(folder / f"reference{i + 1}.wav", refs[i], rate)
    mix_scores, _ = si_snr_per_source(torch.from_numpy(mix)[:, None].expand_as(references), references)
    gain = np.mean(scores) - np.mean(mix_scores)
    png = plot_separation(
        folder / "separation.png",
        mix,
        list(est),
        refs,
        sample_rate=rate,
        si_snr=scores,
        title=f"{mix_path.stem}  (SI-SNRi {gain:+.1f} dB)",
    )
    return png, scores, gain


def write_listening_example(brain, corpus, output, utterances):
    """Writes ``<output>/listen/index.html``: the best, median and worst test mixtures by the
    SI-SNRi of ``test_results.csv`` (``utterances``), separated again by the trained model,
    with their references; prints and returns the page's path."""
    from .listen import best_median_worst, model_description, write_listening_page

    tt = Path(corpus["data_folder"]) / "wav8k" / "min" / "tt"
    sources = [f"s{k + 1}" for k in range(brain.hparams.num_spks)]
    brain.modules.eval()
    examples = []
    for snt_id, label in best_median_worst(utterances):
        mix, rate = read_audio(tt / "mix" / f"{snt_id}.wav")
        refs = [read_audio(tt / s / f"{snt_id}.wav")[0].numpy() for s in sources]
        with torch.no_grad(), brain.evaluation_ctx:
            est = brain.separate(mix[None].to(brain.device))[0].float().cpu().numpy().T
        examples.append(
            {"id": snt_id, "label": label, "rate": rate, "mixture": mix.numpy(), "estimates": est, "references": refs}
        )
    architecture = getattr(brain.hparams, "architecture", None)
    model = model_description(f"spgm-quickstart ({Path(output).name})", brain.modules, architecture=architecture)
    title = "spgm-lobes quickstart: best, median and worst test mixtures"
    page = write_listening_page(Path(output) / "listen", examples, model=model, results=utterances, title=title)
    print(f"Listening page (best, median and worst test mixtures by SI-SNRi): {page}")
    return page


def check_model_folder(output):
    """``<output>/model``; raises :class:`QuickstartError` naming the files in it that spgm-publish does not write."""
    from .publish import stage_foreign_files

    stage_dir = Path(output) / "model"
    foreign = stage_foreign_files(stage_dir)
    if foreign:
        raise QuickstartError(
            f"{stage_dir} holds files the quickstart did not write ({', '.join(foreign)}): move them away "
            "or choose another --output."
        )
    return stage_dir


def stage_model(output, run_dir, dataset="custom"):
    """Stages ``<output>/model`` from ``run_dir`` with ``spgm-publish --dry-run`` (which checks that
    ``SepformerSeparation.from_hparams`` loads it and separates like the checkpoint); ``dataset`` is
    the model card's dataset id. It replaces only what spgm-publish writes there and refuses a folder
    holding other files."""
    from .publish import publish

    stage_dir = check_model_folder(output)
    publish(run_dir, "local/spgm-quickstart", dry_run=True, stage_dir=stage_dir, dataset=dataset)
    return stage_dir


def parse_args(argv=None):
    """Command-line options of the quickstart."""
    parser = argparse.ArgumentParser(
        prog="spgm-quickstart",
        description="Generate a demo corpus, train a small SPGM with the WSJ0Mix recipe, evaluate, separate, stage.",
    )
    parser.add_argument("--output", default="quickstart", help="output folder (default: ./quickstart)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help=f"training time budget in minutes (default {DEFAULT_MINUTES['cpu']:g} on a CPU, "
        f"{DEFAULT_MINUTES['cuda']:g} on a GPU)",
    )
    parser.add_argument("--librispeech", default=None, help="LibriSpeech-layout folder: use real speech instead")
    parser.add_argument("--debug", action="store_true", help="seconds-long pass with a tiny model (for tests)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda:0 when available, else cpu)")
    parser.add_argument("--seed", type=int, default=0, help="corpus seed")
    return parser.parse_args(argv)


def main(argv=None):
    """Runs the quickstart; returns a dict of what it measured and wrote."""
    args = parse_args(argv)
    output = Path(args.output).resolve()
    start = time.time()
    check_model_folder(output)  # before training, not after
    earlier = [f for f in (output / "corpus" / "2speakers", output / "run" / "hyperparams.yaml") if f.exists()]
    if earlier:  # folders of the single-folder layout: not reused, not touched
        print(f"Left as they are (an earlier quickstart's layout, not reused): {', '.join(map(str, earlier))}")
    corpus = make_corpus(output, args.librispeech, args.debug, args.seed)
    brain = train_and_test(output, corpus, args.minutes, args.debug, args.device)
    run_dir = brain.quickstart_run
    utterances = read_results_csv(run_dir / RESULTS_FILE).rows
    if not utterances:
        raise ValueError(f"{run_dir / RESULTS_FILE} holds no test utterance")
    png, scores, gain = separate_example(brain, corpus, output, median_utterance(utterances))
    write_listening_example(brain, corpus, output, utterances)
    stage_dir = stage_model(output, run_dir, corpus["dataset"])
    elapsed = time.time() - start
    print()
    print(f"Test set: {len(utterances)} mixtures of unseen speakers  ({run_dir / RESULTS_FILE})")
    print(results_table(utterances))
    print(f"Example separation (the median test mixture): {png}")
    print(f"  SI-SNR {scores[0]:.1f} / {scores[1]:.1f} dB, SI-SNRi {gain:+.1f} dB")
    print(f"Model folder: {stage_dir}  (SepformerSeparation.from_hparams(source='{stage_dir}'))")
    print(f"Total time {elapsed / 60:.1f} min on {brain.device}")
    return {
        "si_snr_i": defined_mean(u["si-snr_i"] for u in utterances),
        "sdr_i": defined_mean(u["sdr_i"] for u in utterances),
        "png": png,
        "model": stage_dir,
        "corpus": corpus["root"],
        "run": run_dir,
        "seconds": elapsed,
    }


def console_main(argv=None):
    """Entry point of ``spgm-quickstart``: runs :func:`main`; exit status 0, or 1 with the message when it
    refuses (``main`` returns its measurements)."""
    from .publish import PublishError

    try:
        main(argv)
    except (QuickstartError, PublishError) as e:
        print(f"spgm-quickstart: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(console_main(sys.argv[1:]))
