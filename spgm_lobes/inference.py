"""Ready-to-use separation with spgm-lobes models, and the ``spgm-separate`` command.

:class:`SPGMSeparation` is SpeechBrain's ``SepformerSeparation`` (same inference
card, same ``encoder/masknet/decoder.ckpt`` files) plus what a command-line tool
needs: audio of any sample rate and channel count in, sources out at the model
or the input rate, silence and very short inputs, files of any length (one pass
on :func:`spgm_lobes.fast.separate`, memory linear in length, never stitched),
and writing the estimates.

Command line::

    spgm-separate mix1.wav mix2.flac --model <folder|user/repo> --out separated/ [--rate input] [--plain] [--bf16]

writes ``separated/mix1_source1.wav``, ``separated/mix1_source2.wav``, ... ``--model`` also takes the SPGM
authors' Hub models (``--model yipjiaqi/spgm-base``), imported once (:mod:`spgm_lobes.pretrained`).
With ``--html page/ [--references s1/ s2/]`` it also writes a listening page (:mod:`spgm_lobes.listen`)
of the mixtures, estimates and, from folders holding a file of each mixture's name (the wsj0-mix and
LibriMix layout), references with SI-SNR, SI-SNRi and SDRi.
"""

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from speechbrain.inference.separation import SepformerSeparation
from speechbrain.utils.data_utils import split_path
from speechbrain.utils.fetching import LocalStrategy, fetch
from tqdm import tqdm

from .dsp.audio import AudioReadError, read_audio, resample
from .fast import CompiledSeparator, encode_mask_decode, unsupported_masknet_reason
from .fast import separate as fast_separate

OUTPUT_RATES = ("model", "input")

logger = logging.getLogger(__name__)


def separate_sources(modules, mix, num_spks, fast=True, dtype=None):
    """Encoder -> mask network -> decoder over whole signals, in one pass.

    The model always sees the entire signal: no segment stitching (and no
    speaker-order swap between segments) can happen. With ``fast`` (default)
    and a supported mask network this is :func:`spgm_lobes.fast.separate`,
    whose memory grows linearly with the length; otherwise SpeechBrain's
    plain modules run on the whole input.

    Arguments
    ---------
    modules : mapping
        ``encoder``, ``masknet`` and ``decoder`` modules.
    mix : torch.Tensor
        ``[batch, time]`` mixtures, at least the encoder kernel long.
    num_spks : int
        Number of sources.
    fast : bool
        Use the fast path when the mask network supports it.
    dtype : torch.dtype, optional
        Compute dtype of the fast path (``torch.bfloat16`` on GPUs); default float32.

    Returns
    -------
    torch.Tensor
        ``[batch, time', num_spks]`` estimates, ``time' <= time``.
    """
    if fast and fast_path_unsupported_reason(modules) is None:
        return fast_separate(modules["encoder"], modules["masknet"], modules["decoder"], mix, num_spks, dtype=dtype)
    return encode_mask_decode(modules, mix)


def fast_path_unsupported_reason(modules):
    """Why ``modules`` cannot run on :func:`spgm_lobes.fast.separate` (``None`` if they can)."""
    if any(p.dtype != torch.float32 for m in modules.values() for p in m.parameters()):
        return "parameters are not float32"
    return unsupported_masknet_reason(modules["masknet"])


def _is_remote(path):
    """Whether a path that is not a local file names a remote one: a URL, or ``user/repo/file`` on the Hub
    (three parts, the first not a local folder). Anything else is a missing local file, reported at once.

    Example
    -------
    >>> [_is_remote(p) for p in ("https://x.org/a.wav", "user/repo/a.wav", "/data/a.wav", "sub/a.wav")]
    [True, True, False, False]
    """
    if "://" in path:
        return True
    parts = path.split("/")
    return len(parts) == 3 and all(parts) and parts[0] not in (".", "..") and not Path(parts[0]).is_dir()


