"""Publishing a trained separator to the Hugging Face Hub: the ``spgm-publish`` command.

::

    spgm-publish results/spgm/wsj0-2mix/1234 --repo user/spgm-ap-wsj0-2mix [--private] [--dry-run] [--stage-dir D]
                 [--listening-page]

From a recipe's output folder it takes the best checkpoint (lowest ``si-snr``
meta, the negative SI-SNR loss), stages a Hub-ready folder (flattened inference
card ``hyperparams.yaml``, ``encoder/masknet/decoder.ckpt``, a model card
``README.md`` with the test SI-SNRi/SDRi, an example mixture), checks that the
staged folder loads back with SpeechBrain's ``SepformerSeparation.from_hparams``
and separates exactly like the checkpoint, then uploads it in one commit. With
``--listening-page`` the folder also gets ``listen/index.html``
(:mod:`spgm_lobes.listen`): the example mixture separated by the model, with its
references and metrics when the run's test CSV lists them.

What the output folder must hold:

- ``save/CKPT+*/`` checkpoints (SpeechBrain ``Checkpointer``) with ``encoder.ckpt``,
  ``masknet.ckpt``, ``decoder.ckpt`` and a ``si-snr`` meta in ``CKPT.yaml``;
- ``test_results.csv`` with columns ``snt_id,sdr,sdr_i,si-snr,si-snr_i`` and an ``avg`` row;
- ``hyperparams.yaml`` (the resolved copy SpeechBrain writes) with ``architecture`` (a name
  of ``hparams/``, e.g. ``spgm-ap``, or a path to an architecture YAML), ``sample_rate``,
  ``num_spks``, and the architecture's scalar keys (``N_encoder_out``, ``chunk_size``, ...)
  under the mapping ``arch`` (what ``arch: !include:...`` resolves to) or at the top level.
"""

import argparse
import csv
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ruamel.yaml
import soundfile as sf
import torch
from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token
from speechbrain.utils.checkpoints import Checkpointer

from .architectures import ARCHITECTURES, architecture_path, build_from_file
from .card import architecture_keys, from_hparams_separations, inference_card
from .dsp.audio import read_audio
from .fast import encode_mask_decode
from .metrics.results import RESULTS_FILE, read_results_csv
from .profile import count_parameters

MODULE_NAMES = ("encoder", "masknet", "decoder")
EXAMPLE_NAME = "example_mixture.wav"
RESULT_KEYS = ("sdr", "sdr_i", "si-snr", "si-snr_i")  # test_results.csv columns; si-snr_i is required
METRIC_NAMES = {
    "si-snr_i": ("si-snri", "SI-SNRi"),
    "sdr_i": ("sdri", "SDRi"),
    "si-snr": ("si-snr", "SI-SNR"),
    "sdr": ("sdr", "SDR"),
}
STAGED_FILES = ("hyperparams.yaml", "README.md", EXAMPLE_NAME) + tuple(f"{m}.ckpt" for m in MODULE_NAMES)
LISTEN_DIR = "listen"  # optional listening page of the example
EXAMPLE_SECONDS = 10.0
VERIFY_SECONDS = 2.0
VERIFY_TOLERANCE = 1e-5


class PublishError(RuntimeError):
    """Publishing refused: the message says what is missing or wrong."""


@dataclass
class RunArchitecture:
    """The architecture a run trained: file, overridden keys, rate and number of sources."""

    path: Path
    overrides: dict = field(default_factory=dict)
    sample_rate: int = 8000
    num_spks: int = 2

    @property
    def name(self):
        """Architecture name (file stem), e.g. ``spgm-ap``."""
        return self.path.stem


def find_best_checkpoint(run_dir):
    """The checkpoint of ``<run_dir>/save`` with the lowest ``si-snr`` meta.

    Returns
    -------
    speechbrain.utils.checkpoints.Checkpoint
        ``(path, meta, paramfiles)``.
    """
    save_dir = Path(run_dir) / "save"
    if not save_dir.is_dir():
        raise PublishError(f"{run_dir} has no save/ folder: no checkpoint to publish.")
    ckpt = Checkpointer(save_dir).find_checkpoint(min_key="si-snr")
    if ckpt is None:
        raise PublishError(f"No checkpoint with a 'si-snr' meta in {save_dir}: nothing to publish.")
    missing = [f"{m}.ckpt" for m in MODULE_NAMES if not (Path(ckpt.path) / f"{m}.ckpt").is_file()]
    if missing:
        raise PublishError(f"Best checkpoint {ckpt.path} lacks {', '.join(missing)}.")
    return ckpt


