"""Training-time augmentation of separation examples."""

import torch


def speed_perturb_sources(targets, speed_perturb):
    """Speed-perturbs every source independently and re-sums the mixture.

    Each source gets its own random speed from ``speed_perturb`` (SpeechBrain's
    :class:`~speechbrain.augment.time_domain.SpeedPerturb`, e.g. 95/100/105 %);
    the sources are then cut to the shortest one and summed into a new mixture.

    Arguments
    ---------
    targets : torch.Tensor
        Sources ``[B, T, C]``.
    speed_perturb : callable
        Maps ``[B, T]`` to ``[B, T']``.

    Returns
    -------
    mix : torch.Tensor
        ``[B, T'']``, the sum of the perturbed sources.
    targets : torch.Tensor
        ``[B, T'', C]``.

    Example
    -------
    >>> from speechbrain.augment.time_domain import SpeedPerturb
    >>> sp = SpeedPerturb(8000, speeds=[95, 105])
    >>> mix, srcs = speed_perturb_sources(torch.randn(2, 8000, 2), sp)
    >>> 7600 <= mix.shape[1] <= 8422, torch.allclose(mix, srcs.sum(-1))
    (True, True)
    """
    perturbed = [speed_perturb(targets[..., i]) for i in range(targets.shape[-1])]
    length = min(p.shape[1] for p in perturbed)
    targets = torch.stack([p[:, :length] for p in perturbed], dim=-1)
    return targets.sum(-1), targets


def random_crop(mix, targets, length, lengths=None, generator=None):
    """Crops mixture ``[B, T]`` and sources ``[B, T, C]`` to one random window of
    ``length`` samples (unchanged when ``T <= length``).

    With relative ``lengths`` (padded batches), the window starts inside the
    shortest utterance, so every utterance keeps some real samples, and the
    relative lengths of the cropped batch are returned.

    Returns
    -------
    mix, targets, lengths
        Cropped tensors and relative lengths (``None`` if none were given).

    Example
    -------
    >>> mix, srcs, lens = random_crop(torch.randn(2, 100), torch.randn(2, 100, 2), 30)
    >>> mix.shape, srcs.shape, lens
    (torch.Size([2, 30]), torch.Size([2, 30, 2]), None)
    >>> _, _, lens = random_crop(torch.randn(2, 100), torch.randn(2, 100, 2), 80, torch.tensor([1.0, 0.5]))
    >>> lens.tolist()
    [1.0, 0.625]
    """
    T = mix.shape[1]
    if T <= length:
        return mix, targets, lengths
    n = None if lengths is None else torch.round(lengths.float() * T).long()
    last_start = T - length if n is None else max(0, int(n.min()) - length)
    start = int(torch.randint(0, last_start + 1, (1,), generator=generator))
    mix, targets = mix[:, start : start + length], targets[:, start : start + length]
    if n is not None:
        lengths = (n - start).clamp(1, length).float() / length
    return mix, targets, lengths


def fix_length(mix, targets, length, lengths=None, generator=None):
    """Brings mixture ``[B, T]`` and sources ``[B, T, C]`` to exactly ``length``
    samples: a random window when longer (:func:`random_crop`), zeros at the end
    when shorter. Relative ``lengths`` are updated so that the padding stays out
    of the loss.

    Training on one fixed shape lets a compiled model keep its first graph
    (a new length would compile again, or switch to a slower dynamic-shape one).

    Returns
    -------
    mix, targets, lengths
        Tensors of ``length`` samples and relative lengths (``None`` if none were given).

    Example
    -------
    >>> mix, srcs, lens = fix_length(torch.ones(2, 60), torch.ones(2, 60, 2), 80, torch.tensor([1.0, 0.5]))
    >>> mix.shape, srcs.shape, lens.tolist(), float(mix[:, 60:].abs().sum())
    (torch.Size([2, 80]), torch.Size([2, 80, 2]), [0.75, 0.375], 0.0)
    >>> fix_length(torch.ones(2, 100), torch.ones(2, 100, 2), 80)[0].shape
    torch.Size([2, 80])
    """
    T = mix.shape[1]
    if T > length:
        return random_crop(mix, targets, length, lengths, generator)
    if T < length:
        mix = torch.nn.functional.pad(mix, (0, length - T))
        targets = torch.nn.functional.pad(targets, (0, 0, 0, length - T))
        if lengths is not None:
            lengths = lengths * (T / length)
    return mix, targets, lengths
