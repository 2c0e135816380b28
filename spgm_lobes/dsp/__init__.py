"""Signal processing helpers of spgm-lobes (augmentation, loudness, resampling)."""

from .augment import fix_length, random_crop, speed_perturb_sources

__all__ = ["fix_length", "random_crop", "speed_perturb_sources"]
