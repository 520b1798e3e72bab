"""A module that creates a pool as it is imported (opened elsewhere, as an app's lifespan would),
and a task that reports the processes its worker started."""

import contextlib

import psutil

import procpool

pool = procpool.Pool(1)


def children() -> list[str]:
    """The command lines of the calling process's children."""
    command_lines = []
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.NoSuchProcess):  # ended meanwhile
            command_lines.append(" ".join(child.cmdline()))
    return command_lines
