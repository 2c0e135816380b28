"""Time and peak memory of ``spgm-separate`` on one long mixture, separated in one pass.

Builds a model folder (inference card + random-weight checkpoints; weights do not
change the cost), generates a synthetic 8 kHz two-voice mixture (or takes
``--mixture``), runs ``spgm-separate`` on it in a child process and prints the
wall time and the child's peak RSS (``resource.getrusage(RUSAGE_CHILDREN)``).

Full acceptance run (full SPGM, 10 minutes, CPU)::

    python bench/long_separation.py --seconds 600 --architecture spgm-ap

CPU smoke test (tiny model, 3 s)::

    python bench/long_separation.py --quick
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from spgm_lobes.architectures import ARCHITECTURES, architecture_path  # noqa: E402
from spgm_lobes.card import inference_card  # noqa: E402
from spgm_lobes.dsp.audio import audio_info  # noqa: E402
from spgm_lobes.publish import synthetic_mixture  # noqa: E402
from spgm_lobes.testing import TINY_ARCH_OVERRIDES  # noqa: E402

TINY = TINY_ARCH_OVERRIDES
SAMPLE_RATE = 8000


def make_model_folder(folder, architecture, overrides):
    """Writes a flattened inference card and random-weight checkpoints; returns the parameter count."""
    path = architecture_path(architecture) if architecture in ARCHITECTURES else Path(architecture)
    card = inference_card(path, overrides, sample_rate=SAMPLE_RATE, num_spks=2)
    (folder / "hyperparams.yaml").write_text(card)
    modules = load_hyperpyyaml(card)["modules"]
    for name, module in modules.items():
        torch.save(module.state_dict(), folder / f"{name}.ckpt")
    return sum(p.numel() for m in modules.values() for p in m.parameters())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="mixture length to generate (default 600)")
    parser.add_argument("--architecture", default="spgm-ap", help="architecture name or YAML (default spgm-ap)")
    parser.add_argument("--mixture", default=None, help="use this audio file instead of a generated mixture")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workdir", default=None, help="where the model, mixture and outputs go (default: temp)")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny model, 3 s")
    parser.add_argument("--plain", action="store_true", help="SpeechBrain's plain modules instead of the fast path")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="architecture keys, e.g. num_blocks=1 intra_layers=1"
    )
    args = parser.parse_args(argv)
    overrides = dict(TINY) if args.quick else {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    seconds = 3.0 if args.quick else args.seconds

    with tempfile.TemporaryDirectory(prefix="spgm-long-") as tmp:
        work = Path(args.workdir or tmp)
        (work / "model").mkdir(parents=True, exist_ok=True)
        n_params = make_model_folder(work / "model", args.architecture, overrides)
        if args.mixture:
            mixture = Path(args.mixture)
            frames, rate = audio_info(mixture)
            seconds = frames / rate
        else:
            mixture = work / f"mixture_{int(seconds)}s.wav"
            sf.write(str(mixture), synthetic_mixture(SAMPLE_RATE, seconds), SAMPLE_RATE, subtype="PCM_16")
        out = work / "separated"
        cmd = [sys.executable, "-m", "spgm_lobes.inference", str(mixture), "--model", str(work / "model")]
        cmd += ["--out", str(out), "--device", args.device] + (["--plain"] if args.plain else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        print(
            f"{args.architecture} {overrides or ''}: {n_params / 1e6:.2f}M parameters, "
            f"{seconds:.1f} s mixture, {'plain modules' if args.plain else 'fast path'}, device {args.device}, "
            f"torch threads {torch.get_num_threads()}"
        )
        start = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            print(result.stdout + result.stderr, file=sys.stderr)
            return result.returncode
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
        lengths = [audio_info(out / f"{mixture.stem}_source{i}.wav")[0] for i in (1, 2)]
        expected = round(seconds * SAMPLE_RATE)
        if any(n != expected for n in lengths):
            print(f"unexpected output lengths {lengths}, expected {expected}", file=sys.stderr)
            return 1
        print(
            f"wall time {wall:.1f} s (real-time factor {wall / seconds:.2f}, model loading included), "
            f"peak RSS {peak_gib:.2f} GiB, outputs {lengths[0]} samples each"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
