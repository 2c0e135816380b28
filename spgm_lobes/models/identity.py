"""An identity inter-chunk block, for IntraSepformer-style models.

SpeechBrain's ``IdentityBlock`` is a plain class, not an ``nn.Module``: it
cannot be deep-copied into a ``ModuleList`` cleanly, moved, or scripted. This one
is a real module with no parameters.
"""

from torch import nn


class IdentityInterBlock(nn.Module):
    """Returns its input unchanged: a dual-path model with this as its
    ``inter_model`` only models within chunks (IntraSepformer).

    Example
    -------
    >>> import torch
    >>> from speechbrain.lobes.models.dual_path import (
    ...     Dual_Path_Model, SBTransformerBlock)
    >>> masknet = Dual_Path_Model(
    ...     64, 64, SBTransformerBlock(1, 64, 8), IdentityInterBlock(), K=20)
    >>> masknet(torch.randn(2, 64, 100)).shape
    torch.Size([2, 2, 64, 100])
    """

    def forward(self, x):
        """Returns ``x``."""
        return x
