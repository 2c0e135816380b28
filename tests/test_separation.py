"""Unit tests of the SeparationBrain: LR schedule, bad steps, padding-free metrics."""

import functools
import logging
import math

import pytest
import ruamel.yaml
import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch

from spgm_lobes.separation import SeparationBrain, SeparationOutput
from spgm_lobes.testing import REPO_ROOT, TINY_ARCH_OVERRIDES

RECIPE = REPO_ROOT / "recipes" / "WSJ0Mix" / "separation" / "hparams" / "spgm.yaml"
TINY = TINY_ARCH_OVERRIDES


@pytest.fixture
def brain(tmp_path, request):
    overrides = {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out"), "arch": TINY}
    overrides.update(getattr(request, "param", {}))
    with open(RECIPE) as f:
        hparams = load_hyperpyyaml(f, overrides)
    (tmp_path / "out").mkdir(exist_ok=True)
    b = SeparationBrain(
        modules=hparams["modules"],
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts={"device": "cpu"},
        checkpointer=hparams["checkpointer"],
    )
    b.on_fit_start()
    return b


def _lr(brain):
    return brain.optimizer.param_groups[0]["lr"]


def test_lr_halves_after_three_epochs_without_improvement(brain):
    brain.hparams.epoch_counter.limit = 100
    lr0 = _lr(brain)
    losses = [-10.0, -11.0, -10.5, -10.9, -10.2]  # best at epoch 2, then 3 epochs without improvement
    for epoch, loss in enumerate(losses, start=1):
        brain.hparams.epoch_counter.current = epoch
        brain.on_stage_end(sb.Stage.VALID, loss, epoch)
        expected = lr0 if epoch < 5 else lr0 / 2
        assert _lr(brain) == pytest.approx(expected), f"epoch {epoch}"
    # an improvement resets the patience
    for epoch, loss in zip(range(6, 10), [-12.0, -11.0, -11.5, -11.9]):
        brain.on_stage_end(sb.Stage.VALID, loss, epoch)
    assert _lr(brain) == pytest.approx(lr0 / 4)


def _saved_epoch(brain):
    state = yaml.safe_load((brain.checkpointer.find_checkpoint().path / "counter.ckpt").read_text())
    return state if isinstance(state, int) else state["current"]  # EpochCounter / TimeBudgetEpochCounter


@pytest.mark.parametrize("budget", [False, True])
def test_training_stops_at_the_lr_floor(tmp_path, budget):
    from spgm_lobes.epoch_budget import TimeBudgetEpochCounter

    overrides = {"N_epochs": 100}
    if budget:  # what --epoch_counter "!new:...TimeBudgetEpochCounter [100, 60]" gives (a tagged YAML node)
        node = "epoch_counter: !new:spgm_lobes.epoch_budget.TimeBudgetEpochCounter [100, 60]"
        overrides.update(ruamel.yaml.YAML().load(node))
    brain = _fused_brain(tmp_path, False, checkpoints=True, **overrides)
    assert isinstance(brain.hparams.epoch_counter, TimeBudgetEpochCounter) == budget
    for group in brain.optimizer.param_groups:
        group["lr"] = 1.5e-8
    for epoch, loss in zip(brain.hparams.epoch_counter, [-10.0, -9.0, -9.0, -9.0, -9.0]):
        brain.on_stage_end(sb.Stage.VALID, loss, epoch)
    assert epoch == 4 and _lr(brain) == pytest.approx(1e-8)  # the epoch loop ended at the floor
    assert _saved_epoch(brain) == 4  # the checkpoint holds the real epoch
    resumed = _fused_brain(tmp_path, False, checkpoints=True, **overrides)  # started again: trains no more
    assert list(resumed.hparams.epoch_counter) == []


def _batch(lengths, num_spks=2):
    items = []
    for i, n in enumerate(lengths):
        sources = [torch.randn(n) * 0.1 for _ in range(num_spks)]
        item = {"id": f"u{i}", "mix_sig": sum(sources)}
        item.update({f"s{k + 1}_sig": s for k, s in enumerate(sources)})
        items.append(item)
    return items


def test_padded_batch_loss_and_metrics_equal_one_by_one(brain):
    items = _batch([800, 560, 700])
    batch = PaddedBatch(items)
    mix, targets, lengths = brain.prepare_batch(batch, sb.Stage.TEST)
    est = targets.flip(-1) + 0.05 * torch.randn_like(targets)
    est[1, 560:] = 3.0  # garbage in the padding
    est[2, 700:] = -3.0
    brain.test_rows = []
    out = SeparationOutput(est, targets, mix, lengths)
    batch_losses = brain.compute_objectives(out, batch, sb.Stage.TEST)
    brain._collect_test_metrics(batch, out)
    batch_rows = brain.test_rows

    brain.test_rows = []
    single_losses = []
    for i, item in enumerate(items):
        one = PaddedBatch([item])
        m, t, lens = brain.prepare_batch(one, sb.Stage.TEST)
        n = t.shape[1]
        o = SeparationOutput(est[i : i + 1, :n], t, m, lens)
        single_losses.append(brain.compute_objectives(o, one, sb.Stage.TEST)[0])
        brain._collect_test_metrics(one, o)
    torch.testing.assert_close(batch_losses, torch.stack(single_losses), atol=1e-5, rtol=1e-5)
    for a, b in zip(batch_rows, brain.test_rows):
        assert a["snt_id"] == b["snt_id"]
        for key in ("sdr", "sdr_i", "si-snr", "si-snr_i"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key


class _NaNLossBrain(SeparationBrain):
    bad_value = float("nan")

    def compute_loss(self, est_source, targets, lengths, mix):
        good = super().compute_loss(est_source, targets, lengths, mix)
        return good * 0 + self.bad_value + 0 * good.detach()


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, 1e7])
def test_bad_steps_are_skipped_then_training_stops(tmp_path, bad_value):
    with open(RECIPE) as f:
        hparams = load_hyperpyyaml(
            f,
            {
                "data_folder": str(tmp_path),
                "output_folder": str(tmp_path),
                "arch": TINY,
                "max_consecutive_bad_steps": 2,
            },
        )
    brain = _NaNLossBrain(
        modules=hparams["modules"], opt_class=hparams["optimizer"], hparams=hparams, run_opts={"device": "cpu"}
    )
    brain.bad_value = bad_value
    brain.on_fit_start()
    before = [p.detach().clone() for p in brain.modules.parameters()]
    batch = PaddedBatch(_batch([400, 400]))
    assert brain.fit_batch(batch).item() == 0.0
    assert brain.fit_batch(batch).item() == 0.0
    assert brain.skipped_steps == 2
    for p, q in zip(before, brain.modules.parameters()):
        assert torch.equal(p, q)  # no update happened
    with pytest.raises(RuntimeError, match="3 training steps in a row"):
        brain.fit_batch(batch)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU here"))]


