"""Fine-tuning a separator trained with another number of outputs (e.g. a 4-output GASS model -> 2 speakers).

SpeechBrain's ``Dual_Path_Model`` ends with ``conv2d``, a 1x1 convolution from ``out_channels`` to
``out_channels * num_spks`` channels whose output is split speaker-major (channels ``[k*N, (k+1)*N)`` make the mask
of speaker ``k``). Every other parameter of the encoder, masknet and decoder has the same shape whatever
``num_spks`` is, so a checkpoint of a 4-output model loads into a 2-output one except for that layer.

:func:`load_masknet_with_output_subset` is a SpeechBrain ``Pretrainer`` custom hook that loads every masknet
parameter and initialises the new output convolution from the **first** ``num_spks`` speaker slices of the
checkpoint's one (weights and biases). The outputs of a PIT-trained model are unordered and each of its slices
already produces a complete mask, so any ``num_spks`` slices are a sound start; the first ones are the documented
choice. With ``output_init="random"`` (:func:`masknet_transfer_hook`) the output convolution keeps its fresh
initialisation instead. A checkpoint with *fewer* outputs than the model is an error.

Use in a recipe YAML::

    pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
        collect_in: !ref <save_folder>/pretrained_gass
        loadables: {encoder: !ref <encoder>, masknet: !ref <masknet>, decoder: !ref <decoder>}
        paths:
            encoder: !ref <gass_checkpoint>/encoder.ckpt
            masknet: !ref <gass_checkpoint>/masknet.ckpt
            decoder: !ref <gass_checkpoint>/decoder.ckpt
        custom_hooks:
            masknet: !name:spgm_lobes.finetune.load_masknet_with_output_subset

then ``pretrainer.collect_files(); pretrainer.load_collected()`` before training
(:func:`load_pretrained_separator` does both).

Starting from another architecture (``--init_from``)
---------------------------------------------------

Every recipe takes ``--init_from <folder|repo>`` (:func:`init_from`, called by
:func:`spgm_lobes.recipe.run_recipe`): an imported or published model, a SpeechBrain separator or a checkpoint
folder. The parameters are grouped into units (:func:`transfer_units`): the encoder, the decoder, the mask
network's input/output layers (``io``), and the intra and inter part of each dual-path block. A unit loads when
the source has it with the same parameter names; the same names with other shapes are an error (the models
differ in size); a unit the source lacks or builds differently keeps its initialisation. The encoder, the
decoder, the ``io`` layers and at least one block unit must load. So a SpeechBrain Sepformer (2 x (8 intra +
8 inter transformer layers)) starts an SPGM-AP of the same width (4 x (8 intra + SPGM)) with its encoder,
decoder, ``io`` layers and the intra transformers of blocks 0 and 1; the SPGM blocks (no counterpart in a
transformer) and blocks 2 and 3 start fresh.
"""

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from speechbrain.utils.distributed import run_on_main

OUTPUT_LAYER = "conv2d"


def adapt_output_layer(state_dict, masknet, output_init="slice", layer=OUTPUT_LAYER):
    """Returns ``state_dict`` with the ``layer`` parameters reshaped for ``masknet``'s number of outputs.

    Arguments
    ---------
    state_dict : dict
        Masknet parameters from a checkpoint.
    masknet : torch.nn.Module
        The model to load into (its ``layer`` defines the wanted shapes).
    output_init : str
        ``"slice"``: keep the first speaker slices of the checkpoint; ``"random"``: keep ``masknet``'s own
        (fresh) parameters for that layer.

    Example
    -------
    >>> source, target = torch.nn.Module(), torch.nn.Module()
    >>> source.conv2d, target.conv2d = torch.nn.Conv2d(3, 12, 1), torch.nn.Conv2d(3, 6, 1)
    >>> adapted = adapt_output_layer(source.state_dict(), target)
    >>> adapted["conv2d.weight"].shape, bool(torch.equal(adapted["conv2d.bias"], source.conv2d.bias[:6]))
    (torch.Size([6, 3, 1, 1]), True)
    """
    if output_init not in ("slice", "random"):
        raise ValueError(f"output_init must be 'slice' or 'random', got {output_init!r}.")
    own = masknet.state_dict()
    adapted = dict(state_dict)
    for name in (f"{layer}.weight", f"{layer}.bias"):
        if name not in own or name not in state_dict:
            raise KeyError(f"Masknet parameter {name!r} not found (model has it: {name in own}).")
        wanted, given = own[name].shape, state_dict[name].shape
        if wanted == given:
            continue
        if wanted[1:] != given[1:] or given[0] % _speaker_width(masknet, layer) or wanted[0] > given[0]:
            raise ValueError(
                f"Cannot adapt {name}: checkpoint shape {tuple(given)} vs model {tuple(wanted)}; "
                "only a checkpoint with as many or more outputs (same channel width) can be loaded."
            )
        adapted[name] = state_dict[name][: wanted[0]].clone() if output_init == "slice" else own[name].clone()
    return adapted


