"""The machine and the versions a run was measured with."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

DISTRIBUTIONS = (
    "procpool",
    "anyio",
    "cloudpickle",
    "uvloop",
    "trio",
    "aiomultiprocess",
    "pebble",
    "trio-parallel",
    "mpire",
    "numpy",
    "psutil",
    "matplotlib",
)


def _proc_field(path: str, name: str) -> str | None:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def describe_machine() -> dict[str, Any]:
    """CPU model, CPU counts, memory, kernel and Python of this machine."""
    mem_kb = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "cpu_model": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gb": round(int(mem_kb.split()[0]) / 1e6, 1) if mem_kb else None,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
    }


def versions() -> dict[str, str | None]:
    """The installed version of each library the harness measures or uses (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found
