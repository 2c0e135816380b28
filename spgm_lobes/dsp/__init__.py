"""Signal processing helpers of spgm-lobes (augmentation, loudness, resampling)."""

from .augment import random_crop, speed_perturb_sources

__all__ = ["random_crop", "speed_perturb_sources"]
