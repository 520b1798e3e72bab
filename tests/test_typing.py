"""Typing is part of the API: mypy infers results from the function and rejects wrong arguments.

One mypy run checks both files (each run analyses procpool and its dependencies afresh, seconds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

# The mypy run takes 10-40 s, and several times that on a loaded machine; it runs no process of ours.
pytestmark = pytest.mark.timeout(300)

USAGE = Path(__file__).resolve().parent / "typing" / "pool_usage.py"
BAD = (
    "import procpool\n"
    "def parse(text: str) -> int:\n"
    "    return len(text)\n"
    "async def use(pool: procpool.Pool) -> None:\n"
    "    await pool.run(parse, 3)\n"
    "    await pool.run(parse, 'x', strict=True)\n"
    "procpool.Poool\n"
)


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    bad = tmp_path_factory.mktemp("typing") / "bad.py"
    bad.write_text(BAD)
    stdout, stderr, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", str(USAGE), str(bad)])
    assert status == 1, stdout + stderr  # bad.py's errors, and nothing worse
    return stdout + stderr


def test_results_are_inferred_from_the_function(mypy_output: str) -> None:
    assert "pool_usage.py" not in mypy_output


def test_wrong_arguments_are_rejected(mypy_output: str) -> None:
    assert 'bad.py:5: error: No overload variant of "run"' in mypy_output
    assert 'bad.py:6: error: Unexpected keyword argument "strict"' in mypy_output


def test_a_misspelt_public_name_is_an_error(mypy_output: str) -> None:
    """procpool imports its names on first use (a module ``__getattr__``), which type checkers do
    not see: to them only the real names exist."""
    assert 'bad.py:7: error: Module has no attribute "Poool"' in mypy_output