def read_test_results(run_dir):
    """The ``avg`` row of ``<run_dir>/test_results.csv`` as floats, plus ``n`` (number of utterances).

    ``si-snr_i`` is required; ``sdr_i``, ``si-snr`` and ``sdr`` are read when present
    (GASS results, for instance, have no SDR columns).

    Example
    -------
    >>> run = getfixture("tmp_path")
    >>> _ = (run / "test_results.csv").write_text("snt_id,sdr,sdr_i,si-snr,si-snr_i\\na,9,10,8,9.5\\navg,9,10,8,9.5\\n")
    >>> read_test_results(run)
    {'sdr': 9.0, 'sdr_i': 10.0, 'si-snr': 8.0, 'si-snr_i': 9.5, 'n': 1}
    """
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise PublishError(f"{path} not found: evaluate the model on its test set before publishing.")
    table = read_results_csv(path)
    if table.average is None:
        raise PublishError(f"{path} has no 'avg' row.")
    results = {}
    for key in RESULT_KEYS:
        value = table.average.get(key, math.nan)
        if key != "si-snr_i" and isinstance(value, float) and math.isnan(value):
            continue  # an optional column, absent or empty
        if not isinstance(value, float) or not math.isfinite(value):
            raise PublishError(f"{path}: the 'avg' row has no numeric {key} (got {value!r}).")
        results[key] = value
    results["n"] = len(table.rows)
    return results


def _load_run_hparams(run_dir, hparams_file="hyperparams.yaml"):
    path = Path(run_dir) / hparams_file
    if not path.is_file():
        raise PublishError(f"{path} not found: it tells which architecture the run trained.")
    with open(path, encoding="utf-8") as f:
        return ruamel.yaml.YAML().load(f)


