"""Shared pytest fixtures of spgm-lobes."""

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


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
