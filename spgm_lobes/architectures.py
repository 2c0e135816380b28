"""Locates the package's data files: the architecture YAML files of ``hparams/`` and the recipe hparams.

Every recipe and inference card includes its architecture from one of the ``hparams/`` files, so an
architecture is defined once. The top-level ``hparams/`` folder of the source tree is that one definition;
a wheel carries it as ``spgm_lobes/hparams`` (and the recipes' ``hparams/`` folders as
``spgm_lobes/recipes/<recipe>/hparams``, whose relative ``!include:`` lines then still reach it).
:func:`data_path` is the one place that finds these files: through :mod:`importlib.resources` in an
installed package, else in the source checkout (editable installs, tests).

A training regime (``hparams/regimes/<name>.yaml``) is a set of recipe options (batch, learning rate,
precision, compilation ...) that every recipe takes with ``--regime NAME`` (see
:func:`spgm_lobes.recipe.apply_regime`); :func:`regime_path` finds it.
"""

import importlib.resources
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

SOURCE_ROOT = Path(__file__).resolve().parent.parent
"""The source checkout's root, when the package runs from one (recipes, tests and benchmarks live there)."""


def data_path(relative):
    """Path of the package data folder or file ``relative`` (``"hparams"``, ``"recipes/WSJ0Mix/separation/hparams"``).

    Looks in the installed package (``spgm_lobes/<relative>``) first, then in the source checkout
    (``<checkout>/<relative>``); raises ``FileNotFoundError`` naming both places when neither has it.

    Example
    -------
    >>> data_path("hparams").joinpath("spgm-ap.yaml").is_file()
    True
    """
    packaged = importlib.resources.files(__package__).joinpath(relative)
    if isinstance(packaged, Path) and packaged.exists():
        return packaged
    source = SOURCE_ROOT / relative
    if source.exists():
        return source
    raise FileNotFoundError(
        f"Package data {relative!r} is neither in the installed package ({packaged}) nor in a source "
        f"checkout ({source}); reinstall spgm-lobes (pip install spgm-lobes, or pip install . from the source)."
    )


HPARAMS_DIR = data_path("hparams")
"""The folder of the architecture files (and of the inference card template, ``inference/separation.yaml``)."""


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
        raise FileNotFoundError(f"Architecture file {path} is missing; reinstall spgm-lobes.")
    return path


def recipe_hparams_path(recipe, name):
    """Path of the hparams file ``name`` of a recipe (``recipe_hparams_path("WSJ0Mix/separation", "spgm")``).

    Example
    -------
    >>> recipe_hparams_path("WSJ0Mix/separation", "spgm").parts[-4:]
    ('WSJ0Mix', 'separation', 'hparams', 'spgm.yaml')
    """
    stem = name[:-5] if name.endswith(".yaml") else name
    path = data_path(f"recipes/{recipe}/hparams") / f"{stem}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"Recipe hparams file {path} does not exist.")
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


def build_from_file(path, overrides=None, device=None):
    """The ``modules`` (``encoder``, ``masknet``, ``decoder``) that the architecture file ``path`` builds with
    ``overrides``, on ``device`` (``"meta"`` to read shapes and count parameters without allocating them;
    default: torch's default device).

    Example
    -------
    >>> modules = build_from_file(architecture_path("spgm-ap"), {"chunk_size": 100, "num_spks": 3}, device="meta")
    >>> modules["masknet"].K, modules["masknet"].num_spks
    (100, 3)
    """
    import torch
    from hyperpyyaml import load_hyperpyyaml

    text = Path(path).read_text(encoding="utf-8")
    if device is None:
        return load_hyperpyyaml(text, overrides or {})["modules"]
    with torch.device(device):
        return load_hyperpyyaml(text, overrides or {})["modules"]
