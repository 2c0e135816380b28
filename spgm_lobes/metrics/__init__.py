"""Evaluation metrics of spgm-lobes (SI-SNR, SDR and their improvements)."""

from .results import RESULTS_FILE, TestResults, defined_mean, read_results_csv, write_results_csv
from .separation import (
    METRIC_COLUMNS,
    per_source_metrics,
    sdr_bss_eval,
    separation_metrics,
    si_snr_per_source,
    si_snr_pit,
)

__all__ = [
    "METRIC_COLUMNS",
    "RESULTS_FILE",
    "TestResults",
    "defined_mean",
    "per_source_metrics",
    "read_results_csv",
    "sdr_bss_eval",
    "separation_metrics",
    "si_snr_per_source",
    "si_snr_pit",
    "write_results_csv",
]
