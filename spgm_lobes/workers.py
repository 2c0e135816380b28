"""Process pools for the CPU-bound work of spgm-lobes (LibriMix creation, listening pages)."""

import contextlib
import functools
import os

import torch


def available_cpus():
    """CPUs this process may run on (its affinity on Linux; ``os.cpu_count()`` where there is none, as on macOS).

    Example
    -------
    >>> available_cpus() >= 1
    True
    """
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextlib.contextmanager
def process_map(num_workers, chunksize=4):
    """An ordered ``map`` running in ``num_workers`` processes (0: in this process).

    The processes are spawned (forking a process that already ran torch's OpenMP kernels can
    deadlock the children) and run torch on one thread each, so that they do not wait for each
    other's threads on a shared CPU.

    Example
    -------
    >>> with process_map(0) as mapper:
    ...     list(mapper(abs, [-1, 2]))
    [1, 2]
    """
    if num_workers <= 0:
        yield map
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(num_workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as ex:
        yield functools.partial(ex.map, chunksize=chunksize)
