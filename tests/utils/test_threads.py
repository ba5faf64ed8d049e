"""Each job sizes its thread pools from the cores it may use and the jobs sharing them."""

import os
from pathlib import Path

import pytest
import torch

from conftest import TINY_UNET, compose_train_cfg
from fader_lightning.errors import ConfigError
from fader_lightning.jobs.train import train
from fader_lightning.results import load_results
from fader_lightning.utils import threads
from fader_lightning.utils.threads import ThreadPlan, apply_threads, parallel_jobs, plan_threads


@pytest.mark.parametrize(
    ("cores", "jobs", "workers", "expected"), [(8, 1, 0, 8), (8, 2, 0, 4), (8, 2, 1, 3), (2, 2, 0, 1), (2, 4, 2, 1)]
)
def test_auto_divides_the_cores(cores: int, jobs: int, workers: int, expected: int) -> None:
    plan = plan_threads("auto", cores, jobs, workers)
    assert plan.threads == expected == max(1, cores // jobs - workers)
    assert plan.jobs_at_once == jobs and plan.num_workers == workers and plan.cores == cores


def test_explicit_and_bad_settings() -> None:
    assert plan_threads(3, cores=2, jobs_at_once=2, num_workers=1).threads == 3
    assert plan_threads("3", cores=2, jobs_at_once=1, num_workers=0).threads == 3
    for bad in (0, -1, "two", 1.5):
        with pytest.raises(ConfigError, match=rf"threads={bad!r} is invalid; use auto or a positive integer"):
            plan_threads(bad, 2, 1, 0)


def test_joblib_n_jobs() -> None:
    assert [parallel_jobs(n, 8) for n in (None, 1, 3, -1, -2, -20)] == [1, 1, 3, 8, 7, 1]


def test_available_cores_follows_quota_and_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(threads, "CGROUP_V2", cpu_max)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    cpu_max.write_text("max 100000\n")
    assert threads.available_cores() == affinity
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs of quota: one whole core
    assert threads.available_cores() == 1
    cpu_max.write_text("max 100000\n")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert threads.available_cores() == 1


def test_apply_sets_torch_and_child_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    for name in threads.THREAD_ENV:
        monkeypatch.setenv(name, "99")
    try:
        apply_threads(ThreadPlan(1, 1, 0, 2, 2, "auto"))
        assert torch.get_num_threads() == 1
        assert all(os.environ[name] == "1" for name in threads.THREAD_ENV)
    finally:
        torch.set_num_threads(before)


def test_job_records_its_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in threads.THREAD_ENV:  # restored after the test
        monkeypatch.setenv(name, os.environ.get(name, "2"))
    before = torch.get_num_threads()
    overrides = ["data.image_size=32", "data.n_train=8", "data.n_test_good=2", "data.n_test_defect=2",
                 "data.size=64", TINY_UNET, "debug=fdr", "threads=1"]  # fmt: skip
    try:
        train(compose_train_cfg(tmp_path, overrides))
    finally:
        torch.set_num_threads(before)
    recorded = load_results(tmp_path / "out")["ear"]["threads"]
    assert recorded["threads"] == 1 and recorded["setting"] == "1" and recorded["jobs_at_once"] == 1
    assert recorded["cores"] == threads.available_cores() and recorded["num_workers"] == 0
