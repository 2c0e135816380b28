#!/usr/bin/env python3
"""Speed and memory benchmark: SpeechBrain's Sepformer, SpeechBrain-built SPGM
and spgm-lobes' fast SPGM, side by side in one run.

Measures
 * inference real-time factor (audio seconds / wall seconds) at 4 / 64 / 300 s;
 * the longest input each model separates in one pass (300 / 1,200 / 3,600 s,
   bfloat16) with its peak GPU memory;
 * training throughput (audio seconds per second) on 4 s segments at batch
   1 / 4 / 8 (compiled row: 8 / 16 / 32 / 48): forward + backward (PIT SI-SNR loss)
   + Adam step (``fused=True`` on the GPU, for every model), with the share of
   each step the host spends queueing kernels (CPU-bound when near 100%);
in float32 and bfloat16 (autocast). Every case is isolated: an out-of-memory
or any other error is recorded in the table ("OOM", "error: ...") and the run
goes on; a global time budget skips what is left once spent.

Models (SPGM rows share one set of random weights, spgm-ap.yaml):
 * ``sb-sepformer``: hparams/sepformer.yaml, plain SpeechBrain modules;
 * ``sb-spgm``: hparams/spgm-ap.yaml, plain SpeechBrain modules;
 * ``fast-spgm``: the same SPGM through :class:`spgm_lobes.fast.FastMaskNet` and
   :class:`spgm_lobes.fast.FastDecoder` (what the recipes train);
 * ``fast-spgm-sliced``: the same SPGM through :func:`spgm_lobes.fast.separate`
   (one pass, memory linear in length; inference only);
 * ``fast-spgm-compiled`` (on CUDA by default; ``--no-compile`` drops it,
   ``--compile`` adds it on the CPU): ``FastMaskNet(compile=True)``, each dual-path
   block under ``torch.compile`` (automatic dynamic shapes: the first length
   compiles a static graph, the second one a dynamic graph reused afterwards).
   bfloat16 only and not in the one-pass table. Each training batch size starts
   from an empty compile cache (``torch._dynamo.reset()``), as a training run at
   that batch size does, so it is measured on its own static graph; the first
   call of each new graph (its compile time) is recorded in ``speed.json`` as
   ``first_call_s``;
 * ``fast-spgm-compiled-bf16`` (with the compiled row; ``fast-spgm-bf16`` without
   compilation): :class:`spgm_lobes.fast.CompiledSeparator`, whole-input inference
   on a bfloat16 copy of the weights (no autocast: residual stream, norms and
   masks in bfloat16), with a CUDA graph replayed for repeated inputs of one
   length when compiled; what ``SPGMSeparation(fast_dtype=torch.bfloat16,
   compile_fast_path=True, cuda_graphs=True)`` runs for inputs up to 5 minutes.
   Inference only.

Training uses the Brain's loss (``spgm_lobes.losses.pit_si_snr_loss``: batched,
no host synchronisation) for every row.

Usage
 python bench/speed.py --out results/speed            # GPU, about 4-5 minutes (H100)
 python bench/speed.py --quick --out /tmp/speed       # CPU smoke test, tiny sizes
 python bench/speed.py --models fast-spgm-compiled --sections training   # one row, one section

Imports only torch, numpy, speechbrain, hyperpyyaml and spgm_lobes.
"""

import argparse
import contextlib
import gc
import json
import platform
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from hyperpyyaml import load_hyperpyyaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spgm_lobes.architectures import architecture_path  # noqa: E402
from spgm_lobes.fast import (  # noqa: E402
    CompiledSeparator,
    FastDecoder,
    FastMaskNet,
    decode_sources,
    estimate_separate_memory,
    fast_masknet_forward,
    separate,
)
from spgm_lobes.losses import pit_si_snr_loss  # noqa: E402
from spgm_lobes.testing import TINY_ARCH_OVERRIDES