def _fused_brain(tmp_path, deferred, brain_class=SeparationBrain, device="cpu", checkpoints=False, **overrides):
    """A tiny Brain with a fused Adam (what deferred_step_checks needs), seeded for comparisons;
    ``checkpoints=True`` gives it the recipe's checkpointer (which ``on_fit_start`` recovers from)."""
    overrides = {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out"), "arch": TINY,
                 "deferred_step_checks": deferred, **overrides}  # fmt: skip
    torch.manual_seed(0)
    with open(RECIPE) as f:
        hparams = load_hyperpyyaml(f, overrides)
    (tmp_path / "out").mkdir(exist_ok=True)
    opt_class = functools.partial(torch.optim.Adam, lr=hparams["lr"], fused=True)
    checkpointer = hparams["checkpointer"] if checkpoints else None
    brain = brain_class(modules=hparams["modules"], opt_class=opt_class, hparams=hparams, run_opts={"device": device},
                        checkpointer=checkpointer)  # fmt: skip
    brain.on_fit_start()
    return brain


def _train_steps(brain, batches):
    """Runs training steps as SpeechBrain's loop does; returns the per-step losses and the epoch's loss."""
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    values, average = [], 0.0
    for batch in batches:
        brain.step += 1
        loss = brain.fit_batch(batch)
        values.append(float(loss))
        average = brain.update_average(loss, average)
    brain.on_stage_end(sb.Stage.TRAIN, average, 1)
    return values, brain.train_stats["si-snr"]


@pytest.mark.parametrize("device", DEVICES)
def test_deferred_checks_train_as_the_synchronous_ones(tmp_path, device, monkeypatch):
    if device == "cuda":  # cuDNN's convolution backward may otherwise pick non-deterministic kernels
        monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.manual_seed(1)
    batches = [PaddedBatch(_batch([400, 400])) for _ in range(4)]
    runs = {}
    for deferred in (False, True):
        brain = _fused_brain(tmp_path / str(deferred), deferred, device=device)
        assert brain._deferred_checks == deferred
        runs[deferred] = (_train_steps(brain, batches), [p.detach().clone() for p in brain.modules.parameters()])
    (sync_values, sync_epoch), sync_weights = runs[False]
    (deferred_values, deferred_epoch), deferred_weights = runs[True]
    for p, q in zip(sync_weights, deferred_weights):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert deferred_values[0] == 0.0 and deferred_values[1:] == pytest.approx(sync_values[:-1])
    assert deferred_epoch == pytest.approx(sync_epoch) == pytest.approx(sum(sync_values) / len(sync_values))


