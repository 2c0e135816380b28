#!/usr/bin/env python3
"""Profile of the fast SPGM path (spgm-ap.yaml, random weights).

Prints, for a 64 s input in bfloat16 and a training step at batch 8 x 4 s:
 * ``torch.profiler`` tables (top kernels by CUDA time) of FastMaskNet,
   :func:`spgm_lobes.fast.separate` and the training step;
 * × real time (inference) and audio seconds per second (training) of the
   eager path and of ``torch.compile`` variants, with their compile times.

Usage
 python bench/profile_fast.py --out results/profile      # GPU, about 4 minutes
 python bench/profile_fast.py --quick                    # CPU smoke test, tiny sizes
"""

import argparse
import sys
import time
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.nnet.losses import get_si_snr_with_pitwrapper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from spgm_lobes.architectures import architecture_path  # noqa: E402
from spgm_lobes.fast import FastMaskNet, fast_masknet_forward, separate  # noqa: E402

SAMPLE_RATE = 8000
TINY = {"N_encoder_out": 16, "out_channels": 16, "nhead": 2, "d_ffn": 32, "intra_layers": 1, "chunk_size": 10}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, device, reps):
    times = []
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


class Profiler:
    def __init__(self, args):
        self.args = args
        self.device = torch.device(args.device)
        self.deadline = time.monotonic() + args.budget_s
        self.lines = []
        with open(architecture_path("spgm-ap")) as f:
            hparams = load_hyperpyyaml(f, overrides=TINY if args.quick else {})
        self.modules = {k: v.to(self.device).eval() for k, v in hparams["modules"].items()}
        self.num_spks = hparams["num_spks"]
        self.seconds = 0.2 if args.quick else 64
        self.train_seconds = 0.1 if args.quick else 4
        self.batch = 2 if args.quick else 8
        self.reps = 1 if args.quick else 5

    def say(self, text):
        print(text, flush=True)
        self.lines.append(text)

    def time_left(self):
        return self.deadline - time.monotonic()

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def mixture(self, batch, seconds):
        g = torch.Generator().manual_seed(0)
        return (0.1 * torch.randn(batch, int(seconds * SAMPLE_RATE), generator=g)).to(self.device)

    def forward(self, masknet_fn, mix):
        enc, dec = self.modules["encoder"], self.modules["decoder"]
        w = enc(mix)
        masks = masknet_fn(w)
        est = torch.stack([dec(w * masks[i]) for i in range(self.num_spks)], dim=-1)
        return est.unsqueeze(0) if est.dim() == 2 else est

    # ---- cases ---------------------------------------------------------------------------------
    def inference(self, name, masknet_fn=None, sliced_kwargs=None, profile=False):
        if self.time_left() < 0:
            self.say(f"| {name} | skipped (budget) | |")
            return
        mix = self.mixture(1, self.seconds)

        def run():
            if sliced_kwargs is not None:
                return separate(self.modules["encoder"], masknet_fn, self.modules["decoder"], mix, **sliced_kwargs)
            with torch.inference_mode(), self.autocast():
                return self.forward(masknet_fn, mix)

        try:
            first = median_time(run, self.device, 1)  # warm-up / compilation
            t = median_time(run, self.device, self.reps)
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                run()
                peak = torch.cuda.max_memory_allocated() / 2**30
            else:
                peak = float("nan")
            self.say(
                f"| {name} | {self.seconds / t:.0f}× ({t * 1e3:.1f} ms) | first call {first:.1f} s, {peak:.1f} GiB |"
            )
        except Exception as exc:  # noqa: BLE001 - report and go on
            self.say(f"| {name} | error: {type(exc).__name__}: {str(exc).splitlines()[0][:150]} | |")
            return
        if profile:
            self.profile(name, run)

    def training(self, name, masknet_fn, params, profile=False):
        if self.time_left() < 0:
            self.say(f"| train {name} | skipped (budget) | |")
            return
        sources = self.mixture(self.batch * self.num_spks, self.train_seconds)
        targets = sources.view(self.batch, self.num_spks, -1).transpose(1, 2)
        mix = targets.sum(-1)
        optimizer = torch.optim.Adam(params, lr=1e-5, fused=self.device.type == "cuda")
        for m in self.modules.values():
            m.train()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with self.autocast():
                est = self.forward(masknet_fn, mix)[:, : mix.shape[1]]
            loss = get_si_snr_with_pitwrapper(targets, est.float()).mean()
            loss.backward()
            optimizer.step()

        try:
            first = median_time(step, self.device, 2)
            t = median_time(step, self.device, self.reps)
            audio = self.batch * self.train_seconds
            self.say(
                f"| train {name} b{self.batch} | {audio / t:.0f} audio-s/s ({t * 1e3:.1f} ms) | warm-up {first:.1f} s |"
            )
            if profile:
                self.profile(f"train {name}", step)
        except Exception as exc:  # noqa: BLE001
            self.say(f"| train {name} | error: {type(exc).__name__}: {str(exc).splitlines()[0][:150]} | |")
        finally:
            for m in self.modules.values():
                m.eval()

    def profile(self, name, fn):
        activities = [torch.profiler.ProfilerActivity.CPU]
        sort = "cpu_time_total"
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
            sort = "cuda_time_total"
        with torch.profiler.profile(activities=activities) as prof:
            fn()
            sync(self.device)
        table = prof.key_averages().table(sort_by=sort, row_limit=25, max_name_column_width=70)
        self.say(f"\n#### profile: {name}\n```\n{table}\n```\n")

    def equivalence(self, fast):
        """Relative error of the fast path vs the plain modules, float32 with TF32 off."""
        mix = self.mixture(1, 0.2 if self.args.quick else 4)
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            with torch.inference_mode():
                ref = self.forward(self.modules["masknet"], mix)
                out = self.forward(fast, mix)
                sliced = separate(self.modules["encoder"], self.modules["masknet"], self.modules["decoder"], mix)
            n = min(ref.shape[1], sliced.shape[1])
            err = float((out - ref).norm() / ref.norm())
            err_sliced = float((sliced[:, :n] - ref[:, :n]).norm() / ref[:, :n].norm())
            self.say(
                f"| fp32 equivalence (TF32 off), rel. error vs SpeechBrain | fast {err:.1e}, "
                f"sliced {err_sliced:.1e} | |"
            )
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    def attention_backends(self):
        """SDPA kernels on the intra-attention shapes (64 s inference, training batch)."""
        if self.device.type != "cuda":
            return
        from torch.nn.attention import SDPBackend, sdpa_kernel

        H, T, D = 8, 250, 32
        for backend in (SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    q, k, v = (torch.randn(514, H, T, D, device=self.device, dtype=torch.bfloat16) for _ in range(3))
                    with torch.inference_mode():
                        fwd = median_time(
                            lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v), self.device, 5
                        )
                    q, k, v = (
                        torch.randn(136, H, T, D, device=self.device, dtype=torch.bfloat16, requires_grad=True)
                        for _ in range(3)
                    )
                    g = torch.randn(136, H, T, D, device=self.device, dtype=torch.bfloat16)
                    fb = median_time(
                        lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v).backward(g), self.device, 5
                    )
                self.say(
                    f"| SDPA {backend.name} | fwd [514,8,250,32] {fwd * 1e3:.3f} ms "
                    f"| fwd+bwd [136,8,250,32] {fb * 1e3:.3f} ms |"
                )
            except Exception as exc:  # noqa: BLE001
                self.say(f"| SDPA {backend.name} | error: {str(exc).splitlines()[0][:120]} | |")

    def run(self):
        dev = self.device
        masknet = self.modules["masknet"]
        fast = FastMaskNet(masknet)
        params = [p for m in self.modules.values() for p in m.parameters()]
        self.say(
            f"# profile_fast on {torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}, "
            f"torch {torch.__version__}; {self.seconds} s input, bf16; training b{self.batch} x {self.train_seconds} s"
        )
        self.say("\n| case | speed | notes |\n|---|---|---|")
        self.equivalence(fast)
        self.attention_backends()
        self.inference("sb-spgm eager", masknet)
        self.inference("fast eager", fast, profile=not self.args.no_profile)
        self.inference("sliced eager", masknet, sliced_kwargs={"dtype": torch.bfloat16})
        self.training("sb-spgm eager", masknet, params)
        self.training("fast eager", fast, params)
        if self.args.no_compile:
            return
        per_block = FastMaskNet(masknet, compile=True)
        self.inference("fast compile=True (per dual block)", per_block, profile=not self.args.no_profile)
        self.training("fast compile=True (per dual block)", per_block, params, profile=not self.args.no_profile)
        self.inference("sliced compiled=True", masknet, sliced_kwargs={"dtype": torch.bfloat16, "compiled": True})
        whole = torch.compile(lambda x: fast_masknet_forward(masknet, x), dynamic=False)
        self.inference("whole masknet torch.compile default", whole)
        graphs = torch.compile(lambda x: fast_masknet_forward(masknet, x), dynamic=False, mode="reduce-overhead")
        self.inference("whole masknet torch.compile reduce-overhead (CUDA graphs)", graphs)
        if self.args.autotune:
            tuned = torch.compile(
                lambda x: fast_masknet_forward(masknet, x), dynamic=False, mode="max-autotune-no-cudagraphs"
            )
            self.inference("whole masknet max-autotune-no-cudagraphs", tuned)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke test with a tiny model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--budget-s", type=float, default=240.0, help="cases starting after this are skipped")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--autotune", action="store_true", help="add a max-autotune-no-cudagraphs case")
    parser.add_argument("--out", type=Path, default=None, help="folder for profile.md")
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    prof = Profiler(args)
    prof.run()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "profile.md").write_text("\n".join(prof.lines) + "\n")
    return prof


if __name__ == "__main__":
    main()
