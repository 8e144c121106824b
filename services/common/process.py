"""Process-wide settings of a long-running worker."""

from __future__ import annotations

import gc

# gen0 is collected after this many net allocations (CPython's default is 700)
YOUNG_THRESHOLD = 50_000


def tune_gc_for_workers(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Called once a worker process has built everything it keeps (modules, app, engine).

    A worker allocates many short-lived containers per event (decoded models, records, rows).
    With CPython's defaults the cyclic collector ran every 700 allocations and its full
    collections walked the whole start-up heap again and again: 14 % of the registration
    worker's CPU and 7 % of its linking process's in a 60,000-link run. What is alive now is
    moved out of the collector's sight (``gc.freeze``), and the youngest generation waits for
    ``young_threshold`` net allocations: 50,000 is more than the objects of a worker's batches
    in flight, so in that run no collection was needed once the worker was busy (at 10,000 they
    still took 7 % of its CPU). Garbage cycles still count towards it, so they are still
    collected, later."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
