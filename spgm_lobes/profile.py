"""Model-size report: parameters and multiply-accumulates of an architecture.

Usage::

    python -m spgm_lobes.profile spgm-ap [--seconds 1] [--sample-rate 8000]

The architecture is a name of ``hparams/`` (``spgm-ap``, ``sepformer``, ...) or the path of an
architecture YAML.

MACs are counted with :class:`torch.utils.flop_counter.FlopCounterMode`
(``MACs = FLOPs / 2``) on one forward pass of encoder -> masknet -> decoder.
The counter sees matrix products and convolutions (including attention); it
does not count element-wise operations (normalisation, activations, softmax,
the element-wise products of the SPGM modulation), which are a negligible part
of the total.
"""

import argparse
import sys

import torch
from hyperpyyaml import load_hyperpyyaml
from torch.utils.flop_counter import FlopCounterMode

from .architectures import ARCHITECTURES, architecture_path
from .fast import FastMaskNet, encode_mask_decode
from .models import SPGMBlock


def count_parameters(module):
    """Number of parameters of ``module``.

    Example
    -------
    >>> count_parameters(torch.nn.Linear(4, 2))
    10
    """
    return sum(p.numel() for p in module.parameters())


def describe_modules(modules):
    """One line naming the structure of a separator's mask network.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from spgm_lobes.architectures import architecture_path
    >>> hp = load_hyperpyyaml(open(architecture_path("spgm-ap-s")), overrides={"intra_layers": 1, "out_channels": 8,
    ...     "N_encoder_out": 8, "nhead": 1, "d_ffn": 8})
    >>> describe_modules(hp["modules"])
    'Dual_Path_Model: 2 x (SBTransformerBlock of 1 layer + SPGMBlock), 2 sources'
    >>> from spgm_lobes.fast import use_fast_masknet
    >>> describe_modules(use_fast_masknet(hp["modules"])) == describe_modules(hp["modules"])
    True
    """
    masknet = modules["masknet"]
    # FastMaskNet runs a Dual_Path_Model's own sub-modules
    kind = "Dual_Path_Model" if isinstance(masknet, FastMaskNet) else type(masknet).__name__
    blocks = getattr(masknet, "dual_mdl", None)
    if not blocks:
        return kind
    intra, inter = blocks[0].intra_mdl, blocks[0].inter_mdl
    layers = getattr(getattr(intra, "mdl", None), "layers", None)
    depth = f" of {len(layers)} layer{'s' if len(layers) > 1 else ''}" if layers is not None else ""
    text = f"{kind}: {len(blocks)} x ({type(intra).__name__}{depth} + {type(inter).__name__})"
    num_spks = getattr(masknet, "num_spks", None)
    return text + (f", {num_spks} sources" if num_spks else "")


def profile_modules(modules, seconds=1.0, sample_rate=8000):
    """Counts parameters and MACs of a separator on ``seconds`` of audio.

    Returns a dict with ``params`` (total), ``params_<module>``, ``macs`` (total),
    ``macs_<module>``, ``spgm_blocks`` and ``macs_per_spgm_block``.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from spgm_lobes.architectures import architecture_path
    >>> hp = load_hyperpyyaml(open(architecture_path("spgm-ap-s")),
    ...     overrides={"intra_layers": 1, "out_channels": 32, "N_encoder_out": 32, "nhead": 4, "d_ffn": 64})
    >>> report = profile_modules(hp["modules"], seconds=0.1)
    >>> report["spgm_blocks"], report["macs"] > 0
    (2, True)
    """
    report = {"params": 0, "macs": 0}
    for name, module in modules.items():
        report[f"params_{name}"] = count_parameters(module)
        report["params"] += report[f"params_{name}"]

    spgm_blocks = [m for m in modules["masknet"].modules() if isinstance(m, SPGMBlock)]
    mix = torch.randn(1, int(round(seconds * sample_rate)))
    was_training = {name: m.training for name, m in modules.items()}
    for m in modules.values():
        m.eval()
    seen_shapes = []
    hooks = [b.register_forward_pre_hook(lambda m, args: seen_shapes.append(args[0].shape)) for b in spgm_blocks]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        encode_mask_decode(modules, mix)
    for hook in hooks:
        hook.remove()
    for m, mode in zip(modules.values(), was_training.values()):
        m.train(mode)

    per_module = counter.get_flop_counts()
    report["macs"] = counter.get_total_flops() // 2
    for name, module in modules.items():
        key = type(module).__name__
        report[f"macs_{name}"] = sum(per_module.get(key, {}).values()) // 2 if key in per_module else None
    report["spgm_blocks"] = len(spgm_blocks)
    report["macs_per_spgm_block"] = None
    if spgm_blocks:
        # Count one SPGM block again, alone, on the input shape it saw.
        x = torch.randn(seen_shapes[0])
        block_counter = FlopCounterMode(display=False)
        with torch.no_grad(), block_counter:
            spgm_blocks[0](x)
        # Element-wise work of Eq. 1 (sigmoid, two products, one sum, pooling
        # weights) is not seen by the counter; add it explicitly: ~2 MACs per element.
        report["macs_per_spgm_block"] = block_counter.get_total_flops() // 2 + 2 * x.numel()
    return report


def format_report(name, report, seconds, sample_rate):
    """Formats a report as a small text table."""
    lines = [f"{name}: {seconds:g} s of {sample_rate} Hz audio"]
    lines.append(f"{'part':<12}{'params (M)':>12}{'GMAC':>10}")
    for part in ("encoder", "masknet", "decoder"):
        macs = report.get(f"macs_{part}")
        gmac = f"{macs / 1e9:10.3f}" if macs is not None else f"{'-':>10}"
        lines.append(f"{part:<12}{report[f'params_{part}'] / 1e6:12.3f}{gmac}")
    lines.append(f"{'total':<12}{report['params'] / 1e6:12.3f}{report['macs'] / 1e9:10.3f}")
    if report["spgm_blocks"]:
        lines.append(f"SPGM blocks: {report['spgm_blocks']}, {report['macs_per_spgm_block'] / 1e9:.4f} GMAC each")
    return "\n".join(lines)


def main(argv=None):
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("hparams", help=f"architecture name ({', '.join(ARCHITECTURES)}) or YAML path")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--sample-rate", type=int, default=8000)
    parser.add_argument("--num-spks", type=int, default=None)
    args = parser.parse_args(argv)
    overrides = {"num_spks": args.num_spks} if args.num_spks else None
    path = architecture_path(args.hparams) if args.hparams in ARCHITECTURES else args.hparams
    try:
        with open(path) as f:
            hparams = load_hyperpyyaml(f, overrides)
    except FileNotFoundError:
        sys.exit(f"error: {args.hparams} is neither an architecture name ({', '.join(ARCHITECTURES)}) nor a file")
    report = profile_modules(hparams["modules"], args.seconds, args.sample_rate)
    print(format_report(args.hparams, report, args.seconds, args.sample_rate))
    return report


if __name__ == "__main__":
    main()