@pytest.mark.parametrize("device", DEVICES)
def test_deferred_checks_average_every_step_across_an_intra_epoch_checkpoint(tmp_path, device, monkeypatch):
    if device == "cuda":
        monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
        monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    torch.manual_seed(1)
    batches = [PaddedBatch(_batch([400, 400])) for _ in range(5)]

    def steps(brain, batches, values):  # SpeechBrain's training loop, without its data loader
        for batch in batches:
            brain.step += 1
            values.append(float(brain.fit_batch(batch)))
            brain.avg_train_loss = brain.update_average(torch.tensor(values[-1]), brain.avg_train_loss)

    epoch_losses, sync_values = {}, []
    for run in ("sync", "deferred", "deferred, resumed"):
        folder = tmp_path / run.replace(", ", "-")
        brain = _fused_brain(folder, run != "sync", device=device, checkpoints=True)
        brain.on_stage_start(sb.Stage.TRAIN, 1)
        values = sync_values if run == "sync" else []
        steps(brain, batches[:2], values)
        brain._save_intra_epoch_ckpt()
        if run.endswith("resumed"):  # a new process: the pending step's checks are gone with the old one
            brain = _fused_brain(folder, True, device=device, checkpoints=True)  # on_fit_start recovers
            assert brain.step == 2 and brain._pending_checks is None
            brain.on_stage_start(sb.Stage.TRAIN, 1)
        torch.manual_seed(2)  # the same augmentation draws after the checkpoint, in every run
        steps(brain, batches[2:], values)
        brain.on_stage_end(sb.Stage.TRAIN, brain.avg_train_loss, 1)
        epoch_losses[run] = brain.train_stats["si-snr"]
    assert epoch_losses["sync"] == pytest.approx(sum(sync_values) / len(sync_values))
    assert epoch_losses["deferred"] == pytest.approx(epoch_losses["sync"], rel=1e-5)
    assert epoch_losses["deferred, resumed"] == pytest.approx(epoch_losses["sync"], rel=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_deferred_checks_skip_bad_steps_on_the_device_and_count_them_a_step_later(tmp_path, device):
    brain = _fused_brain(tmp_path, True, brain_class=_NaNLossBrain, device=device, max_consecutive_bad_steps=2)
    brain.bad_value = math.nan
    before = [p.detach().clone() for p in brain.modules.parameters()]
    batch = PaddedBatch(_batch([400, 400]))
    for expected_skipped in (0, 1, 2):
        brain.fit_batch(batch)
        assert brain.skipped_steps == expected_skipped
    for p, q in zip(before, brain.modules.parameters()):
        assert torch.equal(p, q)  # the device skipped every update
    assert all(state["step"] == 0 for state in brain.optimizer.state.values())
    with pytest.raises(RuntimeError, match="3 training steps in a row"):
        brain.fit_batch(batch)


def test_deferred_checks_need_a_fused_optimizer(brain, caplog):
    brain.hparams.deferred_step_checks = True
    with caplog.at_level(logging.WARNING):
        brain.on_fit_start()
    assert not brain._deferred_checks
    assert "needs a fused Adam" in caplog.text


def test_a_good_step_resets_the_bad_step_count(brain):
    batch = PaddedBatch(_batch([400, 300]))
    brain.consecutive_bad_steps = 5
    loss = brain.fit_batch(batch)
    assert torch.isfinite(loss) and loss != 0
    assert brain.consecutive_bad_steps == 0


def test_a_step_with_nothing_to_learn_leaves_no_gradients(brain, monkeypatch):
    # every utterance above the 30-dB threshold: no update, and no gradients left for the next step to add to
    monkeypatch.setattr(
        "spgm_lobes.separation.threshold_loss", lambda losses, threshold: (losses.mean(), torch.tensor(False))
    )
    before = [p.detach().clone() for p in brain.modules.parameters()]
    assert brain.fit_batch(PaddedBatch(_batch([400, 300]))).item() == 0.0
    assert all(p.grad is None for p in brain.modules.parameters())
    assert all(torch.equal(p, q) for p, q in zip(before, brain.modules.parameters()))


def test_noise_is_added_back_after_speed_perturbation(brain):
    items = _batch([800, 800])
    for item in items:
        item["noise_sig"] = torch.full((800,), 0.25)
    brain.hparams.use_speedperturb = True
    brain.hparams.limit_training_signal_len = False
    mix, targets, _ = brain.prepare_batch(PaddedBatch(items), sb.Stage.TRAIN)
    residual = mix - targets.sum(-1)
    torch.testing.assert_close(residual, torch.full_like(residual, 0.25))

    brain.hparams.speed_perturb = lambda x: torch.cat([x, x[:, -80:]], dim=1)  # every source slowed by 10 %
    items[1] = {**items[1], **{k: v[:400] for k, v in items[1].items() if k.endswith("_sig")}}  # half as long
    mix, targets, lengths = brain.prepare_batch(PaddedBatch(items), sb.Stage.TRAIN)
    residual = mix - targets.sum(-1)
    assert mix.shape[1] == targets.shape[1] == 800  # cut to the noise: no unnoisy end
    torch.testing.assert_close(residual[0], torch.full((800,), 0.25))
    torch.testing.assert_close(residual[1, :400], torch.full((400,), 0.25))
    torch.testing.assert_close(lengths, torch.tensor([1.0, 400 / 800]))  # item 2: no further than its noise


@pytest.mark.parametrize("brain", [{"lr_warmup_steps": 4}], indirect=True)
def test_lr_warmup_then_halving_on_plateau(brain):
    peak = brain.hparams.lr
    assert "lr_warmup" in brain.checkpointer.recoverables  # a resumed run continues its warm-up
    batch = PaddedBatch(_batch([400, 400]))
    seen = []
    for _ in range(2):
        brain.fit_batch(batch)
        seen.append(_lr(brain))
    assert seen == pytest.approx([peak / 4, peak / 2])
    brain.hparams.epoch_counter.limit = 100
    for epoch, loss in enumerate([-10.0, -9.0, -9.0, -9.0], start=1):  # three epochs without improvement
        brain.on_stage_end(sb.Stage.VALID, loss, epoch)
    assert brain.lr_warmup.base_lr == pytest.approx(peak / 2)  # the plateau halved the base rate
    brain.fit_batch(batch)
    assert _lr(brain) == pytest.approx(peak / 2 * 3 / 4)  # warm-up step 3 of 4 on the halved base
    brain.fit_batch(batch)
    brain.fit_batch(batch)
    assert _lr(brain) == pytest.approx(peak / 2)


@pytest.mark.parametrize("brain", [{"lr_warmup_steps": 2, "lr_anneal_fraction": 0.5}], indirect=True)
def test_lr_anneal_over_a_time_budget(brain):
    from spgm_lobes.epoch_budget import TimeBudgetEpochCounter

    peak = brain.hparams.lr
    assert brain.lr_anneal is None  # the recipe's EpochCounter has no time budget: no anneal
    now = [0.0]
    brain.hparams.epoch_counter = TimeBudgetEpochCounter(limit=100, minutes=10, clock=lambda: now[0])
    brain.init_optimizers()
    assert brain.lr_anneal is not None
    assert brain.checkpointer.recoverables["lr_anneal"] is brain.lr_anneal  # a resumed run continues its decay
    next(brain.hparams.epoch_counter)
    batch = PaddedBatch(_batch([400, 400]))
    seen = []
    for t in (0.0, 100.0, 450.0, 540.0):
        now[0] = t
        brain.fit_batch(batch)
        seen.append(_lr(brain))
    assert seen == pytest.approx([peak / 2, peak, peak * 0.5, peak * 0.2])  # warm-up, peak, then the decay
    brain.hparams.epoch_counter.limit = 100
    brain.on_stage_end(sb.Stage.VALID, -10.0, 1)
    with open(brain.hparams.train_log) as f:
        assert "lr_scale: 2.00e-01" in f.read()  # the epoch log shows the applied share of the rate


@pytest.mark.parametrize("warmup_steps, done", [(2, 2), (10, 3)])
def test_a_checkpoint_saved_without_warmup_resumes_with_one(tmp_path, caplog, warmup_steps, done):
    # the paper's regime for an epoch (3 optimizer steps), then resumed with --lr_warmup_steps
    brain = _fused_brain(tmp_path, False, checkpoints=True)
    assert brain.lr_warmup is None
    batch = PaddedBatch(_batch([400, 400]))
    for _ in range(3):
        brain.fit_batch(batch)
    brain.hparams.epoch_counter.current = 1
    brain.on_stage_end(sb.Stage.VALID, -10.0, 1)
    with caplog.at_level(logging.WARNING, logger="spgm_lobes.separation"):
        resumed = _fused_brain(tmp_path, False, checkpoints=True, lr_warmup_steps=warmup_steps)
    assert resumed.hparams.epoch_counter.current == 1  # not set aside as incomplete: the run goes on
    assert not (tmp_path / "out" / "save" / "incomplete").exists()
    assert resumed.optimizer_step == 3 and resumed.lr_warmup.done == done  # as if warmed up from the first step
    assert "has no lr_warmup.ckpt" in caplog.text and "3 optimizer steps" in caplog.text
    resumed.fit_batch(batch)
    assert _lr(resumed) == pytest.approx(resumed.hparams.lr * min(1.0, (done + 1) / warmup_steps))


@pytest.mark.parametrize(
    "brain",
    [{"static_training_shapes": True, "training_signal_len": 600, "use_speedperturb": True}],
    indirect=True,
)
def test_static_training_shapes(brain):
    for speed_perturbation in (True, False):
        brain.hparams.use_speedperturb = speed_perturbation
        for lengths in ([800, 500], [400, 300], [600, 600], [590, 560]):
            mix, targets, rel = brain.prepare_batch(PaddedBatch(_batch(lengths)), sb.Stage.TRAIN)
            assert mix.shape == (2, 600) and targets.shape == (2, 600, 2)
            n = torch.round(rel * 600).long()
            assert bool((n <= 600).all()) and bool((n >= 1).all())
            if not speed_perturbation:  # (resampling a padded batch rings a little into its padding)
                assert n.tolist() == [min(k, 600) for k in lengths]
                for i in range(2):  # the padding holds zeros and lies outside the lengths
                    assert float(mix[i, n[i] :].abs().sum()) == 0.0
    # evaluation batches keep their own length
    mix, _, _ = brain.prepare_batch(PaddedBatch(_batch([800, 500])), sb.Stage.VALID)
    assert mix.shape == (2, 800)


@pytest.mark.parametrize("brain", [{"static_training_shapes": True, "batch_size": 2}], indirect=True)
def test_static_training_shapes_drop_the_last_incomplete_batch(brain):
    loader = brain.make_dataloader(_batch([400, 400, 400]), sb.Stage.TRAIN, batch_size=2)
    assert [len(b.id) for b in loader] == [2]
    with pytest.raises(ValueError, match="1 items, fewer than batch_size=2"):
        brain.make_dataloader(_batch([400]), sb.Stage.TRAIN, batch_size=2)


def test_the_first_step_is_reported_as_warmup(brain):
    notes = []
    brain.hparams.epoch_counter.note_warmup = notes.append
    batch = PaddedBatch(_batch([400, 400]))
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.fit_batch(batch)
    brain.fit_batch(batch)
    assert len(notes) == 1 and notes[0] > 0
    brain.on_stage_end(sb.Stage.TRAIN, 0.0, 1)
    assert 0.0 <= brain.train_stats["data_wait"] < 1.0


def _compiled_brain(tmp_path, monkeypatch, static, cuda_graphs=False, **run_opts):
    """A tiny Brain whose mask network compiles through a counting backend (no code generation)."""
    from torch._dynamo.testing import CompileCounter

    from spgm_lobes.fast import masknet as fast_masknet
    from spgm_lobes.fast import use_fast_masknet

    counter = CompileCounter()
    torch._dynamo.reset()
    monkeypatch.setattr(fast_masknet, "_COMPILED", {})
    monkeypatch.setattr(
        fast_masknet, "compile_options", lambda cuda_graphs=False: {"backend": counter, "dynamic": None}
    )
    overrides = {"data_folder": str(tmp_path), "output_folder": str(tmp_path / "out"), "arch": TINY,
                 "static_training_shapes": static, "training_signal_len": 640, "use_speedperturb": True}  # fmt: skip
    with open(RECIPE) as f:
        hparams = load_hyperpyyaml(f, overrides)
    modules = use_fast_masknet(hparams["modules"], compile=True, cuda_graphs=cuda_graphs)
    run_opts = {"device": "cpu", **run_opts}
    brain = SeparationBrain(modules=modules, opt_class=hparams["optimizer"], hparams=hparams, run_opts=run_opts)
    brain.on_fit_start()
    return brain, counter


def test_the_first_compiled_step_logs_where_compilation_went(tmp_path, monkeypatch, caplog):
    brain, counter = _compiled_brain(tmp_path, monkeypatch, static=True)
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    brain.modules.train()
    with caplog.at_level(logging.INFO, logger="spgm_lobes.separation"):
        brain.fit_batch(PaddedBatch(_batch([700, 500])))
        brain.fit_batch(PaddedBatch(_batch([600, 500])))
    torch._dynamo.reset()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Compilation so far")]
    assert counter.frame_count > 0
    assert len(lines) == 1 and "Dynamo tracing" in lines[0], lines


@pytest.mark.parametrize("static", [True, False])
def test_static_shape_training_compiles_once(tmp_path, monkeypatch, static):
    brain, counter = _compiled_brain(tmp_path, monkeypatch, static)
    torch.manual_seed(0)
    compiles = []
    for lengths in ([700, 500], [520, 430], [900, 610], [380, 360], [650, 640], [300, 290]):
        brain.modules.train()
        brain.fit_batch(PaddedBatch(_batch(lengths)))
        compiles.append(counter.frame_count)
    # validation on other lengths runs uncompiled
    brain.modules.eval()
    with torch.no_grad():
        brain.evaluate_batch(PaddedBatch(_batch([1000, 700])), sb.Stage.VALID)
    compiles.append(counter.frame_count)
    torch._dynamo.reset()
    assert compiles[0] > 0
    if static:
        assert compiles == [compiles[0]] * len(compiles)
    else:  # the counter does see the recompilations that varying lengths cause
        assert compiles[-1] > compiles[0]


@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_each_training_step_starts_a_new_cuda_graph_iteration(tmp_path, monkeypatch, cuda_graphs):
    marks = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    brain, _ = _compiled_brain(tmp_path, monkeypatch, static=True, cuda_graphs=cuda_graphs)
    for lengths in ([700, 500], [520, 430], [900, 610]):
        brain.modules.train()
        brain.fit_batch(PaddedBatch(_batch(lengths)))
    torch._dynamo.reset()
    assert len(marks) == (3 if cuda_graphs else 0)


def test_cuda_graphs_are_turned_off_with_gradient_accumulation(tmp_path, monkeypatch, caplog):
    # a replay would overwrite the gradients that the next micro-batch adds to
    with caplog.at_level(logging.WARNING):
        brain, _ = _compiled_brain(tmp_path, monkeypatch, static=True, cuda_graphs=True, grad_accumulation_factor=2)
    torch._dynamo.reset()
    assert not brain._cuda_graphs and not brain.modules["masknet"].cuda_graphs
    assert "grad_accumulation_factor" in caplog.text


def test_test_files_are_written_by_the_main_process_only(brain, tmp_path, monkeypatch):
    rows = [{"snt_id": "a", "si-snr": 1.0, "si-snr_i": 2.0}, {"snt_id": "b", "si-snr": 3.0, "si-snr_i": 4.0}]
    monkeypatch.setattr("spgm_lobes.separation.if_main_process", lambda: False)
    assert brain.write_test_results(rows) == {"si-snr": 2.0, "si-snr_i": 3.0}
    assert not (tmp_path / "out" / "test_results.csv").exists()
    monkeypatch.setattr("spgm_lobes.separation.if_main_process", lambda: True)
    brain.write_test_results(rows)
    assert (tmp_path / "out" / "test_results.csv").read_text().splitlines()[-1] == "avg,2.0,3.0"


def test_subclasses_cannot_drop_the_main_process_guard():
    with pytest.raises(TypeError, match="override test_result_tables instead"):

        class Unguarded(SeparationBrain):
            def write_test_results(self, rows):
                return {}


def test_the_avg_row_leaves_out_an_undefined_sdr():
    rows = [
        {"snt_id": "a", "sdr": 10.0, "sdr_i": 8.0, "si-snr": 9.0, "si-snr_i": 7.0},
        {"snt_id": "b", "sdr": float("nan"), "sdr_i": float("nan"), "si-snr": 5.0, "si-snr_i": 3.0},  # silent reference
    ]
    tables, avg = SeparationBrain.test_result_tables(None, rows)
    assert avg == {"sdr": 10.0, "sdr_i": 8.0, "si-snr": 7.0, "si-snr_i": 5.0}
    assert tables["test_results.csv"][1][-1] == {"snt_id": "avg", **avg}