SAMPLE_RATE = 8000
TINY = TINY_ARCH_OVERRIDES

FULL = {
    "infer_seconds": (4, 64, 300),
    "long_seconds": (300, 1200, 3600),
    "train_seconds": 4,
    "train_batches": (1, 4, 8),
    "train_batches_compiled": (8, 16, 32, 48),
    "max_reps": 5,
    "case_budget_s": 12.0,
    "case_timeout_s": 90.0,
    "train_steps": 6,
}
QUICK = {
    "infer_seconds": (0.1, 0.2, 0.4),
    "long_seconds": (0.5, 1.0, 2.0),
    "train_seconds": 0.1,
    "train_batches": (1, 2),
    "train_batches_compiled": (2,),
    "max_reps": 1,
    "case_budget_s": 1.0,
    "case_timeout_s": 30.0,
    "train_steps": 1,
}


class Skipped(Exception):
    """A case not run (time budget or predicted too slow)."""


class CaseTimeout(Exception):
    """A case that ran past its hard time limit."""


@contextlib.contextmanager
def hard_timeout(seconds):
    """Raises :class:`CaseTimeout` in the main thread after ``seconds`` (Unix;
    a no-op elsewhere). A running kernel finishes first; Python code between
    kernels is interrupted."""
    usable = seconds and hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def handler(signum, frame):
        raise CaseTimeout(f"timeout (> {seconds:.0f} s)")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def build_modules(name, quick, device):
    """``{encoder, masknet, decoder}`` of architecture ``name`` on ``device``."""
    overrides = dict(TINY) if quick else {}
    if quick and name == "sepformer":
        overrides["inter_layers"] = 1
    with open(architecture_path(name)) as f:
        hparams = load_hyperpyyaml(f, overrides=overrides)
    return {k: v.to(device) for k, v in hparams["modules"].items()}


class Model:
    """One benchmarked configuration: how it separates and how it trains."""

    def __init__(self, name, modules, masknet=None, decoder=None, sliced=False, compiled=False, separator=None):
        self.name = name
        self.compiled = compiled
        self.separator = separator  # a CompiledSeparator: inference only, its own dtype
        # compiled rows: bfloat16, largest training batches and no one-pass table (compile time)
        self.dtypes = (torch.bfloat16,) if compiled or separator is not None else (torch.float32, torch.bfloat16)
        self.encoder = modules["encoder"]
        self.decoder = decoder if decoder is not None else modules["decoder"]
        self.masknet = masknet if masknet is not None else modules["masknet"]
        self.sliced = sliced
        self.num_spks = modules["masknet"].num_spks

    def parameters(self):
        for module in (self.encoder, self.masknet, self.decoder):
            yield from module.parameters()

    def train(self, mode=True):
        for module in (self.encoder, self.masknet, self.decoder):
            module.train(mode)

    def forward(self, mix):
        """``[B, T]`` -> ``[B, T, num_spks]`` (SepformerSeparation.separate_batch's computation).
        A compiled FastMaskNet compiles only in training mode; its inference row calls the compiled
        blocks directly."""
        mix_w = self.encoder(mix)
        if self.compiled and isinstance(self.masknet, FastMaskNet):
            masks = fast_masknet_forward(self.masknet, mix_w, compiled=True)
        else:
            masks = self.masknet(mix_w)
        return decode_sources(self.decoder, mix_w, masks, mix.shape[1])

    def separate(self, mix, dtype):
        """Inference in ``dtype`` (float32, or bfloat16 autocast)."""
        if self.separator is not None:
            return self.separator(mix)
        if self.sliced:
            return separate(self.encoder, self.masknet, self.decoder, mix, dtype=dtype, compiled=self.compiled)
        with torch.inference_mode(), autocast(mix.device, dtype):
            return self.forward(mix)


def autocast(device, dtype):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def describe_error(exc):
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower():
        return "OOM"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return "error: " + first[:120].replace("|", "/")