def _speaker_width(masknet, layer):
    return getattr(masknet, layer).in_channels


def transfer_units(key):
    """The transfer unit of a parameter name: ``dual_mdl.<i>.intra`` / ``dual_mdl.<i>.inter`` (a dual-path
    block's intra or inter model with its norm and linear layer), ``"output"`` (the mask network's output
    convolution, one slice per source) or ``"io"`` (every other parameter: the encoder, the decoder, the
    mask network's input and output layers).

    Example
    -------
    >>> transfer_units("dual_mdl.3.inter_norm.weight"), transfer_units("dual_mdl.0.intra_mdl.mdl.norm.bias")
    ('dual_mdl.3.inter', 'dual_mdl.0.intra')
    >>> transfer_units("conv2d.weight"), transfer_units("end_conv1x1.weight")
    ('output', 'io')
    """
    match = _UNIT.match(key)
    if match:
        return f"dual_mdl.{match.group(1)}.{match.group(2)}"
    return "output" if key.startswith(f"{OUTPUT_LAYER}.") else "io"


_UNIT = re.compile(r"dual_mdl\.(\d+)\.(intra|inter)_")


@dataclass
class TransferReport:
    """What a transfer loaded (``loaded``), left at its fresh initialisation (``fresh``, unit -> reason)
    and found only in the source (``ignored``); units are named ``<module>`` or ``<module>.dual_mdl.<i>.<part>``."""

    loaded: list = field(default_factory=list)
    fresh: dict = field(default_factory=dict)
    ignored: list = field(default_factory=list)


def plan_transfer(module, state_dict, name, output_init="slice", report=None, partial=False):
    """The state dict to load into ``module`` from a (possibly different) separator's ``state_dict``.

    A unit (see :func:`transfer_units`) is loaded when the source has the same parameter names for it; a
    parameter of the same name with another shape is an error (the models differ in size: set the
    architecture keys to the source's). A unit the source lacks, or has with other parameter names (another
    structure: a transformer inter block against an SPGM block, 8 against 2 intra layers), keeps the
    model's own parameters. The mask network's output convolution may come from a source with more outputs
    (:func:`adapt_output_layer`); with ``partial``, a source with fewer outputs leaves it fresh.

    Returns
    -------
    dict
        A complete state dict for ``module``; ``report`` (a :class:`TransferReport`) is filled in.
    """
    report = report if report is not None else TransferReport()
    own = module.state_dict()
    layer = f"{OUTPUT_LAYER}.weight"
    if name == "masknet" and layer in own and layer in state_dict and own[layer].shape != state_dict[layer].shape:
        try:
            state_dict = adapt_output_layer(state_dict, module, output_init)
        except ValueError:
            if not partial:
                raise
            outputs = f"{state_dict[layer].shape[0]} channels in the source, {own[layer].shape[0]} in the model"
            state_dict = {k: v for k, v in state_dict.items() if transfer_units(k) != "output"}
            report.fresh[f"{name}.output"] = f"the source has fewer outputs ({outputs})"
    units, source_units = {}, {}
    for key in own:
        units.setdefault(transfer_units(key), []).append(key)
    for key in state_dict:
        source_units.setdefault(transfer_units(key), []).append(key)
    merged = dict(own)
    for unit, keys in units.items():
        label = name if unit == "io" else f"{name}.{unit}"
        given = source_units.get(unit)
        if not given:
            report.fresh.setdefault(label, "not in the source")
            continue
        if set(given) != set(keys):
            extra = sorted(set(given) - set(keys))[:1] + sorted(set(keys) - set(given))[:1]
            report.fresh[label] = f"another structure in the source (e.g. {', '.join(extra)})"
            continue
        for key in keys:
            if tuple(state_dict[key].shape) != tuple(own[key].shape):
                raise ValueError(
                    f"{name}.{key} has shape {tuple(state_dict[key].shape)} in the source and {tuple(own[key].shape)} "
                    "in the model: the two differ in size; set the model's architecture keys (N_encoder_out, "
                    "out_channels, kernel_size, d_ffn, ...) to the source's."
                )
            merged[key] = state_dict[key]
        report.loaded.append(label)
    report.ignored += [f"{name}.{unit}" for unit in source_units if unit not in units]
    return merged


