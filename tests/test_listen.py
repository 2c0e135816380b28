"""Listening pages: files, metrics, size budget, folder rules; the quickstart's page in headless Chromium."""

import contextlib
import math
import os
import re
import shutil
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from spgm_lobes import listen
from spgm_lobes.listen import (
    BrowserUnavailable,
    browse_page,
    browser_unavailable_reason,
    page_metrics,
    page_problems,
    write_listening_page,
)
from spgm_lobes.metrics import per_source_metrics


def example(snt_id, seconds=1.0, rate=8000, seed=0, references=True, swap=True):
    """Two voices, their mixture, and estimates that leak (estimate order swapped when ``swap``)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    refs = [0.3 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 3 * t)) for f in (220.0, 1300.0)]
    refs = [(r + 0.01 * rng.standard_normal(len(t))).astype("float32") for r in refs]
    est = [refs[0] + 0.1 * refs[1], 2.0 * (refs[1] + 0.3 * refs[0])]  # estimate 2 louder: scaled back on the page
    item = {"id": snt_id, "rate": rate, "mixture": refs[0] + refs[1], "estimates": est[::-1] if swap else est}
    if references:
        item["references"] = refs
    return item


def sources(index):
    text = Path(index).read_text()
    return re.findall(r'<audio[^>]* src="([^"]+)"', text), re.findall(r'<img[^>]* src="([^"]+)"', text)


def folder_bytes(folder):
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def test_page_files_matching_and_metrics(tmp_path):
    examples = [example("a/b c", seed=1), example("plain", seconds=0.5, rate=16000, references=False)]
    model = {"name": "me/model", "architecture": "spgm-ap (tiny)", "parameters": 12345}
    index = write_listening_page(tmp_path / "page", examples, model=model, title="Test page", date="2026-12-03")
    text = index.read_text()
    for absent in ("http:", "https:", "<script", "<link", "@import", "url("):
        assert absent not in text
    assert "me/model" in text and "spgm-ap (tiny)" in text and "12,345 parameters" in text and "2026-12-03" in text
    audio, images = sources(index)
    assert len(audio) == len(images) == 5 + 3  # mixture, 2 estimates, 2 references; mixture, 2 estimates
    for src in audio:
        info = sf.info(index.parent / unquote(src))
        assert info.subtype == "PCM_16" and info.channels == 1
        assert info.samplerate == (8000 if src.startswith("audio/001_") else 16000)
    assert all((index.parent / unquote(src)).read_bytes()[:3] == b"\xff\xd8\xff" for src in images)  # JPEG
    assert "audio/001_a_b_c_mixture.wav" in audio

    # estimates were given swapped: the page matches them back, at the mixture's peak
    page = index.parent
    est1, _ = sf.read(page / "audio" / "001_a_b_c_estimate1.wav")
    ref1, _ = sf.read(page / "audio" / "001_a_b_c_reference1.wav")
    mix, _ = sf.read(page / "audio" / "001_a_b_c_mixture.wav")
    assert np.corrcoef(est1, ref1)[0, 1] > 0.9
    est2, _ = sf.read(page / "audio" / "001_a_b_c_estimate2.wav")
    assert abs(np.abs(est2).max() - np.abs(mix).max()) < 1e-3

    metrics = page_metrics(index)
    expected = per_source_metrics(
        torch.from_numpy(np.stack(examples[0]["estimates"], 1)),
        torch.from_numpy(np.stack(examples[0]["references"], 1)),
        torch.from_numpy(examples[0]["mixture"]),
    )
    assert expected["order"] == (1, 0)
    for key in ("si-snr", "si-snr_i", "sdr_i"):
        assert metrics["sources"]["a/b c"][key] == pytest.approx(expected[key], abs=1e-12)
    for key in ("si-snr", "si-snr_i", "sdr", "sdr_i"):  # no results given: the means over the sources
        assert metrics["summary"]["a/b c"][key] == pytest.approx(np.mean(expected[key]), abs=1e-12)
    assert "plain" not in metrics["summary"] and "plain" not in metrics["sources"]


def test_worker_processes_score_like_this_process(tmp_path):
    examples = [example(f"w{k}", seed=k) for k in range(3)]
    here = write_listening_page(tmp_path / "here", examples, date="d")
    pool = write_listening_page(tmp_path / "pool", examples, date="d", workers=2)
    ours, theirs = page_metrics(here), page_metrics(pool)
    for snt_id, values in ours["summary"].items():  # equal up to the threads' summation order
        assert theirs["summary"][snt_id] == pytest.approx(values, abs=1e-6)
    for wav in (here.parent / "audio").iterdir():
        assert wav.read_bytes() == (pool.parent / "audio" / wav.name).read_bytes()


def test_dead_worker_processes_leave_the_scoring_to_this_process(tmp_path, monkeypatch):
    @contextlib.contextmanager
    def dead_pool(workers):
        def mapper(function, items):
            raise BrokenProcessPool("a worker re-ran an unguarded __main__ and died")
            yield

        yield mapper

    monkeypatch.setattr(listen, "process_map", dead_pool)
    with pytest.warns(UserWarning, match="scoring processes died"):
        index = write_listening_page(tmp_path / "p", [example("a")], workers=2)
    assert "a" in page_metrics(index)["summary"]


def test_summary_shows_the_given_results(tmp_path):
    rows = [{"snt_id": "x", "sdr": 1.5, "sdr_i": 2.25, "si-snr": -3.125, "si-snr_i": 0.1 + 0.2}]
    index = write_listening_page(tmp_path / "p", [example("x")], results=rows)
    assert page_metrics(index)["summary"]["x"] == {k: v for k, v in rows[0].items() if k != "snt_id"}
    assert ">0.30</td>" in index.read_text()
    with pytest.raises(ValueError, match="no results row for example 'y'"):
        write_listening_page(tmp_path / "q", [example("y")], results=rows)


def test_bad_examples_are_named(tmp_path):
    short = example("short")
    short["references"] = [short["references"][0][:100], short["references"][1]]
    with pytest.raises(ValueError, match="example 'short': a reference has 100 samples, the mixture 8000"):
        write_listening_page(tmp_path / "p", [short])
    three = example("three")
    three["references"] = three["references"] + [three["references"][0]]
    with pytest.raises(ValueError, match="example 'three': 2 estimates but 3 references"):
        write_listening_page(tmp_path / "p", [three])
    loud = example("loud")
    loud["references"] = [r * np.float32("nan") for r in loud["references"]]
    with pytest.raises(ValueError, match="example 'loud' reference 1: holds NaN or infinite samples"):
        write_listening_page(tmp_path / "p", [loud])
    with pytest.raises(ValueError, match="example 0 has no 'rate'"):
        write_listening_page(tmp_path / "p", [{"id": "r", "mixture": [0.0], "estimates": [[0.0]]}])
    assert not (tmp_path / "p").exists()


def test_loud_rows_are_scaled_as_a_whole(tmp_path):
    loud = example("loud")
    loud["references"] = [4.0 * r for r in loud["references"]]
    loud["mixture"] = 4.0 * loud["mixture"]  # peak about 2.4: would clip
    index = write_listening_page(tmp_path / "p", [loud])
    mix, _ = sf.read(index.parent / "audio" / "001_loud_mixture.wav")
    ref, _ = sf.read(index.parent / "audio" / "001_loud_reference1.wav")
    assert abs(np.abs(mix).max() - 0.99) < 1e-3
    scale = 0.99 / np.abs(loud["mixture"]).max()
    assert np.abs(ref - scale * loud["references"][0]).max() < 1e-3  # the same gain as the mixture


def test_a_silent_row_is_written_as_it_is(tmp_path):
    silent = {"id": "silent", "rate": 8000, "mixture": np.zeros(4000, "float32"), "estimates": [np.zeros(4000)] * 2}
    index = write_listening_page(tmp_path / "p", [silent, example("x", references=False)])
    mix, _ = sf.read(index.parent / "audio" / "001_silent_mixture.wav")
    assert len(mix) == 4000 and not mix.any()


def test_a_silent_reference_has_no_sdr_but_a_page(tmp_path):
    item = example("quiet-ref")
    item["references"][1] = np.zeros_like(item["references"][1])
    index = write_listening_page(tmp_path / "p", [item, example("other")])
    mean_row = re.search(r'<tr class="mean">(.*?)</tr>', index.read_text()).group(1)
    assert "nan" not in mean_row  # the mean of the rows that have an SDR
    per_source = page_metrics(index)["sources"]["quiet-ref"]  # the page's own numbers, read back
    assert math.isnan(per_source["sdr_i"][1]) and math.isfinite(per_source["sdr_i"][0])
    assert all(math.isfinite(v) for v in per_source["si-snr"])


def test_size_budget_cuts_every_signal_to_one_excerpt(tmp_path):
    examples = [example(f"m{k}", seconds=4.0, seed=k) for k in range(3)]  # 15 signals of 4 s: 0.96 MB of audio
    index = write_listening_page(tmp_path / "p", examples, max_megabytes=0.8)
    assert folder_bytes(tmp_path / "p") < 0.8e6
    assert re.search(r"the first (\d\.\d) s of each signal", index.read_text())
    frames = {sf.info(tmp_path / "p" / unquote(src)).frames for src in sources(index)[0]}
    assert len(frames) == 1 and 8000 < frames.pop() < 32000
    index = write_listening_page(tmp_path / "p", examples, max_seconds=1.5)
    assert {sf.info(tmp_path / "p" / unquote(src)).frames for src in sources(index)[0]} == {12000}
    with pytest.raises(ValueError, match="15 signals do not fit in 0.3 MB even as 0.5-s excerpts"):
        write_listening_page(tmp_path / "small", examples, max_megabytes=0.3)


def test_an_earlier_page_is_replaced_and_other_folders_refused(tmp_path):
    page = tmp_path / "page"
    write_listening_page(page, [example("old")])
    write_listening_page(page, [example("new")])
    assert sorted(p.name for p in (page / "audio").iterdir())[0].startswith("001_new_")
    assert not any(p.name.startswith("001_old") for p in (page / "audio").iterdir())
    bad = example("bad")
    bad["estimates"] = bad["estimates"][:1]
    with pytest.raises(ValueError):
        write_listening_page(page, [example("ok"), bad])
    assert "new" in page_metrics(page / "index.html")["summary"]  # the earlier page is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page"]  # no staging folder left behind
    (page / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes.txt\); choose another folder"):
        write_listening_page(page, [example("x")])
    assert (page / "notes.txt").read_text() == "mine"
    other = tmp_path / "site"
    other.mkdir()
    (other / "index.html").write_text("<html>someone's page</html>")
    with pytest.raises(FileExistsError, match="index.html"):
        write_listening_page(other, [example("x")])


def test_page_problems_lists_what_did_not_load():
    report = {
        "audio": [{"src": "a.wav", "ready_state": 1}, {"src": "b.wav", "ready_state": 0, "error": None}],
        "images": [{"src": "a.jpg", "natural_width": 0}],
        "errors": ["Failed to load resource"],
        "played": [{"src": "a.wav", "ended": False, "error": "NotSupportedError"}],
    }
    assert page_problems(report) == ["audio b.wav: readyState 0", "image a.jpg: not loaded",
                                     "audio a.wav: did not play to its end (NotSupportedError)",
                                     "console: Failed to load resource"]  # fmt: skip


@pytest.mark.slow
def test_page_of_150_mixtures_stays_under_40_mb(tmp_path, librispeech_mini):
    """The size budget: 150 test mixtures of real speech (10-16 s each, 8 kHz), as bench/librimix_mini.py
    writes for its test split. (Its build time is a benchmark figure: bench/librimix_mini.py --html prints it.)"""
    rng = np.random.default_rng(0)
    voices = []
    for path in sorted((librispeech_mini / "LibriSpeech").rglob("*.flac")):
        if sf.info(path).duration >= 10.0 and len(voices) < 40:
            audio, rate = sf.read(path, dtype="float32")
            voices.append(torchaudio.functional.resample(torch.from_numpy(audio), rate, 8000).numpy())
    examples = []
    for k in range(150):
        a, b = rng.choice(len(voices), 2, replace=False)
        n = min(len(voices[a]), len(voices[b]))
        refs = [voices[a][:n], voices[b][:n]]
        leak = rng.uniform(0.05, 0.5)
        est = [refs[1] + leak * refs[0], refs[0] + leak * refs[1]]
        examples.append({"id": f"m{k:03d}", "rate": 8000, "mixture": refs[0] + refs[1], "estimates": est,
                         "references": refs})  # fmt: skip
    assert np.mean([len(e["mixture"]) for e in examples]) > 8000 * 9
    start, cpu_start = time.perf_counter(), os.times()
    index = write_listening_page(tmp_path / "page", examples)  # scored in one process per core
    seconds, cpu = time.perf_counter() - start, os.times()
    cpu_seconds = sum(cpu[:4]) - sum(cpu_start[:4])  # this process and its finished workers
    size = folder_bytes(tmp_path / "page")
    print(f"150 mixtures: {size / 1e6:.1f} MB in {seconds:.1f} s ({cpu_seconds:.1f} s of CPU time)")
    assert size < 40e6
    assert len(page_metrics(index)["summary"]) == 150


# ------------------------------------------------------------------------- in a browser
def browser_or_skip():
    reason = browser_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


def keep_screenshot(path):
    """Copies a screenshot to ``SPGM_SCREENSHOT_DIR`` when it is set."""
    folder = os.environ.get("SPGM_SCREENSHOT_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(folder) / path.name)


@pytest.mark.slow
def test_quickstart_page_plays_in_chromium(tmp_path):
    """The quickstart's page, opened from file:// in headless Chromium: every player gets its metadata with the
    duration of its wav and plays to its end, every image loads, the table holds test_results.csv, and the console
    stays clean."""
    browser_or_skip()
    from spgm_lobes.metrics import read_results_csv
    from spgm_lobes.quickstart import main

    output = tmp_path / "quickstart"
    run_dir = main(["--output", str(output), "--debug", "--minutes", "0"])["run"]
    index = output / "listen" / "index.html"
    screenshot = tmp_path / "quickstart_listen.png"
    try:
        report = browse_page(index, screenshot=screenshot, play=True)
    except BrowserUnavailable as e:
        pytest.skip(str(e))
    keep_screenshot(screenshot)

    assert not report["timed_out"] and report["errors"] == [] and page_problems(report) == []
    rows = {r["snt_id"]: r for r in read_results_csv(run_dir / "test_results.csv").rows}
    shown = {m["id"] for m in report["metrics"]}
    assert len(rows) == 2 and shown == set(rows)  # debug test set: best (and median), worst
    assert len(report["audio"]) == 5 * len(shown) and len(report["images"]) == len(report["audio"])
    for audio in report["audio"]:
        info = sf.info(index.parent / unquote(audio["src"]))
        assert audio["ready_state"] >= 1 and abs(audio["duration"] - info.frames / info.samplerate) < 1e-3
    assert all(image["natural_width"] > 0 and image["natural_height"] == 129 for image in report["images"])
    for audio in report["played"]:  # every player plays to its end
        assert audio["ended"] and audio["current_time"] == pytest.approx(audio["duration"], abs=1e-3)
    assert len(report["metrics"]) == 4 * len(shown)
    for cell in report["metrics"]:
        assert cell["value"] == rows[cell["id"]][cell["key"]] and cell["text"] == f"{rows[cell['id']][cell['key']]:.2f}"
    # the per-source values come from separating again: their means agree with the Brain's test
    for snt_id, values in page_metrics(index)["sources"].items():
        assert np.mean(values["si-snr_i"]) == pytest.approx(rows[snt_id]["si-snr_i"], abs=1e-3)
        assert np.mean(values["sdr_i"]) == pytest.approx(rows[snt_id]["sdr_i"], abs=1e-3)
    assert screenshot.read_bytes()[:4] == b"\x89PNG"


def test_players_are_named_and_a_missing_page_is_named(tmp_path, capsys):
    index = write_listening_page(tmp_path / "p", [example("named")])
    labels = re.findall(r'<audio[^>]* aria-label="([^"]+)"', index.read_text())
    assert labels == ["Mixture", "Estimate 1", "Estimate 2", "Reference 1", "Reference 2"]
    with pytest.raises(SystemExit):
        listen.main([str(tmp_path / "nowhere" / "index.html")])
    assert "nowhere/index.html: no such file" in capsys.readouterr().err
