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
"""

import functools
from pathlib import Path

import torch

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


def load_masknet_with_output_subset(masknet, path, output_init="slice"):
    """``Pretrainer`` hook: loads a masknet checkpoint with ``num_spks`` or more outputs (see the module docstring)."""
    state_dict = torch.load(path, map_location="cpu")
    masknet.load_state_dict(adapt_output_layer(state_dict, masknet, output_init), strict=True)


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


def load_pretrained_separator(modules, checkpoint_folder, collect_in, output_init="slice"):
    """Loads ``encoder``, ``masknet`` and ``decoder`` from a checkpoint folder (e.g. ``save/CKPT+...``) of a model
    with as many or more outputs, through SpeechBrain's ``Pretrainer``; returns the pretrainer."""
    from speechbrain.utils.parameter_transfer import Pretrainer

    checkpoint_folder = Path(checkpoint_folder)
    names = ("encoder", "masknet", "decoder")
    missing = [n for n in names if not (checkpoint_folder / f"{n}.ckpt").is_file()]
    if missing:
        raise FileNotFoundError(
            f"Checkpoint folder {checkpoint_folder} lacks {', '.join(m + '.ckpt' for m in missing)}."
        )
    pretrainer = Pretrainer(
        collect_in=collect_in,
        loadables={n: modules[n] for n in names},
        paths={n: str((checkpoint_folder / f"{n}.ckpt").resolve()) for n in names},
        custom_hooks={"masknet": masknet_transfer_hook(output_init)},
    )
    pretrainer.collect_files()
    pretrainer.load_collected()
    return pretrainer
