"""Training objectives of spgm-lobes."""

from .si_snr import pit_si_snr_loss, threshold_loss, valid_samples

__all__ = ["pit_si_snr_loss", "threshold_loss", "valid_samples"]
