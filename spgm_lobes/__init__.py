"""spgm-lobes: SPGM (Single-Path Global Modulation) speech separation for SpeechBrain."""

from .models import (
    AttentivePooling,
    AveragePooling,
    ChunkPooling,
    IdentityInterBlock,
    LastElementPooling,
    MaxPooling,
    SPGMBlock,
)

__version__ = "0.1.0"

__all__ = [
    "AttentivePooling",
    "AveragePooling",
    "ChunkPooling",
    "IdentityInterBlock",
    "LastElementPooling",
    "MaxPooling",
    "SPGMBlock",
]
