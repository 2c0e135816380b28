import numpy as np
import pytest

from spgm_lobes.data.splits import shuffled_partition


def test_parts_are_disjoint_cover_everything_and_follow_the_seed():
    items = [f"spk{i}" for i in range(11)]
    parts = shuffled_partition(items, [2, 3, None], rng=7)
    assert [len(p) for p in parts] == [2, 3, 6]
    assert sorted(sum(parts, [])) == sorted(items)
    assert parts == shuffled_partition(items, [2, 3, None], rng=np.random.default_rng(7))
    assert parts != shuffled_partition(items, [2, 3, None], rng=8)


def test_sizes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="do not fit 3 items"):
        shuffled_partition(["a", "b", "c"], [2, 2], rng=0)
    with pytest.raises(ValueError, match="At most one part"):
        shuffled_partition(["a", "b", "c"], [None, None], rng=0)
