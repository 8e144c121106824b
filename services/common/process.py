"""Process-wide settings of a long-running worker, and the pipes of its process pool."""

from __future__ import annotations

import gc
import logging
from concurrent.futures import ProcessPoolExecutor

log = logging.getLogger(__name__)

# gen0 is collected after this many net allocations (CPython's default is 700)
YOUNG_THRESHOLD = 50_000


def tune_gc_for_workers(young_threshold: int = YOUNG_THRESHOLD) -> None:
    """Called once a worker process has built everything it keeps (modules, app, engine).

    A worker allocates many short-lived containers per event (decoded models, records, rows).
    With CPython's defaults the cyclic collector runs every 700 allocations, and its full
    collections walk the whole start-up heap again and again. What is alive now is moved out of
    the collector's sight (``gc.freeze``), and the youngest generation waits for
    ``young_threshold`` net allocations: the default, 50,000, is more than the objects of a
    worker's batches in flight, so a busy worker need not collect at all. Garbage cycles still
    count towards it, so they are still collected, later. (The measurements behind these
    numbers: docs/performance.md, "Measurements behind the code".)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young_threshold, *gc.get_threshold()[1:])


# Linux's limit for an unprivileged process (``/proc/sys/fs/pipe-max-size``); a pipe holds 64 KiB
# unless told otherwise
PIPE_BYTES = 1 << 20


def widen_pipes(pool: ProcessPoolExecutor, size: int = PIPE_BYTES) -> int | None:
    """Let each of ``pool``'s two pipes (calls in, results out) hold ``size`` bytes; returns the
    size the kernel gave, or ``None`` where it cannot be set (not Linux, a lower limit).

    A call or a result larger than the pipe crosses it in steps: the writer waits until the
    reader has taken what is in it, and a reader thread in a busy asyncio process takes each step
    only once it gets the GIL. A wider pipe takes a whole batch's answer at once, so the process
    that wrote it goes on to its next call. The pipes are read from two private attributes of
    CPython's ``ProcessPoolExecutor`` (``_call_queue``, ``_result_queue``) and their queues'
    ``_reader``; ``tests/common/test_process.py`` checks them on the Python in use (3.11, as the
    image's), and here a Python without them leaves the pipes as they were."""
    try:
        import fcntl

        readers = (pool._call_queue._reader, pool._result_queue._reader)  # type: ignore[attr-defined]
        return min(fcntl.fcntl(r.fileno(), fcntl.F_SETPIPE_SZ, size) for r in readers)
    except (ImportError, AttributeError, OSError) as exc:
        log.info("process pool pipes left at their default size (%s)", type(exc).__name__)
        return None
