"""Speaker-disjoint splits: one random partition shared by every corpus builder."""

import numpy as np


def shuffled_partition(items, sizes, rng):
    """Consecutive parts of ``items`` taken in one random order (a single ``rng.permutation``).

    Arguments
    ---------
    items : sequence
        What to split (speakers, or groups of files), in a fixed order.
    sizes : sequence of int or None
        The size of each part, in order; one ``None`` part takes what the others leave.
    rng : numpy.random.Generator or int or sequence of int
        The generator, or a seed for ``numpy.random.default_rng``.

    Returns
    -------
    list of list
        The parts, in the order of ``sizes``, each in the random order.

    Example
    -------
    >>> shuffled_partition(list("abcdefg"), [2, None, 1], rng=0)
    [['c', 'e'], ['d', 'g', 'f', 'a'], ['b']]
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if sum(1 for s in sizes if s is None) > 1:
        raise ValueError(f"At most one part may take the rest, got sizes {list(sizes)}")
    fixed = sum(s for s in sizes if s is not None)
    if fixed > len(items) or any(s is not None and s < 0 for s in sizes):
        raise ValueError(f"Parts of sizes {list(sizes)} do not fit {len(items)} items")
    order = [items[i] for i in rng.permutation(len(items))]
    parts, start = [], 0
    for size in sizes:
        size = len(items) - fixed if size is None else size
        parts.append(order[start : start + size])
        start += size
    return parts
