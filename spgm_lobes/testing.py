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


def watch_file_writes(folder, on_write, suffixes=()):
    """Calls ``on_write(path)`` each time this process opens a file under ``folder`` for writing through
    Python's ``open`` (an audit hook, :func:`sys.addaudithook`: it stays for the life of the process), e.g. to
    check which process of a DDP run writes a checkpoint or a results table. ``suffixes`` keeps the file names
    that end with one of them. Native writers are not seen (``torch.save`` to a path), so watch a file written
    beside them (a checkpoint's ``CKPT.yaml``, ``counter.ckpt``).

    Example
    -------
    >>> folder = getfixture("tmp_path") / "watched"
    >>> folder.mkdir()
    >>> seen = []
    >>> watch_file_writes(folder, seen.append, suffixes=(".csv",))
    >>> _ = (folder / "a.csv").write_text("x"), (folder / "a.csv").read_text(), (folder / "b.txt").write_text("x")
    >>> [Path(p).name for p in seen]
    ['a.csv']
    """
    import os
    import sys

    watched = os.path.realpath(folder) + os.sep
    suffixes = tuple(suffixes)

    def hook(event, args):
        if event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
            return
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR))
        if not writing:
            return
        path = os.path.realpath(os.fsdecode(args[0]))
        if path.startswith(watched) and (not suffixes or path.endswith(suffixes)):
            on_write(path)

    sys.addaudithook(hook)


TINY_SPGM_CONFIG = {
    "model_type": "spgm",
    "sample_rate": 8000,
    "config_name": "spgm-tiny",
    "encoder_kernel_size": 16,
    "encoder_in_nchannels": 1,
    "encoder_out_nchannels": 16,
    "masknet_chunksize": 10,
    "masknet_numlayers": 2,
    "masknet_norm": "ln",
    "masknet_useextralinearlayer": False,
    "masknet_extraskipconnection": True,
    "masknet_numspks": 2,
    "intra_numlayers": 1,
    "intra_nhead": 2,
    "intra_dffn": 32,
    "intra_dropout": 0,
    "intra_use_positional": True,
    "intra_norm_before": True,
    "spgm_block_pool": "att",
    "spgm_block_att_h": None,
    "spgm_block_att_dropout": 0,
}
"""A config in the SPGM authors' ``config.json`` format (``spgm_standalone``'s ``SPGMWrapper``), tiny."""


def authors_layout_modules(config, seed=0):
    """``encoder``, ``masknet``, ``decoder`` built from the SPGM authors' config dict the way their
    ``SPGMWrapper`` builds them (SpeechBrain's dual-path lobes + :class:`spgm_lobes.SPGMBlock`,
    whose parameter names are the published ones), with every parameter perturbed so that no
    tensor keeps its initial value. Independent of :mod:`spgm_lobes.pretrained`: it makes the
    fixtures that module is tested on."""
    from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder, SBTransformerBlock

    from .models import SPGMBlock

    torch.manual_seed(seed)
    width, kernel = config["encoder_out_nchannels"], config["encoder_kernel_size"]
    encoder = Encoder(kernel_size=kernel, out_channels=width, in_channels=config["encoder_in_nchannels"])
    intra = SBTransformerBlock(
        num_layers=config["intra_numlayers"],
        d_model=width,
        nhead=config["intra_nhead"],
        d_ffn=config["intra_dffn"],
        dropout=config["intra_dropout"],
        use_positional_encoding=config["intra_use_positional"],
        norm_before=config["intra_norm_before"],
    )
    inter = SPGMBlock(
        width,
        pool=config["spgm_block_pool"],
        chunk_size=config["masknet_chunksize"],
        att_h=config["spgm_block_att_h"],
        att_dropout=config["spgm_block_att_dropout"],
    )
    masknet = Dual_Path_Model(
        in_channels=width,
        out_channels=width,
        intra_model=intra,
        inter_model=inter,
        num_layers=config["masknet_numlayers"],
        norm=config["masknet_norm"],
        K=config["masknet_chunksize"],
        num_spks=config["masknet_numspks"],
        skip_around_intra=config["masknet_extraskipconnection"],
        linear_layer_after_inter_intra=config["masknet_useextralinearlayer"],
    )
    channels = config["encoder_in_nchannels"]
    decoder = Decoder(in_channels=width, out_channels=channels, kernel_size=kernel, stride=kernel // 2, bias=False)
    modules = {"encoder": encoder, "masknet": masknet, "decoder": decoder}
    with torch.no_grad():
        for module in modules.values():
            for p in module.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return modules


def write_hub_mixin_folder(folder, config, weights="safetensors", config_under_key=False, seed=0):
    """Writes a folder in the layout of the SPGM authors' Hub models (``yipjiaqi/spgm-base``):
    ``config.json`` and ``model.safetensors`` written by huggingface_hub's ``PyTorchModelHubMixin``
    (keys prefixed ``encoder.``, ``masknet.``, ``decoder.``).

    Arguments
    ---------
    folder : str or Path
    config : dict
        The authors' config dict (see :data:`TINY_SPGM_CONFIG`).
    weights : "safetensors" or "bin"
        ``"bin"`` replaces ``model.safetensors`` with ``pytorch_model.bin`` (older huggingface_hub).
    config_under_key : bool
        Write ``config.json`` as ``{"config": {...}}``.

    Returns
    -------
    Path
        ``folder``.
    """
    import json

    from huggingface_hub import PyTorchModelHubMixin

    class SPGMWrapperLayout(torch.nn.Module, PyTorchModelHubMixin):
        def __init__(self, config: dict):
            super().__init__()
            for name, module in authors_layout_modules(config, seed).items():
                setattr(self, name, module)

    folder = Path(folder)
    model = SPGMWrapperLayout(config)
    model.save_pretrained(folder, config=config)
    if config_under_key:
        (folder / "config.json").write_text(json.dumps({"config": config}, indent=2))
    if weights == "bin":
        (folder / "model.safetensors").unlink()
        torch.save(model.state_dict(), folder / "pytorch_model.bin")
    return folder


def local_snapshot(root):
    """A stand-in for :func:`spgm_lobes.pretrained.hub_snapshot` that serves ``<root>/<user>/<name>``
    folders as Hub repos: it copies the files matching ``allow_patterns`` into a snapshot folder,
    like ``snapshot_download``, and records each request in ``calls``.

    Example
    -------
    >>> root = getfixture("tmp_path")
    >>> (root / "user" / "model").mkdir(parents=True)
    >>> _ = (root / "user" / "model" / "config.json").write_text("{}")
    >>> download = local_snapshot(root)
    >>> sorted(p.name for p in Path(download("user/model", ["*.json"])).iterdir()), download.calls
    (['config.json'], [('user/model', ('*.json',))])
    """
    import fnmatch
    import shutil

    root = Path(root)

    def download(repo_id, allow_patterns, revision=None):
        repo = root / repo_id
        if not repo.is_dir():
            raise FileNotFoundError(f"Repository {repo_id!r} not found under {root}.")
        download.calls.append((repo_id, tuple(allow_patterns)))
        snapshot = root / ".snapshots" / repo_id.replace("/", "--")
        snapshot.mkdir(parents=True, exist_ok=True)
        for path in repo.iterdir():
            if path.is_file() and any(fnmatch.fnmatch(path.name, p) for p in allow_patterns):
                shutil.copyfile(path, snapshot / path.name)
        return str(snapshot)

    download.calls = []
    return download
