"""Tiny configurations and corpora for tests, examples and smoke runs.

Everything here is generated on the fly; nothing is downloaded.
"""

from pathlib import Path

import torch

from .architectures import SOURCE_ROOT

REPO_ROOT = SOURCE_ROOT
"""The source checkout (recipes, tests, benchmarks); meaningful only when the package runs from one."""

TINY_ARCH_OVERRIDES = {
    "N_encoder_out": 16,
    "out_channels": 16,
    "nhead": 2,
    "d_ffn": 32,
    "intra_layers": 1,
    "chunk_size": 10,
}
"""Architecture overrides that make any ``hparams/`` model tiny (about 14k parameters)."""

TINY_RESULTS = [("a", 9.0, 10.0, 8.0, 9.5), ("b", 11.0, 12.0, 10.0, 11.5)]
"""Test rows ``(snt_id, sdr, sdr_i, si-snr, si-snr_i)`` of :func:`make_run_folder`."""

TINY_ARCH = "{" + ", ".join(f"{k}: {v}" for k, v in TINY_ARCH_OVERRIDES.items()) + "}"
"""The same overrides as a command-line value: ``train.py ... --arch "<TINY_ARCH>"``."""


def speech_or_synthetic_sources(count, samples, speech_root, rng):
    """``count`` distinct 8 kHz signals of ``samples`` samples: real speech from
    distinct LibriSpeech speakers when available, else synthetic harmonic voices."""
    import numpy as np

    signals = []
    if speech_root is not None:
        from .dsp.audio import read_audio

        speakers = sorted((speech_root / "LibriSpeech" / "train-clean-100").iterdir())
        for spk in speakers[:count]:
            path = sorted(spk.rglob("*.flac"))[0]
            audio = read_audio(path, 8000, start=8000, frames=int(samples * 16000 / 8000) + 16000)[0]
            audio = audio.numpy()[:samples]
            signals.append(audio / (np.abs(audio).max() + 1e-6) * 0.3)
    t = np.arange(samples) / 8000
    while len(signals) < count:
        f0 = rng.uniform(90, 260) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(1, 4) * t))
        phase = 2 * np.pi * np.cumsum(f0) / 8000
        sig = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        signals.append((0.1 * sig).astype("float32"))
    return signals


def make_wsj0mix_corpus(root, num_spks=2, per_split=3, samples=2400, speech_root=None, seed=0):
    """Writes a tiny corpus in the wsj0-mix layout ``root/wav8k/min/{tr,cv,tt}/{mix,s1,..}``
    plus WSJ0-style speaker folders ``root/si_tr_s/<spk>/<utt>.wav`` for dynamic mixing."""
    import numpy as np
    import soundfile as sf

    root = Path(root)
    rng = np.random.default_rng(seed)
    n_speakers = max(4, num_spks + 1)
    voices = speech_or_synthetic_sources(n_speakers, samples, speech_root, rng)
    for s, voice in enumerate(voices):
        folder = root / "si_tr_s" / f"spk{s:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        sf.write(folder / f"spk{s:02d}_utt0.wav", voice, 8000, subtype="FLOAT")
    for split in ("tr", "cv", "tt"):
        for k in range(per_split):
            chosen = rng.choice(n_speakers, num_spks, replace=False)
            length = samples - int(rng.integers(0, samples // 4))  # different lengths -> padding in batches
            sources = [np.roll(voices[c], int(rng.integers(samples)))[:length] for c in chosen]
            name = f"{split}_{k:03d}.wav"
            for i, src in enumerate(sources):
                (root / "wav8k" / "min" / split / f"s{i + 1}").mkdir(parents=True, exist_ok=True)
                sf.write(root / "wav8k" / "min" / split / f"s{i + 1}" / name, src, 8000, subtype="FLOAT")
            (root / "wav8k" / "min" / split / "mix").mkdir(parents=True, exist_ok=True)
            sf.write(root / "wav8k" / "min" / split / "mix" / name, sum(sources), 8000, subtype="FLOAT")
    return root


def make_run_folder(
    run_dir,
    metas=(-2.0, -5.0, -3.0),
    results=TINY_RESULTS,
    arch_name="spgm-ap-s",
    overrides=TINY_ARCH_OVERRIDES,
    with_architecture_key=True,
):
    """Writes a recipe output folder as a tiny training run leaves it, for ``spgm-publish``:
    the resolved ``hyperparams.yaml`` (``arch`` included from ``hparams/<arch_name>.yaml``),
    one checkpoint per ``si-snr`` meta in ``metas`` (weights nudged each time) plus a newer
    intra-epoch one without that meta, and ``test_results.csv`` from ``results`` (rows
    ``(snt_id, sdr, sdr_i, si-snr, si-snr_i)``; ``None``: no file).

    Returns the masknet state dict of the best (lowest ``si-snr``) checkpoint (``None`` without metas).

    Example
    -------
    >>> run = getfixture("tmp_path") / "run"
    >>> best = make_run_folder(run, metas=(-1.0,))
    >>> sorted(p.name for p in run.iterdir())
    ['hyperparams.yaml', 'save', 'test_results.csv']
    """
    import io

    import numpy as np
    from hyperpyyaml import load_hyperpyyaml, resolve_references
    from speechbrain.utils.checkpoints import Checkpointer

    from .architectures import architecture_path

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    keys = "".join(f"    {k}: {v}\n" for k, v in overrides.items())
    text = (
        (f"architecture: {arch_name}\n" if with_architecture_key else "")
        + f"sample_rate: 8000\nnum_spks: 2\ndataset: tiny-mix\n"
        f"output_folder: {run_dir}\nsave_folder: !ref <output_folder>/save\n"
        "test_data: !ref <output_folder>/test.csv\n"
        f"arch: !include:{architecture_path(arch_name)}\n    num_spks: !ref <num_spks>\n{keys}"
        "modules: !ref <arch[modules]>\n"
    )
    (run_dir / "hyperparams.yaml").write_text(resolve_references(io.StringIO(text)).getvalue())
    modules = load_hyperpyyaml(text)["modules"]
    checkpointer = Checkpointer(run_dir / "save", recoverables=modules)
    best = None
    for i, meta in enumerate(metas):
        torch.manual_seed(100 + i)
        with torch.no_grad():
            for p in modules["masknet"].parameters():
                p.add_(0.05 * torch.randn_like(p))
        checkpointer.save_checkpoint(meta={"si-snr": meta})
        if best is None or meta < best[0]:
            best = (meta, {k: v.clone() for k, v in modules["masknet"].state_dict().items()})
    # an intra-epoch checkpoint without si-snr, newest of all: must not be picked
    checkpointer.save_checkpoint(meta={"end-of-epoch": False})
    if results is not None:
        from .metrics.results import RESULTS_FILE, write_results_csv

        columns = ["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i"]
        average = ["avg", *(float(v) for v in np.mean([r[1:] for r in results], axis=0))]
        write_results_csv(run_dir / RESULTS_FILE, [dict(zip(columns, r)) for r in [*results, average]])
    return best[1] if best else None


def free_port():
    """A TCP port free on this machine now (the kernel picks it: bind to port 0), e.g. for ``torchrun --master_port``.

    Example
    -------
    >>> 0 < free_port() < 65536
    True
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
