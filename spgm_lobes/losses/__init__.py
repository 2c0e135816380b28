"""Training objectives of spgm-lobes."""
