"""Fast execution path of the dual-path mask networks.

* :class:`FastMaskNet` / :func:`fast_masknet_forward`: same function as a
  SpeechBrain ``Dual_Path_Model`` (same parameters, same ``state_dict`` keys),
  with fused SDPA attention and a channel-last layout; differentiable.
* :func:`separate`: encoder + mask network + decoder over an input of any
  length in one pass, with memory linear in length.
* :class:`FastDecoder`: SpeechBrain's ``Decoder`` as a matrix product and an
  overlap-add (same parameters and function); :func:`encode_mask_decode`, the
  one whole-input separation (encoder -> masks -> :func:`decode_sources`).
* :class:`CompiledSeparator`: whole-input inference on a bfloat16 copy of a
  model, each dual-path block compiled (the fastest GPU inference).
"""

from .decoder import (
    FastDecoder,
    decode_sources,
    encode_mask_decode,
    overlap_add_decode,
    unsupported_decoder_reason,
    use_fast_decoder,
)
from .layers import transformer_block_forward, unsupported_transformer_reason
from .long import estimate_separate_memory, separate
from .masknet import FastMaskNet, fast_masknet_forward, unsupported_masknet_reason, use_fast_masknet
from .separator import CompiledSeparator

__all__ = [
    "CompiledSeparator",
    "FastDecoder",
    "decode_sources",
    "encode_mask_decode",
    "overlap_add_decode",
    "unsupported_decoder_reason",
    "use_fast_decoder",
    "estimate_separate_memory",
    "FastMaskNet",
    "fast_masknet_forward",
    "separate",
    "transformer_block_forward",
    "unsupported_masknet_reason",
    "unsupported_transformer_reason",
    "use_fast_masknet",
]
