"""Pretrained separators in other layouts: the ``spgm-import`` command and the loading hook of
:class:`spgm_lobes.inference.SPGMSeparation`.

::

    spgm-import yipjiaqi/spgm-base --out models/spgm-base      # or a local folder

Three layouts are read, from a local folder or a Hugging Face Hub repo:

``hub-mixin``
    What huggingface_hub's ``PyTorchModelHubMixin.save_pretrained`` writes for the authors'
    ``SPGMWrapper`` (``yipjiaqi/spgm-base``, ``yipjiaqi/spgm-opt``): ``config.json`` (the config
    dict at the top level or under ``"config"``) and ``model.safetensors`` (or ``pytorch_model.bin``)
    whose keys are prefixed ``encoder.``, ``masknet.`` and ``decoder.``.
``speechbrain``
    A ``from_hparams`` folder: an inference card ``hyperparams.yaml`` (it defines ``modules`` and
    ``pretrainer``) next to ``encoder.ckpt``, ``masknet.ckpt`` and ``decoder.ckpt``, such as
    SpeechBrain's own separators (``speechbrain/sepformer-wsj02mix``, ...) or ``spgm-publish``'s.
``checkpoints``
    The three ``.ckpt`` files without an inference card (``yipjiaqi/spgm``, a recipe's
    ``save/CKPT+*`` folder). The architecture is read from a training ``hyperparams.yaml`` beside
    them or, for ``save/CKPT+*``, from the run folder's (as ``spgm-publish`` reads it: the keys under
    ``arch:`` or at the top level, and the ``architecture`` it names). Without one, what the
    weights do not store (chunk size, heads, ...) is taken from an architecture's defaults, and
    the import warns loudly (:class:`AssumedValuesWarning`).

:func:`import_model` finds the architecture of ``hparams/`` that builds the source model (every
key of the source is compared with what that architecture builds; a source no architecture builds
is refused, naming the key and its value), writes a ``from_hparams`` folder (flattened inference
card, the three ``.ckpt`` files, a model card ``README.md`` naming the source, its license and its
reported results, and ``spgm_import.json``), then checks that the folder loaded with SpeechBrain's
``SepformerSeparation.from_hparams`` separates a test mixture like the source weights loaded
directly (relative difference at most :data:`VERIFY_TOLERANCE` in float32) before it reports
success. :func:`prepare_source` lets ``SPGMSeparation.from_hparams`` (and ``spgm-separate``) take
any of these sources: a SpeechBrain folder or repo is passed through, the others are imported
once into the ``savedir``.
"""

import argparse
import filecmp
import hashlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ruamel.yaml
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData, snapshot_download
from hyperpyyaml import load_hyperpyyaml

from .architectures import ARCHITECTURES, architecture_path, build_from_file
from .card import architecture_keys, from_hparams_separations, inference_card
from .models import AttentivePooling, AveragePooling, LastElementPooling, MaxPooling, SPGMBlock
from .models.identity import IdentityInterBlock
from .publish import synthetic_mixture

MODULE_NAMES = ("encoder", "masknet", "decoder")
CKPT_FILES = tuple(f"{name}.ckpt" for name in MODULE_NAMES)
CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # safetensors first: newer huggingface_hub
CARD_FILE = "hyperparams.yaml"
README = "README.md"
MARKER = "spgm_import.json"
IMPORT_FILES = (CARD_FILE, README, MARKER) + CKPT_FILES
HUB_PATTERNS = (CONFIG_FILE, CARD_FILE, README) + WEIGHT_FILES + CKPT_FILES

LAYOUT_HUB_MIXIN = "hub-mixin"
LAYOUT_SPEECHBRAIN = "speechbrain"
LAYOUT_CHECKPOINTS = "checkpoints"

VERIFY_TOLERANCE = 1e-4
VERIFY_SECONDS = 1.0
SAMPLE_RATE_RANGE = (1000, 384000)
PAPER = "https://arxiv.org/abs/2309.12608"
AUTHORS_CODE = "https://github.com/Yip-Jia-Qi/spgm_standalone"

#: Results the authors report for their Hub models (WSJ0-2mix test set, SI-SNRi in dB; spgm_standalone README).
REPORTED_RESULTS = {
    "yipjiaqi/spgm-base": [("WSJ0-2mix", "test", "si-snri", "SI-SNRi", 22.7, "dynamic mixing")],
    "yipjiaqi/spgm-opt": [("WSJ0-2mix", "test", "si-snri", "SI-SNRi", 23.0, "dynamic mixing")],
}


class PretrainedFormatError(ValueError):
    """A source cannot be imported: the message names the file, key or value that is wrong."""


# ----------------------------------------------------------------------------------------------
# The authors' config.json: every key, and the facts of the model it fixes
# ----------------------------------------------------------------------------------------------

_INT, _BOOL, _STR, _NUMBER, _OPT_INT = "an integer", "true or false", "a string", "a number", "null or an integer"

#: config.json key of the authors' SPGMWrapper -> (expected type, meaning).
CONFIG_KEYS = {
    "sample_rate": (_INT, "sample rate in Hz"),
    "encoder_kernel_size": (_INT, "encoder/decoder kernel size (the stride is kernel // 2)"),
    "encoder_in_nchannels": (_INT, "input channels of the encoder"),
    "encoder_out_nchannels": (_INT, "encoder filters N (also the mask network's width)"),
    "masknet_chunksize": (_INT, "chunk size K"),
    "masknet_numlayers": (_INT, "number of dual-path blocks"),
    "masknet_norm": (_STR, "normalisation of the mask network"),
    "masknet_useextralinearlayer": (_BOOL, "linear layer after the intra and inter blocks"),
    "masknet_extraskipconnection": (_BOOL, "skip connection around the intra block"),
    "masknet_numspks": (_INT, "number of sources"),
    "intra_numlayers": (_INT, "transformer layers of each intra block"),
    "intra_nhead": (_INT, "attention heads"),
    "intra_dffn": (_INT, "feed-forward width"),
    "intra_dropout": (_NUMBER, "dropout"),
    "intra_use_positional": (_BOOL, "positional encoding of the intra blocks"),
    "intra_norm_before": (_BOOL, "pre-norm transformer layers"),
    "spgm_block_pool": (_STR, "within-chunk pooling of the SPGM block"),
    "spgm_block_att_h": (_OPT_INT, "hidden size of the attentive pooling"),
    "spgm_block_att_dropout": (_NUMBER, "dropout of the attentive pooling"),
}
OPTIONAL_CONFIG_KEYS = ("model_type", "config_name")

#: Facts that an architecture YAML sets through one of its top-level keys.
FACT_KEYS = {
    "N_encoder_out": "N_encoder_out",
    "out_channels": "out_channels",
    "kernel_size": "kernel_size",
    "kernel_stride": "kernel_stride",
    "chunk_size": "chunk_size",
    "num_blocks": "num_blocks",
    "num_spks": "num_spks",
    "intra_layers": "intra_layers",
    "intra_nhead": "nhead",
    "intra_d_ffn": "d_ffn",
    "intra_dropout": "dropout",
    "inter_layers": "inter_layers",
    "spgm_pool": "spgm_pool",
}


def _config_value(config, key, where):
    if key not in config:
        raise PretrainedFormatError(f"{where} lacks the key {key!r} ({CONFIG_KEYS[key][1]}).")
    value, (kind, meaning) = config[key], CONFIG_KEYS[key]
    ok = {
        _INT: isinstance(value, int) and not isinstance(value, bool) and value > 0,
        _BOOL: isinstance(value, bool),
        _STR: isinstance(value, str),
        _NUMBER: isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
        _OPT_INT: value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0),
    }[kind]
    if not ok:
        wanted = {_INT: "a positive integer", _NUMBER: "a non-negative number", _OPT_INT: "null or a positive integer"}
        kind = wanted.get(kind, kind)
        raise PretrainedFormatError(f"{where}: {key} = {value!r} is not {kind} ({meaning}).")
    return value