class SPGMSeparation(SepformerSeparation):
    """Separation with any spgm-lobes architecture, for audio of any rate, channel count and length.

    Loads like its parent: ``SPGMSeparation.from_hparams(source=<folder or repo>, savedir=...)``.

    Example
    -------
    >>> from spgm_lobes.card import inference_card
    >>> from spgm_lobes.architectures import architecture_path
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> tiny = {"N_encoder_out": 8, "out_channels": 8, "nhead": 1, "d_ffn": 8, "intra_layers": 1, "chunk_size": 10}
    >>> hp = load_hyperpyyaml(inference_card(architecture_path("spgm-ap-s"), tiny))
    >>> model = SPGMSeparation(modules=hp["modules"], hparams=hp)
    >>> stereo_44k = np.random.default_rng(0).standard_normal((4410, 2)).astype("float32")
    >>> est, rate = model.separate_signal(stereo_44k, 44100)
    >>> est.shape, rate
    (torch.Size([800, 2]), 8000)
    >>> est, rate = model.separate_signal(stereo_44k, 44100, output_rate="input")
    >>> est.shape, rate
    (torch.Size([4410, 2]), 44100)
    >>> model.separate_signal(np.zeros(5), 8000)[0].abs().sum().item()
    0.0
    """

    HPARAMS_NEEDED = ["num_spks", "sample_rate"]

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", savedir=None, downloader=None, **kwargs):
        """Loads a separator like SpeechBrain's ``from_hparams``, from any layout of
        :mod:`spgm_lobes.pretrained`.

        A SpeechBrain folder or repo (inference card + ``.ckpt`` files) loads as usual. The SPGM
        authors' Hub models (``yipjiaqi/spgm-base``, ``yipjiaqi/spgm-opt``: ``config.json`` +
        ``model.safetensors``) and bare checkpoint folders are imported once into ``savedir``
        (default ``pretrained_models/<user>--<name>``), checked, then loaded from there.

        Arguments
        ---------
        source : str or Path
            A local folder or a Hub repo id.
        hparams_file : str
            Name of the inference card in a SpeechBrain source.
        savedir : str or Path, optional
            Where files are collected (and imports written).
        downloader : callable, optional
            Hub download function, see :func:`spgm_lobes.pretrained.import_model`.
        **kwargs
            Passed to SpeechBrain's ``from_hparams`` (``run_opts``, ...) and the constructor.
        """
        from .pretrained import prepare_source

        source, savedir = prepare_source(source, savedir, hparams_file, downloader, log=logger.info)
        return super().from_hparams(source, hparams_file=hparams_file, savedir=savedir, **kwargs)

    def __init__(
        self, *args, use_fast_path=None, fast_dtype=None, compile_fast_path=False, cuda_graphs=False, **kwargs
    ):
        super().__init__(*args, **kwargs)
        if use_fast_path is None:
            use_fast_path = bool(getattr(self.hparams, "use_fast_path", True))
        #: run :func:`spgm_lobes.fast.separate` (memory linear in length) where the model supports it
        self.use_fast_path = use_fast_path
        #: compute dtype of the fast path (``torch.bfloat16`` on GPUs); None: float32
        self.fast_dtype = fast_dtype
        #: with a ``fast_dtype``: inputs up to ``full_pass_max_seconds`` run whole on a
        #: ``fast_dtype`` copy of the model (:class:`spgm_lobes.fast.CompiledSeparator`), each
        #: dual-path block under ``torch.compile`` when ``compile_fast_path``; longer ones, and
        #: float32, go through the sliced :func:`spgm_lobes.fast.separate`; ``cuda_graphs``
        #: replays a CUDA graph for repeated inputs of one shape on the whole-input path
        self.compile_fast_path = bool(compile_fast_path)
        self.cuda_graphs = bool(cuda_graphs)
        self.full_pass_max_seconds = 300.0
        self._full_pass = None

    def _full_pass_separator(self, length):
        """The :class:`CompiledSeparator` for an input of ``length`` samples, or ``None``."""
        low_precision = self.fast_dtype is not None and self.fast_dtype != torch.float32
        short = length <= self.full_pass_max_seconds * self.hparams.sample_rate
        if not (self.use_fast_path and low_precision and short):
            return None
        if self._full_pass is None:  # checked once: the separator follows later weight changes itself
            if fast_path_unsupported_reason(self.mods):
                return None
            mods = self.mods
            self._full_pass = CompiledSeparator(
                mods.encoder,
                mods.masknet,
                mods.decoder,
                dtype=self.fast_dtype,
                compile=self.compile_fast_path,
                cuda_graphs=self.cuda_graphs,
            )
        return self._full_pass

    @property
    def min_length(self):
        """Shortest input the encoder accepts (its kernel size, in samples)."""
        return int(self.mods.encoder.conv1d.kernel_size[0])

    def separate_batch(self, mix):
        """Separates a batch of mixtures at the model rate.

        Inputs shorter than the encoder kernel are zero-padded, all-zero
        inputs give all-zero sources, and the output has the input's length.

        Arguments
        ---------
        mix : torch.Tensor
            ``[batch, time]`` at ``hparams.sample_rate``.

        Returns
        -------
        torch.Tensor
            ``[batch, time, num_spks]``.
        """
        mix = mix.to(self.device)
        length = mix.shape[1]
        num_spks = self.hparams.num_spks
        if length == 0 or not bool(mix.abs().amax() > 0):
            return mix.new_zeros(mix.shape[0], length, num_spks)
        if length < self.min_length:
            mix = F.pad(mix, (0, self.min_length - length))
        full_pass = self._full_pass_separator(mix.shape[1])
        with torch.no_grad():
            if full_pass is not None:
                est = full_pass(mix)
            else:
                est = separate_sources(self.mods, mix, num_spks, fast=self.use_fast_path, dtype=self.fast_dtype)
        if est.shape[1] < length:
            est = F.pad(est, (0, 0, 0, length - est.shape[1]))
        return est[:, :length]

    def separate_signal(self, waveform, sample_rate, output_rate="model"):
        """Separates one signal of any rate and channel count.

        Arguments
        ---------
        waveform : numpy.ndarray or torch.Tensor
            ``[time]``, ``[time, channels]`` (as :func:`spgm_lobes.dsp.audio.read_audio` and soundfile
            return) or ``[channels, time]`` (as ``torchaudio.load`` returns): the shorter axis is taken
            as the channels, which are averaged.
        sample_rate : int
            Rate of ``waveform``; resampled to the model rate when it differs.
        output_rate : "model" or "input"
            Return the sources at the model rate or resampled back to ``sample_rate``.

        Returns
        -------
        sources : torch.Tensor
            ``[time, num_spks]`` on the CPU; each source is scaled so that its
            peak equals the mixture's peak (at most 0.99), silent sources stay zero.
        rate : int
            Sample rate of ``sources``.
        """
        if output_rate not in OUTPUT_RATES:
            raise ValueError(f"output_rate must be one of {OUTPUT_RATES}, got {output_rate!r}.")
        mix = torch.as_tensor(np.asarray(waveform), dtype=torch.float32)
        if mix.dim() == 2:
            mix = mix.mean(dim=int(mix.shape[1] <= mix.shape[0]))  # the shorter axis holds the channels
        elif mix.dim() != 1:
            raise ValueError(
                f"Expected a [time], [time, channels] or [channels, time] signal, got shape {tuple(mix.shape)}."
            )
        length = mix.shape[0]
        model_rate = int(self.hparams.sample_rate)
        sample_rate = int(sample_rate)
        if sample_rate != model_rate:
            mix = resample(mix, sample_rate, model_rate)
        est = self.separate_batch(mix.unsqueeze(0))[0].cpu()
        peak = min(float(mix.abs().max()) if mix.numel() else 0.0, 0.99)
        est_peak = est.abs().amax(dim=0, keepdim=True)
        est = torch.where(est_peak > 0, est * (peak / est_peak.clamp_min(1e-12)), est)
        if output_rate == "input" and sample_rate != model_rate:
            est = resample(est.T.contiguous(), model_rate, sample_rate).T
            est = F.pad(est, (0, 0, 0, max(0, length - est.shape[0])))[:length]
            return est.clamp(-1.0, 1.0), sample_rate
        return est, model_rate

    def separate_file(self, path, savedir=None, output_rate="model"):
        """Separates an audio file (read by :func:`spgm_lobes.dsp.audio.read_audio`: channels averaged).

        Arguments
        ---------
        path : str or Path
            A local audio file of any rate and channel count, or (like the parent
            class) ``user/repo/file.wav`` or a URL, fetched into ``savedir``.
        savedir : str or Path, optional
            Where remote files are fetched to (needed for them, as in the parent class).
        output_rate : "model" or "input"
            See :meth:`separate_signal`.

        Returns
        -------
        torch.Tensor
            ``[1, time, num_spks]``, like the parent class (see :meth:`separate_signal` for the scale).
        """
        if not Path(path).exists() and _is_remote(str(path)):
            source, filename = split_path(str(path))
            try:
                path = fetch(filename, source=source, savedir=savedir, local_strategy=LocalStrategy.SYMLINK)
            except Exception as e:  # network or missing remote file
                raise AudioReadError(f"{path}: could not fetch ({type(e).__name__}: {e}).") from e
        waveform, rate = read_audio(path)
        est, _ = self.separate_signal(waveform, rate, output_rate)
        return est.unsqueeze(0)

    def save(self, sources, sample_rate, out_dir, name):
        """Writes sources as ``<out_dir>/<name>_source<i>.wav`` (16-bit PCM).

        Arguments
        ---------
        sources : torch.Tensor
            ``[time, num_spks]`` as returned by :meth:`separate_signal`.
        sample_rate : int
        out_dir : str or Path
            Created when missing.
        name : str
            File-name prefix, usually the mixture's stem.

        Returns
        -------
        list of Path
            The written files.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for i in range(sources.shape[1]):
            path = out_dir / f"{name}_source{i + 1}.wav"
            sf.write(str(path), sources[:, i].clamp(-1.0, 1.0).numpy(), int(sample_rate), subtype="PCM_16")
            written.append(path)
        return written

    def separate_to_files(self, path, out_dir, output_rate="model"):
        """Reads ``path``, separates it and writes ``<out_dir>/<stem>_source<i>.wav``.

        Returns
        -------
        list of Path
            The written files.
        """
        waveform, rate = read_audio(path)
        est, out_rate = self.separate_signal(waveform, rate, output_rate)
        return self.save(est, out_rate, out_dir, Path(path).stem)


def normalise_device(device):
    """The device string SpeechBrain expects: a CUDA device with its index (``"cuda"`` -> ``"cuda:0"``; SpeechBrain
    reads the index from the string and warns "Could not parse CUDA device string" without one).

    Example
    -------
    >>> normalise_device("cuda"), normalise_device("cuda:1"), normalise_device("cpu")
    ('cuda:0', 'cuda:1', 'cpu')
    """
    device = str(device)
    return "cuda:0" if device == "cuda" else device


def page_example(path, waveform, rate, sources, sources_rate, reference_dirs=()):
    """One example of a listening page (:func:`spgm_lobes.listen.write_listening_page`) for a
    separated file: the mixture and the references at the rate of the sources.

    Arguments
    ---------
    path : str or Path
        The mixture file; its references are ``<dir>/<its name>`` for each of ``reference_dirs``.
    waveform : torch.Tensor
        The mixture ``[time]`` at ``rate`` (:func:`spgm_lobes.dsp.audio.read_audio`).
    rate : int
    sources : torch.Tensor
        Estimates ``[time', num_spks]`` at ``sources_rate`` (:meth:`SPGMSeparation.separate_signal`).
    sources_rate : int
    reference_dirs : sequence of str or Path
        One folder per source (``s1/``, ``s2/``, ...), or none.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> for name in ("mix", "s1", "s2"):
    ...     (folder / name).mkdir()
    ...     sf.write(folder / name / "a.wav", np.zeros(3200), 16000)
    >>> example = page_example(folder / "mix" / "a.wav", torch.zeros(3200), 16000, torch.zeros(1600, 2), 8000,
    ...     [folder / "s1", folder / "s2"])
    >>> example["id"], example["rate"], len(example["mixture"]), [len(r) for r in example["references"]]
    ('a', 8000, 1600, [1600, 1600])
    """
    length = sources.shape[0]

    def fitted(signal, what):
        if abs(len(signal) - length) > max(2, length // 1000):
            raise AudioReadError(f"{what}: {len(signal)} samples at {sources_rate} Hz, the estimates {length}.")
        return np.pad(signal, (0, max(0, length - len(signal))))[:length]

    references = []
    for folder in reference_dirs:
        reference_path = Path(folder) / Path(path).name
        reference = read_audio(reference_path, sample_rate=sources_rate)[0].numpy()
        references.append(fitted(reference, f"{reference_path} (not the reference of {path})"))
    mixture = fitted(resample(waveform, rate, sources_rate).numpy(), str(path))
    return {"id": Path(path).stem, "rate": int(sources_rate), "mixture": mixture, "estimates": sources.T.numpy(),
            "references": references}  # fmt: skip


class ModelLoadError(RuntimeError):
    """The separation model could not be found or loaded."""


def load_model(source, savedir=None, device="cpu", use_fast_path=True, fast_dtype=None, compile_fast_path=False):
    """Loads an :class:`SPGMSeparation` from a local folder or a Hub repo id.

    Arguments
    ---------
    source : str or Path
        A folder or ``user/repo`` in any layout of :mod:`spgm_lobes.pretrained`: ``hyperparams.yaml``
        and the three ``.ckpt`` files, the SPGM authors' ``config.json`` + ``model.safetensors``, or
        the three ``.ckpt`` files alone (imported once into ``savedir``).
    savedir : str or Path, optional
        Where ``from_hparams`` collects the files (default: none for local SpeechBrain folders,
        ``pretrained_models/<user>--<name>`` for Hub repos and imports).
    device : str
        Torch device to run on.
    use_fast_path : bool
        Separate with :func:`spgm_lobes.fast.separate` where supported (else SpeechBrain's plain modules).
    fast_dtype : torch.dtype, optional
        Compute dtype of the fast path, e.g. ``torch.bfloat16`` on a GPU.
    compile_fast_path : bool
        With ``fast_dtype``: compile the dual-path blocks of the whole-input path
        (GPU; each new input length compiles once, about 10 s).
    """
    from .pretrained import PretrainedFormatError, detect_layout, is_hub_repo_id

    source = str(source)
    local = Path(source)
    if local.exists():
        try:
            detect_layout(local)
        except PretrainedFormatError as e:
            raise ModelLoadError(str(e)) from e
        source = str(local.resolve())
    elif not is_hub_repo_id(source):
        raise ModelLoadError(f"Model {source!r} is neither an existing folder nor a Hub repo id (user/name).")
    if savedir is None:
        savedir = Path("pretrained_models") / source.replace("/", "--") if not local.exists() else None
    try:
        return SPGMSeparation.from_hparams(
            source=source,
            savedir=None if savedir is None else str(savedir),
            run_opts={"device": normalise_device(device)},
            use_fast_path=use_fast_path,
            fast_dtype=fast_dtype,
            compile_fast_path=compile_fast_path,
        )
    except Exception as e:  # any failure to fetch, build or load the model
        raise ModelLoadError(f"Could not load model {source!r}: {type(e).__name__}: {e}") from e


def main(argv=None):
    """Entry point of ``spgm-separate``; returns the exit status.

    0 when every file was separated, 1 when some input could not be read or
    separated (a write error, running out of memory: the others are still
    separated) or, with ``--html``, was left off the listening page (a
    reference missing), 2 when the model cannot be loaded or the arguments are
    wrong.
    """
    parser = argparse.ArgumentParser(
        prog="spgm-separate", description="Separate the sources of mixtures with an spgm-lobes model."
    )
    parser.add_argument("mixtures", nargs="+", help="audio files (any rate, any channel count, any length)")
    parser.add_argument(
        "--model", required=True, help="model folder or user/repo (SpeechBrain, spgm-publish or SPGM authors' layout)"
    )
    parser.add_argument("--out", required=True, help="output folder for <name>_source<i>.wav")
    parser.add_argument("--rate", choices=OUTPUT_RATES, default="model", help="write at the model or input rate")
    parser.add_argument("--savedir", default=None, help="where downloaded model files are kept")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--plain", action="store_true", help="run SpeechBrain's plain modules, not the fast path")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 compute on the fast path (GPUs)")
    parser.add_argument(
        "--compile", action="store_true", help="with --bf16: torch.compile the model for inputs up to 5 min (GPUs)"
    )
    parser.add_argument("--html", default=None, help="also write a listening page of the mixtures to this folder")
    parser.add_argument(
        "--references",
        nargs="+",
        default=(),
        metavar="DIR",
        help="with --html: one folder per source holding a file of each mixture's name (s1/ s2/ ...)",
    )
    args = parser.parse_args(argv)
    if args.compile and not args.bf16:
        parser.error("--compile needs --bf16")
    if args.references and not args.html:
        parser.error("--references needs --html")
    for option, folder in (("--out", args.out), ("--html", args.html)):
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            parser.error(f"{option} {folder} is a file, not a folder")
    if args.html:  # known before separating, not after
        from .listen import check_page_folder

        try:
            check_page_folder(Path(args.html), outputs=[Path(args.out)])
        except FileExistsError as e:
            parser.error(f"--html: {e}")

    stems = {}
    for path in args.mixtures:
        stems.setdefault(Path(path).stem, []).append(path)
    clashes = {stem: paths for stem, paths in stems.items() if len(paths) > 1}
    if clashes:
        for stem, paths in clashes.items():
            print(f"spgm-separate: error: {', '.join(paths)} would all write {stem}_source*.wav", file=sys.stderr)
        return 2

    try:
        dtype = torch.bfloat16 if args.bf16 else None
        model = load_model(args.model, args.savedir, args.device, not args.plain, dtype, args.compile)
    except ModelLoadError as e:
        print(f"spgm-separate: error: {e}", file=sys.stderr)
        return 2

    if args.references and len(args.references) != model.hparams.num_spks:
        print(
            f"spgm-separate: error: {len(args.references)} --references folders for a model of "
            f"{model.hparams.num_spks} sources",
            file=sys.stderr,
        )
        return 2
    failed, left_off, examples = [], [], []
    for path in tqdm(args.mixtures, desc="separating", unit="file", disable=len(args.mixtures) < 2):
        try:
            waveform, rate = read_audio(path)
            est, out_rate = model.separate_signal(waveform, rate, args.rate)
            written = model.save(est, out_rate, args.out, Path(path).stem)
        except AudioReadError as e:
            tqdm.write(f"spgm-separate: skipped {e}", file=sys.stderr)
            failed.append(path)
            continue
        except (OSError, RuntimeError) as e:  # writing, or the model on this input (out of memory, say)
            tqdm.write(f"spgm-separate: skipped {path}: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(path)
            continue
        if len(args.mixtures) == 1:
            print("\n".join(str(p) for p in written))
        if args.html:
            try:
                examples.append(page_example(path, waveform, rate, est, out_rate, args.references))
            except AudioReadError as e:
                tqdm.write(f"spgm-separate: left off the listening page: {e}", file=sys.stderr)
                left_off.append(path)
    if failed:
        print(
            f"spgm-separate: {len(failed)} of {len(args.mixtures)} files could not be read or separated.",
            file=sys.stderr,
        )
    if args.html and examples:
        from .listen import model_description, write_listening_page

        try:
            page = write_listening_page(
                args.html, examples, model_description(args.model, model.mods), title=f"spgm-separate: {args.model}"
            )
        except (OSError, ValueError) as e:
            print(f"spgm-separate: no listening page: {e}", file=sys.stderr)
            return 1
        print(f"Listening page: {page}")
    return 1 if failed or left_off else 0


if __name__ == "__main__":
    sys.exit(main())
