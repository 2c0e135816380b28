"""Inference cards: the ``hyperparams.yaml`` that ``from_hparams`` loads.

The template ``hparams/inference/separation.yaml`` includes an architecture
file of ``hparams/``; :func:`inference_card` points it at any architecture,
applies the architecture keys a model was trained with and flattens the
result (no ``!include``), so the card works from a Hub repo without this
repository's files (the ``spgm_lobes`` package is still needed for SPGM
blocks).
"""

import io
import re
from pathlib import Path

from hyperpyyaml import resolve_references

from .architectures import HPARAMS_DIR

TEMPLATE_PATH = HPARAMS_DIR / "inference" / "separation.yaml"

_INCLUDE = re.compile(r"!include:\S+")
_COMMENT_LINE = re.compile(r"^\s*#.*\n", re.MULTILINE)


def architecture_keys(architecture_file):
    """Top-level scalar keys of an architecture file with their default values.

    These are the keys a recipe may override (``N_encoder_out``, ``chunk_size``, ...).

    Example
    -------
    >>> from spgm_lobes.architectures import architecture_path
    >>> architecture_keys(architecture_path("spgm-ap"))["chunk_size"]
    250
    """
    import ruamel.yaml

    with open(architecture_file, encoding="utf-8") as f:
        tree = ruamel.yaml.YAML().load(f)
    return {
        key: value
        for key, value in tree.items()
        if isinstance(value, (int, float, str, bool)) and not hasattr(value, "tag")
    }


def inference_card(architecture_file, arch_overrides=None, sample_rate=8000, num_spks=2, header=""):
    """Flattened inference card (YAML text) for a model of ``architecture_file``.

    Arguments
    ---------
    architecture_file : str or Path
        An architecture YAML (see :func:`spgm_lobes.architectures.architecture_path`).
    arch_overrides : dict, optional
        Architecture keys the model was trained with (``{"N_encoder_out": 16}``);
        each must be a top-level scalar key of the architecture file.
    sample_rate : int
        Sample rate of the model.
    num_spks : int
        Number of sources the model separates.
    header : str
        Comment lines written at the top of the card.

    Returns
    -------
    str
        YAML text defining ``sample_rate``, ``num_spks``, ``modules`` and ``pretrainer``.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from spgm_lobes.architectures import architecture_path
    >>> text = inference_card(architecture_path("spgm-le-s"), {"N_encoder_out": 8, "out_channels": 8,
    ...     "nhead": 1, "d_ffn": 8, "intra_layers": 1}, sample_rate=16000)
    >>> "!include" in text
    False
    >>> hp = load_hyperpyyaml(text)
    >>> hp["sample_rate"], sorted(hp["pretrainer"].loadables), hp["modules"]["encoder"].conv1d.out_channels
    (16000, ['decoder', 'encoder', 'masknet'], 8)
    """
    architecture_file = Path(architecture_file).resolve()
    if not architecture_file.is_file():
        raise FileNotFoundError(f"Architecture file {architecture_file} does not exist.")
    arch_overrides = dict(arch_overrides or {})
    arch_overrides.pop("num_spks", None)  # set once, at the top of the card
    known = architecture_keys(architecture_file)
    unknown = sorted(set(arch_overrides) - set(known))
    if unknown:
        raise ValueError(
            f"Not top-level keys of {architecture_file.name}: {', '.join(unknown)} (known: {', '.join(sorted(known))})."
        )
    template = TEMPLATE_PATH.read_text(encoding="utf-8")
    template = _INCLUDE.sub(lambda _: f"!include:{architecture_file}", template, count=1)
    overrides = {"sample_rate": int(sample_rate), "num_spks": int(num_spks)}
    if arch_overrides:
        overrides["arch"] = arch_overrides
    flat = resolve_references(io.StringIO(template), overrides, overrides_must_match=True).getvalue()
    flat = re.sub(r":\n\n+", ":\n", _COMMENT_LINE.sub("", flat))
    header = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    return header + flat


def from_hparams_separations(folder, reference_modules, mix):
    """What a user of a model folder gets, next to what its source weights give.

    Loads ``folder`` with plain SpeechBrain (``SepformerSeparation.from_hparams``, on the CPU,
    into a throw-away savedir) and separates ``mix`` ``[B, T]`` with it and with
    ``reference_modules`` (``encoder`` -> ``masknet`` -> ``decoder``). ``spgm-publish`` and
    ``spgm-import`` check their folders with it. An error while loading propagates.

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        The folder's and the reference's estimates ``[B, T', C]``, cut to a common length.

    Example
    -------
    >>> from spgm_lobes.testing import TINY_ARCH_OVERRIDES
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from spgm_lobes.architectures import architecture_path
    >>> card = inference_card(architecture_path("spgm-ap-s"), TINY_ARCH_OVERRIDES)
    >>> modules = load_hyperpyyaml(card)["modules"]
    >>> folder = getfixture("tmp_path")
    >>> _ = (folder / "hyperparams.yaml").write_text(card)
    >>> for name, module in modules.items():
    ...     torch.save(module.state_dict(), folder / f"{name}.ckpt")
    >>> loaded, reference = from_hparams_separations(folder, modules, torch.randn(1, 800))
    >>> loaded.shape, torch.allclose(loaded, reference)
    (torch.Size([1, 800, 2]), True)
    """
    import tempfile

    import torch
    from speechbrain.inference.separation import SepformerSeparation

    from .fast import encode_mask_decode

    with tempfile.TemporaryDirectory(prefix="spgm-check-") as savedir:
        loaded = SepformerSeparation.from_hparams(
            source=str(Path(folder).resolve()), savedir=savedir, run_opts={"device": "cpu"}
        )
        with torch.no_grad():
            est = loaded.separate_batch(mix)
    with torch.no_grad():
        ref = encode_mask_decode(reference_modules, mix)
    n = min(ref.shape[1], est.shape[1])
    return est[:, :n], ref[:, :n]