def check_sample_rate(value, where):
    """Returns ``value`` as an int when it is a plausible sample rate in Hz; otherwise raises.

    Example
    -------
    >>> check_sample_rate(8000, "config.json: sample_rate")
    8000
    >>> check_sample_rate(8, "config.json: sample_rate")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    spgm_lobes.pretrained.PretrainedFormatError: config.json: sample_rate = 8 is not a sample rate in Hz (an ...
    """
    low, high = SAMPLE_RATE_RANGE
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value != int(value) or not low <= value <= high:
        raise PretrainedFormatError(
            f"{where} = {value!r} is not a sample rate in Hz (an integer from {low} to {high})."
        )
    return int(value)


def read_hub_config(folder):
    """The authors' config dict of a ``hub-mixin`` folder (top level of ``config.json`` or under ``"config"``).

    Returns
    -------
    config : dict
    where : str
        How to name the dict in messages (``config.json`` or ``config.json["config"]``).
    """
    path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise PretrainedFormatError(f"{path} is not readable JSON ({e}).") from e
    if not isinstance(data, dict):
        raise PretrainedFormatError(f"{path} holds a {type(data).__name__}, not a JSON object.")
    if "masknet_numlayers" not in data and isinstance(data.get("config"), dict):
        return data["config"], f'{path.name}["config"]'
    return data, path.name