def load_transferred(module, path, name, output_init="slice", partial=False, report=None):
    """Loads ``module`` from the checkpoint file ``path`` with :func:`plan_transfer`.

    With ``partial=False`` every unit must load and the source may hold nothing more. With ``partial=True``
    the encoder, the decoder and the mask network's input/output layers must load and at least one unit of
    the mask network's blocks; the other units (the output convolution included) keep their initialisation.
    """
    report = report if report is not None else TransferReport()
    path = Path(path).resolve()  # the Pretrainer's collected link -> the source file, for messages
    before = TransferReport()
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    merged = plan_transfer(module, state_dict, name, output_init, before, partial)
    if not partial and (before.fresh or before.ignored):
        parts = [f"{unit}: {why}" for unit, why in before.fresh.items()]
        parts += [f"{unit}: not in the model" for unit in before.ignored]
        raise ValueError(f"{path} does not fit the {name}: {'; '.join(parts)}.")
    if name in before.fresh:
        raise ValueError(f"{path} does not fit the {name}: {before.fresh[name]}.")
    if name == "masknet" and not any(unit.startswith(f"{name}.dual_mdl.") for unit in before.loaded):
        reasons = "; ".join(f"{unit}: {why}" for unit, why in before.fresh.items())
        raise ValueError(f"{path}: no dual-path block of the source fits the model ({reasons}).")
    module.load_state_dict(merged, strict=True)
    report.loaded += before.loaded
    report.fresh.update(before.fresh)
    report.ignored += before.ignored
    return report


def load_masknet_with_output_subset(masknet, path, output_init="slice"):
    """``Pretrainer`` hook: loads a masknet checkpoint with ``num_spks`` or more outputs (see the module docstring)."""
    load_transferred(masknet, path, "masknet", output_init)


def masknet_transfer_hook(output_init="slice"):
    """A ``Pretrainer`` hook with the given output initialisation (``"slice"`` or ``"random"``).

    Example
    -------
    >>> masknet_transfer_hook("random").keywords
    {'output_init': 'random'}
    """
    if output_init not in ("slice", "random"):
        raise ValueError(f"output_init must be 'slice' or 'random', got {output_init!r}.")
    return functools.partial(load_masknet_with_output_subset, output_init=output_init)


