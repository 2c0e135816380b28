"""Signal processing helpers of spgm-lobes (augmentation, loudness, resampling)."""