def _plain(value):
    """ruamel scalar -> plain Python value."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def run_architecture_keys(hp, keys, arch_key="arch"):
    """The scalar values a run's hyperparams give to architecture ``keys``: under the mapping
    ``arch_key`` (what ``arch: !include:...`` resolves to) first, else at the top level.

    Example
    -------
    >>> run_architecture_keys({"arch": {"chunk_size": 10, "modules": {}}, "nhead": 2, "lr": 0.1},
    ...                       ["chunk_size", "nhead", "d_ffn", "modules"])
    {'chunk_size': 10, 'nhead': 2}
    """
    sources = []
    if isinstance(hp.get(arch_key), dict):
        sources.append(hp[arch_key])
    sources.append(hp)
    values = {}
    for key in keys:
        for source in sources:
            if key in source and not isinstance(source[key], (dict, list)):
                values[key] = _plain(source[key])
                break
    return values


def _architecture_stem(architecture):
    stem = Path(architecture).name
    return stem[:-5] if stem.endswith(".yaml") else stem


def _architecture_file(architecture, run_dir):
    """The YAML of an architecture name (``hparams/<name>.yaml``) or path (absolute or relative to ``run_dir``)."""
    stem = _architecture_stem(architecture)
    candidates = [Path(architecture), Path(run_dir) / architecture]
    if stem in ARCHITECTURES and not any(c.is_file() for c in candidates):
        return architecture_path(stem)
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise PublishError(f"Architecture {architecture!r} is neither a known name nor an existing file.")
    return path


def _check_same_architecture(given, recorded, run_dir, where):
    """Refuses an ``--architecture`` other than the one the run recorded (the same file, or the same name when
    the recorded file is gone)."""
    try:
        same = (
            Path(_architecture_file(recorded, run_dir)).resolve() == Path(_architecture_file(given, run_dir)).resolve()
        )
    except PublishError:
        same = _architecture_stem(given) == _architecture_stem(recorded)
    if not same:
        raise PublishError(
            f"--architecture {given} differs from the architecture the run trained ({recorded}, in {where}); "
            "leave --architecture out (it is for runs that do not record one)."
        )


def read_run_architecture(run_dir, architecture=None, arch_key="arch", hparams_file="hyperparams.yaml"):
    """Reads the architecture of a run from its ``hyperparams.yaml`` without building anything.

    Arguments
    ---------
    run_dir : str or Path
        Recipe output folder.
    architecture : str, optional
        Name or path of the architecture file, for a run without an ``architecture`` key (when the run has
        one, it must name the same architecture).
    arch_key : str
        Key of the mapping the architecture was included under.
    hparams_file : str
        Name of the run's hyperparams file in ``run_dir``.
    """
    hp = _load_run_hparams(run_dir, hparams_file)
    recorded = hp.get("architecture")
    if not (architecture or recorded):
        raise PublishError(
            f"{Path(run_dir) / hparams_file} has no 'architecture' key; pass --architecture "
            f"(one of {', '.join(ARCHITECTURES)} or a YAML path)."
        )
    if architecture and recorded:
        _check_same_architecture(str(architecture), str(recorded), run_dir, Path(run_dir) / hparams_file)
    path = _architecture_file(str(architecture or recorded), run_dir)
    overrides = run_architecture_keys(hp, architecture_keys(path), arch_key)
    if "sample_rate" not in hp:
        raise PublishError(f"{Path(run_dir) / hparams_file} has no 'sample_rate' key.")
    num_spks = int(overrides.pop("num_spks", hp.get("num_spks", 2)))
    return RunArchitecture(Path(path).resolve(), overrides, int(hp["sample_rate"]), num_spks)


def build_modules(arch, device=None):
    """Instantiates ``{encoder, masknet, decoder}`` of a :class:`RunArchitecture` (on ``device``, e.g. ``meta``
    to count parameters without allocating them; default: torch's default device)."""
    return build_from_file(arch.path, {**arch.overrides, "num_spks": arch.num_spks}, device)


def load_checkpoint_modules(arch, ckpt_dir):
    """Modules of ``arch`` with the weights of ``ckpt_dir`` (strict: every tensor must match)."""
    modules = build_modules(arch)
    for name in MODULE_NAMES:
        state = torch.load(Path(ckpt_dir) / f"{name}.ckpt", map_location="cpu", weights_only=True)
        try:
            modules[name].load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise PublishError(
                f"{Path(ckpt_dir) / name}.ckpt does not fit architecture {arch.name} with {arch.overrides}: {e}"
            ) from e
        modules[name].eval()
    return modules


def _test_csvs(run_dir, hp):
    """Test CSVs of a run: string hparams whose key names a test set, then ``*tt*.csv``/``*test*.csv`` in save/."""
    run_dir = Path(run_dir)
    found = []
    for key, value in hp.items():
        if ("test" in str(key) or str(key).endswith("_tt")) and isinstance(value, str) and value.endswith(".csv"):
            found.append(Path(value) if Path(value).is_absolute() else run_dir / value)
    save_dir = Path(str(hp.get("save_folder", run_dir / "save")))
    for folder in dict.fromkeys([save_dir, run_dir / "save", run_dir]):
        if folder.is_dir():
            found += sorted(p for p in folder.glob("*.csv") if "tt" in p.stem.split("_") or "test" in p.stem)
    return [p for p in dict.fromkeys(found) if p.is_file() and p.name != RESULTS_FILE]


def _find_test_row(run_dir):
    """First row of the run's test CSV whose ``mix_wav`` exists, if any."""
    try:
        hp = _load_run_hparams(run_dir)
    except PublishError:
        return None
    for csv_path in _test_csvs(run_dir, hp):
        with open(csv_path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                wav = row.get("mix_wav")
                if wav and Path(wav).is_file():
                    return row
                break
    return None


def _find_test_mixture(run_dir):
    """First existing ``mix_wav`` of the run's test CSV, if any."""
    row = _find_test_row(run_dir)
    return None if row is None else Path(row["mix_wav"])


def synthetic_mixture(sample_rate, seconds=3.0, seed=0):
    """A deterministic two-talker-like mixture: two harmonic tones with drifting pitch and syllable envelopes.

    Example
    -------
    >>> synthetic_mixture(8000, 0.5).shape
    (4000,)
    """
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    mix = np.zeros_like(t)
    for f0, rate in ((120.0, 3.0), (210.0, 4.3)):
        pitch = f0 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6.28)))
        phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
        voice = sum(np.sin(k * phase) / k for k in range(1, 12) if k * f0 < sample_rate / 2)
        envelope = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 6.28)), 0, None)
        mix += voice * envelope
    return (0.5 * mix / np.abs(mix).max()).astype("float32")


