"""A module that creates a pool as it is imported (opened elsewhere, as an app's lifespan would),
and a task that reports the processes its worker started."""

import os

import procpool

pool = procpool.Pool(1)


def children() -> list[str]:
    """The command lines of the calling process's children."""
    pid = os.getpid()
    with open(f"/proc/{pid}/task/{pid}/children") as listing:
        pids = listing.read().split()
    command_lines = []
    for child in pids:
        try:
            with open(f"/proc/{child}/cmdline") as cmdline:
                command_lines.append(cmdline.read().replace("\0", " "))
        except OSError:  # ended meanwhile
            pass
    return command_lines
