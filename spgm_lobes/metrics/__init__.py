"""Evaluation metrics of spgm-lobes (SI-SNR, SDR and their improvements)."""

from .separation import METRIC_COLUMNS, sdr_bss_eval, separation_metrics, si_snr_pit

__all__ = ["METRIC_COLUMNS", "sdr_bss_eval", "separation_metrics", "si_snr_pit"]