def _example_excerpt(path, sample_rate):
    """The first ``EXAMPLE_SECONDS`` of an audio file, mono, at ``sample_rate``."""
    return read_audio(path, sample_rate)[0][: int(EXAMPLE_SECONDS * sample_rate)].numpy()


def write_example_mixture(run_dir, path, sample_rate):
    """Writes the run's first test mixture (at most 10 s, model rate, mono), or a synthetic one.

    Returns
    -------
    str
        Where the example comes from.
    """
    found = _find_test_mixture(run_dir)
    if found is not None:
        wav = _example_excerpt(found, sample_rate)
        origin = f"first test mixture ({found.name})"
    else:
        wav = synthetic_mixture(sample_rate)
        origin = "synthetic two-voice mixture"
    sf.write(str(path), wav, sample_rate, subtype="PCM_16")
    return origin


def model_card(
    repo_id, arch, results, ckpt, license_name="apache-2.0", dataset="custom", num_params=None, listening_page=False
):
    """The Hub model card (``README.md``): front matter and ``model-index`` built with huggingface_hub's
    ``ModelCardData`` and ``EvalResult`` (one per improvement metric), the card parsed back by ``ModelCard``;
    with ``listening_page`` it names ``listen/index.html``.

    Example
    -------
    >>> arch = RunArchitecture(Path("spgm-ap.yaml"), {}, 8000, 2)
    >>> results = {"sdr": 20.0, "sdr_i": 20.5, "si-snr": 19.0, "si-snr_i": 19.5, "n": 3000}
    >>> text = model_card("me/spgm", arch, results, None, dataset="wsj0-2mix")
    >>> card = ModelCard(text)
    >>> card.data.library_name, [(r.metric_name, r.metric_value) for r in card.data.eval_results]
    ('speechbrain', [('SI-SNRi', 19.5), ('SDRi', 20.5)])
    """
    shown = [key for key in METRIC_NAMES if key in results]
    name = repo_id.split("/")[-1]
    eval_results = [
        EvalResult(
            task_type="audio-source-separation",
            task_name="Speech Separation",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="test",
            metric_type=METRIC_NAMES[k][0],
            metric_name=METRIC_NAMES[k][1],
            metric_value=round(results[k], 2),
        )
        for k in shown
        if k.endswith("_i")
    ]
    card_data = ModelCardData(
        language=["en"],
        license=license_name,
        library_name="speechbrain",
        pipeline_tag="audio-to-audio",
        tags=["audio-to-audio", "audio-source-separation", "speech-separation", "speechbrain", "SPGM", arch.name],
        datasets=[dataset],
        metrics=[result.metric_type for result in eval_results],
        model_name=name,
        eval_results=eval_results,
    )
    defaults = architecture_keys(arch.path) if arch.path.is_file() else {}
    changed = {k: v for k, v in sorted(arch.overrides.items()) if defaults.get(k) != v}
    keys = ", ".join(f"{k}={v}" for k, v in changed.items())
    keys = f"changed from the file's defaults: {keys}" if keys else "as in the file"
    params = f", {num_params / 1e6:.3f}M parameters" if num_params else ""
    epoch = ""
    if ckpt is not None:
        loss = ckpt.meta.get("si-snr")
        loss = f", validation loss (negative SI-SNR) {loss:.2f}" if isinstance(loss, (int, float)) else ""
        epoch = f"\nWeights: best checkpoint `{Path(ckpt.path).name}`{loss}.\n"
    page = (
        f"\n`{LISTEN_DIR}/index.html` is a listening page of `{EXAMPLE_NAME}` separated by this model (audio players "
        "and spectrograms; download the folder and open the page in a browser).\n"
        if listening_page
        else ""
    )
    body = f"""# {name}: {arch.name} speech separation ({arch.num_spks} sources, {arch.sample_rate} Hz)

A [SPGM](https://arxiv.org/abs/2309.12608) (Single-Path Global Modulation) family separator trained with
spgm-lobes on SpeechBrain. Architecture `{arch.name}`{params} (`hparams/{arch.path.name}` of spgm-lobes; keys {keys}).
{epoch}
## Results on the {dataset} test set ({results["n"]} mixtures)

| {" | ".join(f"{METRIC_NAMES[k][1]} (dB)" for k in shown)} |
|{"---|" * len(shown)}
| {" | ".join(f"{results[k]:.2f}" for k in shown)} |

## Usage

Install SpeechBrain and spgm-lobes (it defines the SPGM block the card builds), then:

```python
from speechbrain.inference.separation import SepformerSeparation

model = SepformerSeparation.from_hparams(source="{repo_id}", savedir="pretrained_models/{name}")
# est_sources: [1, time, {arch.num_spks}] at {arch.sample_rate} Hz
est_sources = model.separate_file(path="{repo_id}/{EXAMPLE_NAME}")
```

Any sample rate, channel count and length, written to wav files:

```bash
spgm-separate mixture.wav --model {repo_id} --out separated/ --rate input
```

or in Python with `spgm_lobes.inference.SPGMSeparation.from_hparams(source="{repo_id}")` and
`separate_to_files(path, out_dir)`.

`{EXAMPLE_NAME}` is a mixture to try the model on.

## Files

`hyperparams.yaml` (inference card, no external includes), `encoder.ckpt`, `masknet.ckpt`, `decoder.ckpt`
(SpeechBrain state dicts), `{EXAMPLE_NAME}`.
{page}
## Reference

SPGM: *Prioritizing Local Features for enhanced speech separation performance*, arXiv:2309.12608.
"""
    return str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}"))


