"""Locates the architecture YAML files of ``hparams/`` and the training regimes
of ``hparams/regimes/``.

Every recipe and inference card includes its architecture from one of these
files, so an architecture is defined once. A regime is a set of recipe options
(batch, learning rate, precision, compilation ...) that every recipe takes with
``--regime NAME`` (see :func:`spgm_lobes.recipe.apply_regime`).
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


def regime_names():
    """Names of the training regimes of ``hparams/regimes/``.

    Example
    -------
    >>> "fast" in regime_names()
    True
    """
    return sorted(p.stem for p in (HPARAMS_DIR / "regimes").glob("*.yaml"))


def regime_path(name):
    """Path of the training regime ``name`` (a name of :func:`regime_names`, or a YAML file).

    Example
    -------
    >>> regime_path("fast").name
    'fast.yaml'
    """
    if Path(name).suffix in (".yaml", ".yml") and Path(name).is_file():
        return Path(name)
    path = HPARAMS_DIR / "regimes" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"Unknown training regime {name!r}; choose one of {', '.join(regime_names())} or a YAML file.")
    return path
