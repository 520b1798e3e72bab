"""The environment for a Python script that a test runs in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def script_env() -> dict[str, str]:
    """``os.environ`` with the tests directory on PYTHONPATH (so ``workfns`` and the other helper
    modules import) and procpool as installed in the venv; no PYTHONWARNINGS, whose output would
    mix with what the tests read from the script's stderr."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    env.pop("PYTHONWARNINGS", None)
    return env