def stage_foreign_files(stage_dir):
    """Names of the entries of ``stage_dir`` that spgm-publish does not write (none when it does not exist)."""
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        return []
    return sorted(p.name for p in stage_dir.iterdir() if p.name not in STAGED_FILES + (LISTEN_DIR,))


def _prepare_stage_dir(stage_dir):
    stage_dir = Path(stage_dir)
    if stage_dir.exists():
        if not stage_dir.is_dir():
            raise PublishError(f"Stage folder {stage_dir} exists and is not a folder.")
        foreign = stage_foreign_files(stage_dir)
        if foreign:
            raise PublishError(
                f"Stage folder {stage_dir} holds files spgm-publish did not write ({', '.join(foreign)}); "
                "choose another --stage-dir."
            )
        for name in STAGED_FILES:
            (stage_dir / name).unlink(missing_ok=True)
        if (stage_dir / LISTEN_DIR).is_dir():
            shutil.rmtree(stage_dir / LISTEN_DIR)
    stage_dir.mkdir(parents=True, exist_ok=True)
    return stage_dir


def stage(
    run_dir, stage_dir, repo_id, arch, ckpt, results, license_name="apache-2.0", dataset="custom", listening_page=False
):
    """Writes the Hub folder: inference card, checkpoints, model card and example mixture
    (the card names ``listen/index.html`` when ``listening_page``: :func:`write_example_page` writes it).

    Returns
    -------
    Path
        ``stage_dir``.
    """
    stage_dir = _prepare_stage_dir(stage_dir)
    header = (
        f"Inference card of {repo_id}: architecture {arch.name}, generated by spgm-publish.\n"
        "Load with speechbrain.inference.separation.SepformerSeparation.from_hparams(source=<this folder or repo>)."
    )
    card = inference_card(arch.path, arch.overrides, arch.sample_rate, arch.num_spks, header=header)
    (stage_dir / "hyperparams.yaml").write_text(card, encoding="utf-8")
    for name in MODULE_NAMES:
        shutil.copyfile(Path(ckpt.path) / f"{name}.ckpt", stage_dir / f"{name}.ckpt")
    write_example_mixture(run_dir, stage_dir / EXAMPLE_NAME, arch.sample_rate)
    # the model's parameters: the checkpoints also hold buffers (e.g. the positional encodings `pe`)
    num_params = sum(count_parameters(m) for m in build_modules(arch, device="meta").values())
    text = model_card(repo_id, arch, results, ckpt, license_name, dataset, num_params, listening_page)
    (stage_dir / "README.md").write_text(text, encoding="utf-8")
    return stage_dir


