"""Tests of the separation spectrogram figure."""

import numpy as np
import pytest
from PIL import Image

from spgm_lobes.plotting import plot_separation, spectrogram_images


def test_writes_png_with_one_panel_per_signal(tmp_path):
    t = np.arange(4000) / 8000
    refs = [np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 1500 * t)]
    path = plot_separation(tmp_path / "sub" / "sep.png", refs[0] + refs[1], refs, refs, si_snr=[12.3, 4.5], title="x")
    image = Image.open(path)
    assert image.format == "PNG" and image.size[0] > 600 and image.size[1] > 400
    pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10  # not a blank canvas


def test_estimates_only_and_bad_lengths(tmp_path):
    x = np.random.default_rng(0).standard_normal(2000)
    assert plot_separation(tmp_path / "a.png", x, [x, x]).is_file()
    with pytest.raises(ValueError, match="references"):
        plot_separation(tmp_path / "b.png", x, [x, x], [x])
    with pytest.raises(ValueError, match="SI-SNR"):
        plot_separation(tmp_path / "c.png", x, [x, x], si_snr=[1.0])


def test_spectrogram_images_share_one_colour_scale(tmp_path):
    t = np.arange(16000) / 8000
    tone = np.sin(2 * np.pi * 1000 * t)
    paths = [tmp_path / "loud.png", tmp_path / "quiet.png", tmp_path / "long.jpg"]
    floor, top = spectrogram_images(paths, [tone, 0.01 * tone, np.tile(tone, 8)], max_width=100)
    assert top - floor == pytest.approx(70.0)
    loud, quiet = (np.asarray(Image.open(p).convert("L"), dtype=float) for p in paths[:2])
    # the tone's row: 40 dB quieter is darker on the shared scale (own scales would make both equally bright)
    row = int(round(1000 / 4000 * 128))
    assert loud[-1 - row].mean() > quiet[-1 - row].mean() + 50
    long = Image.open(paths[2])
    assert long.format == "JPEG" and long.size == (100, 129)  # 1997 frames pooled to 100 columns
    with pytest.raises(ValueError, match="2 paths for 1 signals"):
        spectrogram_images(paths[:2], [tone])
