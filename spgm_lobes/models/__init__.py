"""Model building blocks (mask-network parts) of spgm-lobes."""

from .identity import IdentityInterBlock
from .spgm import (
    AttentivePooling,
    AveragePooling,
    ChunkPooling,
    LastElementPooling,
    MaxPooling,
    SPGMBlock,
)

__all__ = [
    "AttentivePooling",
    "AveragePooling",
    "ChunkPooling",
    "IdentityInterBlock",
    "LastElementPooling",
    "MaxPooling",
    "SPGMBlock",
]