def verify_staged(stage_dir, reference_modules, sample_rate):
    """Loads ``stage_dir`` with ``SepformerSeparation.from_hparams`` and compares with the reference modules.

    The test signal is the staged example mixture (its first 2 s).

    Returns
    -------
    float
        Largest absolute difference between the two separations.
    """
    wav, _ = read_audio(Path(stage_dir) / EXAMPLE_NAME)
    mix = wav[: int(VERIFY_SECONDS * sample_rate)].unsqueeze(0)
    try:
        est, ref = from_hparams_separations(stage_dir, reference_modules, mix)
    except Exception as e:
        raise PublishError(f"The staged model in {stage_dir} does not load back: {type(e).__name__}: {e}") from e
    diff = float((est - ref).abs().max())
    if not diff < VERIFY_TOLERANCE:
        raise PublishError(
            f"The staged model in {stage_dir} does not load back identically: it separates differently "
            f"from the checkpoint (max |diff| {diff:.3g} >= {VERIFY_TOLERANCE})."
        )
    return diff


def write_example_page(run_dir, stage_dir, modules, arch, repo_id):
    """Writes ``<stage_dir>/listen/``: a listening page of the staged example mixture separated by
    ``modules``, with the references (and per-source metrics) when the run's test CSV lists the
    example's sources (``s1_wav`` ...).

    Returns
    -------
    Path
        The page's ``index.html``.
    """
    from .listen import model_description, write_listening_page

    mix = read_audio(Path(stage_dir) / EXAMPLE_NAME)[0]
    with torch.no_grad():
        est = encode_mask_decode(modules, mix.unsqueeze(0))[0].T.numpy()
    mix = mix.numpy()
    example = {"id": Path(EXAMPLE_NAME).stem, "rate": arch.sample_rate, "mixture": mix, "estimates": est}
    row = _find_test_row(run_dir)
    sources = [row.get(f"s{k + 1}_wav") for k in range(arch.num_spks)] if row else []
    if sources and all(p and Path(p).is_file() for p in sources):
        refs = [_example_excerpt(p, arch.sample_rate) for p in sources]
        example["references"] = [np.pad(r, (0, max(0, len(mix) - len(r))))[: len(mix)] for r in refs]
        example["id"] = f"{example['id']} ({Path(row['mix_wav']).stem})"
    model = model_description(repo_id, modules, architecture=arch.name)
    title = f"{repo_id.split('/')[-1]}: example separation"
    try:
        return write_listening_page(Path(stage_dir) / LISTEN_DIR, [example], model=model, title=title)
    except (OSError, ValueError) as e:
        raise PublishError(f"Could not write the listening page in {stage_dir}: {e}") from e


def resolve_token(token=None):
    """A Hub token: the argument, else what ``huggingface_hub.get_token`` finds (``HF_TOKEN``, or the cached
    ``huggingface-cli login``)."""
    token = token or get_token()
    if not token:
        raise PublishError("No Hugging Face token: set HF_TOKEN or run `huggingface-cli login` (or use --dry-run).")
    return token


def upload(stage_dir, repo_id, token, private=False, api=None):
    """Creates ``repo_id`` if needed and uploads ``stage_dir`` in one commit.

    Arguments
    ---------
    api : huggingface_hub.HfApi-like, optional
        Injected client (tests pass a recording stand-in); default ``HfApi(token=token)``.

    Returns
    -------
    The value of ``api.upload_folder`` (a commit info with the commit URL).
    """
    api = api if api is not None else HfApi(token=token)
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True, token=token)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(stage_dir),
            commit_message=f"Upload {repo_id.split('/')[-1]} with spgm-publish",
            token=token,
        )
    except Exception as e:  # network, permission or quota errors of the Hub client
        raise PublishError(
            f"Upload of {stage_dir} to {repo_id} failed ({type(e).__name__}: {e}); the staged folder is kept."
        ) from e


