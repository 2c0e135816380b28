#!/usr/bin/env python3
"""DDP scaling of the fast training path: throughput on 1, 2, ... GPUs, loss trajectories, kill and resume.

Every run is the WSJ0Mix recipe's training (:func:`spgm_lobes.recipe.run_recipe`: SpeechBrain's
``ddp_init_group``, the fast path, :class:`spgm_lobes.separation.SeparationBrain`) started by
``torchrun --nproc_per_node=N`` (NCCL on CUDA, gloo with ``--device cpu``), in the recipes'
``--regime fast`` (compiled bf16 fast path, fixed-shape crops) with dynamic mixing from a small
speaker folder; a Brain subclass only times the steps and records what the checks need. Sections:

* ``throughput``: for each N, a fixed per-GPU batch (``--batch``, the regime's 16 by default);
  the first ``--warmup_steps`` steps (compilation) are excluded, then the median of ``--steps``
  step intervals (data wait included; per step the slowest process) gives audio-s/s, the scaling
  efficiency against N = 1 (audio-s/s over N times that of one process) and the peak memory per GPU;
* ``trajectory``: N processes with per-GPU batch B/N against one process with batch B = ``--batch``
  (the N = 1 throughput run) over the first ``--traj_steps`` steps: the same seed, initial weights
  and global batches (SpeechBrain's DDP sampler shuffles the epoch from the seed whatever N, and
  process r takes positions r, r + N, ... of it; each mixture is drawn from ``(seed, epoch, index)``,
  so it does not depend on which process reads it). Per step, the mean of the per-utterance
  losses of the global batch must agree within ``--traj_tol_db``; the weights after those steps are
  compared too (distance between the runs over the distance travelled), and the N processes must
  hold identical weights. Speed perturbation is off and the learning-rate warm-up skipped in every
  run (the same data everywhere; the weights move from the first step);
* ``resume``: N processes train epochs of ``--resume_steps`` steps; once the main process has
  written the checkpoint of epoch ``--kill_after_epoch``, every process is killed (SIGKILL), then
  the run is started again. Each process must recover the newest complete checkpoint (its epoch,
  optimizer step count and weights); only the main process may write checkpoints (an audit hook
  records every file each process opens for writing under the save folder).

NVLink multicast stays off in every process started (``NCCL_NVLS_ENABLE=0``,
``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``, ``NVSHMEM_DISABLE_NVLS=1``; each process records what it saw).

Usage::

    python bench/ddp_scaling.py --out results/ddp          # N = 1, 2, 4, ... up to the GPUs present
    python bench/ddp_scaling.py --nproc 1 2 --out results/ddp --librispeech ../shared/data/librispeech-mini
    python bench/ddp_scaling.py --device cpu --quick --nproc 1 2 --out /tmp/ddp   # CPU, gloo, tiny model

Writes ``ddp_scaling.md`` (the tables printed), ``ddp_scaling.csv`` (throughput rows),
``ddp_scaling.json`` (everything) and ``logs/<run>.log`` into ``--out``.

Exit status: 0 when every run and check passed; 1 when a run failed or a check did not pass
(the reports are written all the same); 2 for bad arguments; 3 (``EXIT_NOT_ENOUGH_GPUS``) when
fewer GPUs are visible than the largest N asked for (nothing is run).
"""

import argparse
import hashlib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from spgm_lobes.checkpoints import latest_complete_checkpoint  # noqa: E402
from spgm_lobes.recipe import override_options  # noqa: E402
from spgm_lobes.separation import SeparationBrain  # noqa: E402
from spgm_lobes.testing import TINY_ARCH, free_port, make_wsj0mix_corpus, watch_file_writes  # noqa: E402

