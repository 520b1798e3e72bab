"""Typing is part of the API: mypy infers results from the function and rejects wrong arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

HERE = Path(__file__).resolve().parent


def _mypy(*args: str) -> tuple[str, int]:
    stdout, stderr, status = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", *args])
    return stdout + stderr, status


def test_results_are_inferred_from_the_function() -> None:
    output, status = _mypy(str(HERE / "typing" / "pool_usage.py"))
    assert status == 0, output


def test_wrong_arguments_are_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import procpool\n"
        "def parse(text: str) -> int:\n"
        "    return len(text)\n"
        "async def use(pool: procpool.Pool) -> None:\n"
        "    await pool.run(parse, 3)\n"
        "    await pool.run(parse, 'x', strict=True)\n"
    )
    output, status = _mypy(str(bad))
    assert status == 1
    assert 'bad.py:5: error: No overload variant of "run"' in output
    assert 'bad.py:6: error: Unexpected keyword argument "strict"' in output