def publish(
    run_dir,
    repo_id,
    private=False,
    dry_run=False,
    stage_dir=None,
    api=None,
    token=None,
    architecture=None,
    license_name="apache-2.0",
    dataset=None,
    log=print,
    listening_page=False,
):
    """Stages, verifies and (unless ``dry_run``) uploads the best model of a recipe output folder
    (with a listening page of the example, :func:`write_example_page`, when ``listening_page``).

    Returns
    -------
    dict
        ``stage_dir``, ``checkpoint``, ``results``, ``max_diff`` and, after an upload, ``commit``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PublishError(f"Run folder {run_dir} does not exist.")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--repo must look like user/name, got {repo_id!r}.")
    ckpt = find_best_checkpoint(run_dir)
    results = read_test_results(run_dir)
    arch = read_run_architecture(run_dir, architecture)
    if not dry_run:
        token = resolve_token(token)
    if dataset is None:
        hp = _load_run_hparams(run_dir)
        dataset = str(hp.get("dataset", "custom"))
    reference = load_checkpoint_modules(arch, ckpt.path)
    stage_dir = Path(stage_dir) if stage_dir else run_dir / "hub" / repo_id.split("/")[-1]
    stage(run_dir, stage_dir, repo_id, arch, ckpt, results, license_name, dataset, listening_page)
    log(f"Staged {stage_dir} from {Path(ckpt.path).name} ({arch.name}, SI-SNRi {results['si-snr_i']:.2f} dB).")
    max_diff = verify_staged(stage_dir, reference, arch.sample_rate)
    log(f"Verified: from_hparams({stage_dir}) separates like the checkpoint (max |diff| {max_diff:.2g}).")
    if listening_page:
        log(f"Listening page of the example: {write_example_page(run_dir, stage_dir, reference, arch, repo_id)}")
    out = {"stage_dir": stage_dir, "checkpoint": Path(ckpt.path), "results": results, "max_diff": max_diff}
    if dry_run:
        log("Dry run: nothing uploaded.")
        return out
    out["commit"] = upload(stage_dir, repo_id, token, private, api)
    log(f"Uploaded to https://huggingface.co/{repo_id} ({getattr(out['commit'], 'commit_url', out['commit'])}).")
    return out


def main(argv=None, api=None):
    """Entry point of ``spgm-publish``; returns the exit status (0 ok, 1 refused)."""
    parser = argparse.ArgumentParser(
        prog="spgm-publish", description="Publish the best model of a recipe output folder to the Hugging Face Hub."
    )
    parser.add_argument("run_dir", help="recipe output folder (with save/, test_results.csv, hyperparams.yaml)")
    parser.add_argument("--repo", required=True, help="Hub repo id, user/name")
    parser.add_argument("--private", action="store_true", help="create the repo private")
    parser.add_argument("--dry-run", action="store_true", help="stage and verify, do not upload")
    parser.add_argument("--stage-dir", default=None, help="staging folder (default <run_dir>/hub/<name>)")
    parser.add_argument(
        "--architecture", default=None, help="architecture name or YAML, if the run does not say (if it does, the same)"
    )
    parser.add_argument("--dataset", default=None, help="dataset id for the model card (default: run's 'dataset')")
    parser.add_argument("--license", default="apache-2.0", help="license id for the model card")
    parser.add_argument(
        "--listening-page", action="store_true", help="add listen/index.html: the example separated by the model"
    )
    args = parser.parse_args(argv)
    try:
        publish(
            args.run_dir,
            args.repo,
            private=args.private,
            dry_run=args.dry_run,
            stage_dir=args.stage_dir,
            api=api,
            architecture=args.architecture,
            license_name=args.license,
            dataset=args.dataset,
            listening_page=args.listening_page,
        )
    except PublishError as e:
        print(f"spgm-publish: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
