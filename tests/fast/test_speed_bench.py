"""bench/speed.py: the --quick code paths run, failures are recorded instead of crashing."""

import json
from pathlib import Path

import pytest
import torch

from spgm_lobes.recipe import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "speed.py"

pytestmark = pytest.mark.slow  # runs bench/speed.py


@pytest.fixture
def speed(monkeypatch):
    module = load_script(SCRIPT, "speed_bench")
    small = dict(module.QUICK, infer_seconds=(0.1,), long_seconds=(0.2, 0.4), train_batches=(2,))
    monkeypatch.setattr(module, "QUICK", small)
    return module


def test_quick_run_writes_tables(speed, tmp_path):
    bench = speed.main(["--quick", "--out", str(tmp_path), "--budget-s", "120"])
    statuses = {(r["section"], r["model"], r["dtype"]): r["status"] for r in bench.records}
    for section, models in (
        ("inference", ("sb-sepformer", "sb-spgm", "fast-spgm", "fast-spgm-sliced")),
        ("training", ("sb-sepformer", "sb-spgm", "fast-spgm")),
    ):
        for model in models:
            for dtype in ("fp32", "bf16"):
                assert statuses[(section, model, dtype)] == "ok", (section, model, dtype)
    assert statuses[("long", "fast-spgm-sliced", "bf16")] == "ok"
    equivalence = bench.info["equivalence_vs_sb_spgm"]
    assert equivalence["fast-spgm"]["fp32"] < 1e-4 and equivalence["fast-spgm-sliced"]["fp32"] < 1e-4
    table = (tmp_path / "speed.md").read_text()
    assert "| fast-spgm-sliced | fp32 |" in table and "### Training throughput" in table
    assert len(json.loads((tmp_path / "speed.json").read_text())["records"]) == len(bench.records)


def test_failures_are_recorded(speed):
    device = torch.device("cpu")

    def oom(rec):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4 GiB")

    def broken(rec):
        raise RuntimeError("The size of tensor a (2500) must match\nthe size of tensor b")

    assert speed.run_case({}, oom, device)["status"] == "OOM"
    status = speed.run_case({}, broken, device)["status"]
    assert status.startswith("error: RuntimeError: The size of tensor a (2500)") and "\n" not in status


def test_hard_timeout_is_recorded(speed):
    def slow(rec):
        while True:
            pass

    assert speed.run_case({}, slow, torch.device("cpu"), timeout_s=0.2)["status"] == "timeout (> 0 s)"


def test_sections_and_models_select_what_runs(speed):
    bench = speed.main(["--quick", "--models", "fast-spgm", "--sections", "training", "--budget-s", "60"])
    assert {(r["section"], r["model"]) for r in bench.records} == {("training", "fast-spgm")}
    assert all(r["status"] == "ok" for r in bench.records)
    table = bench.markdown()
    assert "### Training throughput" in table and "### Inference" not in table and "### Longest" not in table
    with pytest.raises(SystemExit):
        speed.parse_args(["--quick", "--sections", "inference,speed"])