def run_case(record, fn, device, timeout_s=None):
    """Runs ``fn(record)`` in isolation (OOM, errors and a hard timeout are
    recorded in ``record['status']``, never raised)."""
    reset_peak(device)
    try:
        with hard_timeout(timeout_s):
            fn(record)
        record["status"] = "ok"
    except Skipped as exc:
        record["status"] = f"skipped ({exc})"
    except CaseTimeout as exc:
        record["status"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - every failure must be recorded, not crash the run
        record["status"] = describe_error(exc)
    finally:
        record["peak_gib"] = peak_gib(device) if record.get("status") == "ok" else None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"  {record}", flush=True)
    return record


def cpu_timed(fn):
    """``(fn(), host seconds)``: the time to queue the work, without waiting for the GPU."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def timed(fn, device):
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


class Bench:
    """Runs every case, keeps the records and renders the tables."""

    def __init__(self, args):
        self.args = args
        self.cfg = QUICK if args.quick else FULL
        self.device = torch.device(args.device)
        self.deadline = time.monotonic() + args.budget_s
        self.records = []
        self.info = {}

    def case(self, rec, fn):
        """Runs one case with the hard per-case time limit."""
        timeout = self.cfg["case_timeout_s"] * (3 if "compiled" in rec["model"] else 1)  # compilation
        return run_case(rec, fn, self.device, timeout_s=timeout)

    def check_time(self, predicted=0.0):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Skipped("time budget spent")
        if not self.args.quick and predicted > min(left, 3 * self.cfg["case_budget_s"]):
            raise Skipped(f"predicted {predicted:.0f} s")

    def mixture(self, batch, seconds, seed=0):
        g = torch.Generator().manual_seed(seed)
        return (0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=g)).to(self.device)

    # ---- inference -------------------------------------------------------------------------
    def run_inference(self, models):
        for model in models:
            for dtype in model.dtypes:
                last = None  # (wall seconds of one run, audio seconds) of the previous length
                for seconds in self.cfg["infer_seconds"]:
                    rec = {"section": "inference", "model": model.name, "dtype": dtype_name(dtype), "seconds": seconds}

                    def fn(rec, model=model, dtype=dtype, seconds=seconds, last=last):
                        self.check_time(2 * last[0] * seconds / last[1] if last else 0.0)
                        mix = self.mixture(1, seconds)
                        spent, _ = timed(lambda: model.separate(mix, dtype), self.device)  # warm-up
                        rec["first_call_s"] = spent
                        spent = 0.0 if model.compiled else spent
                        times = []
                        while len(times) < self.cfg["max_reps"] and (not times or spent < self.cfg["case_budget_s"]):
                            t, _ = timed(lambda: model.separate(mix, dtype), self.device)
                            times.append(t)
                            spent += t
                        rec["seconds_median"] = float(np.median(times))
                        rec["reps"] = len(times)
                        rec["rtf"] = seconds / rec["seconds_median"]

                    self.records.append(self.case(rec, fn))
                    if rec["status"] == "ok":
                        last = (rec["seconds_median"], seconds)

    # ---- longest input in one pass -------------------------------------------------------------
    def run_long(self, models):
        dtype = torch.bfloat16
        for model in models:
            failed = False
            last = None
            for seconds in self.cfg["long_seconds"]:
                rec = {"section": "long", "model": model.name, "dtype": dtype_name(dtype), "seconds": seconds}
                if failed:
                    rec["status"] = "skipped (shorter input failed)"
                    self.records.append(rec)
                    continue

                def fn(rec, model=model, seconds=seconds, last=last):
                    self.check_time(last[0] * seconds / last[1] if last else 0.0)
                    mix = self.mixture(1, seconds)
                    t, est = timed(lambda: model.separate(mix, dtype), self.device)
                    if not torch.isfinite(est).all():
                        raise RuntimeError("non-finite output")
                    rec["seconds_wall"] = t
                    rec["rtf"] = seconds / t
                    if model.sliced:
                        estimate = estimate_separate_memory(model.encoder, model.masknet, mix.shape[1], dtype=dtype)
                        rec["estimate_gib"] = estimate / 2**30

                self.records.append(self.case(rec, fn))
                failed = rec["status"] == "OOM" or rec["status"].startswith("error")
                last = (rec.get("seconds_wall"), seconds) if not failed else last

    # ---- training --------------------------------------------------------------------------
    def run_training(self, models):
        seconds = self.cfg["train_seconds"]
        for model in models:
            for dtype in model.dtypes:
                batches = self.cfg["train_batches_compiled"] if model.compiled else self.cfg["train_batches"]
                for batch in batches:
                    if model.compiled:
                        # a fresh compile per batch size, as in a training run at that size: otherwise the
                        # second size compiles a dynamic-batch graph that serves every later size, whose
                        # host time is higher (H200, batch 8: 99 ms per step, against 53 ms on its own
                        # static graph) and whose kernel configurations are tuned for that second size
                        torch._dynamo.reset()
                    rec = {
                        "section": "training",
                        "model": model.name,
                        "dtype": dtype_name(dtype),
                        "batch": batch,
                        "seconds": seconds,
                    }

                    def fn(rec, model=model, batch=batch, dtype=dtype):
                        self.check_time()
                        model.train()
                        optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, fused=self.device.type == "cuda")
                        sources = self.mixture(batch * model.num_spks, seconds, seed=batch)
                        targets = sources.view(batch, model.num_spks, -1).transpose(1, 2)  # [B, T, C]
                        mix = targets.sum(-1)

                        def step():
                            optimizer.zero_grad(set_to_none=True)
                            with autocast(self.device, dtype):
                                est = model.forward(mix)
                            loss = pit_si_snr_loss(est.float(), targets).mean()
                            loss.backward()
                            optimizer.step()
                            return loss.detach()

                        try:
                            warm_up = [timed(step, self.device)[0] for _ in range(1 if self.args.quick else 2)]
                            rec["first_call_s"] = warm_up[0]
                            times, enqueue = [], []
                            while len(times) < self.cfg["train_steps"] and (
                                sum(times) < self.cfg["case_budget_s"] or len(times) < 2
                            ):
                                t, (loss, cpu) = timed(lambda: cpu_timed(step), self.device)
                                times.append(t)
                                enqueue.append(cpu)
                            if not torch.isfinite(loss):
                                raise RuntimeError("non-finite loss")
                        finally:
                            model.train(False)
                        rec["seconds_per_step"] = float(np.median(times))
                        if self.device.type == "cuda":  # on the CPU, queueing is computing
                            # host time to launch a step: close to seconds_per_step when the CPU is the limit
                            rec["cpu_seconds_per_step"] = float(np.median(enqueue))
                        rec["audio_s_per_s"] = batch * seconds / rec["seconds_per_step"]

                    self.records.append(self.case(rec, fn))

    # ---- equivalence sanity check -------------------------------------------------------------
    def check_equivalence(self, plain, fast):
        mix = self.mixture(1, self.cfg["infer_seconds"][0], seed=7)
        out = {}
        # float32 means float32 here: TF32 matrix products (which SpeechBrain switches on) are off for this check
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            for dtype in fast.dtypes:
                try:
                    with hard_timeout(3 * self.cfg["case_timeout_s"]):
                        ref = plain.separate(mix, torch.float32)
                        est = fast.separate(mix, dtype)
                    out[dtype_name(dtype)] = float((est.float() - ref).norm() / ref.norm())
                except Exception as exc:  # noqa: BLE001
                    out[dtype_name(dtype)] = describe_error(exc)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        return out

    def run(self):
        args, device = self.args, self.device
        torch.manual_seed(0)
        self.info = {
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "quick": args.quick,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if device.type == "cuda" else None,
        }
        try:
            import speechbrain

            self.info["speechbrain"] = speechbrain.__version__
        except AttributeError:
            pass
        print(f"# speed benchmark on {self.info['device']} (torch {torch.__version__})", flush=True)
        sepformer = build_modules("sepformer", args.quick, device)
        spgm = build_modules("spgm-ap", args.quick, device)
        for modules in (sepformer, spgm):
            for m in modules.values():
                m.eval()
        fast, fast_decoder = FastMaskNet(spgm["masknet"]), FastDecoder(spgm["decoder"])
        models = [
            Model("sb-sepformer", sepformer),
            Model("sb-spgm", spgm),
            Model("fast-spgm", spgm, masknet=fast, decoder=fast_decoder),
            Model("fast-spgm-sliced", spgm, decoder=fast_decoder, sliced=True),
        ]
        if args.compile:
            compiled = FastMaskNet(spgm["masknet"], compile=True)
            models.append(Model("fast-spgm-compiled", spgm, masknet=compiled, decoder=fast_decoder, compiled=True))
        separator = CompiledSeparator(
            spgm["encoder"], spgm["masknet"], spgm["decoder"], compile=args.compile, cuda_graphs=args.compile
        )
        name = "fast-spgm-compiled-bf16" if args.compile else "fast-spgm-bf16"
        models.append(Model(name, spgm, separator=separator, compiled=args.compile))
        if args.models:
            unknown = set(args.models) - {m.name for m in models}
            if unknown:
                raise SystemExit(f"Unknown --models {sorted(unknown)}; choose from {[m.name for m in models]}")
            models = [m for m in models if m.name in args.models]
        reference = Model("sb-spgm", spgm)
        self.info["equivalence_vs_sb_spgm"] = {
            m.name: self.check_equivalence(reference, m) for m in models if m.name.startswith("fast-spgm")
        }
        self.info["equivalence_vs_sb_spgm"]["sb-spgm"] = self.check_equivalence(reference, reference)
        print(
            f"  equivalence (relative error vs sb-spgm fp32, TF32 off): {self.info['equivalence_vs_sb_spgm']}",
            flush=True,
        )
        plain = [m for m in models if m.name.startswith("sb-")]
        one_pass = plain + [m for m in models if m.sliced] + [m for m in models if not m.sliced and m not in plain]
        one_pass = [m for m in one_pass if not m.compiled]
        trainable = [m for m in models if not m.sliced and m.separator is None]
        sections = {
            "inference": lambda: self.run_inference(models),
            "long": lambda: self.run_long(one_pass),
            "training": lambda: self.run_training(trainable),
        }
        for section in args.sections:
            print(f"## {section}", flush=True)
            sections[section]()
        return self.records

    # ---- report -----------------------------------------------------------------------------
    def markdown(self):
        cfg = self.cfg
        train_batches = sorted(set(cfg["train_batches"]) | set(cfg["train_batches_compiled"]))
        lines = [f"Device: {self.info.get('device')}, torch {self.info.get('torch')}"]
        eq = self.info.get("equivalence_vs_sb_spgm", {})
        if eq:
            lines.append(f"Relative error vs sb-spgm (fp32 reference, TF32 off): {json.dumps(eq)}")
        sections = self.args.sections
        if "inference" in sections:
            rows = [
                ((model, dtype), [self.cell(r, "rtf", "seconds_median") for r in sorted(recs, key=seconds)])
                for (model, dtype), recs in group(self.records, "inference", ("model", "dtype"))
            ]
            columns = [f"{fmt_s(s)} s" for s in cfg["infer_seconds"]]
            title = "Inference speed (× real time; wall seconds; peak GiB)"
            lines += markdown_table(title, ("model", "dtype"), columns, rows)
        if "long" in sections:
            rows = [
                ((model,), [self.cell(r, "rtf", "seconds_wall") for r in sorted(recs, key=seconds)])
                for (model,), recs in group(self.records, "long", ("model",))
            ]
            columns = [f"{fmt_s(s)} s" for s in cfg["long_seconds"]]
            title = "Longest input in one pass (bf16; × real time; wall seconds; peak GiB)"
            lines += markdown_table(title, ("model",), columns, rows)
        if "training" in sections:
            rows = []
            for (model, dtype), recs in group(self.records, "training", ("model", "dtype")):
                by_batch = {r["batch"]: r for r in recs}
                cells = [
                    self.cell(by_batch[b], "audio_s_per_s", None) if b in by_batch else "not run" for b in train_batches
                ]
                rows.append(((model, dtype), cells))
            title = (
                f"Training throughput ({fmt_s(cfg['train_seconds'])} s segments; audio seconds per second; peak GiB; "
                "host: share of the step the CPU spends queueing work, near 100% when it is the limit)"
            )
            lines += markdown_table(title, ("model", "dtype"), [f"batch {b}" for b in train_batches], rows)
        return "\n".join(lines) + "\n"

    @staticmethod
    def cell(rec, value_key, seconds_key):
        if rec.get("status") != "ok":
            return rec.get("status", "?")
        text = f"{rec[value_key]:.0f}" + ("×" if value_key == "rtf" else "")
        extra = []
        if seconds_key:
            extra.append(f"{rec[seconds_key]:.3g} s")
        if rec.get("peak_gib") is not None:
            extra.append(f"{rec['peak_gib']:.1f} GiB")
        if rec.get("cpu_seconds_per_step") is not None:
            extra.append(f"host {rec['cpu_seconds_per_step'] / rec['seconds_per_step']:.0%}")
        return text + (f" ({', '.join(extra)})" if extra else "")


def seconds(rec):
    return rec["seconds"]


def markdown_table(title, key_names, columns, rows):
    """Lines of a titled markdown table: the key columns, then ``columns``;
    ``rows`` holds ``(keys, cells)`` pairs."""
    header = [*key_names, *columns]
    lines = ["", f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join([*keys, *cells]) + " |" for keys, cells in rows]


def group(records, section, keys):
    out = {}
    for rec in records:
        if rec["section"] == section:
            out.setdefault(tuple(rec[k] for k in keys), []).append(rec)
    return list(out.items())


def fmt_s(seconds):
    return f"{seconds:g}"


SECTIONS = ("inference", "long", "training")


def dtype_name(dtype):
    return {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke test with tiny models and inputs")
    parser.add_argument("--out", type=Path, default=None, help="folder for speed.md and speed.json")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu with --quick)")
    parser.add_argument("--budget-s", type=float, default=None, help="global time budget (default 500, quick 60)")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add the torch.compile row fast-spgm-compiled (default: on CUDA only)",
    )
    parser.add_argument("--models", type=lambda s: s.split(","), default=None, help="comma-separated subset of rows")
    parser.add_argument(
        "--sections",
        type=lambda s: s.split(","),
        default=list(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}, run in that order (default: all)",
    )
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown --sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    if args.device is None:
        args.device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    if args.compile is None:
        args.compile = args.device.startswith("cuda")
    if args.budget_s is None:
        args.budget_s = 60.0 if args.quick else 500.0
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.quick:
        torch.set_num_threads(1)
    bench = Bench(args)
    start = time.monotonic()
    bench.run()
    table = bench.markdown()
    print()
    print(table)
    print(f"total {time.monotonic() - start:.0f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "speed.md").write_text(table)
        config = {k: list(v) if isinstance(v, tuple) else v for k, v in bench.cfg.items()}
        payload = {"info": bench.info, "config": config, "records": bench.records}
        (args.out / "speed.json").write_text(json.dumps(payload, indent=2, default=str))
        print(f"wrote {args.out / 'speed.md'} and {args.out / 'speed.json'}")
    return bench


if __name__ == "__main__":
    main()
