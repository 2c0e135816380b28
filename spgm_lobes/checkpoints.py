"""Keeping a killed run resumable.

SpeechBrain's ``Checkpointer`` writes ``CKPT.yaml`` first and then one ``<name>.ckpt``
file per recoverable. A run killed in between (SIGKILL, out of memory, a pre-empted
node) leaves a folder that looks like the newest checkpoint but cannot be loaded, so
the next start crashes while recovering it. :func:`set_aside_incomplete_checkpoints`
moves such folders to ``<save>/incomplete/`` (nothing is deleted) so that SpeechBrain
recovers the newest complete checkpoint instead; the older checkpoints are still
there because SpeechBrain deletes them only after a save has finished.

A checkpoint without the file of an *optional* recoverable (one SpeechBrain's recovery
does without: registered with ``optional_load=True``, a ``dataloader-*`` one, or any
with ``allow_partial_load``) is complete: it was saved by a run without that component
(e.g. a run resumed with a learning-rate warm-up that the first run did not have), and
setting it aside would restart the training from its first epoch.

Example
-------
>>> import tempfile, torch
>>> from pathlib import Path
>>> from speechbrain.utils.checkpoints import Checkpointer
>>> save = Path(tempfile.mkdtemp())
>>> ckpt = Checkpointer(save, recoverables={"model": torch.nn.Linear(2, 2)})
>>> good = ckpt.save_checkpoint(name="good").path
>>> bad = ckpt.save_checkpoint(name="killed").path
>>> _ = (bad / "model.ckpt").write_bytes((bad / "model.ckpt").read_bytes()[:100])  # cut short
>>> [p.name for p in set_aside_incomplete_checkpoints(ckpt)]
['CKPT+killed']
>>> ckpt.find_checkpoint().path.name
'CKPT+good'
"""

import logging
import shutil
import zipfile
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

INCOMPLETE_DIR = "incomplete"


def checkpoint_problem(ckpt_dir, names):
    """Says why the checkpoint folder ``ckpt_dir`` cannot be recovered, or returns None.

    ``names`` are the recoverables every checkpoint must hold (``<name>.ckpt`` each:
    :func:`required_recoverables`); every ``.ckpt`` file in it is checked as well. A file
    is unusable when it is missing, empty, or a torch zip archive without its central
    directory (``torch.save`` writes that last, so a cut-short file lacks it).
    """
    ckpt_dir = Path(ckpt_dir)
    meta = ckpt_dir / "CKPT.yaml"
    try:
        yaml.safe_load(meta.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        return f"{meta} cannot be read ({err.__class__.__name__})"
    expected = [ckpt_dir / f"{name}.ckpt" for name in names]
    for path in expected + sorted(set(ckpt_dir.glob("*.ckpt")) - set(expected)):
        if not path.exists():
            return f"{path} is missing"
        if path.is_file():
            if path.stat().st_size == 0:
                return f"{path} is empty"
            with open(path, "rb") as fin:
                zipped = fin.read(2) == b"PK"
            if zipped and not zipfile.is_zipfile(path):
                return f"{path} is cut short"
    return None


def latest_complete_checkpoint(save_dir, names):
    """The newest checkpoint folder under ``save_dir`` (``CKPT+*``) in which :func:`checkpoint_problem` finds
    nothing wrong with the recoverables ``names``, or ``None``: the one a resumed run recovers. Newest by the
    ``unixtime`` of its ``CKPT.yaml``, as SpeechBrain's ``Checkpointer`` picks; a kill can leave a newer,
    incomplete one behind, which is passed over (so is one deleted while it is read: a running training
    deletes its older checkpoints).

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> save = Path(tempfile.mkdtemp())
    >>> ckpt = Checkpointer(save, recoverables={"model": torch.nn.Linear(2, 2)})
    >>> _ = ckpt.save_checkpoint(name="first")
    >>> bad = ckpt.save_checkpoint(name="killed").path
    >>> (bad / "model.ckpt").unlink()
    >>> latest_complete_checkpoint(save, ["model"]).name, latest_complete_checkpoint(save / "none", ["model"])
    ('CKPT+first', None)
    """
    save_dir = Path(save_dir)
    complete = []
    for ckpt_dir in save_dir.glob("CKPT+*") if save_dir.is_dir() else ():
        if ckpt_dir.is_dir() and checkpoint_problem(ckpt_dir, names) is None:
            try:  # a running training may delete an older checkpoint meanwhile
                meta = yaml.safe_load((ckpt_dir / "CKPT.yaml").read_text(encoding="utf-8")) or {}
                complete.append((float(meta.get("unixtime", ckpt_dir.stat().st_mtime)), ckpt_dir.name, ckpt_dir))
            except OSError:
                continue
    return max(complete)[2] if complete else None


def required_recoverables(checkpointer):
    """The names of the recoverables of ``checkpointer`` that SpeechBrain's recovery cannot do
    without (it raises when one has no file): not those registered with ``optional_load=True``
    (SpeechBrain's gradient scaler, the learning-rate warm-up of
    :class:`~spgm_lobes.separation.SeparationBrain`), nor ``dataloader-*`` ones, nor any when
    the checkpointer has ``allow_partial_load``. A checkpoint may lack the others' files: it was
    saved by a run without that component.

    Example
    -------
    >>> import tempfile, torch
    >>> from speechbrain.utils.checkpoints import Checkpointer
    >>> ckpt = Checkpointer(tempfile.mkdtemp(), recoverables={"model": torch.nn.Linear(2, 2)})
    >>> ckpt.add_recoverable("extra", torch.nn.Linear(2, 2), optional_load=True)
    >>> required_recoverables(ckpt)
    ['model']
    """
    if checkpointer.allow_partial_load:
        return []
    optional = getattr(checkpointer, "optional_recoverables", {})
    return [name for name in checkpointer.recoverables if not optional.get(name) and "dataloader" not in name]


def set_aside_incomplete_checkpoints(checkpointer):
    """Moves the checkpoints of ``checkpointer`` that cannot be recovered to
    ``<checkpoints_dir>/incomplete/`` with a warning; returns their new paths. A checkpoint
    without the file of an optional recoverable stays (:func:`required_recoverables`).

    Call it on the main process once every recoverable is registered and before
    recovering (``SeparationBrain.init_optimizers`` does).
    """
    save = Path(checkpointer.checkpoints_dir)
    moved = []
    if not save.is_dir():
        return moved
    required = required_recoverables(checkpointer)
    for ckpt_dir in sorted(save.glob("CKPT+*")):
        if not ckpt_dir.is_dir():
            continue
        problem = checkpoint_problem(ckpt_dir, required)
        if problem is None:
            continue
        target = save / INCOMPLETE_DIR / ckpt_dir.name
        suffix = 1
        while target.exists():
            target = save / INCOMPLETE_DIR / f"{ckpt_dir.name}.{suffix}"
            suffix += 1
        target.parent.mkdir(exist_ok=True)
        shutil.move(str(ckpt_dir), str(target))
        logger.warning("Checkpoint %s is incomplete (%s); moved it to %s", ckpt_dir, problem, target)
        moved.append(target)
    return moved
