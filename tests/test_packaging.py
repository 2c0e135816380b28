"""The wheel: what it carries, and that the commands run from it alone (no source tree) in an empty folder."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from spgm_lobes.architectures import ARCHITECTURES
from spgm_lobes.testing import REPO_ROOT

SOURCES = ("setup.py", "pyproject.toml", "README.md", "spgm_lobes", "hparams", "recipes")
CONSOLE_SCRIPTS = {
    "spgm-separate": "spgm_lobes.inference:main",
    "spgm-publish": "spgm_lobes.publish:main",
    "spgm-quickstart": "spgm_lobes.quickstart:console_main",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """``pip wheel --no-deps`` of a copy of the source tree (the build writes no file into the checkout)."""
    tmp = tmp_path_factory.mktemp("wheel")
    (tmp / "src").mkdir()
    for name in SOURCES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, tmp / "src" / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, tmp / "src" / name)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist")]
    proc = subprocess.run(cmd + [str(tmp / "src")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = (tmp / "dist").glob("spgm_lobes-*.whl")
    return path


@pytest.mark.slow
def test_wheel_carries_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for arch in ARCHITECTURES:
        assert f"spgm_lobes/hparams/{arch}.yaml" in names
    assert "spgm_lobes/hparams/inference/separation.yaml" in names
    for path in (REPO_ROOT / "hparams" / "regimes").glob("*.yaml"):  # the training regimes (--regime NAME)
        assert f"spgm_lobes/hparams/regimes/{path.name}" in names
    for path in (REPO_ROOT / "recipes").glob("**/hparams/*.yaml"):
        assert f"spgm_lobes/{path.relative_to(REPO_ROOT).as_posix()}" in names
    for path in (REPO_ROOT / "spgm_lobes").rglob("*.py"):
        assert path.relative_to(REPO_ROOT).as_posix() in names
    assert not any(n.startswith(("tests/", "bench/", "hparams/", "recipes/")) for n in names)
    assert not any(n.startswith("spgm_lobes/recipes/") and n.endswith(".py") for n in names)  # hparams only
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script, target in CONSOLE_SCRIPTS.items():
        assert f"{script} = {target}" in text


CONSOLE_SCRIPT = (
    "import sys\n"
    "from importlib.metadata import entry_points\n"
    "(script,) = [e for e in entry_points(group='console_scripts') if e.name == sys.argv[1]]\n"
    "sys.argv = sys.argv[1:]\n"
    "sys.exit(script.load()())\n"
)
WHERE = "import spgm_lobes, sys; print(spgm_lobes.__file__); sys.exit(not spgm_lobes.__file__.startswith(sys.argv[1]))"


@pytest.mark.slow
def test_commands_run_from_the_unpacked_wheel_alone(wheel, tmp_path):
    """Dependencies come from this environment; ``spgm_lobes`` only from the wheel (``-P``: no script folder or
    working directory on ``sys.path``; the working directory is an empty folder)."""
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=str(site), OMP_NUM_THREADS="1")

    def python(*args, timeout=300):
        proc = subprocess.run(
            [sys.executable, "-P", *args], cwd=work, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, f"{args}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    assert python("-c", WHERE, str(site)).strip() == str(site / "spgm_lobes" / "__init__.py")
    assert "SPGM blocks: 4" in python("-m", "spgm_lobes.profile", "spgm-ap", "--seconds", "0.1")

    python("-c", "from spgm_lobes.testing import make_run_folder; make_run_folder('run')")
    python("-c", CONSOLE_SCRIPT, "spgm-publish", "run", "--repo", "me/tiny", "--dry-run", "--stage-dir", "model")
    assert sorted(p.name for p in (work / "model").iterdir()) == [
        "README.md",
        "decoder.ckpt",
        "encoder.ckpt",
        "example_mixture.wav",
        "hyperparams.yaml",
        "masknet.ckpt",
    ]
    out = python("-c", CONSOLE_SCRIPT, "spgm-separate", "model/example_mixture.wav", "--model", "model", "--out", "sep")
    assert out.split() == ["sep/example_mixture_source1.wav", "sep/example_mixture_source2.wav"]
    shape = python(
        "-c",
        "from speechbrain.inference.separation import SepformerSeparation\n"
        "model = SepformerSeparation.from_hparams(source='model', savedir='savedir')\n"
        "print(tuple(model.separate_file('model/example_mixture.wav').shape))",
    )
    assert shape.strip().splitlines()[-1] == "(1, 24000, 2)"  # the 3-s synthetic example

    python("-c", CONSOLE_SCRIPT, "spgm-quickstart", "--output", "quickstart", "--debug", "--minutes", "0", timeout=600)
    assert (work / "quickstart" / "model" / "hyperparams.yaml").is_file()
    assert (work / "quickstart" / "run" / "spgm-ap-tiny" / "synthetic-debug-seed0" / "test_results.csv").is_file()