def load_pretrained_separator(modules, checkpoint_folder, collect_in, output_init="slice", partial=False, report=None):
    """Loads ``encoder``, ``masknet`` and ``decoder`` from a folder of ``.ckpt`` files (``save/CKPT+...``, a
    ``from_hparams`` folder) through SpeechBrain's ``Pretrainer``; returns the pretrainer.

    With ``partial`` (see :func:`load_transferred`), the parts of another architecture that fit are loaded
    and ``report`` (a :class:`TransferReport`) says which.
    """
    from speechbrain.utils.parameter_transfer import Pretrainer

    checkpoint_folder = Path(checkpoint_folder)
    names = ("encoder", "masknet", "decoder")
    missing = [n for n in names if not (checkpoint_folder / f"{n}.ckpt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"Checkpoint folder {checkpoint_folder} lacks {', '.join(m + '.ckpt' for m in missing)}."
        )
    report = report if report is not None else TransferReport()
    pretrainer = Pretrainer(
        collect_in=collect_in,
        loadables={n: modules[n] for n in names},
        paths={n: str((checkpoint_folder / f"{n}.ckpt").resolve()) for n in names},
        custom_hooks={
            n: functools.partial(load_transferred, name=n, output_init=output_init, partial=partial, report=report)
            for n in names
        },
    )
    run_on_main(pretrainer.collect_files)
    pretrainer.load_collected()
    return pretrainer


def split_init_from(argv):
    """Takes ``--init_from SOURCE`` (or ``--init_from=SOURCE``) out of a recipe's command line.

    Returns
    -------
    argv : list
        The other arguments, for SpeechBrain's parser.
    source : str or None

    Example
    -------
    >>> split_init_from(["hparams.yaml", "--init_from", "yipjiaqi/spgm-base", "--debug"])
    (['hparams.yaml', '--debug'], 'yipjiaqi/spgm-base')
    >>> split_init_from(["hparams.yaml", "--init_from=models/a"])
    (['hparams.yaml'], 'models/a')
    """
    argv, rest, source = list(argv), [], None
    while argv:
        arg = argv.pop(0)
        if arg == "--init_from":
            if not argv or argv[0].startswith("--"):
                raise ValueError("--init_from needs a model folder or a Hub repo id (user/name).")
            source = argv.pop(0)
        elif arg.startswith("--init_from="):
            source = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, source


def source_sample_rate(folder):
    """The ``sample_rate`` of the inference card or training ``hyperparams.yaml`` in ``folder``, if it says.

    Example
    -------
    >>> folder = getfixture("tmp_path")
    >>> source_sample_rate(folder) is None
    True
    >>> _ = (folder / "hyperparams.yaml").write_text("sample_rate: 16000")
    >>> source_sample_rate(folder)
    16000
    """
    import ruamel.yaml

    path = Path(folder) / "hyperparams.yaml"
    try:
        with open(path, encoding="utf-8") as f:
            rate = ruamel.yaml.YAML().load(f).get("sample_rate")
    except Exception:  # no card, or one ruamel cannot read: nothing to compare
        return None
    return int(rate) if isinstance(rate, (int, float)) and not isinstance(rate, bool) else None


def init_from(hparams, source, downloader=None):
    """``--init_from``: starts a recipe's ``encoder``, ``masknet`` and ``decoder`` from a pretrained model.

    ``source`` is a folder or Hub repo in any layout of :mod:`spgm_lobes.pretrained` (an imported or
    published model, a SpeechBrain separator, a recipe's ``save/CKPT+...``); a published model of the SPGM
    authors is imported into ``<output_folder>/init_from`` first. The weights load through SpeechBrain's
    ``Pretrainer`` with :func:`load_transferred` (``partial``): what fits is loaded, the rest keeps its
    initialisation, and ``<output_folder>/init_from.json`` records which is which. A run that already has
    checkpoints continues from them and does not load ``source``.

    Returns
    -------
    TransferReport or None
    """
    if not source:
        return None
    import json
    import logging

    from speechbrain.utils.distributed import if_main_process

    from .pretrained import checkpoint_folder

    logger = logging.getLogger(__name__)
    log = logger.info
    checkpointer = hparams.get("checkpointer")
    if checkpointer is not None and checkpointer.find_checkpoint() is not None:
        log("--init_from %s not applied: the run continues from its own checkpoints.", source)
        return None
    work = Path(hparams["output_folder"]) / "init_from"
    run_on_main(checkpoint_folder, kwargs={"source": source, "work_dir": work, "downloader": downloader, "log": log})
    folder = checkpoint_folder(source, work, downloader, log=log)
    rate = source_sample_rate(folder)
    if rate is not None and rate != hparams.get("sample_rate", rate):
        message = "--init_from %s: the source model is for %s Hz, this run trains at %s Hz."
        logger.warning(message, source, rate, hparams["sample_rate"])
    report = TransferReport()
    collect = Path(hparams["save_folder"]) / "init_from_collected"
    load_pretrained_separator(hparams["modules"], folder, collect, partial=True, report=report)
    log("--init_from %s: loaded %s", source, ", ".join(report.loaded))
    for unit, why in report.fresh.items():
        log("--init_from %s: %s keeps its initialisation (%s)", source, unit, why)
    if if_main_process():
        record = {"source": str(source), "folder": str(folder), "source_sample_rate": rate, **report.__dict__}
        (Path(hparams["output_folder"]) / "init_from.json").write_text(json.dumps(record, indent=2) + "\n")
    return report
