"""Evaluation metrics of spgm-lobes (SI-SNR, SDR and their improvements)."""
