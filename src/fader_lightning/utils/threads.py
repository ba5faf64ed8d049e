"""CPU threads per job, so that parallel jobs share the cores instead of fighting over them.

Every torch process uses all cores by default. Two jobs at once on one machine then run twice as many
OpenMP threads as there are cores, and the threads spin against each other: a sweep run in parallel becomes
slower than the same sweep run one job at a time. Each job therefore sizes its thread pools, before any torch
work, from the ``threads`` setting:

* ``auto`` (default): the cores this process may use (CPU affinity, the cgroup CPU quota, SLURM's
  ``cpus_per_task``) divided by the jobs running at once on the machine (the joblib launcher's ``n_jobs`` in a
  multirun, the ranks of a local DDP job), less the data-loader workers, which each take a core; at least 1.
* an integer: exactly that many threads.

The plan is applied to torch (intra-op and inter-op pools), OpenCV (albumentations' resize) and the
``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` environment inherited by worker processes,
and recorded in ``metrics.json``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from fader_lightning.errors import ConfigError

log = logging.getLogger(__name__)

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
CGROUP_V2 = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1 = (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us"))


@dataclass(frozen=True)
class ThreadPlan:
    """How one job uses the CPU.

    Attributes:
        threads: Torch intra-op (and OpenMP, MKL, OpenCV) threads.
        interop_threads: Torch inter-op threads.
        num_workers: Data-loader worker processes.
        jobs_at_once: Jobs sharing the machine's cores (sweep jobs in parallel, or local DDP ranks).
        cores: Cores this process may use.
        setting: The ``threads`` setting the plan came from.
    """

    threads: int
    interop_threads: int
    num_workers: int
    jobs_at_once: int
    cores: int
    setting: str

    def as_dict(self) -> dict[str, Any]:
        """The plan as a plain dict (for ``metrics.json``)."""
        return asdict(self)


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup quota, or ``None`` when unlimited or unknown."""
    try:
        if CGROUP_V2.is_file():
            quota, period = CGROUP_V2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if CGROUP_V1[0].is_file():
            quota, period = (int(path.read_text()) for path in CGROUP_V1)
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def available_cores() -> int:
    """The cores this process may use: CPU affinity, capped by the cgroup quota and SLURM's ``cpus_per_task``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        cores = min(cores, int(slurm))
    return max(1, cores)


def parallel_jobs(n_jobs: Any, cores: int) -> int:
    """Jobs a joblib-style ``n_jobs`` runs at once (``-1``: one per core, ``-2``: all but one, ...).

    Args:
        n_jobs: The launcher's ``n_jobs`` (``None``: 1).
        cores: Cores of the machine.

    Returns:
        The number of jobs at once, at least 1.
    """
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    return max(1, cores + 1 + n_jobs if n_jobs < 0 else n_jobs)


def plan_threads(setting: Any, cores: int, jobs_at_once: int, num_workers: int) -> ThreadPlan:
    """Size the thread pools of one job.

    Args:
        setting: ``auto`` or a positive integer.
        cores: Cores this process may use.
        jobs_at_once: Jobs sharing those cores.
        num_workers: Data-loader workers of the job (each counts as a core of its budget).

    Returns:
        The plan.

    Raises:
        ConfigError: When the setting is neither ``auto`` nor a positive integer.
    """
    if str(setting) == "auto":
        budget = max(1, cores // max(1, jobs_at_once))
        threads = max(1, budget - num_workers)
    else:
        try:
            threads = int(setting)
        except (TypeError, ValueError):
            threads = 0
        if threads < 1 or str(threads) != str(setting).strip():
            raise ConfigError(f"threads={setting!r} is invalid; use auto or a positive integer such as 2")
    return ThreadPlan(threads, min(threads, 2), num_workers, jobs_at_once, cores, str(setting))


def apply_threads(plan: ThreadPlan) -> None:
    """Apply a plan to torch, OpenCV and the environment of child processes.

    Torch's inter-op pool can only be sized before its first use; a later job of the same process keeps the
    size the first one set.

    Args:
        plan: The plan.
    """
    torch.set_num_threads(plan.threads)
    try:
        torch.set_num_interop_threads(plan.interop_threads)
    except RuntimeError:
        log.debug("torch inter-op threads already in use; kept at %d", torch.get_num_interop_threads())
    cv2.setNumThreads(plan.threads)
    for name in THREAD_ENV:
        os.environ[name] = str(plan.threads)
    log.info(
        "threads: %d torch/OpenMP threads, %d data-loader workers (%d cores, %d jobs at once, threads=%s)",
        plan.threads, plan.num_workers, plan.cores, plan.jobs_at_once, plan.setting,
    )  # fmt: skip


def plan_for_job(cfg: DictConfig) -> ThreadPlan:
    """The plan of a training job from its config (``threads``, ``data.num_workers``, ``trainer``) and launcher.

    Jobs at once: the joblib launcher's ``n_jobs`` in a multirun (other launchers: 1; a SLURM job owns its
    ``cpus_per_task``), times the ranks of a local DDP job (``trainer.devices`` with a ``ddp`` strategy outside
    SLURM, where each rank is its own task with its own CPUs).

    Args:
        cfg: The job's config.

    Returns:
        The plan.
    """
    cores = available_cores()
    jobs = 1
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        jobs = parallel_jobs(OmegaConf.select(HydraConfig.get(), "launcher.n_jobs", default=None), cores)
    devices, strategy = cfg.trainer.get("devices", 1), str(cfg.trainer.get("strategy", ""))
    if "ddp" in strategy and isinstance(devices, int) and "SLURM_CPUS_PER_TASK" not in os.environ:
        jobs *= max(1, devices)
    return plan_threads(cfg.get("threads", "auto"), cores, jobs, int(cfg.data.get("num_workers", 0) or 0))
