"""The main program shared by every recipe's ``train.py``.

A recipe only provides dataset preparation and dataset-specific mixing::

    from spgm_lobes.recipe import run_recipe

    def prepare_data(hparams): ...          # writes CSVs (runs on the main process only)
    def build_datasets(hparams): ...        # returns (train, valid, test) datasets

    if __name__ == "__main__":
        run_recipe(sys.argv[1:], prepare_data, build_datasets)

``run_recipe`` parses SpeechBrain's command line (``train.py hparams.yaml
--data_folder ... --debug --precision bf16 ...``; ``--regime NAME`` takes a
training regime of ``hparams/regimes/``, see :func:`apply_regime`), sets up DDP when started with
``torchrun``, creates the experiment folder, optionally loads pretrained weights
(a ``pretrainer`` in the hparams), puts the mask network on the fast path
(:mod:`spgm_lobes.fast`; ``use_fast_path: False`` to keep SpeechBrain's plain
modules), trains and evaluates with the Brain.
"""

import importlib.util
import io
import logging

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from ruamel.yaml import YAML
from speechbrain.utils.distributed import run_on_main

from .architectures import regime_path
from .fast import use_fast_decoder, use_fast_masknet
from .finetune import init_from, split_init_from
from .separation import SeparationBrain

logger = logging.getLogger(__name__)


