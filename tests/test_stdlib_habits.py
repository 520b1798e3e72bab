"""What users coming from the standard library expect of functions from their main script.

Local workers import the main script as multiprocessing's children do, so its top-level functions
and classes travel by name, as with `ProcessPoolExecutor`: an initializer's module globals, class
identity and tracebacks with the script's lines all behave the same. What workers cannot import
(lambdas, closures, a function under the ``__main__`` guard, code run with ``-c``) travels by value.
Each test runs a script in a subprocess, since the main module is what is under test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from script_env import script_env

SCRIPT = Path(__file__).resolve().parent / "scripts" / "main_functions.py"


def _run_script(*args: str, timeout: float = 60) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=timeout,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


def _assert_travels_like_any_function(pool: dict[str, Any]) -> None:
    """What holds whichever way the script's functions travel."""
    assert pool["point_back"] == 7  # an instance of the script's class comes back as one
    assert pool["method"] == 11
    assert pool["decorated"] == ["logged", 8]
    assert (pool["lambda"], pool["closure"], pool["guarded"]) == (2, 14, -5)
    assert pool["async"] == 3
    assert pool["map lambda"] == [0, -1, -2]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("start_method", "backend"), [("forkserver", "asyncio"), ("spawn", "trio")])
def test_main_script_functions_see_the_globals_their_initializer_set_as_with_the_stdlib(
    start_method: str, backend: str
) -> None:
    outcome = _run_script(start_method, backend)
    pool, stdlib = outcome["pool"], outcome["stdlib"]
    assert (pool["predict"], pool["map"], pool["partial"]) == (40, [20, 40], 20)
    assert (pool["predict"], pool["map"]) == (stdlib["predict"], stdlib["map"])
    assert pool["point_is_point"] is stdlib["point_is_point"] is True
    _assert_travels_like_any_function(pool)
    # The worker's traceback names the script's file, line and source, as the stdlib's does.
    line = next(n for n, text in enumerate(SCRIPT.read_text().splitlines(), 1) if "the line a traceback" in text)
    assert f'File "{SCRIPT}", line {line}, in raise_quota' in pool["traceback"]
    assert 'raise ValueError(f"over the quota of {limit}")' in pool["traceback"]


@pytest.mark.timeout(120)
def test_on_dask_workers_which_do_not_import_the_script_its_functions_travel_by_value(
    dask_scheduler_address: str,
) -> None:
    # By name, every call would fail there: the cluster's workers have no such module.
    pool = _run_script("forkserver", "asyncio", dask_scheduler_address)["pool"]
    _assert_travels_like_any_function(pool)
    assert pool["point_is_point"] is True  # cloudpickle gives one copy of the class per pickle


@pytest.mark.timeout(60)
def test_functions_of_code_run_with_dash_c_travel_by_value_and_debug_logging_says_which_way() -> None:
    code = textwrap.dedent(
        """
        import logging, anyio, procpool, workfns
        OFFSET = 100
        def shift(x):
            return x + OFFSET
        async def main():
            async with procpool.Pool(1) as pool:
                print(await pool.run(shift, 1), await pool.run(workfns.square, 3))
        if __name__ == "__main__":
            logging.basicConfig(level=logging.DEBUG, format="%(name)s %(message)s")
            anyio.run(main)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=script_env(), timeout=50, check=False
    )
    assert (result.returncode, result.stdout) == (0, "101 9\n"), result.stderr
    told = [line for line in result.stderr.splitlines() if " travels by " in line]
    assert told == [
        "procpool __main__.shift travels by value (cloudpickle): the main module is not a script that workers "
        "import (a notebook, a REPL, -c, a package's __main__)",
        "procpool workfns.square travels by reference: workers import it by that name",
    ]
