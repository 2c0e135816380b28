"""Locates the architecture YAML files of ``hparams/``.

Every recipe and inference card includes its architecture from one of these
files, so an architecture is defined once.
"""

from pathlib import Path

ARCHITECTURES = (
    "sepformer",
    "intra-sepformer-16",
    "intra-sepformer-32",
    "spgm-le-s",
    "spgm-ap-s",
    "spgm-le",
    "spgm-ap",
    "spgm-opt",
)

HPARAMS_DIR = Path(__file__).resolve().parent.parent / "hparams"


def architecture_path(name):
    """Path of the architecture YAML ``name`` (with or without ``.yaml``).

    Example
    -------
    >>> architecture_path("spgm-ap").name
    'spgm-ap.yaml'
    """
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}.")
    path = HPARAMS_DIR / f"{stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"Architecture file {path} is missing; install spgm-lobes from its source tree "
            "(pip install -e .) so that hparams/ is available."
        )
    return path
