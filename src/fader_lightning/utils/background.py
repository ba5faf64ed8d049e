"""Writes that run beside the job: overlay and heat-map files are drawn and written while the job goes on.

Drawing a panel and compressing it to PNG takes tens of milliseconds per image at 256 px. Inside
:func:`background_writes`, :func:`submit` hands that work to one worker thread, so the test pass, the next stage or
the next batch of ``fader-predict`` does not wait for it; leaving the block waits for every write and raises the
first one that failed. Outside such a block :func:`submit` runs the work at once, so a callback used from a plain
script behaves as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)


class BackgroundWriter:
    """One worker thread that runs writes in the order they came, with at most ``max_pending`` waiting.

    Args:
        max_pending: Submissions queued at most; :meth:`submit` blocks beyond that, so memory stays bounded.
    """

    def __init__(self, max_pending: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fader-writes")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[Future] = []

    def submit(self, work: Callable[..., Any], *args: Any) -> None:
        """Queue ``work(*args)``.

        Args:
            work: The write.
            *args: Its arguments (they must not change after the call: the worker reads them later).
        """
        self._slots.acquire()
        future = self._executor.submit(work, *args)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def close(self, raise_errors: bool) -> None:
        """Wait for every queued write and stop the worker.

        Args:
            raise_errors: Raise the first failed write's error (else log it, when another error is on its way).
        """
        self._executor.shutdown(wait=True)
        errors = [future.exception() for future in self._futures if future.exception() is not None]
        self._futures = []
        for error in errors[1:] if raise_errors else errors:
            log.error("a background write failed: %s: %s", type(error).__name__, error)
        if raise_errors and errors:
            raise errors[0]


_active: BackgroundWriter | None = None


@contextmanager
def background_writes(max_pending: int = 2) -> Iterator[None]:
    """Run :func:`submit`'s work on a worker thread until the block ends, then wait for it.

    Args:
        max_pending: Submissions queued at most (each holds its images until written).

    Raises:
        Exception: The first failed write's error, when the block itself ended without one.
    """
    global _active
    outer, _active = _active, BackgroundWriter(max_pending)
    writer, failed = _active, True
    try:
        yield
        failed = False
    finally:
        _active = outer
        writer.close(raise_errors=not failed)


def submit(work: Callable[..., Any], *args: Any) -> None:
    """Run ``work(*args)`` on the worker of the enclosing :func:`background_writes`, or now outside one.

    Args:
        work: The write.
        *args: Its arguments (they must not change after the call).
    """
    if _active is None:
        work(*args)
    else:
        _active.submit(work, *args)
