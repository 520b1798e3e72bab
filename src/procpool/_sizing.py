"""Pool sizing and start-method choice."""

from __future__ import annotations

import math
import multiprocessing
import os
import sys

_CGROUP_ROOT = "/sys/fs/cgroup"  # paths joined with os.path: pathlib costs a `Pool`'s first use milliseconds


def available_cpus() -> int:
    """The CPUs this process may use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, quota)
    return max(1, count)


def _cgroup_cpu_quota() -> int | None:
    """The CPU quota of this process's cgroup rounded up to whole CPUs, or None if unlimited."""
    own = _read_text("/proc/self/cgroup")
    if own is None:
        return None
    for line in own.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0":  # cgroup v2
            candidates = [
                _read_fields(directory, "cpu.max")
                for directory in (os.path.join(_CGROUP_ROOT, path.lstrip("/")), _CGROUP_ROOT)
            ]
        elif "cpu" in controllers.split(","):  # cgroup v1
            candidates = [
                _read_fields(directory, "cpu.cfs_quota_us") + _read_fields(directory, "cpu.cfs_period_us")
                for directory in (
                    os.path.join(_CGROUP_ROOT, "cpu", path.lstrip("/")),
                    os.path.join(_CGROUP_ROOT, "cpu"),
                )
            ]
        else:
            continue
        for fields in candidates:
            quota = _read_quota(fields)
            if quota is not None:
                return quota
    return None


def _read_text(path: str) -> str | None:
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return None


def _read_fields(directory: str, name: str) -> list[str]:
    text = _read_text(os.path.join(directory, name))
    return [] if text is None else text.split()


def _read_quota(fields: list[str]) -> int | None:
    if len(fields) != 2 or fields[0] in ("max", "-1"):
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def default_start_method() -> str:
    """forkserver where it exists (Linux and other POSIX systems), spawn elsewhere."""
    if sys.platform != "darwin" and "forkserver" in multiprocessing.get_all_start_methods():
        return "forkserver"
    return "spawn"


def check_start_method(method: str | None) -> str:
    """Validate a ``start_method`` argument; None means the platform default.

    ``fork`` is refused: forking a process that runs an event loop and threads copies their
    locks in whatever state they are, which deadlocks children at random.
    """
    if method is None:
        return default_start_method()
    if method == "fork":
        raise ValueError(
            "start_method='fork' is not supported: forking a process that runs an event loop and "
            "threads can deadlock the child; use 'forkserver' (fast, the default) or 'spawn'"
        )
    allowed = [m for m in multiprocessing.get_all_start_methods() if m != "fork"]
    if method not in allowed:
        raise ValueError(f"unknown start_method {method!r}; choose one of {allowed}")
    return method
