"""Listening pages: hear and see separations in a browser, offline.

:func:`write_listening_page` writes a static folder that opens from disk
(``file://``), from a web server or from a model repository:

- ``index.html``: the model (name, architecture, parameter count), the date, a
  summary table of the metrics, then one section per mixture: an audio player and
  a spectrogram for the mixture, each estimate and each reference, all
  spectrograms of a section on one colour scale. Inline CSS only: no script, no
  font, no external resource;
- ``audio/*.wav``: 16-bit PCM;
- ``img/*.jpg``: spectrograms (:func:`spgm_lobes.plotting.spectrogram_images`).

With references, every estimate is matched with its reference and scored
(:func:`spgm_lobes.metrics.per_source_metrics`). The summary table shows, per
mixture, the metrics given in ``results`` (the rows of ``test_results.csv``) or
else the means of the per-source ones. The folder stays under ``max_megabytes``:
when the audio would not fit, every signal is cut to one excerpt length (from
its start) and the page says so; the metrics are always those of the whole
signals.

:func:`browse_page` opens a page in headless Chromium (Playwright for Python)
and reports what the browser sees; from the command line::

    python -m spgm_lobes.listen quickstart/listen/index.html --screenshot page.png
"""

import argparse
import datetime
import html
import math
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from .metrics import defined_mean, per_source_metrics
from .plotting import spectrogram_images
from .workers import available_cpus, process_map

GENERATOR = "spgm-lobes listening page"
PAGE_FILES = ("index.html", "audio", "img")
SUMMARY_COLUMNS = (("si-snr_i", "SI-SNRi"), ("sdr_i", "SDRi"), ("si-snr", "SI-SNR"), ("sdr", "SDR"))
SOURCE_COLUMNS = (("si-snr", "SI-SNR"), ("si-snr_i", "SI-SNRi"), ("sdr_i", "SDRi"))
WAV_HEADER_BYTES = 44
IMAGE_BYTES = 16_000  # allowance per spectrogram (JPEG, 129 x at most 320 pixels: 8-14 kB measured on speech)
HTML_BYTES_PER_SIGNAL = 700
MIN_EXCERPT_SECONDS = 0.5
DYNAMIC_RANGE_DB = 70.0
WORKERS_FROM = 16  # examples from which scoring runs in a process per core (starting them costs a few seconds)
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserUnavailable(RuntimeError):
    """No browser to open a page with: Playwright for Python or Chromium is missing."""


