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
  ``--precision``; an optional linear warm-up of the learning rate over
  ``lr_warmup_steps`` optimizer steps (:class:`spgm_lobes.schedulers.LinearWarmup`);
  the learning rate is halved when the validation SI-SNR has not improved for
  ``lr_patience`` epochs and training stops once it reaches the scheduler's
  floor (1e-8) or ``N_epochs``; with a time budget
  (:class:`~spgm_lobes.epoch_budget.TimeBudgetEpochCounter`) and
  ``lr_anneal_fraction`` > 0, the rate also decays linearly to zero over that
  share of the expected training time (:class:`spgm_lobes.schedulers.BudgetAnneal`);
* with ``static_training_shapes``, every training batch has exactly
  ``batch_size`` mixtures of ``training_signal_len`` samples (short ones padded,
  padding kept out of the loss; the last incomplete batch dropped), so a
  compiled model keeps one graph for the whole run;
* the first training step's duration (compilation, warm-up) is logged and kept
  out of a :class:`~spgm_lobes.epoch_budget.TimeBudgetEpochCounter`'s epoch
  estimate; every epoch logs the share of training time spent waiting for data
  (``data_wait``: data loading and dynamic mixing do not keep up when it is large);
* non-finite or absurd losses (above ``loss_upper_lim``) skip the step; more
  than ``max_consecutive_bad_steps`` in a row stop training with an error. The
  host reads each step's checks once its backward pass is queued, and waits for
  the device there; with ``deferred_step_checks`` and a fused Adam / AdamW the
  device skips a bad step itself (the optimizer's ``found_inf``, as
  ``torch.amp.GradScaler`` does) and the host reads the checks one step later,
  so it queues the next step while the device still runs this one (a bad step is
  then counted, and a run of them stopped, one step later; the LR warm-up and
  SpeechBrain's optimizer-step count include the skipped step);
* the training set is read in a new random order every epoch (seeded; see
  :meth:`SeparationBrain.make_dataloader`), on one process as under DDP;
* checkpoints at each epoch end (and every ``ckpt_interval_minutes``), keeping
  the best by validation SI-SNR; a killed run resumes with its epoch counter
  (a time budget's training time included), optimizer and learning-rate schedule
  (warm-up and budget decay included; a checkpoint saved without them resumes too);
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
import time
from collections import namedtuple

import speechbrain as sb
import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.distributed import if_main_process, run_on_main

from .checkpoints import set_aside_incomplete_checkpoints
from .dsp.augment import fix_length, random_crop, speed_perturb_sources
from .fast import encode_mask_decode
from .fast.layers import compile_time_summary
from .losses.si_snr import pit_si_snr_loss, threshold_loss, valid_samples
from .metrics.results import RESULTS_FILE, defined_mean, write_results_csv
from .metrics.separation import separation_metrics
from .schedulers import BudgetAnneal, LinearWarmup

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
    ``training_signal_len``, ``static_training_shapes`` (False),
    ``lr_warmup_steps`` (0), ``lr_anneal_fraction`` (0), ``save_audio``, ``n_audio_to_save``,
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

    lr_warmup = None  # a LinearWarmup once the optimizer exists, with lr_warmup_steps or lr_anneal_fraction
    lr_anneal = None  # a BudgetAnneal, with lr_anneal_fraction and a time-budget epoch counter
    _warmup_step_pending = False  # the next training step is the first of this fit
    _cuda_graphs = False  # the mask network replays its compiled blocks as CUDA graphs (cuda_graphs)
    _deferred_checks = False  # deferred_step_checks in effect: the device skips bad steps itself
    _pending_checks = None  # (checks on the host, event) of the last training step, not yet read
    _bad_since_step = None  # deferred checks: 1.0 on the device when a micro-batch since the last step was bad
    _last_step_end = None  # time.perf_counter() at the end of the last training step
    _data_wait_s = _step_s = 0.0  # this epoch's time waiting for batches / in training steps
    _epoch_steps = 0  # training steps of this epoch in this process (self.step counts those before a resume too)

    # ------------------------------------------------------------------ model
    def separate(self, mix):
        """Separates mixtures ``[B, T]`` into estimates ``[B, T, num_spks]``
        (encoder -> masknet -> decoder, trimmed/padded to ``T``)."""
        return encode_mask_decode(self.modules, mix)

    def prepare_batch(self, batch, stage):
        """Moves a batch to the device and applies the training augmentation.

        Returns mixture ``[B, T]``, references ``[B, T, C]`` and relative lengths ``[B]``.
        """
        host_lengths = batch.mix_sig.lengths  # crops are planned on the host: no wait for the device
        host_noise_lengths = batch.noise_sig.lengths if hasattr(batch, "noise_sig") else None
        batch = batch.to(self.device, non_blocking=True)
        mix, lengths = batch.mix_sig
        targets = torch.stack([getattr(batch, f"s{i + 1}_sig").data for i in range(self.hparams.num_spks)], dim=-1)
        noise = batch.noise_sig.data if hasattr(batch, "noise_sig") else None
        if stage == sb.Stage.TRAIN:
            with torch.no_grad():
                if self._hp("use_speedperturb", False):
                    mix, targets = speed_perturb_sources(targets, self.hparams.speed_perturb)
                    if noise is not None:  # slowed sources may outgrow the noise: cut to it, as SpeechBrain does
                        width = min(mix.shape[1], noise.shape[1])
                        host_lengths = (host_lengths * (mix.shape[1] / width)).clamp(max=1.0)
                        # and each item to its own noise (a shorter item's is zero-padded to the batch)
                        host_lengths = torch.minimum(host_lengths, host_noise_lengths * (noise.shape[1] / width))
                        mix, targets = mix[:, :width] + noise[:, :width], targets[:, :width]
                if self._hp("static_training_shapes", False):
                    mix, targets, host_lengths = fix_length(
                        mix, targets, int(self.hparams.training_signal_len), host_lengths
                    )
                elif self._hp("limit_training_signal_len", False):
                    mix, targets, host_lengths = random_crop(
                        mix, targets, int(self.hparams.training_signal_len), host_lengths
                    )
            if self.device_type == "cuda" and not host_lengths.is_cuda:
                # a copy from pageable memory would wait for the device (a batch moved once already, as
                # PaddedBatch.to moves in place, has its lengths on the device)
                host_lengths = host_lengths.pin_memory()
            lengths = host_lengths.to(self.device, non_blocking=True)
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
        """Recovers the newest checkpoint (SpeechBrain), moves the speed perturbation to the training
        device, resets counters."""
        super().on_fit_start()
        self._warmup_after_recovery()
        self._stop_if_lr_floor_recovered()
        speed_perturb = self._hp("speed_perturb", None)
        if speed_perturb is not None:
            speed_perturb.device = self.device
            for resampler in getattr(speed_perturb, "resamplers", ()):  # a plain list: not moved with the module
                resampler.to(self.device)
        self.consecutive_bad_steps = 0
        self.skipped_steps = 0
        masknet = self.modules["masknet"] if "masknet" in self.modules else None
        masknet = getattr(masknet, "module", masknet)  # DDP wraps it
        self._cuda_graphs = bool(getattr(masknet, "cuda_graphs", False))
        if self._cuda_graphs and self.grad_accumulation_factor > 1:
            # a replay would overwrite the gradients that the next micro-batch adds to
            logger.warning("cuda_graphs does not support grad_accumulation_factor > 1: the blocks run uncaptured.")
            masknet.cuda_graphs = self._cuda_graphs = False
        elif self._cuda_graphs and not self._hp("static_training_shapes", False):
            logger.warning("cuda_graphs without static_training_shapes records a CUDA graph for every new length.")
        self._deferred_checks = self._hp("deferred_step_checks", False) and self._optimizers_skip_on_device()
        self._pending_checks = self._bad_since_step = None
        self._warmup_step_pending = True
        self._data_wait_s = self._step_s = 0.0
        self._last_step_end = None

    def on_stage_start(self, stage, epoch=None):
        """Draws new dynamic mixtures each epoch; resets the test metrics and
        the epoch's data-wait timer."""
        if stage == sb.Stage.TRAIN:
            if hasattr(self, "train_set_with_epoch"):
                self.train_set_with_epoch.set_epoch(epoch)
            self._data_wait_s = self._step_s = 0.0
            self._epoch_steps = 0
            self._last_step_end = time.perf_counter()
            self._bad_since_step = None  # SpeechBrain cleared the gradients of an unfinished accumulation
        if stage == sb.Stage.TEST:
            self.test_rows = []

    def init_optimizers(self):
        """Creates the optimizer (SpeechBrain), then moves aside the checkpoints a
        killed run left incomplete (:mod:`spgm_lobes.checkpoints`), so that the
        recovery which follows in ``on_fit_start`` loads the newest complete one.
        Every recoverable, the optimizer included, is registered by now."""
        super().init_optimizers()
        self.lr_warmup = self.lr_anneal = None
        fraction = float(self._hp("lr_anneal_fraction", 0.0) or 0.0)
        counter = self._hp("epoch_counter", None)
        if fraction and getattr(counter, "budget_s", None) is not None:
            self.lr_anneal = BudgetAnneal(fraction, counter)
            if self.checkpointer is not None:  # optional: a checkpoint saved without the decay resumes
                self.checkpointer.add_recoverable("lr_anneal", self.lr_anneal, optional_load=True)
            logger.info("The learning rate decays to zero over the last %g of the training time budget.", fraction)
        elif fraction:
            logger.info("lr_anneal_fraction %g has no effect: the epoch counter has no time budget.", fraction)
        if (self._hp("lr_warmup_steps", 0) or self.lr_anneal) and self.optimizer is not None:
            self.lr_warmup = LinearWarmup(self._hp("lr_warmup_steps", 0), self.optimizer.param_groups[0]["lr"])
            if self.checkpointer is not None:  # replaces the one of an earlier call
                # optional: a checkpoint of a run without warm-up or decay resumes (see _warmup_after_recovery)
                self.checkpointer.add_recoverable("lr_warmup", self.lr_warmup, optional_load=True)
        if self.checkpointer is not None:
            run_on_main(set_aside_incomplete_checkpoints, kwargs={"checkpointer": self.checkpointer})

    def _stop_epochs(self):
        """Ends the epoch loop after the running epoch (SpeechBrain's ``EpochCounter`` or a
        :class:`~spgm_lobes.epoch_budget.TimeBudgetEpochCounter`: both stop at their limit). Only the
        counter in memory changes: the checkpoints keep the real epoch."""
        counter = self.hparams.epoch_counter
        counter.current = max(counter.current, counter.limit)

    def _stop_if_lr_floor_recovered(self):
        """A run that stopped at the learning-rate floor, started again, trains no more: its recovered
        rate is at the floor."""
        scheduler = self._hp("lr_scheduler", None)
        lr_min = getattr(scheduler, "lr_min", None)
        if lr_min is None or self.optimizer is None or self._hp("epoch_counter", None) is None:
            return
        lr = self.lr_warmup.base_lr if self.lr_warmup is not None else self.optimizer.param_groups[0]["lr"]
        if self.hparams.epoch_counter.current > 0 and lr_floor_reached(lr, lr_min):
            logger.info("The recovered learning rate is at its floor (%g): training stops.", lr_min)
            self._stop_epochs()

    def _warmup_after_recovery(self):
        """A recovered checkpoint without ``lr_warmup.ckpt`` was saved by a run without warm-up or LR
        decay (e.g. the paper's regime, resumed with ``--lr_warmup_steps`` or ``--regime fast``): the
        warm-up continues as if it had run since the first step (:meth:`LinearWarmup.resume_without_state`:
        done after as many optimizer steps), towards the recovered learning rate."""
        if self.lr_warmup is None or self.lr_warmup.loaded:
            return
        self.lr_warmup.resume_without_state(self.optimizer_step, self.optimizer.param_groups[0]["lr"])
        if self.optimizer_step > 0 and self.checkpointer is not None:
            ckpt = self.checkpointer.find_checkpoint()
            logger.warning(
                "Checkpoint %s has no lr_warmup.ckpt (saved without a learning-rate warm-up or decay): after its "
                "%d optimizer steps, %d of the %d warm-up steps count as done; base learning rate %g (recovered).",
                ckpt.path if ckpt is not None else self.checkpointer.checkpoints_dir,
                self.optimizer_step,
                self.lr_warmup.done,
                self.lr_warmup.steps,
                self.lr_warmup.base_lr,
            )

    def fit_batch(self, batch):
        """One training step (timed: data wait, warm-up); see :meth:`train_step`."""
        start = time.perf_counter()
        if self._last_step_end is not None:
            self._data_wait_s += start - self._last_step_end
        loss = self.train_step(batch)
        end = time.perf_counter()
        if self._warmup_step_pending:
            self._warmup_step_pending = False
            if self.device_type == "cuda":
                torch.cuda.synchronize(self.device)
                end = time.perf_counter()
            logger.info("First training step (compilation, warm-up): %.1f s", end - start)
            phases = compile_time_summary()
            if phases:
                logger.info("Compilation so far: %s", ", ".join(f"{k} {v:.1f} s" for k, v in phases.items()))
            note_warmup = getattr(self.hparams.epoch_counter, "note_warmup", None) if self.hparams else None
            if note_warmup is not None:
                note_warmup(end - start)
        self._step_s += end - start
        self._epoch_steps += 1
        self._last_step_end = end
        return loss

    def train_step(self, batch):
        """One training step; skips (and counts) steps with a non-finite or
        absurd loss, stops after too many of them in a row."""
        should_step = (self.step % self.grad_accumulation_factor) == 0
        if self._cuda_graphs:  # a new iteration: the last step's CUDA-graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        with self.no_sync(not should_step):
            with self.training_ctx:
                outputs = self.compute_forward(batch, sb.Stage.TRAIN)
                losses = self.compute_objectives(outputs, batch, sb.Stage.TRAIN)
            if self._hp("threshold_byloss", True):
                loss, learnable = threshold_loss(losses, self._hp("threshold", -30.0))
            else:
                loss, learnable = losses.mean(), torch.ones((), dtype=torch.bool, device=losses.device)
            good = torch.isfinite(losses).all() & (loss <= self._hp("loss_upper_lim", 999999))
            # Backward is queued before the host reads the checks (one synchronisation per step, while
            # the device works on the backward pass); a bad step's gradients are discarded.
            self.scaler.scale(loss / self.grad_accumulation_factor).backward()
        checks = torch.stack([good.float(), learnable.float()])
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(checks, op=torch.distributed.ReduceOp.MIN)  # every process steps, or none
        checks = torch.cat([checks, loss.detach().float().view(1)])
        if self._deferred_checks:
            return self._deferred_step(checks, should_step)
        good, learnable, value = checks.tolist()
        if good and learnable:
            if should_step:
                self._warm_up_lr()
                self.optimizers_step()
        elif not good or should_step:
            # a bad micro-batch spoils the gradients accumulated so far; a step with nothing to learn (every
            # utterance above 30 dB) leaves none for the next one to add to
            self.zero_grad(set_to_none=True)
        return torch.tensor(self._settle_step(good, learnable, value))

    def _warm_up_lr(self):
        """Sets the rate of the coming optimizer step (warm-up, budget decay)."""
        if self.lr_warmup is not None:
            # the step within the epoch: under DDP, the decay is a function of it (the same on every process)
            self.lr_warmup.before_step(self.optimizer, self.lr_anneal.factor(self.step) if self.lr_anneal else 1.0)

    def _settle_step(self, good, learnable, value):
        """Counts a step by its checks (a bad one as skipped, stopping after too many in a row); returns
        its loss, 0.0 for a skipped step or one with nothing to learn."""
        if not good:
            self._count_bad_step(value)
            return 0.0
        if not learnable:
            return 0.0
        self.consecutive_bad_steps = 0
        return value

    def _optimizers(self):
        return list(self.optimizers_dict.values()) if self.optimizers_dict else [self.optimizer]

    def _optimizers_skip_on_device(self):
        """Whether every optimizer can skip a step on the device (fused Adam / AdamW, no gradient scaler:
        ``deferred_step_checks`` needs it); warns and returns ``False`` otherwise."""
        optimizers = [opt for opt in self._optimizers() if opt is not None]
        fused = optimizers and all(
            isinstance(opt, (torch.optim.Adam, torch.optim.AdamW)) and opt.defaults.get("fused") for opt in optimizers
        )
        if fused and not self.scaler.is_enabled():
            return True
        logger.warning(
            "deferred_step_checks needs a fused Adam or AdamW optimizer (fused: True) and no gradient scaler "
            "(--precision fp16 has one): the host reads each step's checks at once instead."
        )
        return False

    def _deferred_step(self, checks, should_step):
        """The optimizer step of :meth:`train_step` with deferred checks: the device skips a step with a bad
        micro-batch since the last step (or nothing to learn) through the optimizers' ``found_inf``; the host
        reads the previous step's checks and returns that step's loss, 0.0 when no step is pending (the first
        of an epoch or after an intra-epoch checkpoint): SpeechBrain's running mean over ``self.step`` steps
        then holds every settled loss, and :meth:`on_stage_end` adds the last one."""
        bad = 1.0 - checks[0]
        self._bad_since_step = bad if self._bad_since_step is None else torch.maximum(self._bad_since_step, bad)
        if should_step:
            self._warm_up_lr()
            skip = torch.maximum(self._bad_since_step, 1.0 - checks[1])
            optimizers = self._optimizers()
            for opt in optimizers:
                opt.grad_scale, opt.found_inf = None, skip
            try:
                self.optimizers_step()
            finally:
                for opt in optimizers:
                    del opt.grad_scale, opt.found_inf
            self._bad_since_step = None
        value = self._read_pending_checks()
        host = checks.to("cpu", non_blocking=True)  # pinned: the copy does not wait for the device
        event = None
        if checks.is_cuda:
            event = torch.cuda.Event()
            event.record()
        self._pending_checks = (host, event)
        return torch.tensor(0.0 if value is None else value)

    def _read_pending_checks(self):
        """Reads the last step's checks (waiting for the device only if it has not computed them yet) and
        settles that step (:meth:`_settle_step`); returns its loss, ``None`` when no step is pending."""
        if self._pending_checks is None:
            return None
        host, event = self._pending_checks
        self._pending_checks = None
        if event is not None:
            event.synchronize()
        return self._settle_step(*host.tolist())

    def _with_pending_loss(self, average):
        """``average``, SpeechBrain's running mean of the losses over ``self.step`` steps, completed with the
        loss of the pending step (deferred checks: each step returned the loss of the one before), which
        this settles; ``average`` itself when no step is pending."""
        value = self._read_pending_checks()
        return average if value is None else average + value / max(self.step, 1)

    def _save_intra_epoch_ckpt(self):
        """SpeechBrain's intra-epoch checkpoint, after settling the pending step (deferred checks): its loss
        goes into the saved running mean, so a run resumed from this checkpoint still averages every step
        of the epoch (the next step then returns 0.0, see :meth:`_deferred_step`)."""
        self.avg_train_loss = self._with_pending_loss(self.avg_train_loss)
        super()._save_intra_epoch_ckpt()

    def _count_bad_step(self, loss):
        self.skipped_steps += 1
        self.consecutive_bad_steps += 1
        limit = self._hp("max_consecutive_bad_steps", 10)
        logger.warning(
            "Skipped a training step with loss %s (%d skipped so far, %d in a row).",
            loss,
            self.skipped_steps,
            self.consecutive_bad_steps,
        )
        if self.consecutive_bad_steps > limit:
            raise RuntimeError(
                f"{self.consecutive_bad_steps} training steps in a row had a non-finite or absurd loss "
                f"(last: {loss}; max_consecutive_bad_steps = {limit}). Check the data (silent or "
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
        utterance to ``<output_folder>/audio_results/`` (names: :func:`saved_audio_paths`)."""
        import soundfile as sf

        folder = os.path.join(self.hparams.output_folder, "audio_results")
        os.makedirs(folder, exist_ok=True)
        rate = self._hp("sample_rate", 8000)
        paths = saved_audio_paths(folder, snt_id, est_source.shape[1])
        sf.write(paths["mixture"], mix.numpy(), rate)
        for k in range(est_source.shape[1]):
            est = est_source[:, k] / est_source[:, k].abs().max().clamp_min(1e-8) * 0.9
            sf.write(paths["estimates"][k], est.numpy(), rate)
            sf.write(paths["references"][k], targets[:, k].numpy(), rate)

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
        ``avg`` row (:mod:`spgm_lobes.metrics.results`), the mean of the defined values of each column (an
        utterance with a silent reference has no SDR: NaN, left out of that mean with a warning)."""
        columns = list(rows[0].keys()) if rows else ["snt_id", "sdr", "sdr_i", "si-snr", "si-snr_i"]
        metrics = [c for c in columns if c != "snt_id"]
        avg = {}
        for c in metrics:
            avg[c] = defined_mean(r[c] for r in rows) if rows else 0.0
            undefined = sum(math.isnan(r[c]) for r in rows)
            if undefined:
                logger.warning("%d of %d test utterances have no %s (a silent reference); avg is of the others.",
                               undefined, len(rows), c)  # fmt: skip
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
    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """Remembers a training set that wants ``set_epoch`` calls; batches any
        dataset of dicts with SpeechBrain's ``PaddedBatch``.

        The training loader shuffles unless its options say ``shuffle: False`` or
        give a sampler: SpeechBrain's seeded ``ReproducibleRandomSampler`` on one
        process (a new order every epoch, from ``seed``), its ``DistributedSampler``
        under DDP, which shuffles anyway. Validation and test loaders keep the
        dataset's order. Dynamic-mixing datasets draw item ``i`` of epoch ``e`` from
        ``(seed, e, i)``, so shuffling only changes the order they are read in."""
        if stage == sb.Stage.TRAIN and hasattr(dataset, "set_epoch"):
            self.train_set_with_epoch = dataset
        if (
            stage == sb.Stage.TRAIN
            and loader_kwargs.get("sampler") is None
            and loader_kwargs.get("batch_sampler") is None
            and not isinstance(dataset, torch.utils.data.IterableDataset)
        ):
            loader_kwargs.setdefault("shuffle", True)
        if stage == sb.Stage.TRAIN and self._hp("static_training_shapes", False):
            batch_size = loader_kwargs.get("batch_size", 1)
            if len(dataset) < batch_size:
                raise ValueError(
                    f"static_training_shapes drops incomplete batches, but the training set has {len(dataset)} "
                    f"items, fewer than batch_size={batch_size}: every batch would be dropped."
                )
            loader_kwargs["drop_last"] = True
        loader_kwargs.setdefault("collate_fn", PaddedBatch)
        if self.device_type == "cuda":  # pinned batches copy to the GPU without waiting for it
            loader_kwargs.setdefault("pin_memory", True)
        return super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs, schedules the learning rate, checkpoints, writes test results."""
        if stage == sb.Stage.TRAIN:  # deferred checks: the epoch's last step completes its average
            stage_loss = self._with_pending_loss(stage_loss)
        stage_stats = {"si-snr": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stage_stats
            if getattr(self, "skipped_steps", 0):
                self.train_stats["skipped_steps"] = self.skipped_steps
            busy = self._data_wait_s + self._step_s
            if busy > 0:
                self.train_stats["data_wait"] = round(self._data_wait_s / busy, 3)
            note_steps = getattr(self._hp("epoch_counter", None), "note_train_steps", None)
            if note_steps is not None:  # the seconds per step of the next epoch's plan (DDP)
                note_steps(self._epoch_steps, busy)
        elif stage == sb.Stage.VALID:
            scheduler = self.hparams.lr_scheduler
            if self.lr_warmup is not None:  # the epoch-level scheduler halves the base rate, not a warm-up step's
                self.lr_warmup.restore_base_lr(self.optimizer)
            current_lr, next_lr = scheduler([self.optimizer], epoch, stage_loss)
            if self.lr_warmup is not None:
                self.lr_warmup.set_base_lr(self.optimizer, next_lr)
            else:
                update_learning_rate(self.optimizer, next_lr)
            meta = {"epoch": epoch, "lr": current_lr}
            if self.lr_anneal is not None:  # the rate applied at the epoch's last step: lr * lr_scale
                meta["lr_scale"] = round(self.lr_anneal.last, 4)
            self.hparams.train_logger.log_stats(
                stats_meta=meta,
                train_stats=getattr(self, "train_stats", None),
                valid_stats=stage_stats,
            )
            self.checkpointer.save_and_keep_only(meta={"si-snr": stage_stats["si-snr"]}, min_keys=["si-snr"])
            if lr_floor_reached(next_lr, scheduler.lr_min):  # after the save: the checkpoint holds this epoch
                logger.info("Learning rate reached its floor (%g): training stops.", scheduler.lr_min)
                self._stop_epochs()
        elif stage == sb.Stage.TEST:
            averages = self.write_test_results(self.test_rows)  # files written by the main process only
            self.hparams.train_logger.log_stats(  # a collective under DDP: every process calls it
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current},
                test_stats={"si-snr": stage_loss, **{f"avg {k}": v for k, v in averages.items()}},
            )


def saved_audio_paths(folder, snt_id, num_spks):
    """The files :meth:`SeparationBrain.save_audio` writes for utterance ``snt_id``.

    Example
    -------
    >>> paths = saved_audio_paths("audio_results", "u1", 2)
    >>> paths["mixture"], paths["estimates"][1], paths["references"][0]
    ('audio_results/u1_mix.wav', 'audio_results/u1_source2hat.wav', 'audio_results/u1_source1.wav')
    """
    return {
        "mixture": os.path.join(folder, f"{snt_id}_mix.wav"),
        "estimates": [os.path.join(folder, f"{snt_id}_source{k + 1}hat.wav") for k in range(num_spks)],
        "references": [os.path.join(folder, f"{snt_id}_source{k + 1}.wav") for k in range(num_spks)],
    }


def lr_floor_reached(lr, lr_min):
    """True when ``lr`` is at (or below) the scheduler floor ``lr_min``.

    Example
    -------
    >>> lr_floor_reached(1e-8, 1e-8), lr_floor_reached(2e-8, 1e-8)
    (True, False)
    """
    return lr <= lr_min or math.isclose(lr, lr_min, rel_tol=1e-6)
