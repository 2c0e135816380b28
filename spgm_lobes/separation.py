"""The separation Brain shared by every spgm-lobes recipe.

:class:`SeparationBrain` trains and evaluates an encoder -> masknet -> decoder
separator (any architecture of ``hparams/``) the way SpeechBrain's separation
recipes and the SPGM/SepFormer papers do:

* utterance-level PIT SI-SNR loss, averaged only over the utterances whose loss
  is above ``threshold`` (-30 dB: SI-SNR is clipped at 30 dB), with padding kept
  out of the loss and the metrics;
* training-time speed perturbation of each source independently (95-105 %),
  the mixture re-summed from the perturbed sources, and an optional random
  crop to ``training_signal_len`` samples;
* Adam with gradient-norm clipping, mixed precision through SpeechBrain's
  ``--precision``; the learning rate is halved when the validation SI-SNR has
  not improved for ``lr_patience`` epochs and training stops once it reaches the
  scheduler's floor (1e-8) or ``N_epochs``;
* non-finite or absurd losses (above ``loss_upper_lim``) skip the step; more
  than ``max_consecutive_bad_steps`` in a row stop training with an error;
* checkpoints at each epoch end (and every ``ckpt_interval_minutes``), keeping
  the best by validation SI-SNR; a killed run resumes with its epoch counter,
  optimizer and learning-rate schedule;
* a test stage that writes per-utterance SI-SNR, SI-SNRi, SDR and SDRi to
  ``<output_folder>/test_results.csv`` (columns ``snt_id,sdr,sdr_i,si-snr,si-snr_i``
  and a final ``avg`` row), optionally with the estimated audio.

Batches are SpeechBrain ``PaddedBatch`` es with keys ``id``, ``mix_sig``,
``s1_sig`` ... ``s<num_spks>_sig`` and optionally ``noise_sig`` (added back to
the re-summed mixture after speed perturbation). Training datasets with a
``set_epoch(epoch)`` method (dynamic mixing) get it called at every epoch start.

Subclasses change the objective by overriding :meth:`SeparationBrain.compute_loss`
and the evaluation by overriding :meth:`SeparationBrain.utterance_metrics`,
:meth:`SeparationBrain.utterance_info` and :meth:`SeparationBrain.test_result_tables`
(what the test stage writes; :meth:`SeparationBrain.write_test_results`, which
writes it on the main process only, cannot be overridden).
"""

import logging
import math
import os
from collections import namedtuple

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.distributed import if_main_process, run_on_main

from .checkpoints import set_aside_incomplete_checkpoints
from .dsp.augment import random_crop, speed_perturb_sources
from .fast import encode_mask_decode
from .losses.si_snr import pit_si_snr_loss, threshold_loss, valid_samples
from .metrics.results import RESULTS_FILE, write_results_csv
from .metrics.separation import separation_metrics

logger = logging.getLogger(__name__)

SeparationOutput = namedtuple("SeparationOutput", ["est_source", "targets", "mix", "lengths"])
SeparationOutput.__doc__ = """What :meth:`SeparationBrain.compute_forward` returns: estimates
``[B, T, C]``, references ``[B, T, C]``, mixture ``[B, T]`` (after training-time
augmentation) and relative lengths ``[B]``."""


