"""Running a function in a process forked by ``os.fork``, as a pre-forking server forks its workers
(for the scripts in tests/scripts that check pools across such a fork)."""

import json
import os
from collections.abc import Callable


def in_forked_process(run: Callable[[], object]) -> object:
    """What ``run()`` returned in a process forked from this one (JSON data), or, if it raised,
    the exception's repr; once that process has exited."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        try:
            outcome = run()
        except BaseException as exc:  # reported, not raised: the caller reads it
            outcome = repr(exc)
        os.write(write_end, json.dumps(outcome).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as forked:
        answer = json.loads(forked.read() or "null")
    os.waitpid(child, 0)
    return answer
