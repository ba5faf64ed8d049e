"""The trust-boundary fuzzer (``tests/trust_fuzz.py``): every case either works or fails with a named project error."""

from __future__ import annotations

from pathlib import Path

from trust_fuzz import CLEAR, FAILING, HELD, SENTINEL, run_session, summary


def test_no_case_is_unclear_raw_or_silent(tmp_path: Path) -> None:
    outcomes = run_session(tmp_path, seed=0, settings=24)
    buckets = {bucket for _, bucket, _ in outcomes}
    assert not buckets & set(FAILING), summary(outcomes)
    groups = {case.group for case, _, _ in outcomes}
    assert groups == {"settings", "data", "cache", "checkpoint", "folder", "results"}
    # both outcomes occur: the corpus holds inputs that must work, and inputs that must be refused
    assert {HELD, CLEAR} <= buckets and len(outcomes) >= 80
    assert not list(tmp_path.rglob(SENTINEL))  # no payload ran, wherever it would have written