def facts_from_config(config, where="config.json"):
    """Model facts fixed by the authors' config dict, each with the config key that sets it.

    Returns
    -------
    facts : dict
        Fact name -> value (see :func:`describe_modules`).
    origins : dict
        Fact name -> ``"<where>: <key> = <value>"`` for messages.
    sample_rate : int
    ignored : list of str
        Keys the authors' code does not read either (left out, reported).

    Example
    -------
    >>> from spgm_lobes.testing import TINY_SPGM_CONFIG
    >>> facts, origins, rate, ignored = facts_from_config(TINY_SPGM_CONFIG)
    >>> facts["kernel_stride"], facts["spgm_pool"], rate, ignored
    (8, 'att', 8000, [])
    >>> origins["kernel_stride"]
    'config.json: encoder_kernel_size = 16 (the stride is kernel // 2)'
    """
    model_type = config.get("model_type", "spgm")
    if model_type != "spgm":
        raise PretrainedFormatError(f"{where}: model_type = {model_type!r} is not an SPGM model (expected 'spgm').")
    v = {key: _config_value(config, key, where) for key in CONFIG_KEYS}
    sample_rate = check_sample_rate(v["sample_rate"], f"{where}: sample_rate")
    pool = v["spgm_block_pool"]
    if pool not in POOLS_BY_NAME:
        raise PretrainedFormatError(
            f"{where}: spgm_block_pool = {pool!r} is not a known SPGM pooling (one of {', '.join(POOLS_BY_NAME)})."
        )
    kernel, width, channels = v["encoder_kernel_size"], v["encoder_out_nchannels"], v["encoder_in_nchannels"]
    if width % v["intra_nhead"]:
        raise PretrainedFormatError(
            f"{where}: intra_nhead = {v['intra_nhead']} does not divide encoder_out_nchannels = {width}."
        )

    def said(key, note=""):
        return f"{where}: {key} = {v[key]!r}{note}"

    fixed = f"{where}: implied by the authors' SPGMWrapper"
    table = {
        "N_encoder_out": (width, said("encoder_out_nchannels")),
        "out_channels": (width, said("encoder_out_nchannels")),
        "masknet_in_channels": (width, said("encoder_out_nchannels")),
        "decoder_in_channels": (width, said("encoder_out_nchannels")),
        "encoder_in_channels": (channels, said("encoder_in_nchannels")),
        "decoder_out_channels": (channels, said("encoder_in_nchannels")),
        "kernel_size": (kernel, said("encoder_kernel_size")),
        "decoder_kernel_size": (kernel, said("encoder_kernel_size")),
        "kernel_stride": (kernel // 2, said("encoder_kernel_size", " (the stride is kernel // 2)")),
        "decoder_stride": (kernel // 2, said("encoder_kernel_size", " (the stride is kernel // 2)")),
        "decoder_bias": (False, fixed),
        "chunk_size": (v["masknet_chunksize"], said("masknet_chunksize")),
        "num_blocks": (v["masknet_numlayers"], said("masknet_numlayers")),
        "norm": (v["masknet_norm"], said("masknet_norm")),
        "linear_layer_after_inter_intra": (v["masknet_useextralinearlayer"], said("masknet_useextralinearlayer")),
        "skip_around_intra": (v["masknet_extraskipconnection"], said("masknet_extraskipconnection")),
        "num_spks": (v["masknet_numspks"], said("masknet_numspks")),
        "global_pos_enc": (False, fixed),
        "intra": ("transformer", fixed),
        "intra_layers": (v["intra_numlayers"], said("intra_numlayers")),
        "intra_nhead": (v["intra_nhead"], said("intra_nhead")),
        "intra_d_ffn": (v["intra_dffn"], said("intra_dffn")),
        "intra_dropout": (float(v["intra_dropout"]), said("intra_dropout")),
        "intra_positional": (v["intra_use_positional"], said("intra_use_positional")),
        "intra_norm_before": (v["intra_norm_before"], said("intra_norm_before")),
        "intra_attention": ("MultiheadAttention", fixed),
        "intra_activation": ("ReLU", fixed),
        "inter": ("spgm", f"{where}: model_type = 'spgm'"),
        "spgm_pool": (pool, said("spgm_block_pool")),
    }
    if pool == "att":
        table["att_h"] = (v["spgm_block_att_h"], said("spgm_block_att_h"))
        if v["spgm_block_att_h"] is not None:
            table["att_dropout"] = (float(v["spgm_block_att_dropout"]), said("spgm_block_att_dropout"))
    ignored = sorted(set(config) - set(CONFIG_KEYS) - set(OPTIONAL_CONFIG_KEYS))
    facts = {name: value for name, (value, _) in table.items()}
    origins = {name: origin for name, (_, origin) in table.items()}
    return facts, origins, sample_rate, ignored


# ----------------------------------------------------------------------------------------------
# What a built model is: the same facts, read from SpeechBrain's dual-path modules
# ----------------------------------------------------------------------------------------------

POOLS_BY_NAME = {"lem": LastElementPooling, "att": AttentivePooling, "avg": AveragePooling, "max": MaxPooling}

FACT_NAMES = {
    "N_encoder_out": "encoder filters",
    "encoder_in_channels": "encoder input channels",
    "kernel_size": "encoder kernel size",
    "kernel_stride": "encoder stride",
    "decoder_in_channels": "decoder input channels",
    "decoder_out_channels": "decoder output channels",
    "decoder_kernel_size": "decoder kernel size",
    "decoder_stride": "decoder stride",
    "decoder_bias": "decoder bias",
    "masknet_in_channels": "mask network input channels",
    "out_channels": "mask network width",
    "chunk_size": "chunk size K",
    "num_blocks": "number of dual-path blocks",
    "num_spks": "number of sources",
    "norm": "mask network normalisation",
    "skip_around_intra": "skip connection around the intra block",
    "linear_layer_after_inter_intra": "linear layer after the intra/inter blocks",
    "global_pos_enc": "global positional encoding",
    "intra": "intra block",
    "inter": "inter block",
    "spgm_pool": "SPGM pooling",
    "att_h": "hidden size of the attentive pooling",
    "att_dropout": "dropout of the attentive pooling",
    "sample_rate": "sample rate",
}


def _fact_name(fact):
    if fact in FACT_NAMES:
        return FACT_NAMES[fact]
    part, _, what = fact.partition("_")
    return f"{part} block {what.replace('_', ' ')}"


def _transformer_facts(block, prefix):
    from speechbrain.lobes.models.dual_path import SBTransformerBlock

    if not isinstance(block, SBTransformerBlock):
        return {prefix: f"a {type(block).__name__}"}
    layers = block.mdl.layers
    layer = layers[0]
    ffn = layer.pos_ffn.ffn
    att = getattr(layer.self_att, "att", None)
    return {
        prefix: "transformer",
        f"{prefix}_layers": len(layers),
        f"{prefix}_nhead": getattr(att, "num_heads", None),
        f"{prefix}_d_ffn": ffn[0].out_features,
        f"{prefix}_dropout": float(ffn[2].p),
        f"{prefix}_positional": bool(block.use_positional_encoding),
        f"{prefix}_norm_before": bool(layer.normalize_before),
        f"{prefix}_attention": type(layer.self_att).__name__,
        f"{prefix}_activation": type(ffn[1]).__name__,
    }


def _inter_facts(inter):
    if isinstance(inter, SPGMBlock):
        pool = inter.pool.model
        name = next((n for n, cls in POOLS_BY_NAME.items() if type(pool) is cls), f"a {type(pool).__name__}")
        facts = {"inter": "spgm", "spgm_pool": name}
        if name == "att":
            hidden = hasattr(pool, "linear2")
            facts["att_h"] = pool.linear1.out_features if hidden else None
            if hidden:
                facts["att_dropout"] = float(pool.dropout.p)
        return facts
    if isinstance(inter, IdentityInterBlock) or type(inter).__name__ == "IdentityBlock":
        return {"inter": "identity"}
    return _transformer_facts(inter, "inter")


def describe_modules(modules):
    """The facts that define a dual-path separator built from SpeechBrain's lobes.

    Arguments
    ---------
    modules : mapping
        ``encoder`` (``dual_path.Encoder``), ``masknet`` (``dual_path.Dual_Path_Model``) and
        ``decoder`` (``dual_path.Decoder``), built on any device (``meta`` included).

    Returns
    -------
    dict
        Fact name -> value; the names are those of :data:`FACT_NAMES` plus ``intra_*`` / ``inter_*``.

    Example
    -------
    >>> with torch.device("meta"):
    ...     hp = load_hyperpyyaml(architecture_path("spgm-opt").read_text())
    >>> facts = describe_modules(hp["modules"])
    >>> facts["num_blocks"], facts["intra_layers"], facts["chunk_size"], facts["inter"], facts["spgm_pool"]
    (16, 2, 500, 'spgm', 'att')
    """
    from speechbrain.lobes.models.dual_path import Decoder, Dual_Path_Model, Encoder

    encoder, masknet, decoder = (modules[name] for name in MODULE_NAMES)
    for name, module, cls in (("encoder", encoder, Encoder), ("masknet", masknet, Dual_Path_Model)):
        if not isinstance(module, cls):
            raise PretrainedFormatError(
                f"The {name} is a {type(module).__name__}; the architectures of hparams/ build "
                f"speechbrain.lobes.models.dual_path.{cls.__name__}."
            )
    if not isinstance(decoder, (Decoder, torch.nn.ConvTranspose1d)):
        raise PretrainedFormatError(f"The decoder is a {type(decoder).__name__}, not a transposed convolution.")
    block = masknet.dual_mdl[0]
    facts = {
        "N_encoder_out": encoder.conv1d.out_channels,
        "encoder_in_channels": encoder.conv1d.in_channels,
        "kernel_size": encoder.conv1d.kernel_size[0],
        "kernel_stride": encoder.conv1d.stride[0],
        "decoder_in_channels": decoder.in_channels,
        "decoder_out_channels": decoder.out_channels,
        "decoder_kernel_size": decoder.kernel_size[0],
        "decoder_stride": decoder.stride[0],
        "decoder_bias": decoder.bias is not None,
        "masknet_in_channels": masknet.conv1d.in_channels,
        "out_channels": masknet.conv1d.out_channels,
        "chunk_size": masknet.K,
        "num_blocks": len(masknet.dual_mdl),
        "num_spks": masknet.num_spks,
        "norm": block.norm,
        "skip_around_intra": bool(block.skip_around_intra),
        "linear_layer_after_inter_intra": bool(block.linear_layer_after_inter_intra),
        "global_pos_enc": bool(masknet.use_global_pos_enc),
    }
    facts.update(_transformer_facts(block.intra_mdl, "intra"))
    facts.update(_inter_facts(block.inter_mdl))
    return facts


def facts_from_state_dicts(state_dicts, where):
    """The facts that the shapes of a dual-path separator's state dicts tell.

    Chunk size, attention heads, dropout, normalisation type, pre-norm and parameter-free
    pooling are not stored in weights: they stay unknown here.

    Arguments
    ---------
    state_dicts : dict
        ``encoder``, ``masknet``, ``decoder`` -> state dict.
    where : str
        The source, for messages.
    """
    try:
        enc = state_dicts["encoder"]["conv1d.weight"]
        dec = state_dicts["decoder"]["weight"]
        mask = state_dicts["masknet"]
        width = mask["conv1d.weight"].shape[0]
        facts = {
            "N_encoder_out": enc.shape[0],
            "encoder_in_channels": enc.shape[1],
            "kernel_size": enc.shape[2],
            "decoder_in_channels": dec.shape[0],
            "decoder_out_channels": dec.shape[1],
            "decoder_kernel_size": dec.shape[2],
            "decoder_bias": "bias" in state_dicts["decoder"],
            "masknet_in_channels": mask["conv1d.weight"].shape[1],
            "out_channels": width,
            "num_spks": mask["conv2d.weight"].shape[0] // width,
            "num_blocks": 1 + max(int(k.split(".")[1]) for k in mask if k.startswith("dual_mdl.")),
        }
        for part in ("intra", "inter"):
            prefix = f"dual_mdl.0.{part}_mdl."
            keys = [k[len(prefix) :] for k in mask if k.startswith(prefix)]
            if any(k.startswith("mdl.layers.") for k in keys):
                facts[part] = "transformer"
                facts[f"{part}_layers"] = 1 + max(int(k.split(".")[2]) for k in keys if k.startswith("mdl.layers."))
                facts[f"{part}_d_ffn"] = mask[f"{prefix}mdl.layers.0.pos_ffn.ffn.0.weight"].shape[0]
                facts[f"{part}_positional"] = "pos_enc.pe" in keys
            elif "s_lin.weight" in keys:
                facts[part] = "spgm"
                if "pool.model.linear1.weight" in keys:
                    facts["spgm_pool"] = "att"
                    hidden = "pool.model.linear2.weight" in keys
                    facts["att_h"] = mask[f"{prefix}pool.model.linear1.weight"].shape[0] if hidden else None
            elif not keys:
                facts[part] = "identity"
            else:
                facts[part] = f"unknown ({', '.join(sorted(keys)[:3])}, ...)"
    except (KeyError, IndexError, ValueError) as e:
        raise PretrainedFormatError(
            f"{where} does not hold a dual-path separator (encoder/masknet/decoder state dicts): missing {e}."
        ) from e
    return {name: int(value) if isinstance(value, (int, np.integer)) else value for name, value in facts.items()}


# ----------------------------------------------------------------------------------------------
# Matching the facts with the architectures of hparams/
# ----------------------------------------------------------------------------------------------


@dataclass
class Match:
    """An architecture of ``hparams/`` and the keys that make it build the source model."""

    architecture: str
    overrides: dict
    num_spks: int
    assumed: dict = field(default_factory=dict)

    @property
    def path(self):
        """The architecture YAML."""
        return architecture_path(self.architecture)


def build_architecture(name, overrides=None, num_spks=2, device=None):
    """Builds ``encoder``, ``masknet`` and ``decoder`` of an architecture of ``hparams/``.

    Example
    -------
    >>> modules = build_architecture("spgm-ap", {"chunk_size": 100}, num_spks=3, device="meta")
    >>> modules["masknet"].K, modules["masknet"].num_spks
    (100, 3)
    """
    return build_from_file(architecture_path(name), {**(overrides or {}), "num_spks": int(num_spks)}, device)


def _changed(name, overrides):
    defaults = architecture_keys(architecture_path(name))
    return {k: v for k, v in overrides.items() if defaults.get(k) != v}


def _shape_problems(modules, state_dicts, where):
    problems = []
    for name in MODULE_NAMES:
        own = {k: tuple(v.shape) for k, v in modules[name].state_dict().items()}
        given = {k: tuple(v.shape) for k, v in state_dicts[name].items()}
        for key in sorted(set(own) | set(given)):
            if own.get(key) != given.get(key):
                theirs = given.get(key, "no such tensor")
                ours = own.get(key, "no such tensor")
                problems.append(f"{where}: {name}.{key} is {theirs}, the architecture has {ours}")
    return problems


def match_architecture(facts, origins, where, state_dicts=None, weights_where=None, names=None):
    """The architecture of ``hparams/`` that builds a model with these facts.

    Every architecture is built on the ``meta`` device with the keys the facts set, and its
    facts are compared with the source's; with ``state_dicts``, the tensor names and shapes must
    be equal too. ``names`` restricts the search to these architectures (default: all of them).
    Of the architectures that match, the one with the fewest keys changed from its defaults is
    chosen. Facts the source does not tell take the architecture's value and are listed in
    ``Match.assumed``.

    Raises
    ------
    PretrainedFormatError
        No architecture builds the model; the message names the source's keys and values that
        differ from the closest architecture.

    Example
    -------
    >>> from spgm_lobes.testing import TINY_SPGM_CONFIG
    >>> facts, origins, _, _ = facts_from_config(TINY_SPGM_CONFIG)
    >>> m = match_architecture(facts, origins, "config.json")
    >>> m.architecture, m.overrides["chunk_size"]
    ('spgm-ap-s', 10)
    """
    candidates = []
    for name in names or ARCHITECTURES:
        keys = architecture_keys(architecture_path(name))
        overrides = {key: facts[fact] for fact, key in FACT_KEYS.items() if key in keys and fact in facts}
        overrides.pop("num_spks", None)
        try:
            modules = build_architecture(name, overrides, facts.get("num_spks", 2), device="meta")
        except Exception as e:  # a value the architecture cannot take
            unknown = ", ".join(f"{k} = {v!r}" for k, v in keys.items() if k not in overrides and k != "num_spks")
            unknown = f" and, not stored in the source, its defaults {unknown}" if unknown else ""
            problem = f"{where}: building {name} with {overrides}{unknown} fails: {e}"
            candidates.append((name, overrides, [problem], [], {}))
            continue
        built = describe_modules(modules)
        problems, shapes = [], []
        for fact, value in facts.items():
            if built.get(fact) != value:
                theirs = f"has {built[fact]!r}" if fact in built else "has no such setting"
                problems.append(f"{origins.get(fact, where + ': ' + _fact_name(fact))}: {name} {theirs}")
        if not problems and state_dicts is not None:
            shapes = _shape_problems(modules, state_dicts, weights_where or where)
        assumed = {fact: value for fact, value in built.items() if fact not in facts}
        candidates.append((name, overrides, problems, shapes, assumed))
    fitting = [c for c in candidates if not c[2] and not c[3]]
    if fitting:
        name, overrides, _, _, assumed = min(fitting, key=lambda c: len(_changed(c[0], c[1])))
        return Match(name, _changed(name, overrides), int(facts.get("num_spks", 2)), assumed)
    name, _, problems, shapes, _ = min(candidates, key=lambda c: (len(c[2]), len(c[3]), len(_changed(c[0], c[1]))))
    if not problems:
        shown = "\n  ".join(shapes[:8]) + ("\n  ..." if len(shapes) > 8 else "")
        raise PretrainedFormatError(
            f"The weights do not fit {where}, which describes architecture {name} of hparams/:\n  {shown}"
        )
    shown = "\n  ".join(problems[:8]) + ("\n  ..." if len(problems) > 8 else "")
    raise PretrainedFormatError(
        f"{where} matches no architecture of hparams/ ({', '.join(names or ARCHITECTURES)}). "
        f"What differs from the closest one, {name}:\n  {shown}"
    )


# ----------------------------------------------------------------------------------------------
# Reading a source folder
# ----------------------------------------------------------------------------------------------


def _is_inference_card(path):
    try:
        with open(path, encoding="utf-8") as f:
            tree = ruamel.yaml.YAML().load(f)
    except Exception:  # not YAML ruamel can read: not a card we can use
        return False
    return isinstance(tree, dict) and "modules" in tree and "pretrainer" in tree


def is_speechbrain_config(path):
    """Whether a ``config.json`` is the one SpeechBrain Hub repos ship for the Hugging Face widget
    (``{"speechbrain": {"speechbrain_interface": ...}}``, or that key at the top level), not a model config.

    Example
    -------
    >>> path = getfixture("tmp_path") / "config.json"
    >>> _ = path.write_text('{"speechbrain": {"speechbrain_interface": "SepformerSeparation"}}')
    >>> is_speechbrain_config(path)
    True
    >>> _ = path.write_text('{"sample_rate": 8000, "masknet_chunksize": 250}')
    >>> is_speechbrain_config(path)
    False
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    nested = data.get("speechbrain")
    return "speechbrain_interface" in data or (isinstance(nested, dict) and "speechbrain_interface" in nested)


def detect_layout(folder, hparams_file=CARD_FILE):
    """Which layout a local folder holds (see the module docstring).

    Raises
    ------
    PretrainedFormatError
        The folder holds none, or a layout with files missing (named).

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> for name in ("encoder.ckpt", "masknet.ckpt", "decoder.ckpt"):
    ...     _ = (folder / name).write_bytes(b"")
    >>> detect_layout(folder)
    'checkpoints'
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedFormatError(f"{folder} is not a folder.")
    missing_ckpts = [name for name in CKPT_FILES if not (folder / name).is_file()]
    card = folder / hparams_file
    if card.is_file() and _is_inference_card(card):
        if missing_ckpts:
            raise PretrainedFormatError(f"Model folder {folder} lacks {', '.join(missing_ckpts)}.")
        return LAYOUT_SPEECHBRAIN
    if (folder / CONFIG_FILE).is_file() and not is_speechbrain_config(folder / CONFIG_FILE):
        if not any((folder / name).is_file() for name in WEIGHT_FILES):
            raise PretrainedFormatError(
                f"Model folder {folder} has {CONFIG_FILE} but neither {' nor '.join(WEIGHT_FILES)}."
            )
        return LAYOUT_HUB_MIXIN
    if len(missing_ckpts) < len(CKPT_FILES):
        if missing_ckpts:
            raise PretrainedFormatError(f"Model folder {folder} lacks {', '.join(missing_ckpts)}.")
        return LAYOUT_CHECKPOINTS
    raise PretrainedFormatError(
        f"Model folder {folder} has no {hparams_file} (with encoder/masknet/decoder.ckpt), no {CONFIG_FILE} "
        f"(with {' or '.join(WEIGHT_FILES)}) and no encoder/masknet/decoder.ckpt: no model to load."
    )


def _load_tensors(path):
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated or foreign files
        raise PretrainedFormatError(f"{path} is not a readable weights file ({type(e).__name__}: {e}).") from e
    if not isinstance(data, dict) or not all(torch.is_tensor(v) for v in data.values()):
        raise PretrainedFormatError(f"{path} does not hold a state dict (name -> tensor).")
    return data


def read_hub_weights(folder):
    """The ``encoder``, ``masknet``, ``decoder`` state dicts of a ``hub-mixin`` folder (prefixes removed)."""
    path = next(Path(folder) / name for name in WEIGHT_FILES if (Path(folder) / name).is_file())
    flat = _load_tensors(path)
    state_dicts = {name: {} for name in MODULE_NAMES}
    for key, value in flat.items():
        prefix, _, rest = key.partition(".")
        if prefix not in state_dicts or not rest:
            raise PretrainedFormatError(
                f"{path.name}: tensor {key!r} is not under encoder., masknet. or decoder. (the SPGMWrapper layout)."
            )
        state_dicts[prefix][rest] = value
    empty = [name for name, sd in state_dicts.items() if not sd]
    if empty:
        raise PretrainedFormatError(f"{path.name} has no tensors under {', '.join(p + '.' for p in empty)}")
    return state_dicts, path.name


def read_checkpoints(folder):
    """The ``encoder``, ``masknet``, ``decoder`` state dicts of the three ``.ckpt`` files of a folder."""
    return {name: _load_tensors(Path(folder) / f"{name}.ckpt") for name in MODULE_NAMES}


def training_hparams_files(folder, hparams_file=CARD_FILE):
    """Where a checkpoint folder's training hyperparams may be: beside the checkpoints, then, for a
    recipe's ``save/CKPT+*`` folder, the run folder's ``hyperparams.yaml`` two levels up.

    Example
    -------
    >>> [str(p) for p in training_hparams_files(Path("run/save/CKPT+2024-01-01+00-00-00+00"))]
    ['run/save/CKPT+2024-01-01+00-00-00+00/hyperparams.yaml', 'run/hyperparams.yaml']
    """
    folder = Path(folder)
    files = [folder / hparams_file]
    if folder.name.startswith("CKPT+"):
        files.append(folder.parent.parent / CARD_FILE)
    return files


@dataclass
class TrainingHparams:
    """What a training ``hyperparams.yaml`` says about a checkpoint folder's model."""

    path: Path
    facts: dict
    origins: dict
    sample_rate: object = None
    architecture: str = None  # a name of hparams/ when the file names one (its ``architecture`` key)


def read_training_hparams(path):
    """Reads the architecture of a training ``hyperparams.yaml`` the way ``spgm-publish`` does
    (:func:`spgm_lobes.publish.read_run_architecture`: the architecture keys under ``arch:`` or at
    the top level); a file without an ``architecture`` key gives the keys it has.

    Returns
    -------
    TrainingHparams or None
        ``None`` when the file is not YAML holding a mapping.
    """
    from .publish import PublishError, _load_run_hparams, read_run_architecture, run_architecture_keys

    path = Path(path)
    try:
        hp = _load_run_hparams(path.parent, path.name)
    except Exception:  # unreadable: not a training file we can use
        return None
    if not isinstance(hp, dict):
        return None
    architecture = None
    if hp.get("architecture"):
        try:
            arch = read_run_architecture(path.parent, hparams_file=path.name)
        except PublishError as e:
            raise PretrainedFormatError(str(e)) from e
        keys = {**arch.overrides, "num_spks": arch.num_spks}
        rate = arch.sample_rate
        if arch.path == architecture_path(arch.name).resolve():
            architecture = arch.name
    else:
        keys = run_architecture_keys(hp, FACT_KEYS.values())
        rate = hp.get("sample_rate")
    facts, origins = {}, {}
    for fact, key in FACT_KEYS.items():
        if key in keys:
            value = keys[key]
            value = value if isinstance(value, str) else (float(value) if key == "dropout" else int(value))
            facts[fact] = value
            origins[fact] = f"{path}: {key} = {value!r}"
    return TrainingHparams(path, facts, origins, rate, architecture)


def _check_against_weights(training, facts):
    """Raises when a training file contradicts what the checkpoints' shapes say, naming the key."""
    for fact, value in training.facts.items():
        if fact in facts and facts[fact] != value:
            raise PretrainedFormatError(
                f"{training.origins[fact]}, but the checkpoints have {_fact_name(fact)} = {facts[fact]!r}: "
                "these weights were not trained with this file."
            )


@dataclass
class Source:
    """A source model read from its folder: what it is and its weights."""

    where: str
    layout: str
    match: Match
    sample_rate: int
    state_dicts: dict
    reference: dict = None  # modules that hold the source weights (the SpeechBrain card's own)
    ignored: list = field(default_factory=list)
    name: str = ""
    folder: Path = None
    hparams_note: str = ""  # checkpoints layout: where the training hyperparams were read, or looked for


def read_source(folder, where=None, hparams_file=CARD_FILE):
    """Reads a local source folder of any layout and finds its architecture.

    Arguments
    ---------
    folder : str or Path
    where : str, optional
        How to name the source in messages (default: the folder).
    """
    folder = Path(folder)
    where = where or str(folder)
    layout = detect_layout(folder, hparams_file)
    if layout == LAYOUT_HUB_MIXIN:
        config, config_where = read_hub_config(folder)
        facts, origins, rate, ignored = facts_from_config(config, f"{where}/{config_where}")
        state_dicts, weights = read_hub_weights(folder)
        match = match_architecture(facts, origins, f"{where}/{config_where}", state_dicts, f"{where}/{weights}")
        name = str(config.get("config_name", "")) or folder.name
        return Source(where, layout, match, rate, state_dicts, ignored=ignored, name=name, folder=folder)
    if layout == LAYOUT_SPEECHBRAIN:
        card = folder / hparams_file
        try:
            hparams = load_hyperpyyaml(card.read_text(encoding="utf-8"))
        except Exception as e:  # classes this environment lacks, bad YAML
            raise PretrainedFormatError(f"{where}/{hparams_file} does not load: {type(e).__name__}: {e}") from e
        modules = hparams.get("modules", {})
        missing = [name for name in MODULE_NAMES if name not in modules]
        if missing:
            raise PretrainedFormatError(f"{where}/{hparams_file}: modules lacks {', '.join(missing)}.")
        for key in ("sample_rate", "num_spks"):
            if key not in hparams:
                raise PretrainedFormatError(f"{where}/{hparams_file} lacks the key {key!r}.")
        rate = check_sample_rate(hparams["sample_rate"], f"{where}/{hparams_file}: sample_rate")
        facts = describe_modules(modules)
        origins = {f: f"{where}/{hparams_file}: {_fact_name(f)} = {v!r}" for f, v in facts.items()}
        state_dicts = read_checkpoints(folder)
        match = match_architecture(facts, origins, f"{where}/{hparams_file}", state_dicts)
        return Source(where, layout, match, rate, state_dicts, reference=modules, name=folder.name, folder=folder)
    state_dicts = read_checkpoints(folder)
    facts = facts_from_state_dicts(state_dicts, f"{where} (encoder/masknet/decoder.ckpt)")
    origins = {f: f"{where}: the checkpoints' {_fact_name(f)} = {v!r}" for f, v in facts.items()}
    candidates = training_hparams_files(folder, hparams_file)
    training = next((t for t in map(read_training_hparams, filter(Path.is_file, candidates)) if t), None)
    if training is not None:
        _check_against_weights(training, facts)
        facts, origins = {**training.facts, **facts}, {**training.origins, **origins}
    if "kernel_stride" not in facts:
        facts["kernel_stride"] = facts["kernel_size"] // 2
        origins["kernel_stride"] = f"{where}: stride assumed kernel // 2 = {facts['kernel_stride']}"
    facts.setdefault("decoder_stride", facts["kernel_stride"])
    named = training.architecture if training is not None else None
    match = match_architecture(
        facts, origins, f"{where} (encoder/masknet/decoder.ckpt)", state_dicts, names=[named] if named else None
    )
    if named:
        match.assumed = {}  # the run's architecture file fixes what its keys do not
    if training is not None and training.sample_rate is not None:
        rate = check_sample_rate(training.sample_rate, f"{training.path}: sample_rate")
    else:
        rate = 8000
        match.assumed["sample_rate"] = rate
    looked = " and ".join(str(p) for p in candidates)
    note = f"read from {training.path}" if training is not None else f"no training hyperparams.yaml ({looked})"
    return Source(where, layout, match, rate, state_dicts, name=folder.name, folder=folder, hparams_note=note)


# ----------------------------------------------------------------------------------------------
# Writing and verifying the from_hparams folder
# ----------------------------------------------------------------------------------------------


def _load_strict(module, state_dict, where):
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        raise PretrainedFormatError(f"{where} does not fit the architecture: {e}") from e


def reference_modules(source):
    """The source weights loaded directly into modules (no card, no ``.ckpt`` files), in eval mode.

    For a SpeechBrain card that is the card's own modules; otherwise the matched architecture
    built from its YAML of ``hparams/``.
    """
    modules = source.reference
    if modules is None:
        modules = build_architecture(source.match.architecture, source.match.overrides, source.match.num_spks)
    for name in MODULE_NAMES:
        _load_strict(modules[name], source.state_dicts[name], f"{source.where}: {name}")
        modules[name].eval()
    return modules


def check_mixture(sample_rate, seconds=VERIFY_SECONDS):
    """The reproducible two-voice test mixture ``[1, time]`` of the check (``spgm-publish``'s
    synthetic example mixture).

    Example
    -------
    >>> check_mixture(8000).shape
    torch.Size([1, 8000])
    """
    return torch.from_numpy(synthetic_mixture(sample_rate, seconds)).unsqueeze(0)


def relative_difference(estimate, reference):
    """``||estimate - reference|| / ||reference||`` (Euclidean norms over all elements).

    Example
    -------
    >>> relative_difference(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    0.0
    """
    scale = float(torch.linalg.vector_norm(reference.double()))
    return float(torch.linalg.vector_norm((estimate - reference).double())) / max(scale, 1e-30)


def verify_import(folder, reference, sample_rate):
    """Loads ``folder`` with SpeechBrain's ``SepformerSeparation.from_hparams`` and separates
    :func:`check_mixture` with it and with the ``reference`` modules (float32, CPU).

    Returns
    -------
    float
        The relative difference of the two separations; :class:`PretrainedFormatError` when it
        exceeds :data:`VERIFY_TOLERANCE` or the folder does not load.
    """
    mix = check_mixture(sample_rate)
    try:
        est, ref = from_hparams_separations(folder, reference, mix)
    except Exception as e:  # anything that stops the folder from loading
        raise PretrainedFormatError(f"The imported folder does not load: {type(e).__name__}: {e}") from e
    diff = relative_difference(est, ref)
    if not diff <= VERIFY_TOLERANCE:
        raise PretrainedFormatError(
            f"The imported folder separates differently from the source weights "
            f"(relative difference {diff:.3g} > {VERIFY_TOLERANCE})."
        )
    return diff


def _source_card(folder):
    path = Path(folder) / README
    if not path.is_file():
        return None
    try:
        return ModelCard.load(path, ignore_metadata_errors=True)
    except Exception:  # a README without (valid) metadata
        return None


def model_card(source, repo_id, revision, diff):
    """The model card (huggingface_hub ``ModelCard``) of an imported folder.

    Names the source and its revision, carries over its license and reported results (its own
    card's metadata, or :data:`REPORTED_RESULTS` for the authors' repos), and says how the
    import was made and checked.
    """
    origin = _source_card(source.folder) if source.folder is not None else None
    meta = origin.data if origin is not None else None
    license_id = getattr(meta, "license", None)
    results = list(getattr(meta, "eval_results", None) or [])
    url = f"https://huggingface.co/{repo_id}" if repo_id else None
    for dataset, split, metric, label, value, training in [] if results else REPORTED_RESULTS.get(repo_id, []):
        results.append(
            EvalResult(
                task_type="audio-to-audio",
                task_name="Speech separation",
                dataset_type=dataset.lower(),
                dataset_name=dataset,
                dataset_split=split,
                metric_type=metric,
                metric_name=label,
                metric_value=value,
                source_name=f"Yip et al., spgm_standalone README ({training})",
                source_url=AUTHORS_CODE,
            )
        )
    name = source.name or "model"
    data = ModelCardData(
        model_name=name,
        license=license_id,
        license_name=getattr(meta, "license_name", None),
        license_link=getattr(meta, "license_link", None),
        library_name="speechbrain",
        pipeline_tag="audio-to-audio",
        tags=["speech-separation", "spgm-lobes", source.match.architecture],
        base_model=repo_id,
        eval_results=results or None,
    )
    match = source.match
    changed = ", ".join(f"`{k}: {v}`" for k, v in sorted(match.overrides.items())) or "none"
    where = f"[{repo_id}]({url})" if repo_id else f"`{source.where}`"
    rev = f" at revision `{revision}`" if revision else ""
    lic = (
        f"`{license_id}` (from the source's model card)"
        if license_id
        else f"not stated in the source's metadata: check {url or 'the source'} before use"
    )
    rows = "\n".join(
        f"| {r.dataset_name} ({r.dataset_split or 'test'}) | {r.metric_name or r.metric_type} | {r.metric_value} | "
        f"{r.source_name or 'source model card'} |"
        for r in results
    )
    table = (
        f"| Data | Metric | Value | Reported by |\n|---|---|---|---|\n{rows}\n\n"
        "These are the source's numbers, not measured again here."
        if rows
        else "The source states no results in machine-readable form; see its model card."
    )
    assumed = ", ".join(f"{_fact_name(k)} = {v!r}" for k, v in sorted(match.assumed.items()) if k in ASSUMED_SHOWN)
    assumed = (
        f"\n**Assumed:** not stored in the source and taken from the architecture's defaults: {assumed}. If the "
        "model was trained with other values it separates wrongly; the check above cannot tell (its reference is "
        "built with the same values).\n"
        if assumed
        else ""
    )
    if match.architecture.startswith("spgm"):
        credits = (
            "SPGM: Yip et al., *SPGM: Prioritizing Local Features for enhanced speech separation performance*, "
            f"ICASSP 2024 ({PAPER});\nthe authors' code and models: {AUTHORS_CODE}. "
            f"The weights are the source's: {where}."
        )
    else:
        credits = f"The weights and the results above are the source's: {where}; see its model card for its authors."
    body = f"""
# {name} (imported)

A speech separator imported with `spgm-import` (spgm-lobes) from {where}{rev} (`{source.layout}` layout).
Weights are the source's, unchanged; only their container changed.

- Architecture: `{match.architecture}` (`hparams/{match.architecture}.yaml` of spgm-lobes), keys changed from its
  defaults: {changed}; {source.sample_rate} Hz, {match.num_spks} sources.
- License: {lic}.
- Check: loaded with SpeechBrain's `SepformerSeparation.from_hparams`, this folder separates a {VERIFY_SECONDS:g}-s
  test mixture like the source weights loaded directly (relative difference {diff:.2g}, float32).
{assumed}
## Results reported by the source

{table}

## Usage

```python
from speechbrain.inference.separation import SepformerSeparation  # needs spgm-lobes installed

model = SepformerSeparation.from_hparams(source="<this folder>")
est_sources = model.separate_file(path="mixture.wav")  # [1, time, {match.num_spks}] at {source.sample_rate} Hz
```

## Credits

{credits}
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


ASSUMED_SHOWN = ("chunk_size", "intra_nhead", "intra_dropout", "norm", "intra_norm_before", "spgm_pool", "sample_rate")


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _prepare_out_dir(out, source_folder=None):
    """Checks that ``out`` may take an import: not the source's folder or one above it, and holding
    only files that an earlier import wrote, unchanged (their hashes are in its ``spgm_import.json``)."""
    out = Path(out)
    if source_folder is not None:
        source, target = Path(source_folder).resolve(), out.resolve()
        if target == source or target in source.parents:
            where = "is the source folder" if target == source else f"holds the source folder {source_folder}"
            raise PretrainedFormatError(
                f"--out {out} {where}: the import would overwrite the source's own files; choose another --out."
            )
    if out.exists():
        if not out.is_dir():
            raise PretrainedFormatError(f"{out} exists and is not a folder.")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in IMPORT_FILES)
        if foreign:
            raise PretrainedFormatError(
                f"{out} holds files spgm-import did not write ({', '.join(foreign)}); choose another --out."
            )
        record = read_marker(out)
        written = record.get("files") if record is not None and isinstance(record.get("files"), dict) else {}
        earlier_version = record is not None and "source" in record and "files" not in record  # names only
        unrecorded = [
            name
            for name in IMPORT_FILES
            if name != MARKER
            and not earlier_version
            and ((out / name).exists() or (out / name).is_symlink())
            and ((out / name).is_symlink() or not (out / name).is_file() or written.get(name) != _sha256(out / name))
        ]
        if (out / MARKER).exists() and (record is None or "source" not in record):
            unrecorded.append(MARKER)
        if unrecorded:
            raise PretrainedFormatError(
                f"{out} holds {', '.join(unrecorded)}, which spgm-import did not write (not recorded with this "
                f"content in {out / MARKER}); choose another --out."
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _write_import(source, out, repo_id, revision, log):
    """Writes the import into a fresh folder next to ``out``, verifies it, then moves it into ``out``."""
    out = _prepare_out_dir(out, source.folder)
    match = source.match
    reference = reference_modules(source)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        header = (
            f"Inference card of {source.name or out.name}, imported by spgm-import from {repo_id or source.where}.\n"
            "Load with speechbrain.inference.separation.SepformerSeparation.from_hparams(source=<this folder>)."
        )
        card = inference_card(match.path, match.overrides, source.sample_rate, match.num_spks, header=header)
        (stage / CARD_FILE).write_text(card, encoding="utf-8")
        target = load_hyperpyyaml(card)["modules"]
        for name in MODULE_NAMES:
            _load_strict(target[name], reference[name].state_dict(), f"{source.where}: {name}")
            torch.save(target[name].state_dict(), stage / f"{name}.ckpt")
        diff = verify_import(stage, reference, source.sample_rate)
        model_card(source, repo_id, revision, diff).save(stage / README)
        info = {
            "source": repo_id or str(source.where),
            "revision": revision,
            "layout": source.layout,
            "architecture": match.architecture,
            "overrides": match.overrides,
            "sample_rate": source.sample_rate,
            "num_spks": match.num_spks,
            "assumed": {k: v for k, v in match.assumed.items() if k in ASSUMED_SHOWN},
            "ignored_config_keys": source.ignored,
            "relative_difference": diff,
            "files": {name: _sha256(stage / name) for name in IMPORT_FILES if name != MARKER},
        }
        (stage / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        out.mkdir(exist_ok=True)
        for name in IMPORT_FILES:
            os.replace(stage / name, out / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if source.ignored:
        log(f"spgm-import: config keys the authors' code does not read either, left out: {', '.join(source.ignored)}")
    if info["assumed"]:
        warnings.warn(assumed_warning(source, info["assumed"]), AssumedValuesWarning, stacklevel=3)
    return info


class AssumedValuesWarning(UserWarning):
    """An import took values the source does not store from an architecture's defaults."""


def assumed_warning(source, assumed):
    """The warning of an import whose source does not say all of its model: which values were
    assumed, why, and that the check cannot catch them.

    Example
    -------
    >>> source = Source("ckpts", LAYOUT_CHECKPOINTS, Match("spgm-ap", {}, 2), 8000, {}, hparams_note="no file")
    >>> print(assumed_warning(source, {"chunk_size": 250}))  # doctest: +NORMALIZE_WHITESPACE
    spgm-import: ASSUMED, not read from ckpts (no file): chunk size K = 250 are spgm-ap's defaults. If the model was
    trained with other values it separates wrongly, and the check cannot tell (it builds its reference with the same
    values). Put the training hyperparams.yaml beside the checkpoints to import them as trained.
    """
    values = ", ".join(f"{_fact_name(k)} = {v!r}" for k, v in sorted(assumed.items()))
    note = f" ({source.hparams_note})" if source.hparams_note else ""
    return (
        f"spgm-import: ASSUMED, not read from {source.where}{note}: {values} are {source.match.architecture}'s "
        "defaults. If the model was trained with other values it separates wrongly, and the check cannot tell (it "
        "builds its reference with the same values). Put the training hyperparams.yaml beside the checkpoints to "
        "import them as trained."
    )


# ----------------------------------------------------------------------------------------------
# Sources: local folders and Hub repos
# ----------------------------------------------------------------------------------------------


def is_hub_repo_id(source):
    """Whether ``source`` (not an existing path) reads as a Hub repo id ``user/name``.

    Example
    -------
    >>> is_hub_repo_id("yipjiaqi/spgm-base"), is_hub_repo_id("./models/x"), is_hub_repo_id("a/b/c")
    (True, False, False)
    """
    source = str(source)
    return (
        not Path(source).exists()
        and source.count("/") == 1
        and not source.startswith((".", "/", "~"))
        and all(source.split("/"))
    )


def hub_snapshot(repo_id, allow_patterns, revision=None):
    """Downloads the files of a Hub repo that match ``allow_patterns`` (huggingface_hub's
    ``snapshot_download``, into its cache); returns the local snapshot folder."""
    return snapshot_download(repo_id=repo_id, allow_patterns=list(allow_patterns), revision=revision)


def _snapshot_revision(folder):
    folder = Path(folder)
    return folder.name if folder.parent.name == "snapshots" else None


def fetch_source(source, downloader=None, revision=None, patterns=HUB_PATTERNS):
    """A local folder for ``source`` (a folder, or a Hub repo downloaded with ``downloader``).

    Returns
    -------
    folder : Path
    repo_id : str or None
        The Hub repo id, ``None`` for local folders.
    revision : str or None
        The snapshot's commit when known.
    """
    path = Path(str(source)).expanduser()
    if path.exists():
        if not path.is_dir():
            raise PretrainedFormatError(f"{path} is a file, not a model folder.")
        return path, None, None
    if not is_hub_repo_id(source):
        raise PretrainedFormatError(f"Model {source!r} is neither an existing folder nor a Hub repo id (user/name).")
    downloader = downloader or hub_snapshot
    try:
        folder = Path(downloader(str(source), patterns, revision=revision))
    except Exception as e:  # network, missing repo, authentication
        raise PretrainedFormatError(f"Could not download {source!r} from the Hub: {type(e).__name__}: {e}") from e
    return folder, str(source), revision or _snapshot_revision(folder)


def import_model(source, out, downloader=None, revision=None, hparams_file=CARD_FILE, log=print):
    """Imports a pretrained separator into a ``from_hparams`` folder ``out`` and verifies it.

    Arguments
    ---------
    source : str or Path
        A local folder or a Hub repo id, in any layout of the module docstring.
    out : str or Path
        The folder to write (created; it may only hold the files of an earlier import, unchanged, and
        may be neither the source folder nor a folder above it).
    downloader : callable, optional
        ``downloader(repo_id, allow_patterns, revision=None) -> folder``; default
        :func:`hub_snapshot` (huggingface_hub's ``snapshot_download``).
    revision : str, optional
        Hub revision (branch, tag or commit).
    log : callable
        Receives progress messages.

    Returns
    -------
    dict
        What ``spgm_import.json`` records: source, layout, architecture, overrides, sample rate,
        number of sources, relative difference of the check, ...

    Example
    -------
    >>> from spgm_lobes.testing import TINY_SPGM_CONFIG, write_hub_mixin_folder
    >>> tmp = getfixture("tmp_path")
    >>> src = write_hub_mixin_folder(tmp / "authors", TINY_SPGM_CONFIG)
    >>> info = import_model(src, tmp / "imported", log=lambda msg: None)
    >>> info["architecture"], info["relative_difference"] <= 1e-4
    ('spgm-ap-s', True)
    """
    folder, repo_id, revision = fetch_source(source, downloader, revision)
    return _import_folder(folder, repo_id, revision, out, hparams_file, log)


def _import_folder(folder, repo_id, revision, out, hparams_file, log):
    where = repo_id or str(Path(folder).resolve())
    log(f"spgm-import: reading {where} ...")
    src = read_source(folder, where, hparams_file)
    info = _write_import(src, out, repo_id, revision, log)
    changed = ", ".join(f"{k}={v}" for k, v in sorted(info["overrides"].items())) or "no keys changed"
    log(
        f"spgm-import: {where} ({info['layout']}) -> {out}: {info['architecture']} ({changed}), "
        f"{info['sample_rate']} Hz, {info['num_spks']} sources; verified with from_hparams "
        f"(relative difference {info['relative_difference']:.2g} <= {VERIFY_TOLERANCE:g})"
        + (f"; with ASSUMED values: {info['assumed']}." if info["assumed"] else ".")
    )
    return info


def checkpoint_folder(source, work_dir, downloader=None, revision=None, log=print):
    """A folder holding ``encoder.ckpt``, ``masknet.ckpt`` and ``decoder.ckpt`` with the weights of ``source``.

    A SpeechBrain or checkpoint folder (local, or a Hub snapshot) is used as it is; a ``hub-mixin``
    source is imported into ``work_dir`` first (once: a later call finds the import there).

    Example
    -------
    >>> from spgm_lobes.testing import TINY_SPGM_CONFIG, write_hub_mixin_folder
    >>> tmp = getfixture("tmp_path")
    >>> src = write_hub_mixin_folder(tmp / "authors", TINY_SPGM_CONFIG)
    >>> folder = checkpoint_folder(src, tmp / "work", log=lambda msg: None)
    >>> folder == tmp / "work", checkpoint_folder(folder, tmp / "other") == folder
    (True, True)
    """
    work_dir = Path(work_dir)
    if imported_from(work_dir, source_key(source)):
        return work_dir
    folder, repo_id, revision = fetch_source(source, downloader, revision)
    if detect_layout(folder) != LAYOUT_HUB_MIXIN:
        return Path(folder)
    _import_folder(folder, repo_id, revision, work_dir, CARD_FILE, log)
    return work_dir


def source_key(source):
    """How a source is recorded in ``spgm_import.json``: a Hub repo id as it is, a folder as its absolute path.

    Example
    -------
    >>> source_key("yipjiaqi/spgm-base"), source_key("/models/x/../y")
    ('yipjiaqi/spgm-base', '/models/y')
    """
    return str(source) if is_hub_repo_id(source) else str(Path(str(source)).expanduser().resolve())


def read_marker(folder):
    """The record ``spgm_import.json`` of ``folder`` (a dict), or ``None`` when there is none readable."""
    try:
        record = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def imported_from(folder, source):
    """Whether ``folder`` holds a complete import of ``source`` (its ``spgm_import.json`` says so). An
    import by an earlier version (a record without file hashes) does not count: it is imported again, since
    that version read a checkpoint folder's training hyperparams wrongly."""
    folder = Path(folder)
    info = read_marker(folder)
    if info is None or info.get("passed_through") or "files" not in info:
        return False
    complete = all((folder / name).is_file() for name in IMPORT_FILES)
    return complete and info.get("source") in (str(source), source_key(source))


def default_import_dir(source):
    """Where a source is imported when no ``savedir`` is given: ``pretrained_models/<user>--<name>``
    for a Hub repo, ``pretrained_models/<folder name>-<hash of its path>`` for a local folder.

    Example
    -------
    >>> str(default_import_dir("yipjiaqi/spgm-base"))
    'pretrained_models/yipjiaqi--spgm-base'
    """
    if is_hub_repo_id(source):
        return Path("pretrained_models") / str(source).replace("/", "--")
    path = Path(str(source)).expanduser().resolve()
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:8]
    return Path("pretrained_models") / f"{path.name}-{digest}"


def prepare_source(source, savedir=None, hparams_file=CARD_FILE, downloader=None, revision=None, log=print):
    """What to hand to SpeechBrain's ``from_hparams`` for ``source``: ``(source, savedir)``.

    What happens is decided by the source, never by what ``savedir`` already holds. A SpeechBrain
    folder or repo is returned unchanged (and recorded in ``<savedir>/spgm_import.json``). A
    ``hub-mixin`` or ``checkpoints`` source is imported (:func:`import_model`) into ``savedir``
    (default :func:`default_import_dir`) the first time, and that folder is returned as both source
    and savedir; later calls find the import there and download nothing.

    SpeechBrain reuses the files it finds in a savedir, so a savedir that holds the model of another
    source is refused (:class:`PretrainedFormatError` naming the savedir and both sources) rather than
    returned; an import of another source is replaced by the new import.

    Example
    -------
    >>> from spgm_lobes.testing import TINY_SPGM_CONFIG, write_hub_mixin_folder
    >>> tmp = getfixture("tmp_path")
    >>> src = write_hub_mixin_folder(tmp / "authors", TINY_SPGM_CONFIG)
    >>> new_source, savedir = prepare_source(src, tmp / "converted", log=lambda msg: None)
    >>> new_source == savedir == str(tmp / "converted"), (tmp / "converted" / "hyperparams.yaml").is_file()
    (True, True)
    """
    if not isinstance(source, (str, os.PathLike)):
        return source, savedir  # a SpeechBrain FetchSource: theirs to handle
    out = Path(savedir) if savedir is not None else default_import_dir(source)
    key = source_key(source)
    if imported_from(out, key):
        return str(out), str(out)
    if passes_through(source, hparams_file, downloader, revision):
        if savedir is not None:
            _claim_savedir(out, key, source, hparams_file)
        return source, savedir
    record = read_marker(out)
    if _model_files(out, hparams_file) and (record is None or record.get("passed_through")):
        raise PretrainedFormatError(_savedir_taken(out, record, key, hparams_file))
    if record is not None and record.get("source") != key:
        log(f"spgm-import: {out} holds an import of {record.get('source')!r}; importing {key!r} in its place.")
    import_model(source, out, downloader, revision, hparams_file, log)
    return str(out), str(out)


def passes_through(source, hparams_file=CARD_FILE, downloader=None, revision=None):
    """Whether ``source`` loads with SpeechBrain as it is (an inference card with its ``.ckpt`` files).

    A Hub repo is judged by its ``hyperparams.yaml`` and ``config.json`` alone (a light download): an
    inference card passes through when ``config.json`` is absent or SpeechBrain's own
    (:func:`is_speechbrain_config`); a model ``config.json`` (the ``hub-mixin`` layout) is imported.
    """
    if is_hub_repo_id(source):
        light, _, _ = fetch_source(source, downloader, revision, patterns=(hparams_file, CONFIG_FILE))
        card, config = Path(light) / hparams_file, Path(light) / CONFIG_FILE
        return card.is_file() and (not config.is_file() or is_speechbrain_config(config)) and _is_inference_card(card)
    return detect_layout(Path(str(source)).expanduser(), hparams_file) == LAYOUT_SPEECHBRAIN


def _model_files(folder, hparams_file=CARD_FILE):
    """The model files (card and ``.ckpt`` files, links included) present in ``folder``."""
    return [name for name in (hparams_file,) + CKPT_FILES if (folder / name).exists() or (folder / name).is_symlink()]


def _savedir_taken(out, record, key, hparams_file):
    held = (
        f"the model of {record['source']!r} (recorded in {out / MARKER})"
        if record and record.get("source")
        else (f"a model ({', '.join(_model_files(out, hparams_file))}) whose source is not recorded")
    )
    return (
        f"savedir {out} already holds {held}; loading {key!r} there would return that model, since SpeechBrain "
        f"reuses the files of a savedir. Choose another savedir for {key!r}, or remove {out}."
    )


def _fetched_from(out, names, source):
    """Whether the files ``names`` of a savedir are those of ``source``: links to (or copies of) a local
    folder's files, links into the Hugging Face cache of a Hub repo."""
    if is_hub_repo_id(source):
        cache = "models--" + str(source).replace("/", "--")
        return all((out / n).is_symlink() and cache in (out / n).resolve().parts for n in names)
    folder = Path(str(source)).expanduser()
    return all(
        (folder / n).is_file()
        and (out / n).is_file()
        and ((out / n).resolve() == (folder / n).resolve() or filecmp.cmp(out / n, folder / n, shallow=False))
        for n in names
    )


def _claim_savedir(out, key, source, hparams_file):
    """Records in ``out`` that SpeechBrain fills it from ``source``; refuses a savedir holding another model."""
    if not is_hub_repo_id(source) and out.resolve() == Path(str(source)).expanduser().resolve():
        return  # the source's own folder: SpeechBrain reads its files
    record = read_marker(out)
    present = _model_files(out, hparams_file)
    same = record is not None and record.get("source") == key and record.get("passed_through")
    if present and not same and (record is not None or not _fetched_from(out, present, source)):
        raise PretrainedFormatError(_savedir_taken(out, record, key, hparams_file))
    if not same:
        out.mkdir(parents=True, exist_ok=True)
        info = {"source": key, "layout": LAYOUT_SPEECHBRAIN, "passed_through": True}
        (out / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def main(argv=None, downloader=None):
    """Entry point of ``spgm-import``; returns the exit status (0 imported and verified, 1 refused)."""
    parser = argparse.ArgumentParser(
        prog="spgm-import",
        description="Import a pretrained separator (the SPGM authors' Hub models, SpeechBrain separators, "
        "checkpoint folders) into a from_hparams folder, and check that it separates like the source.",
    )
    parser.add_argument("source", help="local folder or Hub repo id (user/name)")
    parser.add_argument("--out", required=True, help="folder to write (hyperparams.yaml, .ckpt files, README.md)")
    parser.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    args = parser.parse_args(argv)
    try:
        import_model(args.source, args.out, downloader=downloader, revision=args.revision)
    except PretrainedFormatError as e:
        print(f"spgm-import: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