class SeparationBrain(sb.Brain):
    """SpeechBrain Brain for speech separation with any dual-path separator.

    Expected hparams: ``num_spks``, ``modules`` (``encoder``, ``masknet``,
    ``decoder``), ``optimizer``, ``lr_scheduler`` (SpeechBrain's
    ``ReduceLROnPlateau``), ``epoch_counter``, ``checkpointer``,
    ``train_logger``, ``output_folder``; optional: ``threshold_byloss``
    (True), ``threshold`` (-30), ``loss_upper_lim`` (999999),
    ``max_consecutive_bad_steps`` (10), ``use_speedperturb`` with
    ``speed_perturb``, ``limit_training_signal_len`` with
    ``training_signal_len``, ``save_audio``, ``n_audio_to_save``,
    ``sample_rate``. SpeechBrain run options (``precision``,
    ``max_grad_norm``, ``ckpt_interval_minutes`` ...) come from hparams or the
    command line as usual.

    Example
    -------
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> from spgm_lobes.architectures import architecture_path
    >>> from spgm_lobes.testing import TINY_ARCH_OVERRIDES
    >>> arch = load_hyperpyyaml(open(architecture_path("spgm-ap-s")), TINY_ARCH_OVERRIDES)
    >>> brain = SeparationBrain(modules=arch["modules"], hparams={"num_spks": 2})
    >>> brain.separate(torch.randn(2, 800)).shape
    torch.Size([2, 800, 2])
    """

    # ------------------------------------------------------------------ model
    def separate(self, mix):
        """Separates mixtures ``[B, T]`` into estimates ``[B, T, num_spks]``
        (encoder -> masknet -> decoder, trimmed/padded to ``T``)."""
        return encode_mask_decode(self.modules, mix)

    def prepare_batch(self, batch, stage):
        """Moves a batch to the device and applies the training augmentation.

        Returns mixture ``[B, T]``, references ``[B, T, C]`` and relative lengths ``[B]``.
        """
        batch = batch.to(self.device)
        mix, lengths = batch.mix_sig
        targets = torch.stack([getattr(batch, f"s{i + 1}_sig").data for i in range(self.hparams.num_spks)], dim=-1)
        noise = batch.noise_sig.data if hasattr(batch, "noise_sig") else None
        if stage == sb.Stage.TRAIN:
            with torch.no_grad():
                if self._hp("use_speedperturb", False):
                    mix, targets = speed_perturb_sources(targets, self.hparams.speed_perturb)
                    if noise is not None:
                        noise = noise[:, : mix.shape[1]]
                        mix = mix + F.pad(noise, (0, mix.shape[1] - noise.shape[1]))
                if self._hp("limit_training_signal_len", False):
                    mix, targets, lengths = random_crop(mix, targets, int(self.hparams.training_signal_len), lengths)
        return mix, targets, lengths

    def compute_forward(self, batch, stage):
        """Prepares the batch and separates it; returns a :data:`SeparationOutput`."""
        mix, targets, lengths = self.prepare_batch(batch, stage)
        return SeparationOutput(self.separate(mix), targets, mix, lengths)

    def compute_loss(self, est_source, targets, lengths, mix):
        """Per-utterance training objective ``[B]`` (lower is better): negative
        PIT SI-SNR on each utterance's valid samples."""
        return pit_si_snr_loss(est_source.float(), targets.float(), lengths)

    def compute_objectives(self, predictions, batch, stage):
        """Per-utterance losses ``[B]`` of a :data:`SeparationOutput`."""
        return self.compute_loss(predictions.est_source, predictions.targets, predictions.lengths, predictions.mix)

    # --------------------------------------------------------------- training
    def _hp(self, name, default):
        return getattr(self.hparams, name, default) if self.hparams is not None else default

    def on_fit_start(self):
        """Moves the speed perturbation to the training device, resets counters."""
        super().on_fit_start()
        speed_perturb = self._hp("speed_perturb", None)
        if speed_perturb is not None:
            speed_perturb.device = self.device
        self.consecutive_bad_steps = 0
        self.skipped_steps = 0

    def init_optimizers(self):
        """Creates the optimizer (SpeechBrain), then moves aside the checkpoints a
        killed run left incomplete (:mod:`spgm_lobes.checkpoints`), so that the
        recovery which follows in ``on_fit_start`` loads the newest complete one.
        Every recoverable, the optimizer included, is registered by now."""
        super().init_optimizers()
        if self.checkpointer is not None:
            run_on_main(set_aside_incomplete_checkpoints, kwargs={"checkpointer": self.checkpointer})

    def fit_batch(self, batch):
        """One training step; skips (and counts) steps with a non-finite or
        absurd loss, stops after too many of them in a row."""
        should_step = (self.step % self.grad_accumulation_factor) == 0
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                losses = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            if not torch.isfinite(losses).all():
                self._skip_bad_step(losses)
                return torch.tensor(0.0)
            if self._hp("threshold_byloss", True):
                loss = threshold_loss(losses, self._hp("threshold", -30.0))
            else:
                loss = losses.mean()
            if loss is None:  # every utterance is already above 30 dB: nothing to learn
                return torch.tensor(0.0)
            if loss.item() > self._hp("loss_upper_lim", 999999):
                self._skip_bad_step(loss)
                return torch.tensor(0.0)
            self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        if should_step:
            self.optimizers_step()
        self.consecutive_bad_steps = 0
        return loss.detach().cpu()

    def _skip_bad_step(self, loss):
        loss = loss.detach().float().mean()
        self.skipped_steps += 1
        self.consecutive_bad_steps += 1
        for opt in self.optimizers_dict.values() if self.optimizers_dict else [self.optimizer]:
            opt.zero_grad(set_to_none=True)
        limit = self._hp("max_consecutive_bad_steps", 10)
        logger.warning(
            "Skipped a training step with loss %s (%d skipped so far, %d in a row).",
            loss.item(),
            self.skipped_steps,
            self.consecutive_bad_steps,
        )
        if self.consecutive_bad_steps > limit:
            raise RuntimeError(
                f"{self.consecutive_bad_steps} training steps in a row had a non-finite or absurd loss "
                f"(last: {loss.item()}; max_consecutive_bad_steps = {limit}). Check the data (silent or "
                "clipped files), lower the learning rate or use --precision fp32."
            )

    def evaluate_batch(self, batch, stage):
        """Validation/test step: mean loss; at test time also per-utterance metrics."""
        with torch.no_grad(), self.evaluation_ctx:
            outputs = self.compute_forward(batch, stage)
            losses = self.compute_objectives(outputs, batch, stage)
        if stage == sb.Stage.TEST:
            self._collect_test_metrics(batch, outputs)
        return losses.mean().detach().cpu()

    # ------------------------------------------------------------- test stage
    def utterance_metrics(self, est_source, targets, mix):
        """Metrics of one utterance (tensors cut to its valid samples)."""
        return separation_metrics(est_source.float(), targets.float(), mix.float())

    def utterance_info(self, batch, index):
        """Extra descriptive columns of the test row of utterance ``index`` of
        ``batch`` (none by default; e.g. source count and categories for GASS)."""
        return {}

    def _collect_test_metrics(self, batch, outputs):
        est, targets, mix, lengths = outputs
        n = valid_samples(lengths, mix.shape[1])
        for i, snt_id in enumerate(batch.id):
            # metrics run on the model's device (BSS-eval SDR is much faster on a GPU)
            e, t, m = est[i, : n[i]], targets[i, : n[i]], mix[i, : n[i]]
            row = {"snt_id": snt_id, **self.utterance_info(batch, i)}
            row.update(self.utterance_metrics(e, t, m))
            self.test_rows.append(row)
            if self._hp("save_audio", False) and len(self.test_rows) <= self._hp("n_audio_to_save", 10):
                self.save_audio(snt_id, e.cpu(), t.cpu(), m.cpu())

    def save_audio(self, snt_id, est_source, targets, mix):
        """Writes mixture, estimates (peak-normalised) and references of one
        utterance to ``<output_folder>/audio_results/``."""
        import soundfile as sf

        folder = os.path.join(self.hparams.output_folder, "audio_results")
        os.makedirs(folder, exist_ok=True)
        rate = self._hp("sample_rate", 8000)
        sf.write(os.path.join(folder, f"{snt_id}_mix.wav"), mix.numpy(), rate)
        for k in range(est_source.shape[1]):
            est = est_source[:, k] / est_source[:, k].abs().max().clamp_min(1e-8) * 0.9
            sf.write(os.path.join(folder, f"{snt_id}_source{k + 1}hat.wav"), est.numpy(), rate)
            sf.write(os.path.join(folder, f"{snt_id}_source{k + 1}.wav"), targets[:, k].numpy(), rate)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "write_test_results" in vars(cls):
            raise TypeError(
                f"{cls.__name__} overrides write_test_results, which keeps the test files to the main process "
                "under DDP: override test_result_tables instead."
            )

    def test_result_tables(self, rows):
        """What the test stage writes, from the per-utterance ``rows``: ``({file name: (columns, rows)}, averages)``,
        the averages being the values logged. Default: ``test_results.csv`` with one row per utterance and an
        ``avg`` row (:mod:`spgm_lobes.metrics.results`)."""
        columns = list(rows[0].keys()) if rows else ["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i"]
        metrics = [c for c in columns if c != "snt_id"]
        avg = {c: sum(r[c] for r in rows) / max(len(rows), 1) for c in metrics}
        return {RESULTS_FILE: (columns, rows + [{"snt_id": "avg", **avg}])}, avg

    def write_test_results(self, rows):
        """Writes the files of :meth:`test_result_tables` into ``output_folder``, on the main process only
        (SpeechBrain evaluates the whole test set on every process); returns the averages."""
        tables, averages = self.test_result_tables(rows)
        if if_main_process():
            for name, (columns, table) in tables.items():
                path = os.path.join(self.hparams.output_folder, name)
                write_results_csv(path, table, columns)
                logger.info("Test results written to %s", path)
        return averages

    # ----------------------------------------------------------------- stages
    def on_stage_start(self, stage, epoch=None):
        """Draws new dynamic mixtures each epoch; resets the test metrics."""
        if stage == sb.Stage.TRAIN and hasattr(self, "train_set_with_epoch"):
            self.train_set_with_epoch.set_epoch(epoch)
        if stage == sb.Stage.TEST:
            self.test_rows = []

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """Remembers a training set that wants ``set_epoch`` calls; batches any
        dataset of dicts with SpeechBrain's ``PaddedBatch``."""
        if stage == sb.Stage.TRAIN and hasattr(dataset, "set_epoch"):
            self.train_set_with_epoch = dataset
        loader_kwargs.setdefault("collate_fn", PaddedBatch)
        return super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, schedules the learning rate, checkpoints, writes test results."""
        stage_stats = {"si-snr": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stage_stats
            if getattr(self, "skipped_steps", 0):
                self.train_stats["skipped_steps"] = self.skipped_steps
        elif stage == sb.Stage.VALID:
            scheduler = self.hparams.lr_scheduler
            current_lr, next_lr = scheduler([self.optimizer], epoch, stage_loss)
            update_learning_rate(self.optimizer, next_lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "lr": current_lr},
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stage_stats,
            )
            if lr_floor_reached(next_lr, scheduler.lr_min):
                logger.info("Learning rate reached its floor (%g): training stops.", scheduler.lr_min)
                self.hparams.epoch_counter.current = self.hparams.epoch_counter.limit
            self.checkpointer.save_and_keep_only(meta={"si-snr": stage_stats["si-snr"]}, min_keys=["si-snr"])
        elif stage == sb.Stage.TEST:
            averages = self.write_test_results(self.test_rows)  # files written by the main process only
            self.hparams.train_logger.log_stats(  # a collective under DDP: every process calls it
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats={"si-snr": stage_loss, **{f"avg {k}": v for k, v in averages.items()}},
            )


def lr_floor_reached(lr, lr_min):
    """True when ``lr`` is at (or below) the scheduler floor ``lr_min``.

    Example
    -------
    >>> lr_floor_reached(1e-8, 1e-8), lr_floor_reached(2e-8, 1e-8)
    (True, False)
    """
    return lr <= lr_min or math.isclose(lr, lr_min, rel_tol=1e-6)
