"""Spectrograms of separation results (matplotlib, Agg backend): one figure per
utterance (:func:`plot_separation`) or one small image per signal for web pages
(:func:`spectrogram_images`)."""

from pathlib import Path

import numpy as np


def _spectrogram_db(signal, sample_rate, n_fft, hop):
    """Log-magnitude STFT (dB) of a 1-D signal: ``[freq, frames]``."""
    signal = np.asarray(signal, dtype=np.float64).reshape(-1)
    if len(signal) < n_fft:
        signal = np.pad(signal, (0, n_fft - len(signal)))
    window = np.hanning(n_fft)
    frames = 1 + (len(signal) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.abs(np.fft.rfft(signal[index] * window, axis=1)).T
    return 20.0 * np.log10(spec + 1e-8)


def plot_separation(
    path,
    mixture,
    estimates,
    references=None,
    sample_rate=8000,
    si_snr=None,
    title=None,
    n_fft=256,
    hop=64,
    dynamic_range=70.0,
):
    """Writes one PNG with the spectrograms of a mixture, its estimates and references.

    The mixture spans the first row; below it, one row per source with the
    estimate on the left and its reference on the right (when given). All
    panels share one colour scale (dB relative to the loudest bin).

    Arguments
    ---------
    path : str or Path
        Output ``.png`` file (parent folders are created).
    mixture : array-like
        Mixture samples ``[T]``.
    estimates : sequence of array-like
        Estimated sources, each ``[T]`` (or an array ``[C, T]``).
    references : sequence of array-like, optional
        Reference sources in the order of ``estimates`` (permutation resolved).
    sample_rate : int
        Sample rate in Hz.
    si_snr : sequence of float, optional
        SI-SNR (dB) of each estimate against its reference, shown in the titles.
    title : str, optional
        Figure title.
    n_fft, hop : int
        STFT size and hop in samples.
    dynamic_range : float
        dB below the maximum shown before clipping to the colour floor.

    Returns
    -------
    Path
        The written file.

    Example
    -------
    >>> t = np.arange(4000) / 8000
    >>> s = [np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 1200 * t)]
    >>> out = plot_separation(getfixture("tmp_path") / "sep.png", s[0] + s[1], s, s, si_snr=[30.0, 30.0])
    >>> out.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimates = [np.asarray(e, dtype=np.float64).reshape(-1) for e in estimates]
    references = None if references is None else [np.asarray(r, dtype=np.float64).reshape(-1) for r in references]
    if references is not None and len(references) != len(estimates):
        raise ValueError(f"{len(estimates)} estimates but {len(references)} references")
    if si_snr is not None and len(si_snr) != len(estimates):
        raise ValueError(f"{len(estimates)} estimates but {len(si_snr)} SI-SNR values")

    specs = {"mix": _spectrogram_db(mixture, sample_rate, n_fft, hop)}
    for i, est in enumerate(estimates):
        specs[f"est{i}"] = _spectrogram_db(est, sample_rate, n_fft, hop)
        if references is not None:
            specs[f"ref{i}"] = _spectrogram_db(references[i], sample_rate, n_fft, hop)
    top = max(s.max() for s in specs.values())
    vmin = top - dynamic_range
    duration = len(np.asarray(mixture).reshape(-1)) / sample_rate
    extent = (0.0, duration, 0.0, sample_rate / 2000.0)

    cols = 2 if references is not None else 1
    rows = 1 + len(estimates)
    fig = plt.figure(figsize=(6.0 * cols, 2.4 * rows), constrained_layout=True)
    grid = fig.add_gridspec(rows, cols)

    def panel(ax, key, label):
        image = ax.imshow(specs[key], origin="lower", aspect="auto", extent=extent, vmin=vmin, vmax=top, cmap="magma")
        ax.set_title(label, fontsize=10)
        ax.set_ylabel("kHz")
        return image

    image = panel(fig.add_subplot(grid[0, :]), "mix", "Mixture")
    for i in range(len(estimates)):
        label = f"Estimate {i + 1}"
        if si_snr is not None:
            label += f"  (SI-SNR {si_snr[i]:.1f} dB)"
        ax = fig.add_subplot(grid[i + 1, 0])
        panel(ax, f"est{i}", label)
        if i == len(estimates) - 1:
            ax.set_xlabel("time (s)")
        if references is not None:
            ax = fig.add_subplot(grid[i + 1, 1])
            panel(ax, f"ref{i}", f"Reference {i + 1}")
            if i == len(estimates) - 1:
                ax.set_xlabel("time (s)")
    fig.colorbar(image, ax=fig.axes, label="dB", shrink=0.8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _pool_columns(spec, max_width):
    """Max-pools the time axis of ``[freq, frames]`` to at most ``max_width`` columns."""
    factor = -(-spec.shape[1] // max_width)
    if factor <= 1:
        return spec
    frames = spec.shape[1] // factor * factor
    tail = spec[:, frames:]
    pooled = spec[:, :frames].reshape(spec.shape[0], -1, factor).max(axis=2)
    return np.concatenate([pooled, tail.max(axis=1, keepdims=True)], axis=1) if tail.shape[1] else pooled


def spectrogram_images(
    paths, signals, sample_rate=8000, n_fft=256, hop=64, dynamic_range=70.0, max_width=320, quality=80
):
    """Writes one spectrogram image per signal, all on one colour scale.

    The scale runs from the loudest time-frequency bin of all ``signals`` down
    to ``dynamic_range`` dB below it, so the images compare with each other.
    Each image is the raw spectrogram (low frequencies at the bottom, no axes),
    its time axis max-pooled to at most ``max_width`` columns; it is written
    with ``matplotlib.pyplot.imsave`` in the format of its suffix (``.png``, or
    ``.jpg`` at JPEG ``quality``, about five times smaller for spectrograms).

    Arguments
    ---------
    paths : sequence of str or Path
        One output file per signal (parent folders are created).
    signals : sequence of array-like
        1-D signals.
    sample_rate : int
        Sample rate in Hz (the STFT sizes are in samples; kept for symmetry with :func:`plot_separation`).
    n_fft, hop : int
        STFT size and hop in samples (``n_fft // 2 + 1`` rows per image).
    dynamic_range : float
        dB below the loudest bin shown before clipping to the colour floor.
    max_width : int
        Most columns of an image.
    quality : int
        JPEG quality.

    Returns
    -------
    tuple of float
        The colour scale ``(floor, top)`` in dB.

    Example
    -------
    >>> t = np.arange(8000) / 8000
    >>> folder = getfixture("tmp_path")
    >>> loud, quiet = np.sin(2 * np.pi * 440 * t), 0.01 * np.sin(2 * np.pi * 880 * t)
    >>> floor, top = spectrogram_images([folder / "a.jpg", folder / "b.png"], [loud, quiet])
    >>> round(top - floor), (folder / "b.png").read_bytes()[:4] == b"\\x89PNG"
    (70, True)
    >>> import matplotlib.pyplot as plt
    >>> plt.imread(folder / "b.png").shape[:2]  # 129 frequency rows, 122 frames
    (129, 122)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if len(paths) != len(signals):
        raise ValueError(f"{len(paths)} paths for {len(signals)} signals")
    specs = [_pool_columns(_spectrogram_db(s, sample_rate, n_fft, hop), max_width) for s in signals]
    top = max(float(s.max()) for s in specs)
    floor = top - dynamic_range
    for path, spec in zip(paths, specs):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else None
        plt.imsave(path, spec, cmap="magma", vmin=floor, vmax=top, origin="lower", pil_kwargs=options)
    return floor, top
