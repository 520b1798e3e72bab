"""Every Python code block in the README and docs (docs/**/*.md) runs as a script, and succeeds.

Only ```python blocks run; a snippet that cannot run on its own is written as ```py instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def _blocks() -> list[object]:
    params = []
    for document in DOCUMENTS:
        for number, match in enumerate(_BLOCK.finditer(document.read_text()), 1):
            name = document.relative_to(ROOT).as_posix()
            params.append(pytest.param(match.group(1), id=f"{name}-{number}"))
    return params


@pytest.mark.parametrize("code", _blocks())
def test_code_block_runs(code: str, tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


_NAMED_TEST = re.compile(r"`tests/(test_\w+\.py)::(test_\w+)`")


def test_every_test_named_in_the_docs_exists() -> None:
    """A doc line backed by a test names it as `tests/FILE::NAME`; a renamed test must not leave
    the line unbacked."""
    named = [match for document in DOCUMENTS for match in _NAMED_TEST.findall(document.read_text())]
    assert len(named) >= 10  # docs/migrating.md's "Differences from the stdlib" alone names more
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not re.search(rf"^(async )?def {name}\(", (ROOT / "tests" / file).read_text(), re.MULTILINE)
    ]
    assert not missing