def best_median_worst(rows, key="si-snr_i"):
    """Ids of the best, median and worst rows by ``key``, each with its label (a row that is two of
    them is listed once with both labels); the median is ``sorted(rows)[len // 2]``.

    Example
    -------
    >>> rows = [{"snt_id": "a", "si-snr_i": 1.0}, {"snt_id": "b", "si-snr_i": 9.0}, {"snt_id": "c", "si-snr_i": 5.0}]
    >>> best_median_worst(rows)
    [('b', 'best SI-SNRi'), ('c', 'median SI-SNRi'), ('a', 'worst SI-SNRi')]
    >>> best_median_worst(rows[:2])
    [('b', 'best and median SI-SNRi'), ('a', 'worst SI-SNRi')]
    """
    if not rows:
        raise ValueError("no rows to choose examples from")
    ordered = sorted(rows, key=lambda r: float(r[key]))
    name = dict(SUMMARY_COLUMNS).get(key, key)
    picks = {}
    for label, row in (("best", ordered[-1]), ("median", ordered[len(ordered) // 2]), ("worst", ordered[0])):
        picks.setdefault(row["snt_id"], []).append(label)
    return [(snt_id, f"{' and '.join(labels)} {name}") for snt_id, labels in picks.items()]


def model_description(name, modules=None, architecture=None, parameters=None):
    """What a page says about the model: ``name``, ``architecture`` and ``parameters``.

    Arguments
    ---------
    name : str
        Model name (folder, Hub repo id, run name).
    modules : mapping, optional
        ``encoder``, ``masknet``, ``decoder``: the parameters are counted and the mask
        network's structure is described (:func:`spgm_lobes.profile.describe_modules`).
    architecture : str, optional
        Architecture name (e.g. ``spgm-ap``), shown before the structure.
    parameters : int, optional
        Parameter count, when ``modules`` are not given.

    Example
    -------
    >>> model_description("me/spgm", architecture="spgm-ap", parameters=26_209_000)
    {'name': 'me/spgm', 'architecture': 'spgm-ap', 'parameters': 26209000}
    """
    from .profile import count_parameters, describe_modules

    if modules is not None:
        structure = describe_modules(modules)
        architecture = f"{architecture} ({structure})" if architecture else structure
        parameters = sum(count_parameters(m) for m in modules.values())
    return {"name": str(name), "architecture": architecture, "parameters": parameters}


def excerpt_seconds(lengths, budget_bytes):
    """Longest excerpt (in seconds, a multiple of 0.1) to which every signal is cut so that their
    16-bit mono wav files fit in ``budget_bytes``; ``None`` when they fit whole.

    Arguments
    ---------
    lengths : sequence of (int, int)
        ``(samples, sample_rate)`` of each signal.
    budget_bytes : float

    Example
    -------
    >>> excerpt_seconds([(8000, 8000), (80000, 8000)], 10**6) is None
    True
    >>> excerpt_seconds([(8000, 8000), (80000, 8000)], 2 * 44 + 2 * 8000 * (1 + 3))  # 1 s whole, 3 s of 10 s
    3.0
    """

    def size(seconds):
        return sum(WAV_HEADER_BYTES + 2 * min(n, int(seconds * rate)) for n, rate in lengths)

    longest = max(n / rate for n, rate in lengths)
    if size(longest) <= budget_bytes:
        return None
    low, high = 0.0, longest
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if size(middle) <= budget_bytes else (low, middle)
    seconds = math.floor(low * 10 + 1e-6) / 10
    return seconds if size(seconds) <= budget_bytes else seconds - 0.1


def _slug(text):
    """A file-name-safe version of ``text`` (at most 60 characters)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in str(text))
    return safe.strip("._")[:60] or "x"


def _mono(signal, what):
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"{what}: expected a 1-D signal, got shape {signal.shape}")
    if not np.isfinite(signal).all():
        raise ValueError(f"{what}: holds NaN or infinite samples")
    return signal


def _or_empty(signals):
    return [] if signals is None else signals


def _checked(example, index):
    """One example with numpy signals, after checking its keys, shapes and lengths."""
    for key in ("id", "mixture", "estimates", "rate"):
        if key not in example:
            raise ValueError(f"example {index} has no {key!r}")
    name = f"example {example['id']!r}"
    mixture = _mono(example["mixture"], f"{name} mixture")
    estimates = [_mono(e, f"{name} estimate {k + 1}") for k, e in enumerate(example["estimates"])]
    references = [_mono(r, f"{name} reference {k + 1}") for k, r in enumerate(_or_empty(example.get("references")))]
    if references and len(references) != len(estimates):
        raise ValueError(f"{name}: {len(estimates)} estimates but {len(references)} references")
    for label, signal in [("estimate", e) for e in estimates] + [("reference", r) for r in references]:
        if len(signal) != len(mixture):
            raise ValueError(f"{name}: a {label} has {len(signal)} samples, the mixture {len(mixture)}")
    return dict(example, mixture=mixture, estimates=estimates, references=references)


def _scored(example):
    """The example with per-source metrics (when it has references), each estimate matched with its
    reference, and the estimates at the mixture's peak."""
    estimates, references, per_source = example["estimates"], example["references"], None
    if references:
        per_source = per_source_metrics(
            torch.from_numpy(np.stack(estimates, 1)),
            torch.from_numpy(np.stack(references, 1)),
            torch.from_numpy(example["mixture"]),
        )
        estimates = [estimates[j] for j in per_source["order"]]
    peak = float(np.abs(example["mixture"]).max())
    # estimates at the mixture's peak (their scale is arbitrary; the metrics are scale-invariant)
    estimates = [e * (peak / float(np.abs(e).max())) if np.abs(e).max() > 0 else e for e in estimates]
    return dict(example, estimates=estimates, per_source=per_source)


def _score_all(examples, workers):
    """:func:`_scored` of every example, in ``workers`` processes (0: in this one)."""
    from concurrent.futures.process import BrokenProcessPool

    progress = {"total": len(examples), "desc": "scoring", "unit": "mixture"}
    try:
        with process_map(workers) as mapper:
            return list(tqdm(mapper(_scored, examples), **progress))
    except BrokenProcessPool:
        # spawned processes re-import the __main__ module: a script without an `if __name__ == "__main__":`
        # guard starts a page again in each of them, and they die
        warnings.warn(
            "The scoring processes died (is the calling script's code under `if __name__ == '__main__':`?); "
            "scoring in this process instead.",
            stacklevel=3,
        )
        return [_scored(example) for example in tqdm(examples, **progress)]


def _summary_values(example, results):
    """Metrics of one example for the summary table: its ``results`` row, else the per-source means."""
    if results is not None:
        row = results.get(str(example["id"]))
        if row is None:
            raise ValueError(f"no results row for example {example['id']!r}")
        return {key: float(row[key]) for key, _ in SUMMARY_COLUMNS if row.get(key) not in (None, "")}
    if example["per_source"] is None:
        return {}
    return {key: float(np.mean(example["per_source"][key])) for key, _ in SUMMARY_COLUMNS}


def _metric_cell(key, value, snt_id=None):
    owner = f' data-id="{html.escape(str(snt_id))}"' if snt_id is not None else ""
    return f'<td class="metric" data-key="{key}" data-value="{value!r}"{owner}>{value:.2f}</td>'


def _colour_bar():
    """CSS gradient of the spectrograms' colour map."""
    import matplotlib

    cmap = matplotlib.colormaps["magma"]
    stops = ", ".join(matplotlib.colors.to_hex(cmap(x / 8)) for x in range(9))
    return f"linear-gradient(to right, {stops})"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; color: #1c1c1c; }
h1 { font-size: 1.5rem; margin-bottom: .3rem; }
h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
p { margin: .3rem 0; }
.note { color: #555; font-size: .9rem; }
table.summary { border-collapse: collapse; margin: 1rem 0; font-size: .9rem; }
table.summary th, table.summary td { border-bottom: 1px solid #ddd; padding: .25rem .6rem; text-align: right; }
table.summary th:nth-child(-n+3), table.summary td:nth-child(-n+3) { text-align: left; }
table.summary tr.mean td { font-weight: 600; border-top: 2px solid #999; }
section.example { border-top: 1px solid #ccc; padding: 1rem 0; }
.grid { display: grid; grid-template-columns: repeat(var(--columns), minmax(0, 1fr)); gap: .8rem; }
figure { margin: 0; }
figcaption { font-size: .85rem; margin-bottom: .2rem; }
figcaption .scores { display: block; color: #444; font-variant-numeric: tabular-nums; }
img.spectrogram { display: block; width: 100%; height: 7rem; image-rendering: auto; background: #000; }
audio { display: block; width: 100%; height: 2rem; margin-top: .2rem; }
.legend { display: inline-block; width: 10rem; height: .7rem; vertical-align: middle; margin: 0 .4rem; }
"""


def _figure(caption, image, audio, alt, scores=""):
    return (
        f'<figure><figcaption>{caption}{scores}</figcaption><img class="spectrogram" src="{quote(image)}" '
        f'alt="{html.escape(alt)}"><audio controls preload="metadata" aria-label="{html.escape(caption)}" '
        f'src="{quote(audio)}"></audio></figure>'
    )


def _source_scores(per_source, k):
    if per_source is None:
        return ""
    values = " · ".join(
        f'{label} <span class="metric" data-key="{key}" data-source="{k + 1}" data-value="{per_source[key][k]!r}">'
        f"{per_source[key][k]:.2f}</span> dB"
        for key, label in SOURCE_COLUMNS
    )
    order, sdr_order = per_source["order"], per_source["sdr_order"]
    if sdr_order[k] != order[k]:  # BSS-eval's own permutation: the SDRi is of another pair
        values += f" (SDR pairs reference {k + 1} with estimate {order.index(sdr_order[k]) + 1})"
    return f'<span class="scores">{values}</span>'


def _write_example(root, number, example, excerpt):
    """Writes the wavs and spectrograms of one example; returns its HTML section."""
    stem = f"{number:03d}_{_slug(example['id'])}"
    rate = int(example["rate"])
    signals = [("mixture", "Mixture", example["mixture"])]
    signals += [(f"estimate{k + 1}", f"Estimate {k + 1}", e) for k, e in enumerate(example["estimates"])]
    signals += [(f"reference{k + 1}", f"Reference {k + 1}", r) for k, r in enumerate(example["references"])]
    cut = len(example["mixture"]) if excerpt is None else min(len(example["mixture"]), int(excerpt * rate))
    # one gain for the whole row when a signal would clip: the loudness relations stay as they are
    peak = max(float(np.abs(signal[:cut]).max(initial=0.0)) for _, _, signal in signals)
    gain = min(1.0, 0.99 / peak) if peak > 0 else 1.0  # an all-silent excerpt is written as it is
    files = {}
    for key, _, signal in signals:
        files[key] = (f"audio/{stem}_{key}.wav", f"img/{stem}_{key}.jpg")
        sf.write(root / files[key][0], gain * signal[:cut], rate, subtype="PCM_16")
    spectrogram_images(
        [root / files[key][1] for key, _, _ in signals],
        [signal[:cut] for _, _, signal in signals],
        sample_rate=rate,
        dynamic_range=DYNAMIC_RANGE_DB,
    )

    def figure(key, caption, k=None):
        scores = _source_scores(example["per_source"], k) if k is not None else ""
        return _figure(caption, files[key][1], files[key][0], f"spectrogram of the {caption.lower()}", scores)

    count = len(example["estimates"])
    cells = [figure("mixture", "Mixture")]
    cells += [figure(f"estimate{k + 1}", f"Estimate {k + 1}", k) for k in range(count)]
    if example["references"]:
        cells.append("<div></div>")
        cells += [figure(f"reference{k + 1}", f"Reference {k + 1}") for k in range(count)]
    label = f" · {html.escape(example['label'])}" if example.get("label") else ""
    seconds = len(example["mixture"]) / rate
    shown = "" if cut == len(example["mixture"]) else f", first {cut / rate:.1f} s shown"
    return (
        f'<section class="example" id="ex{number:03d}" data-id="{html.escape(str(example["id"]))}">'
        f"<h2>{number}. {html.escape(str(example['id']))}{label} "
        f'<span class="note">({seconds:.1f} s at {rate} Hz{shown})</span></h2>'
        f'<div class="grid" style="--columns: {count + 1}">{"".join(cells)}</div></section>'
    )


def _summary_table(examples, values):
    keys = [key for key, _ in SUMMARY_COLUMNS if any(key in v for v in values)]
    header = "".join(f"<th>{label} (dB)</th>" for key, label in SUMMARY_COLUMNS if key in keys)
    lines = [f"<tr><th>#</th><th>mixture</th><th>example</th>{header}</tr>"]
    for number, (example, row) in enumerate(zip(examples, values), 1):
        cells = "".join(_metric_cell(key, row[key], example["id"]) if key in row else "<td></td>" for key in keys)
        snt_id = html.escape(str(example["id"]))
        label = html.escape(example.get("label") or "")
        lines.append(f'<tr data-id="{snt_id}"><td>{number}</td><td><a href="#ex{number:03d}">{snt_id}</a></td>'
                     f"<td>{label}</td>{cells}</tr>")  # fmt: skip
    if keys and len(examples) > 1:
        means = "".join(f"<td>{defined_mean([v[key] for v in values if key in v]):.2f}</td>" for key in keys)
        lines.append(f'<tr class="mean"><td></td><td>mean of the {len(examples)} rows</td><td></td>{means}</tr>')
    return f'<table class="summary">{"".join(lines)}</table>'


def check_page_folder(folder, outputs=()):
    """Checks that ``folder`` is new, empty or an earlier listening page (which is replaced); raises
    ``FileExistsError`` naming the files it holds otherwise, or when it is, or holds, one of the folders
    ``outputs`` that the job writes other files into. Long jobs call it before their work, so that a
    page that could not be written is known at the start.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "notes.txt").write_text("mine")
    >>> check_page_folder(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileExistsError: ... holds files a listening page does not write (notes.txt); choose another folder
    """
    folder = Path(folder)
    for output in map(Path, outputs):
        if folder.resolve() == output.resolve() or folder.resolve() in output.resolve().parents:
            raise FileExistsError(f"{folder} would hold {output}, where other files are written; choose another")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder")
    foreign = sorted(p.name for p in folder.iterdir() if p.name not in PAGE_FILES)
    index = folder / "index.html"
    if not foreign and index.is_file() and GENERATOR not in index.read_text(encoding="utf-8", errors="replace"):
        foreign = ["index.html"]
    if foreign:
        raise FileExistsError(
            f"{folder} holds files a listening page does not write ({', '.join(foreign)}); choose another folder"
        )


def write_listening_page(
    folder,
    examples,
    model=None,
    results=None,
    title="Listening page",
    max_seconds=None,
    max_megabytes=40.0,
    date=None,
    workers=None,
):
    """Writes a listening page (``index.html``, ``audio/``, ``img/``) to ``folder``.

    An earlier page in ``folder`` is replaced once the new one is complete; a folder
    holding anything else is refused.

    Arguments
    ---------
    folder : str or Path
        Output folder (created).
    examples : sequence of dict
        One per mixture: ``id``, ``rate`` (Hz), ``mixture`` (1-D), ``estimates`` (sequence of
        1-D, or ``[C, T]``), optionally ``references`` (in the order of the sources) and
        ``label`` (e.g. ``"best SI-SNRi"``). Every signal of an example has the mixture's length.
    model : dict, optional
        ``name``, ``architecture``, ``parameters`` (:func:`model_description`).
    results : mapping or sequence of dict, optional
        Utterance metrics by id (or rows with ``snt_id``), e.g. the rows of
        ``test_results.csv``: shown in the summary table instead of the per-source means.
    title : str
        Page title.
    max_seconds : float, optional
        Longest audio excerpt per signal (default: whole signals, within ``max_megabytes``).
    max_megabytes : float
        Size budget of the folder; the audio is cut to one excerpt length to fit it.
    date : str, optional
        The date shown (default: now).
    workers : int, optional
        Processes that score the examples (:func:`spgm_lobes.workers.process_map`, one torch
        thread each); default one per CPU core from ``WORKERS_FROM`` examples on, else none.

    Returns
    -------
    Path
        ``folder/index.html``.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> refs = rng.standard_normal((2, 4000)).astype("float32") * 0.1
    >>> example = {"id": "mix-1", "rate": 8000, "mixture": refs.sum(0), "estimates": refs[::-1], "references": refs}
    >>> page = write_listening_page(getfixture("tmp_path") / "page", [example], model={"name": "demo"})
    >>> sorted(p.name for p in (page.parent / "audio").iterdir())[:2]
    ['001_mix-1_estimate1.wav', '001_mix-1_estimate2.wav']
    >>> text = page.read_text()
    >>> text.count("<audio"), text.count("<img"), "demo" in text, "http" in text
    (5, 5, True, False)
    """
    folder = Path(folder)
    check_page_folder(folder)
    if results is not None and not isinstance(results, Mapping):
        results = {str(row["snt_id"]): row for row in results}
    checked = [_checked(example, index) for index, example in enumerate(examples)]
    if not checked:
        raise ValueError("no example to write a listening page of")

    counts = [1 + len(e["estimates"]) + len(e["references"]) for e in checked]
    lengths = [(len(e["mixture"]), int(e["rate"])) for e, n in zip(checked, counts) for _ in range(n)]
    budget = max_megabytes * 1e6 - len(lengths) * (IMAGE_BYTES + HTML_BYTES_PER_SIGNAL)
    excerpt = excerpt_seconds(lengths, budget)
    if excerpt is not None and excerpt < MIN_EXCERPT_SECONDS:
        raise ValueError(
            f"{len(lengths)} signals do not fit in {max_megabytes:g} MB even as {MIN_EXCERPT_SECONDS}-s excerpts: "
            "write fewer examples or raise max_megabytes"
        )
    if max_seconds is not None:
        excerpt = max_seconds if excerpt is None else min(excerpt, max_seconds)

    if workers is None:
        workers = available_cpus() if len(checked) >= WORKERS_FROM else 0
    prepared = _score_all(checked, workers)
    values = [_summary_values(example, results) for example in prepared]

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        (staging / "audio").mkdir()
        (staging / "img").mkdir()
        sections = [
            _write_example(staging, number, example, excerpt)
            for number, example in enumerate(tqdm(prepared, desc="writing the page", unit="mixture"), 1)
        ]
        model = model or {}
        about = [f"Model <b>{html.escape(model.get('name') or 'unnamed')}</b>"]
        if model.get("architecture"):
            about.append(html.escape(str(model["architecture"])))
        if model.get("parameters"):
            about.append(f"{int(model['parameters']):,} parameters")
        date = date or datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
        cut_note = ""
        if excerpt is not None and any(n > excerpt * rate for n, rate in lengths):
            cut_note = (
                '<p class="note">'
                f"Audio and spectrograms: the first {excerpt:.1f} s of each signal "
                f"(the page is kept under {max_megabytes:g} MB); the metrics are those of the whole signals.</p>"
            )
        metrics_note = ""
        if any(e["per_source"] is not None for e in prepared):
            origin = "the test results" if results is not None else "the means over the sources"
            metrics_note = (
                '<p class="note">'
                "Each estimate is shown above the reference it is matched with; its SI-SNR, SI-SNRi "
                f"and SDRi are given per source. Summary table: {origin}.</p>"
            )
        page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>{" · ".join(about)}</p>
<p class="note">Page written {html.escape(date)}. {len(prepared)} mixture{"s" if len(prepared) > 1 else ""}.
Spectrograms: time from left to right, frequency from 0 Hz (bottom) to half the sample rate (top); colour
<span class="legend" style="background: {_colour_bar()}"></span> from {DYNAMIC_RANGE_DB:.0f} dB below to the
loudest bin of each mixture's row (one scale per row).</p>
{cut_note}{metrics_note}
{_summary_table(prepared, values)}
{"".join(sections)}
</body>
</html>
"""
        (staging / "index.html").write_text(page, encoding="utf-8")
        folder.mkdir(exist_ok=True)
        for name in PAGE_FILES:
            target = folder / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder / "index.html"


class _MetricsReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.summary, self.sources, self.section = {}, {}, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.section = attrs.get("data-id")
        elif "metric" in (attrs.get("class") or "").split() and "data-value" in attrs:
            value = float(attrs["data-value"])
            if tag == "td":
                self.summary.setdefault(attrs["data-id"], {})[attrs["data-key"]] = value
            else:
                self.sources.setdefault(self.section, {}).setdefault(attrs["data-key"], []).append(value)


def page_metrics(index):
    """The metrics a listening page shows, at full precision: ``summary`` (``{id: {key: value}}``,
    the summary table) and ``sources`` (``{id: {key: [value per source]}}``).

    Example
    -------
    >>> refs = np.random.default_rng(0).standard_normal((2, 2000)).astype("float32")
    >>> example = {"id": "m", "rate": 8000, "mixture": refs.sum(0), "estimates": refs, "references": refs}
    >>> page = write_listening_page(getfixture("tmp_path") / "p", [example])
    >>> metrics = page_metrics(page)
    >>> sorted(metrics["summary"]["m"]), len(metrics["sources"]["m"]["si-snr_i"])
    (['sdr', 'sdr_i', 'si-snr', 'si-snr_i'], 2)
    """
    reader = _MetricsReader()
    reader.feed(Path(index).read_text(encoding="utf-8"))
    return {"summary": reader.summary, "sources": reader.sources}


def saved_examples(folder, snt_ids, num_spks):
    """Examples for :func:`write_listening_page` from the wavs :meth:`SeparationBrain.save_audio
    <spgm_lobes.separation.SeparationBrain.save_audio>` wrote (``save_audio: True``).

    Arguments
    ---------
    folder : str or Path
        The run's ``audio_results`` folder.
    snt_ids : sequence of str
        Utterances to read (each with its files in ``folder``).
    num_spks : int
        Number of sources.
    """
    from .dsp.audio import read_audio
    from .separation import saved_audio_paths

    examples = []
    for snt_id in snt_ids:
        paths = saved_audio_paths(str(folder), snt_id, num_spks)
        mixture, rate = read_audio(paths["mixture"])
        estimates = [read_audio(p)[0].numpy() for p in paths["estimates"]]
        references = [read_audio(p)[0].numpy() for p in paths["references"]]
        examples.append(
            {
                "id": snt_id,
                "rate": rate,
                "mixture": mixture.numpy(),
                "estimates": estimates,
                "references": references,
            }
        )
    return examples


def find_chromium():
    """Path of a Chromium executable (``SPGM_CHROMIUM``, then ``chromium`` or ``chromium-browser`` on the PATH)."""
    candidates = [os.environ.get("SPGM_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def browser_unavailable_reason():
    """Why :func:`browse_page` cannot run here (``None`` when Playwright and Chromium are installed)."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed (pip install playwright)"
    if find_chromium() is None:
        return "no Chromium found (apt-get install chromium, or set SPGM_CHROMIUM to its path)"
    return None


_INSPECT = """() => ({
  audio: [...document.querySelectorAll('audio')].map(a => ({src: a.getAttribute('src'), ready_state: a.readyState,
      duration: a.duration, error: a.error ? a.error.code : null})),
  images: [...document.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), complete: i.complete,
      natural_width: i.naturalWidth, natural_height: i.naturalHeight})),
  metrics: [...document.querySelectorAll('table.summary td.metric')].map(td => ({id: td.dataset.id,
      key: td.dataset.key, value: parseFloat(td.dataset.value), text: td.textContent})),
  title: document.title,
})"""


_PLAY = """async (timeoutMs) => Promise.all([...document.querySelectorAll('audio')].map(async a => {
  const result = {src: a.getAttribute('src'), ended: false, error: null};
  a.muted = true;
  const ended = new Promise(resolve => a.addEventListener('ended', resolve, {once: true}));
  try { await a.play(); } catch (e) { result.error = String(e); return result; }
  await Promise.race([ended, new Promise(resolve => setTimeout(resolve, timeoutMs))]);
  return Object.assign(result, {ended: a.ended, current_time: a.currentTime, duration: a.duration});
}))"""


def browse_page(index, screenshot=None, timeout_s=60.0, full_page=True, play=False):
    """Opens ``index`` from ``file://`` in headless Chromium and reports what the browser sees.

    It waits until every ``<audio>`` has its metadata (``readyState >= 1``) or an error, or
    ``timeout_s``; with ``play`` it then plays every player (muted, all at once) to its end.
    Any request that does not go to a local file is blocked and reported.

    Arguments
    ---------
    index : str or Path
        The page.
    screenshot : str or Path, optional
        Where to save a screenshot (PNG).
    timeout_s : float
        Longest wait for the audio metadata.
    full_page : bool
        Screenshot the whole page, not only the first screen.
    play : bool
        Play every player to its end (within ``timeout_s``) and report it under ``played``.

    Returns
    -------
    dict
        ``audio`` (``src``, ``ready_state``, ``duration``, ``error``), ``images`` (``src``,
        ``complete``, ``natural_width``, ``natural_height``), ``metrics`` of the summary table
        (``id``, ``key``, ``value``, ``text``), ``title``, ``errors`` (console errors, page
        errors, failed and blocked requests), ``timed_out`` and, with ``play``, ``played``
        (``src``, ``ended``, ``current_time``, ``duration``, ``error``).

    Raises
    ------
    BrowserUnavailable
        When Playwright for Python or Chromium is not installed.
    """
    reason = browser_unavailable_reason()
    if reason is not None:
        raise BrowserUnavailable(reason)
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    index = Path(index).resolve()
    if not index.is_file():
        raise FileNotFoundError(f"{index}: no such page")
    errors = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith("file://"):
            request_route.continue_()
        else:
            errors.append(f"blocked request to {url}")
            request_route.abort()

    with tempfile.TemporaryDirectory(prefix="spgm-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
            page.on("requestfailed", lambda request: errors.append(f"failed: {request.url} ({request.failure})"))
            page.route("**/*", route)
            page.goto(index.as_uri(), wait_until="load")
            timed_out = False
            try:
                page.wait_for_function(
                    "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)",
                    timeout=timeout_s * 1000,
                )
            except PlaywrightTimeout:
                timed_out = True
            report = page.evaluate(_INSPECT)
            if screenshot is not None:  # as a visitor sees the page, before anything plays
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=full_page)
            if play:
                report["played"] = page.evaluate(_PLAY, timeout_s * 1000)
        finally:
            context.close()
    report["errors"] = errors
    report["timed_out"] = timed_out
    return report


def page_problems(report):
    """What a :func:`browse_page` report shows wrong: audio without metadata, images that did not
    load, errors (an empty list when the page is fine).

    Example
    -------
    >>> page_problems({"audio": [{"src": "a.wav", "ready_state": 0, "error": 4}], "images": [], "errors": []})
    ['audio a.wav: readyState 0 (media error 4)']
    """
    problems = []
    for audio in report["audio"]:
        if audio["ready_state"] < 1:
            error = f" (media error {audio['error']})" if audio.get("error") else ""
            problems.append(f"audio {audio['src']}: readyState {audio['ready_state']}{error}")
    for image in report["images"]:
        if not image["natural_width"]:
            problems.append(f"image {image['src']}: not loaded")
    for audio in report.get("played", []):
        if not audio["ended"]:
            problems.append(f"audio {audio['src']}: did not play to its end ({audio['error'] or 'timed out'})")
    problems += [f"console: {error}" for error in report["errors"]]
    return problems


def main(argv=None):
    """``python -m spgm_lobes.listen PAGE [--screenshot PNG]``: opens a listening page in headless Chromium
    and says what loaded; exit status 0 when every player and image loaded without error."""
    parser = argparse.ArgumentParser(prog="python -m spgm_lobes.listen", description=main.__doc__.split(";")[0])
    parser.add_argument("page", help="index.html of a listening page")
    parser.add_argument("--screenshot", help="PNG to save a screenshot of the whole page to")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the audio metadata")
    parser.add_argument("--play", action="store_true", help="also play every player (muted) to its end")
    args = parser.parse_args(argv)
    if not Path(args.page).is_file():
        parser.error(f"{args.page}: no such file")
    try:
        report = browse_page(args.page, args.screenshot, args.timeout, play=args.play)
    except BrowserUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ready = sum(a["ready_state"] >= 1 for a in report["audio"])
    loaded = sum(bool(i["natural_width"]) for i in report["images"])
    print(f"{report['title']}: {ready}/{len(report['audio'])} audio players ready, {loaded}/{len(report['images'])} "
          f"images loaded, {len(report['metrics'])} metric cells, {len(report['errors'])} errors")  # fmt: skip
    if args.play:
        print(f"{sum(a['ended'] for a in report['played'])}/{len(report['played'])} players played to their end")
    problems = page_problems(report)
    for problem in problems:
        print(f"  {problem}")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