EXIT_FAILED = 1
EXIT_NOT_ENOUGH_GPUS = 3
NO_NVLINK_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
"""Environment of every process the bench starts: NVLink multicast is not supported on these hosts."""
RECIPE = REPO / "recipes" / "WSJ0Mix" / "separation"
SAMPLE_RATE = 8000
SECTIONS = ("throughput", "trajectory", "resume")
CSV_COLUMNS = [
    "nproc", "per_gpu_batch", "global_batch", "seconds_per_step", "audio_s_per_s", "speedup", "efficiency",
    "peak_gib_per_gpu", "first_step_s", "data_wait", "status",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------- worker
def weights_state(checkpointer):
    """``{"<recoverable>.<key>": tensor}`` of every module the checkpointer saves (encoder, masknet, decoder)."""
    return {
        f"{name}.{key}": value
        for name, module in sorted(checkpointer.recoverables.items())
        if isinstance(module, torch.nn.Module)
        for key, value in module.state_dict().items()
    }


def weights_digest(state):
    """SHA-256 of a ``{name: tensor}`` mapping (names, dtypes, shapes and bytes): equal weights, equal digests.

    Example
    -------
    >>> a = weights_digest({"w": torch.ones(2)})
    >>> a == weights_digest({"w": torch.ones(2)}), a == weights_digest({"w": torch.zeros(2)})
    (True, False)
    """
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def process_rank():
    """This process's rank in its torchrun launch (0 outside one)."""
    return int(os.environ.get("RANK", "0"))


def optimizer_steps(optimizer_state):
    """Steps an Adam ``state_dict`` has taken (its first parameter's ``step``; 0 before the first step)."""
    state = optimizer_state.get("state", {})
    return int(state[min(state)]["step"]) if state else 0


class BenchBrain(SeparationBrain):
    """The recipes' Brain, timing each training step and recording, for each process, what the checks need
    (written to ``<record_dir>/rank<RANK>.json``): the state recovered at the start of ``fit``, each step's
    end time and duration, the per-utterance losses and ids of the first ``trace_steps`` steps, the weights
    after them and the peak memory. The data order is the recipe's: under torchrun (N = 1 included) SpeechBrain's
    ``DistributedSampler`` draws one permutation of the epoch from the seed, whatever N, and process r takes
    positions r, r + N, ... of it, so N processes at batch B/N together see the global batches of one at B."""

    bench = None  # {"record_dir": Path, "trace_steps": int, "record": dict}: set by worker()
    _bench_losses = None

    def on_fit_start(self):
        super().on_fit_start()  # recovers the newest checkpoint, if any
        ckpt = self.checkpointer.find_checkpoint()
        state = weights_state(self.checkpointer)
        self.bench["record"]["start"] = {
            "checkpoint": ckpt.path.name if ckpt is not None else None,
            "epoch": int(self.hparams.epoch_counter.current),
            "optimizer_steps": optimizer_steps(self.optimizer.state_dict()),
            "lr": self.optimizer.param_groups[0]["lr"],
            "weights": weights_digest(state),
            "weight_files": sorted({name.split(".")[0] for name in state}),
            "recoverables": sorted(self.checkpointer.recoverables),
        }
        if self.bench["trace_steps"] and process_rank() == 0:
            torch.save({k: v.detach().float().cpu() for k, v in state.items()}, self.bench["record_dir"] / "w0.pt")
        cuda = self.device_type == "cuda"
        self.bench["record"]["device_name"] = torch.cuda.get_device_name(self.device) if cuda else "cpu"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        self._write_record()

    def compute_objectives(self, predictions, batch, stage):
        losses = super().compute_objectives(predictions, batch, stage)
        if stage == sb.Stage.TRAIN:
            self._bench_losses = losses.detach()
        return losses

    def fit_batch(self, batch):
        cuda = self.device_type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        loss = super().fit_batch(batch)
        if cuda:
            torch.cuda.synchronize(self.device)
        end = time.perf_counter()
        record, trace = self.bench["record"], self.bench["trace_steps"]
        step = {"end": end, "step_s": end - start, "loss": float(loss)}
        if len(record["steps"]) < trace:
            step["ids"] = list(batch.id)
            step["losses"] = self._bench_losses.float().cpu().tolist()
        record["steps"].append(step)
        if len(record["steps"]) == trace:
            state = weights_state(self.checkpointer)
            record["traced_weights"] = weights_digest(state)
            if process_rank() == 0:
                torch.save({k: v.detach().float().cpu() for k, v in state.items()}, self.bench["record_dir"] / "wK.pt")
        return loss

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            record = self.bench["record"]
            if self.device_type == "cuda":
                record["peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30
            else:
                record["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
            record["data_wait"] = self._data_wait_s / max(self._data_wait_s + self._step_s, 1e-12)
            self._write_record()
        super().on_stage_end(stage, stage_loss, epoch)

    def _write_record(self):
        path = self.bench["record_dir"] / f"rank{process_rank()}.json"
        path.with_suffix(".tmp").write_text(json.dumps(self.bench["record"]))
        path.with_suffix(".tmp").replace(path)


def worker(argv):
    """One process of a torchrun launch: ``worker --record_dir DIR --trace_steps K [--watch DIR] -- <recipe argv>``."""
    from spgm_lobes.data.wsj0mix import build_datasets, prepare_data
    from spgm_lobes.recipe import run_recipe

    parser = argparse.ArgumentParser(prog="ddp_scaling.py worker")
    parser.add_argument("--record_dir", type=Path, required=True)
    parser.add_argument("--trace_steps", type=int, default=0)
    parser.add_argument("--watch", help="record the files this process opens for writing under this folder")
    parser.add_argument("recipe_argv", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    recipe_argv = args.recipe_argv[1:] if args.recipe_argv[:1] == ["--"] else args.recipe_argv
    rank = process_rank()
    args.record_dir.mkdir(parents=True, exist_ok=True)
    if args.watch:  # one line per write, flushed at once: a killed process leaves its lines
        os.makedirs(args.watch, exist_ok=True)
        log = open(args.record_dir / f"writes{rank}.txt", "a", encoding="utf-8")  # noqa: SIM115

        def note(path):
            log.write(path + "\n")
            log.flush()

        watch_file_writes(args.watch, note)
    record = {
        "rank": rank,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "env": {name: os.environ.get(name) for name in NO_NVLINK_MULTICAST},
        "steps": [],
    }
    BenchBrain.bench = {"record_dir": args.record_dir, "trace_steps": args.trace_steps, "record": record}
    brain = run_recipe(recipe_argv, prepare_data, build_datasets, brain_class=BenchBrain)
    record["finished"] = True
    brain._write_record()
    return 0


# ------------------------------------------------------------------------------------------------- parent
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cuda (NCCL) or cpu (gloo)")
    parser.add_argument("--nproc", type=int, nargs="+", help="process counts (default: 1, 2, 4, ... GPUs; cpu: 1 2)")
    parser.add_argument("--sections", type=lambda s: s.split(","), default=list(SECTIONS), help=",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="tiny model, 0.2-s crops, few steps (CPU tests)")
    parser.add_argument("--hparams", default="spgm-ap-s", help="WSJ0Mix recipe hparams (architecture)")
    parser.add_argument("--batch", type=int, help="per-GPU batch (default 16, the fast regime's; quick 4)")
    parser.add_argument("--seconds", type=float, help="crop length (default 2, the fast regime's; quick 0.2)")
    parser.add_argument("--steps", type=int, help="timed steps per throughput run (default 20; quick 3)")
    parser.add_argument("--warmup_steps", type=int, help="untimed first steps, compilation (default 3; quick 1)")
    parser.add_argument("--traj_steps", type=int, help="steps compared in the trajectory check (default 10; quick 3)")
    parser.add_argument("--traj_nproc", type=int, nargs="+", help="N of the trajectory check (default: the largest)")
    parser.add_argument("--traj_tol_db", type=float, help="loss tolerance, dB (default: 0.1 bf16, 0.001 fp32)")
    parser.add_argument("--resume_steps", type=int, help="steps per epoch of the kill/resume run (default 4; quick 2)")
    parser.add_argument("--kill_after_epoch", type=int, default=2, help="kill once this epoch's checkpoint exists")
    parser.add_argument("--precision", help="default bf16 on cuda, fp32 on cpu")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, help="compiled fast path (default: cuda)")
    parser.add_argument("--librispeech", help="LibriSpeech-layout folder for real speech (synthetic when absent)")
    parser.add_argument("--num_workers", type=int, help="data workers per process (default: cuda up to 4; cpu 0)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--timeout_s", type=float, help="limit of one launch (default 600; quick 180)")
    parser.add_argument("--work_dir", type=Path, help="corpus and runs (default: a temporary folder, removed)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further recipe options")
    args = parser.parse_args(argv)
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown --sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    quick, cuda = args.quick, args.device == "cuda"
    defaults = {
        "batch": 4 if quick else 16,
        "seconds": 0.2 if quick else 2.0,
        "steps": 3 if quick else 20,
        "warmup_steps": 1 if quick else 3,
        "traj_steps": 3 if quick else 10,
        "resume_steps": 2 if quick else 4,
        "precision": "bf16" if cuda else "fp32",
        "compile": cuda,
        "timeout_s": 180.0 if quick else 600.0,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.traj_tol_db is None:
        args.traj_tol_db = 1e-3 if args.precision == "fp32" else 0.1
    if args.warmup_steps < 1 or args.steps < 2:
        parser.error("--warmup_steps must be >= 1 and --steps >= 2 (a step interval needs a previous step)")
    if args.traj_steps > args.warmup_steps + args.steps:
        parser.error(f"--traj_steps {args.traj_steps} exceeds the {args.warmup_steps + args.steps} steps of a run")
    if min(args.nproc or [1]) < 1:
        parser.error("--nproc takes process counts of 1 or more")
    for n in args.traj_nproc or ():
        if n < 2 or args.batch % n:
            parser.error(f"--traj_nproc {n}: needs N >= 2 dividing --batch {args.batch} (per-GPU batch B/N)")
    return args


def default_nproc(device, available):
    """1, 2, 4, ... up to ``available`` GPUs, and ``available`` itself (``cpu``: 1 and 2).

    Example
    -------
    >>> default_nproc("cuda", 6), default_nproc("cuda", 0), default_nproc("cpu", 0)
    ([1, 2, 4, 6], [], [1, 2])
    """
    if device == "cpu":
        return [1, 2]
    counts = [n for n in (2**k for k in range(8)) if n <= available]
    return counts + ([available] if available and available not in counts else [])


def not_enough_gpus(asked, available):
    """The message printed (and the bench exits with ``EXIT_NOT_ENOUGH_GPUS``) when ``asked`` > ``available``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    where = f" (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""
    return (
        f"ddp_scaling: {asked} GPU process(es) asked for, but {available} CUDA GPU(s) visible{where}. "
        "Run on a machine with enough GPUs, lower --nproc / --traj_nproc, or check DDP on the CPU with "
        "--device cpu (gloo). Nothing was run."
    )


def child_env(args):
    """The environment of every launch: NVLink multicast off, this checkout's package first, one thread per
    process on the CPU (the same arithmetic in every run)."""
    env = dict(os.environ, **NO_NVLINK_MULTICAST)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    if args.device == "cpu":
        env["OMP_NUM_THREADS"] = "1"
    return env


class Bench:
    """Plans the launches, runs them under torchrun and checks their records."""

    def __init__(self, args, nprocs, work):
        self.args, self.nprocs, self.work = args, nprocs, work
        self.samples = int(round(args.seconds * SAMPLE_RATE))
        self.logs = args.out / "logs"
        self.failed = []  # runs that did not end as expected
        self.progress = None
        self.corpus = None

    # ---- launching -----------------------------------------------------------------------------------
    def prepare_corpus(self):
        """A wsj0-mix-layout corpus (valid / test mixtures) with a speaker folder for dynamic mixing: real
        speech from ``--librispeech`` when that folder exists, else synthetic voices."""
        speech = Path(self.args.librispeech) if self.args.librispeech else None
        if speech is not None and not (speech / "LibriSpeech").is_dir():
            print(f"ddp_scaling: no LibriSpeech/ folder under {speech}: synthetic voices instead", flush=True)
            speech = None
        samples = self.samples + SAMPLE_RATE  # crops start anywhere in the first second
        self.corpus = make_wsj0mix_corpus(self.work / "corpus", per_split=2, samples=samples, speech_root=speech)
        return "LibriSpeech speakers" if speech else "synthetic voices"

    def recipe_argv(self, run_dir, per_gpu_batch, mixtures, epochs):
        a = self.args
        argv = [
            str(RECIPE / "hparams" / f"{Path(a.hparams).stem}.yaml"),
            "--regime", "fast",
            "--data_folder", str(self.corpus),
            "--output_folder", str(run_dir),
            "--dynamic_mixing", "True",
            "--base_folder_dm", str(self.corpus / "si_tr_s"),
            "--dm_mixtures_per_epoch", str(mixtures),
            "--batch_size", str(per_gpu_batch),
            "--training_signal_len", str(self.samples),
            "--N_epochs", str(epochs),
            "--lr_warmup_steps", "0",
            "--use_speedperturb", "False",
            "--precision", a.precision,
            "--compile_fast_path", str(bool(a.compile)),
            "--num_workers", str(self.num_workers()),
            "--ckpt_interval_minutes", "0",
            "--seed", str(a.seed),
            "--noprogressbar",
        ]  # fmt: skip
        if a.device == "cpu":
            argv += ["--device", "cpu", "--distributed_backend", "gloo"]
        if a.quick:
            argv += ["--arch", TINY_ARCH]
        return override_options(argv, a.extra)

    def num_workers(self):
        if self.args.num_workers is not None:
            return self.args.num_workers
        if self.args.device == "cpu":
            return 0
        return max(1, min(4, (os.cpu_count() or 2) // max(self.nprocs) - 1))

    def launch(self, name, nproc, per_gpu_batch, mixtures, epochs=1, trace_steps=0, run=None, watch=False, stop=None):
        """Runs the recipe in ``nproc`` processes (torchrun) with its output in ``runs/<run or name>``, its
        records in ``records/<name>`` and its log in ``<out>/logs/<name>.log``; returns ``{"name", "status",
        "records", ...}``. With ``watch``, each process records the files it opens for writing under the run's
        save folder (``writes<rank>.txt``). ``stop()``, polled while it runs, kills every process
        (SIGKILL) once true."""
        run_dir = self.work / "runs" / (run or name)
        record_dir = self.work / "records" / name
        cmd = [
            sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
            "--master_addr=127.0.0.1", f"--master_port={free_port()}",
            str(Path(__file__).resolve()), "worker", "--record_dir", str(record_dir), "--trace_steps", str(trace_steps),
        ]  # fmt: skip
        if watch:
            cmd += ["--watch", str(run_dir / "save")]
        cmd += ["--", *self.recipe_argv(run_dir, per_gpu_batch, mixtures, epochs)]
        self.logs.mkdir(parents=True, exist_ok=True)
        log_path = self.logs / f"{name}.log"
        start = time.monotonic()
        status = "ok"
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(" ".join(cmd) + "\n\n")
            log.flush()
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=child_env(self.args), cwd=REPO, start_new_session=True
            )
            try:
                while proc.poll() is None:
                    if stop is not None and stop():
                        status = "killed"
                        break
                    if time.monotonic() - start > self.args.timeout_s:
                        status = f"timeout (> {self.args.timeout_s:.0f} s)"
                        break
                    time.sleep(0.2)
            finally:
                if proc.poll() is None:
                    kill_tree(proc.pid)
                proc.wait()
        if status == "ok" and proc.returncode != 0:
            status = f"failed (exit {proc.returncode})"
        if status != ("killed" if stop is not None else "ok"):
            self.failed.append(name)
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-25:]
            tqdm.write(f"{name}: {status}; last lines of {log_path}:\n" + "\n".join(tail))
        if self.progress is not None:
            self.progress.update(1)
        return {
            "name": name,
            "nproc": nproc,
            "status": status,
            "wall_s": time.monotonic() - start,
            "log": str(log_path),
            "record_dir": record_dir,
            "records": [self.read_json(record_dir / f"rank{r}.json") for r in range(nproc)],
        }

    @staticmethod
    def read_json(path):
        return json.loads(path.read_text()) if path.exists() else None

    # ---- sections ------------------------------------------------------------------------------------
    def throughput(self):
        a = self.args
        runs = {}
        for n in self.nprocs:
            steps = a.warmup_steps + a.steps
            trace = a.traj_steps if n == 1 else 0  # N = 1 is the trajectory's reference
            runs[n] = self.launch(f"throughput_n{n}", n, a.batch, mixtures=steps * a.batch * n, trace_steps=trace)
            tqdm.write(f"throughput N={n}: {runs[n]['status']} ({runs[n]['wall_s']:.0f} s)")
        rows = [self.throughput_row(run) for run in runs.values()]
        base = next((r for r in rows if r["nproc"] == 1 and r["audio_s_per_s"]), None)
        for row in rows:
            if base and row["audio_s_per_s"]:
                row["speedup"] = row["audio_s_per_s"] / base["audio_s_per_s"]
                row["efficiency"] = row["speedup"] / row["nproc"]
        return rows, runs

    def throughput_row(self, run):
        a = self.args
        row = dict.fromkeys(CSV_COLUMNS)
        row.update(nproc=run["nproc"], per_gpu_batch=a.batch, global_batch=a.batch * run["nproc"])
        records = run["records"]
        if run["status"] != "ok" or any(r is None or len(r["steps"]) < a.warmup_steps + 2 for r in records):
            row["status"] = run["status"] if run["status"] != "ok" else "too few steps recorded"
            return row
        n_steps = min(len(r["steps"]) for r in records)
        # per step, the slowest process: the interval from the previous step's end (data wait included)
        intervals = [
            max(r["steps"][k]["end"] - r["steps"][k - 1]["end"] for r in records)
            for k in range(a.warmup_steps, n_steps)
        ]
        seconds = statistics.median(intervals)
        row.update(
            seconds_per_step=seconds,
            audio_s_per_s=row["global_batch"] * self.samples / SAMPLE_RATE / seconds,
            peak_gib_per_gpu=max(r.get("peak_gib") or 0.0 for r in records),
            first_step_s=max(r["steps"][0]["step_s"] for r in records),
            data_wait=max(r.get("data_wait") or 0.0 for r in records),
            status="ok",
        )
        return row

    def trajectory(self, reference=None):
        a = self.args
        if reference is None or reference["status"] != "ok":
            reference = self.launch(
                "trajectory_ref", 1, a.batch, mixtures=self.trajectory_mixtures(), trace_steps=a.traj_steps
            )
        results = []
        for n in self.traj_nprocs():
            run = self.launch(
                f"trajectory_n{n}", n, a.batch // n, mixtures=self.trajectory_mixtures(), trace_steps=a.traj_steps
            )
            result = self.compare_trajectories(reference, run)
            diff = result.get("max_loss_diff_db")
            tqdm.write(f"trajectory N={n}: {result['verdict']}, max loss difference {fmt(diff, '.2g')} dB")
            results.append(result)
        return results

    def trajectory_mixtures(self):
        """Mixtures per epoch of every trajectory run: those of the N = 1 throughput run, the reference (the
        sampler's permutation depends on the epoch's length)."""
        return (self.args.warmup_steps + self.args.steps) * self.args.batch

    def traj_nprocs(self):
        if self.args.traj_nproc:
            return self.args.traj_nproc
        largest = max(self.nprocs)
        return [largest] if largest > 1 and self.args.batch % largest == 0 else []

    def compare_trajectories(self, reference, run):
        a, K = self.args, self.args.traj_steps
        result = {"nproc": run["nproc"], "per_gpu_batch": a.batch // run["nproc"], "global_batch": a.batch}
        result.update(steps=K, tolerance_db=a.traj_tol_db, verdict="failed", problems=[])
        records = run["records"]
        if run["status"] != "ok" or reference["status"] != "ok":
            result["problems"].append(f"run status: reference {reference['status']}, N={run['nproc']} {run['status']}")
            return result
        ref_steps = global_batches(reference["records"], K)
        steps = global_batches(records, K)
        if ref_steps is None or steps is None:
            result["problems"].append(f"fewer than {K} traced steps recorded")
            return result
        loss_ref, loss_n, utt_diff = [], [], 0.0
        for k, (ref, got) in enumerate(zip(ref_steps, steps)):
            if set(ref) != set(got):
                result["problems"].append(f"step {k}: other utterances ({sorted(got)[:4]}... vs {sorted(ref)[:4]}...)")
                return result
            loss_ref.append(statistics.fmean(ref.values()))
            loss_n.append(statistics.fmean(got.values()))
            utt_diff = max(utt_diff, max(abs(got[i] - ref[i]) for i in ref))
        diffs = [abs(x - y) for x, y in zip(loss_n, loss_ref)]
        result.update(
            loss_reference=loss_ref,
            loss_nproc=loss_n,
            max_loss_diff_db=max(diffs),
            max_utterance_diff_db=utt_diff,
            loss_moved_db=abs(loss_ref[-1] - loss_ref[0]),
        )
        threshold = -30.0  # the recipe's: utterances above 30 dB SI-SNR leave the mean; the check needs none
        if any(v <= threshold for step in ref_steps + steps for v in step.values()):
            result["problems"].append("some utterances are above the 30-dB threshold: the per-process means differ")
        w0 = torch.load(reference["record_dir"] / "w0.pt")
        w0_n = torch.load(run["record_dir"] / "w0.pt")
        if weights_digest(w0) != weights_digest(w0_n):
            result["problems"].append("the runs did not start from the same weights")
        wk_ref, wk_n = torch.load(reference["record_dir"] / "wK.pt"), torch.load(run["record_dir"] / "wK.pt")
        travelled = sum(float((wk_ref[k] - w0[k]).pow(2).sum()) for k in w0) ** 0.5
        apart = sum(float((wk_n[k] - wk_ref[k]).pow(2).sum()) for k in w0) ** 0.5
        result["weights_apart_over_travelled"] = apart / max(travelled, 1e-30)
        replicas = {r["traced_weights"] for r in records}
        result["replicas_identical"] = len(replicas) == 1
        if len(replicas) != 1:
            result["problems"].append(f"the {len(records)} processes hold different weights after {K} steps")
        if max(diffs) > a.traj_tol_db:
            result["problems"].append(f"loss difference {max(diffs):.3g} dB > tolerance {a.traj_tol_db:g} dB")
        result["verdict"] = "agree" if not result["problems"] else "failed"
        return result

    def resume(self):
        a = self.args
        n = max(self.nprocs)
        run = f"resume_n{n}"
        save = self.work / "runs" / run / "save"
        mixtures = a.resume_steps * a.batch * n
        names = []  # the recoverables, from the first record written

        def checkpoint_written():
            if not names:
                record = self.read_json(self.work / "records" / f"{run}_killed" / "rank0.json")
                if record is None or "start" not in record:
                    return False
                names.extend(record["start"]["recoverables"])
            ckpt = latest_complete_checkpoint(save, names)
            try:
                return ckpt is not None and int((ckpt / "counter.ckpt").read_text()) >= a.kill_after_epoch
            except (OSError, ValueError):  # deleted (an older checkpoint) or being written meanwhile
                return False

        killed = self.launch(
            f"{run}_killed", n, a.batch, mixtures, epochs=1000, run=run, watch=True, stop=checkpoint_written
        )
        result = {"nproc": n, "killed_status": killed["status"], "problems": [], "verdict": "failed"}
        ckpt = latest_complete_checkpoint(save, names) if killed["status"] == "killed" else None
        if ckpt is None:
            result["problems"].append(f"the first run was not killed after a checkpoint ({killed['status']})")
            return result
        epoch = int((ckpt / "counter.ckpt").read_text())
        weights = {}
        for file in killed["records"][0]["start"]["weight_files"]:
            state = torch.load(ckpt / f"{file}.ckpt", map_location="cpu")
            weights.update({f"{file}.{key}": value for key, value in state.items()})
        optimizer = torch.load(ckpt / "optimizer.ckpt", map_location="cpu")
        expected = {
            "checkpoint": ckpt.name,
            "epoch": epoch,
            "optimizer_steps": optimizer_steps(optimizer),
            "weights": weights_digest(weights),
        }
        result["expected"] = expected
        resumed = self.launch(f"{run}_resumed", n, a.batch, mixtures, epochs=epoch + 1, run=run, watch=True)
        result["resumed_status"] = resumed["status"]
        if resumed["status"] != "ok":
            result["problems"].append(f"the resumed run ended with {resumed['status']}")
        for rank, record in enumerate(resumed["records"]):
            start = (record or {}).get("start")
            if start is None:
                result["problems"].append(f"rank {rank} recorded no start")
                continue
            wrong = {key: start[key] for key, value in expected.items() if start[key] != value}
            if wrong:
                result["problems"].append(f"rank {rank} resumed from {wrong} instead of {expected}")
            elif len(record["steps"]) != a.resume_steps:
                result["problems"].append(f"rank {rank} trained {len(record['steps'])} steps after resuming")
        result["problems"] += self.checkpoint_writers(killed, ckpt) + self.checkpoint_writers(resumed, None)
        result["verdict"] = "resumed on every rank" if not result["problems"] else "failed"
        tqdm.write(f"resume N={n}: {result['verdict']} (killed after epoch {epoch})")
        return result

    @staticmethod
    def checkpoint_writers(launch, ckpt):
        """Problems with who wrote checkpoints in ``launch``: the main process must have written checkpoints
        (their ``CKPT.yaml``, opened through Python's ``open`` like ``counter.ckpt``), ``ckpt`` among them; the
        other processes nothing under the save folder's ``CKPT+*``."""
        problems = []
        for rank in range(launch["nproc"]):
            path = launch["record_dir"] / f"writes{rank}.txt"
            writes = [w for w in (path.read_text().split() if path.exists() else []) if "/CKPT+" in w]
            metas = [w for w in writes if w.endswith("/CKPT.yaml")]
            if rank > 0 and writes:
                problems.append(f"{launch['name']}: rank {rank} wrote checkpoint files {writes[:3]}")
            elif rank == 0 and not metas:
                problems.append(f"{launch['name']}: the main process wrote no checkpoint")
            elif rank == 0 and ckpt is not None and str(ckpt / "CKPT.yaml") not in metas:
                problems.append(f"{launch['name']}: {ckpt.name} was not written by the main process")
        return problems

    # ---- all ------------------------------------------------------------------------------------------
    def planned_launches(self):
        a = self.args
        count = len(self.nprocs) if "throughput" in a.sections else 0
        if "trajectory" in a.sections:
            count += len(self.traj_nprocs()) + (0 if "throughput" in a.sections and 1 in self.nprocs else 1)
        return count + (2 if "resume" in a.sections else 0)

    def run(self):
        a = self.args
        report = {"config": config_of(a, self.nprocs), "throughput": [], "trajectory": [], "resume": None}
        report["config"]["data"] = self.prepare_corpus()
        runs = {}
        with tqdm(total=self.planned_launches(), desc="ddp_scaling launches", file=sys.stdout) as self.progress:
            if "throughput" in a.sections:
                report["throughput"], runs = self.throughput()
            if "trajectory" in a.sections:
                report["trajectory"] = self.trajectory(runs.get(1))
            if "resume" in a.sections:
                report["resume"] = self.resume()
        self.progress = None
        records = [r for r in map(self.read_json, sorted((self.work / "records").glob("*/rank*.json"))) if r]
        # every process recorded the environment it saw: NVLink multicast off
        report["nvlink_multicast_off"] = bool(records) and all(r["env"] == NO_NVLINK_MULTICAST for r in records)
        report["config"]["device_name"] = next((r["device_name"] for r in records if "device_name" in r), None)
        report["failed_runs"] = self.failed
        return report


def process_tree(pid):
    """``pid`` and every process below it (Linux ``/proc``; elsewhere ``[pid]``).

    Example
    -------
    >>> child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    >>> process_tree(os.getpid())[0] == os.getpid() and child.pid in process_tree(os.getpid())
    True
    >>> kill_tree(child.pid); child.wait()
    -9
    """
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # "pid (name) state ppid ..."
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        tree.append(todo.pop())
        todo += children.get(tree[-1], [])
    return tree


def kill_tree(pid):
    """SIGKILL to ``pid`` and every process below it: torchrun starts each worker in a session of its own,
    so killing torchrun's process group would leave the workers running."""
    for member in process_tree(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def global_batches(records, steps):
    """``[{utterance id: loss}]`` of the first ``steps`` global batches, from every process's trace."""
    if any(r is None or len(r["steps"]) < steps or "losses" not in r["steps"][steps - 1] for r in records):
        return None
    out = []
    for k in range(steps):
        batch = {}
        for r in records:
            batch.update(zip(r["steps"][k]["ids"], r["steps"][k]["losses"]))
        out.append(batch)
    return out


def config_of(args, nprocs):
    keys = ("device", "quick", "hparams", "batch", "seconds", "steps", "warmup_steps", "traj_steps", "traj_tol_db")
    keys += ("resume_steps", "kill_after_epoch", "precision", "compile", "seed", "sections")
    config = {k: getattr(args, k) for k in keys}
    config.update(nproc=nprocs, torch=torch.__version__, speechbrain=sb.__version__, date=time.strftime("%Y-%m-%d"))
    return config


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown(report):
    c = report["config"]
    lines = [
        f"DDP scaling on {c.get('device_name')} ({c['device']}, {c['precision']}, compiled: {c['compile']}), "
        f"torch {c['torch']}, SpeechBrain {c['speechbrain']}, {c['date']}; {c['hparams']}"
        f"{' (tiny)' if c['quick'] else ''}, {c['seconds']:g}-s crops of {c['data']}; "
        f"NVLink multicast off in every process: {report['nvlink_multicast_off']}",
    ]
    if report["throughput"]:
        lines += [
            "",
            f"### Training throughput (per-GPU batch {c['batch']}; median of {c['steps']} steps after "
            f"{c['warmup_steps']} warm-up steps)",
            "",
            f"| {'GPUs' if c['device'] == 'cuda' else 'processes'} | global batch | s/step | audio-s/s | speed-up | "
            f"efficiency | {'peak GiB/GPU' if c['device'] == 'cuda' else 'peak RSS GiB/process'} | first step s | "
            "data wait | status |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in report["throughput"]:
            lines.append(
                f"| {r['nproc']} | {r['global_batch']} | {fmt(r['seconds_per_step'], '.3f')} | "
                f"{fmt(r['audio_s_per_s'], '.0f')} | {fmt(r['speedup'], '.2f')}× | {fmt(r['efficiency'], '.0%')} | "
                f"{fmt(r['peak_gib_per_gpu'], '.2f')} | {fmt(r['first_step_s'], '.1f')} | "
                f"{fmt(r['data_wait'], '.0%')} | {r['status']} |"
            )
    if report["trajectory"]:
        lines += [
            "",
            f"### Loss trajectory: N processes at batch B/N against one at B = {c['batch']} ({c['traj_steps']} steps)",
            "",
            "| N | per-GPU batch | max loss diff dB | max utterance diff dB | loss moved dB | weights apart / "
            "travelled | replicas identical | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for t in report["trajectory"]:
            verdict = t["verdict"] + (f" ({'; '.join(t['problems'])})" if t["problems"] else "")
            lines.append(
                f"| {t['nproc']} | {t['per_gpu_batch']} | {fmt(t.get('max_loss_diff_db'), '.2g')} | "
                f"{fmt(t.get('max_utterance_diff_db'), '.2g')} | {fmt(t.get('loss_moved_db'), '.3g')} | "
                f"{fmt(t.get('weights_apart_over_travelled'), '.2g')} | {t.get('replicas_identical', '-')} | "
                f"{verdict} |"
            )
    res = report["resume"]
    if res:
        problems = f" ({'; '.join(res['problems'])})" if res["problems"] else ""
        expected = res.get("expected", {})
        lines += [
            "",
            f"### Kill and resume ({res['nproc']} processes): {res['verdict']}{problems}",
            "",
            f"Every process killed (SIGKILL) once {expected.get('checkpoint')} (epoch {expected.get('epoch')}, "
            f"{expected.get('optimizer_steps')} optimizer steps) was written; the resumed run ended with "
            f"{res.get('resumed_status')}"
            + (
                ": every rank resumed from it, only the main process wrote checkpoints." if not res["problems"] else "."
            ),
        ]
    return "\n".join(lines) + "\n"


def write_reports(report, out):
    import csv

    out.mkdir(parents=True, exist_ok=True)
    table = markdown(report)
    (out / "ddp_scaling.md").write_text(table)
    with open(out / "ddp_scaling.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(report["throughput"])
    (out / "ddp_scaling.json").write_text(json.dumps(report, indent=2, default=str))
    return table


def passed(report):
    """True when every launch ended as planned and every check passed."""
    return (
        not report["failed_runs"]
        and all(r["status"] == "ok" for r in report["throughput"])
        and all(t["verdict"] == "agree" for t in report["trajectory"])
        and (report["resume"] is None or not report["resume"]["problems"])
        and report["nvlink_multicast_off"]
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["worker"]:
        return worker(argv[1:])
    args = parse_args(argv)
    available = torch.cuda.device_count() if args.device == "cuda" else 0
    nprocs = sorted(set(args.nproc or default_nproc(args.device, available)))
    if args.device == "cuda":
        asked = max(nprocs + list(args.traj_nproc or []), default=1)
        if asked > available or not nprocs:
            print(not_enough_gpus(asked, available), file=sys.stderr, flush=True)
            return EXIT_NOT_ENOUGH_GPUS
    if args.traj_nproc is None and "trajectory" in args.sections and max(nprocs) > 1 and args.batch % max(nprocs):
        print(f"ddp_scaling: --batch {args.batch} is not divisible by N={max(nprocs)}: no trajectory check", flush=True)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="ddp_scaling_"))
    work = work.resolve()
    args.out = args.out.resolve()
    for folder in (work / "runs", args.out / "logs"):  # a new run: nothing of an earlier one
        shutil.rmtree(folder, ignore_errors=True)
    print(f"# DDP scaling: N = {nprocs} on {args.device}; work folder {work}", flush=True)
    start = time.monotonic()
    report = Bench(args, nprocs, work).run()
    report["wall_s"] = time.monotonic() - start
    table = write_reports(report, args.out)
    print()
    print(table)
    print(f"total {report['wall_s']:.0f} s; wrote {args.out / 'ddp_scaling.md'}, .csv and .json")
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if passed(report) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
