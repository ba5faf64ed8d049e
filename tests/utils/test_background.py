"""Background writes: off the calling thread inside a block, waited for at its end, failures not lost."""

import logging
import threading
import time

import pytest

from fader_lightning.utils.background import background_writes, submit


def test_writes_run_on_a_worker_in_order_and_the_block_waits_for_them() -> None:
    done: list[tuple[int, str]] = []

    def write(index: int) -> None:
        time.sleep(0.02)
        done.append((index, threading.current_thread().name))

    with background_writes():
        for index in range(5):
            submit(write, index)
        assert len(done) < 5  # the caller went on before the writes ended
    assert [index for index, _ in done] == list(range(5))
    assert all(name.startswith("fader-writes") for _, name in done)


def test_outside_a_block_a_write_runs_at_once_on_the_caller() -> None:
    done: list[str] = []
    submit(lambda: done.append(threading.current_thread().name))
    assert done == [threading.current_thread().name]


def test_no_more_than_max_pending_writes_wait_at_once() -> None:
    pending, most = [0], [0]
    lock = threading.Lock()

    def write() -> None:
        time.sleep(0.01)
        with lock:
            pending[0] -= 1

    with background_writes(max_pending=2):
        for _ in range(8):
            with lock:
                pending[0] += 1
            submit(write)
            with lock:
                most[0] = max(most[0], pending[0])
    assert most[0] <= 2 and pending[0] == 0


def test_a_failed_write_fails_the_block_after_the_other_writes(caplog: pytest.LogCaptureFixture) -> None:
    done: list[int] = []

    def fail() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"), background_writes():
        submit(fail)
        submit(done.append, 1)
    assert done == [1]

    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="the job's own error"), background_writes():
        submit(fail)
        raise ValueError("the job's own error")
    assert "a background write failed: OSError" in caplog.text  # logged, not hiding the job's error