def run_recipe(argv, prepare_data, build_datasets, brain_class=SeparationBrain):
    """Runs a separation recipe; returns the Brain after testing."""
    argv, init_source = split_init_from(argv)
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = apply_regime(overrides)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = RecipeHparams(load_hyperpyyaml(fin, overrides), hparams_file)
    steps_interval_replaces_minutes(run_opts, hparams)

    sb.utils.distributed.ddp_init_group(run_opts)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    run_on_main(prepare_data, kwargs={"hparams": hparams})
    train_set, valid_set, test_set = build_datasets(hparams)

    if "pretrainer" in hparams:
        run_on_main(hparams["pretrainer"].collect_files)
        hparams["pretrainer"].load_collected()
    init_from(hparams, init_source)  # --init_from <folder|repo>: start from a pretrained model

    # The fast path (mask network and decoder) computes the same function on the same parameters
    # (checkpoints are identical); use_fast_path: False runs the plain SpeechBrain modules.
    fast = hparams.get("use_fast_path", True)
    modules = use_fast_masknet(
        hparams["modules"],
        enabled=fast,
        compile=hparams.get("compile_fast_path", False),
        cuda_graphs=hparams.get("cuda_graphs", False),
    )
    modules = use_fast_decoder(modules, enabled=fast)
    brain = brain_class(
        modules=modules,
        opt_class=hparams["optimizer"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    brain.fit(  # skipped by SpeechBrain with --test_only
        brain.hparams.epoch_counter,
        train_set,
        valid_set,
        train_loader_kwargs=hparams["dataloader_opts"],
        valid_loader_kwargs=hparams.get("dataloader_opts_valid", hparams["dataloader_opts"]),
    )
    brain.evaluate(
        test_set,
        min_key="si-snr",
        test_loader_kwargs=hparams.get("dataloader_opts_test", hparams["dataloader_opts"]),
    )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Shut DDP down before the interpreter exits: left to exit-time cleanup, the gloo
        # threads can abort a process that has finished its work ("terminate called ...").
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return brain


class MissingHparamError(KeyError):
    """A key a recipe reads is not defined in its hparams YAML (the message names both)."""

    def __str__(self):
        return str(self.args[0])


class RecipeHparams(dict):
    """A recipe's loaded hparams: reading a key that ``hparams_file`` does not define raises
    :class:`MissingHparamError` naming the key and the file (a plain ``KeyError`` named the key only).

    Example
    -------
    >>> hparams = RecipeHparams({"seed": 1}, "hparams/x.yaml")
    >>> hparams["seed"], hparams.get("lr")
    (1, None)
    >>> hparams["lr"]
    Traceback (most recent call last):
    ...
    spgm_lobes.recipe.MissingHparamError: hparams/x.yaml does not define 'lr', which the recipe reads: add it there
    """

    def __init__(self, hparams, hparams_file):
        super().__init__(hparams)
        self.hparams_file = str(hparams_file)

    def __missing__(self, key):
        raise MissingHparamError(f"{self.hparams_file} does not define {key!r}, which the recipe reads: add it there")


def steps_interval_replaces_minutes(run_opts, hparams):
    """A positive ``--ckpt_interval_steps`` on the command line switches off the hparams'
    ``ckpt_interval_minutes`` (the recipes' 60), which SpeechBrain refuses alongside it, unless
    ``--ckpt_interval_minutes`` is given too. Changes ``hparams`` in place.

    Example
    -------
    >>> import speechbrain as sb
    >>> _, run_opts, _ = sb.parse_arguments(["h.yaml", "--ckpt_interval_steps", "500"])
    >>> hparams = {"ckpt_interval_minutes": 60}
    >>> steps_interval_replaces_minutes(run_opts, hparams)
    >>> hparams
    {'ckpt_interval_minutes': 0}
    """
    given = getattr(run_opts, "overridden_args", run_opts)  # SpeechBrain's RunOptions, or a dict of options
    steps = run_opts["ckpt_interval_steps"] if "ckpt_interval_steps" in given else 0
    if steps and steps > 0 and "ckpt_interval_minutes" not in given and hparams.get("ckpt_interval_minutes", 0) > 0:
        logger.info(
            "--ckpt_interval_steps %d: a checkpoint every %d steps instead of every %g minutes (ckpt_interval_minutes)",
            steps,
            steps,
            hparams["ckpt_interval_minutes"],
        )
        hparams["ckpt_interval_minutes"] = 0


def override_options(argv, extra):
    """``argv + extra``, where an option of ``extra`` replaces the same option (and its value) in ``argv``:
    how a script that builds a recipe command line lets its user's ``--extra`` options win (a recipe
    given one option twice stops on a duplicate YAML key).

    Example
    -------
    >>> override_options(["h.yaml", "--batch_size", "2", "--lr", "1"], ["--batch_size", "4"])
    ['h.yaml', '--lr', '1', '--batch_size', '4']
    """
    given = {token for token in extra if token.startswith("--")}
    kept, i = [], 0
    while i < len(argv):
        if argv[i] in given:
            i += 1 if i + 1 == len(argv) or argv[i + 1].startswith("--") else 2
            continue
        kept.append(argv[i])
        i += 1
    return kept + list(extra)


def apply_regime(overrides):
    r"""Puts the options of the training regime that ``overrides`` names
    (``regime: NAME``, from ``--regime NAME`` on a recipe's command line)
    under the other overrides, which win. Returns YAML override text (the
    regime's ``!ref`` values are resolved against the recipe's hparams).

    A regime (``hparams/regimes/<NAME>.yaml``, or a YAML file) holds recipe
    options, so every recipe takes the same switch; see ``fast.yaml``.

    Example
    -------
    >>> text = apply_regime("regime: fast\nbatch_size: 4")
    >>> options = YAML().load(text)
    >>> options["batch_size"], options["compile_fast_path"], "regime" in options
    (4, True, False)
    >>> apply_regime("lr: 0.1")
    'lr: 0.1'
    """
    yaml = YAML()  # round trip: keeps the tags (!ref, !new:, !include:) of both texts
    user = yaml.load(overrides or "") if isinstance(overrides, str) else overrides
    if not user or "regime" not in user:
        return overrides
    user = dict(user)
    name = user.pop("regime")
    with open(regime_path(str(name)), encoding="utf-8") as f:
        merged = yaml.load(f)
    merged.update(user)
    text = io.StringIO()
    yaml.dump(merged, text)
    return text.getvalue()


def load_script(path, module_name):
    """Imports a recipe or benchmark script (``train.py``, ``bench/*.py``) by path
    and returns it as a module, without running its ``__main__`` block.

    Example
    -------
    >>> from spgm_lobes.testing import REPO_ROOT
    >>> train = load_script(REPO_ROOT / "recipes" / "WSJ0Mix" / "separation" / "train.py", "wsj0mix_train")
    >>> callable(train.prepare_data) and callable(train.build_datasets)
    True
    """
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
