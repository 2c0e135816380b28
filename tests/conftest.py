"""Shared pytest fixtures of spgm-lobes."""

import os
from pathlib import Path

import pytest
import torch

from spgm_lobes.testing import REPO_ROOT, make_wsj0mix_corpus


def _librispeech_mini_root():
    env = os.environ.get("SPGM_LIBRISPEECH_MINI")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "librispeech-mini")
    for path in candidates:
        if (path / "LibriSpeech").is_dir():
            return path
    return None


@pytest.fixture
def librispeech_mini():
    """Root of the shared real-speech folder (``LibriSpeech/train-clean-100/...``).

    Set ``SPGM_LIBRISPEECH_MINI`` to point elsewhere; the test is skipped when
    the folder is absent.
    """
    root = _librispeech_mini_root()
    if root is None:
        pytest.skip("librispeech-mini not found (set SPGM_LIBRISPEECH_MINI)")
    return root


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def wsj0mix_corpus(tmp_path):
    """A tiny wsj0-2mix-layout corpus (real speech when librispeech-mini is present)."""
    return make_wsj0mix_corpus(tmp_path / "wsj0-2mix", speech_root=_librispeech_mini_root())
