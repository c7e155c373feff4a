"""How many torch threads a run should use on the machine it is on.

Two threads on two cores collapse (several times slower) when another process keeps one core busy:
every parallel region waits for the thread that was descheduled. So the default is not "one per
core" but the CPUs this process may use (affinity and cgroup quota), shared among the jobs the
launcher runs at once, minus the CPUs other processes keep busy right now. :class:`CpuLoad`
measures that last part from ``/proc/stat`` and the process's own CPU time.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path


def available_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup v2/v1 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _cgroup_quota() -> float | None:
    """CPUs allowed by the cgroup quota (``cpu.max`` or ``cfs_quota_us/cfs_period_us``), if any."""
    v2 = Path("/sys/fs/cgroup/cpu.max")
    try:
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1q, v1p = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
        if v1q.is_file() and v1p.is_file():
            quota_us = int(v1q.read_text())
            return None if quota_us <= 0 else quota_us / int(v1p.read_text())
    except (OSError, ValueError):
        return None
    return None


def _busy_ticks(cpus: set[int] | None) -> tuple[int, int] | None:
    """(busy, total) jiffies summed over ``cpus`` (all when None) from ``/proc/stat``."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + values[4]
        total += sum(values)
        busy += sum(values) - idle
    return busy, total


@dataclass
class CpuLoad:
    """Measures how many CPUs *other* processes keep busy between two calls of :meth:`other_busy`."""

    _ticks: tuple[int, int] | None = None
    _own: float = 0.0
    _cpus: set[int] | None = None

    def __post_init__(self) -> None:
        try:
            self._cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self._cpus = None
        self._ticks = _busy_ticks(self._cpus)
        self._own = _own_cpu_seconds()

    def other_busy(self) -> float | None:
        """CPUs (fractional) busy with other processes since the last call; None if unknown."""
        ticks, own = _busy_ticks(self._cpus), _own_cpu_seconds()
        if ticks is None or self._ticks is None:
            return None
        d_busy, d_total = ticks[0] - self._ticks[0], ticks[1] - self._ticks[1]
        d_own = own - self._own
        self._ticks, self._own = ticks, own
        if d_total <= 0:
            return None
        n_cpus = len(self._cpus) if self._cpus else (os.cpu_count() or 1)
        wall_cpu_s = d_total / os.sysconf("SC_CLK_TCK")  # CPU-seconds of all watched CPUs
        busy_cpu_s = d_busy / os.sysconf("SC_CLK_TCK")
        return max(0.0, (busy_cpu_s - d_own) / (wall_cpu_s / n_cpus))


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def threads_for(cpus: int, jobs: int, other_busy: float | None) -> int:
    """Threads for one job: its share of ``cpus`` among ``jobs``, minus CPUs others keep busy."""
    share = max(1, cpus // max(1, jobs))
    if other_busy is None:
        return share
    free = cpus - math.floor(other_busy + 0.5)  # a CPU counts as taken when over half busy
    return max(1, min(share, free // max(1, jobs) if jobs > 1 else free))


def default_threads(jobs: int = 1, sample_s: float = 0.25) -> int:
    """The default thread count: measure other processes' load for ``sample_s`` seconds."""
    load = CpuLoad()
    time.sleep(sample_s)
    return threads_for(available_cpus(), jobs, load.other_busy())
