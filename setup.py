"""Installation script of spgm-lobes: SPGM speech separation for SpeechBrain."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# Data the package reads at run time, kept in one place in the source tree and carried by the wheel under
# spgm_lobes/ (found by spgm_lobes.architectures.data_path): the architecture files of hparams/ (with the
# inference card template and the training regimes of hparams/regimes/) and the recipes' hparams/ folders
# (the quickstart trains with the WSJ0Mix one).
# Each folder becomes a data-only package mapped onto its source folder, so the files exist once.
DATA_FOLDERS = ["hparams"] + sorted(
    {p.parent.relative_to(HERE).as_posix() for p in HERE.glob("recipes/**/hparams/*.yaml")}
)
DATA_PACKAGES = {"spgm_lobes." + folder.replace("/", "."): folder for folder in DATA_FOLDERS}

setup(
    name="spgm-lobes",
    version="0.1.0",
    description=("SPGM (Single-Path Global Modulation) speech separation models, recipes and tools for SpeechBrain"),
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["spgm_lobes", "spgm_lobes.*"]) + list(DATA_PACKAGES),
    package_dir=DATA_PACKAGES,
    package_data={name: ["*.yaml", "inference/*.yaml", "regimes/*.yaml"] for name in DATA_PACKAGES},
    include_package_data=True,
    install_requires=[
        "speechbrain>=1.1",
        "torch>=2.7",
        "torchaudio>=2.7",
        "hyperpyyaml>=1.2",
        "ruamel.yaml>=0.17.28",  # round-trip YAML: a --regime's options under the command line's (tags kept)
        "pyyaml>=6",
        "soundfile>=0.12",
        "pyloudnorm>=0.1.1",
        "huggingface_hub>=0.23",
        "safetensors>=0.4",
        "torchmetrics>=1.0",
        "numpy>=1.24",
        "scipy>=1.10",
        "tqdm>=4.60",
        "matplotlib>=3.7",
    ],
    # playwright drives Debian's Chromium in the listening-page browser test (.ci/run installs the browser)
    extras_require={"dev": ["pytest>=7", "ruff>=0.4", "playwright>=1.40"]},
    entry_points={
        "console_scripts": [
            "spgm-separate=spgm_lobes.inference:main",
            "spgm-publish=spgm_lobes.publish:main",
            "spgm-import=spgm_lobes.pretrained:main",
            "spgm-quickstart=spgm_lobes.quickstart:console_main",
        ],
    },
)
