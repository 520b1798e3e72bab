"""Every Python code block in the README and docs (docs/**/*.md) runs as a script, and succeeds.

Only ```python blocks run; a snippet that cannot run on its own is written as ```py instead.
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
# A block's run is mostly starting interpreters (its own, a forkserver, workers): two at a time
# keep two cores busy, where one at a time leaves one idle while a process waits for another.
_AT_ONCE = 2

# All the blocks run while the first test of this module sets up, so its limit covers them all.
pytestmark = pytest.mark.timeout(600)


def _blocks() -> dict[str, str]:
    blocks = {}
    for document in DOCUMENTS:
        for number, match in enumerate(_BLOCK.finditer(document.read_text()), 1):
            blocks[f"{document.relative_to(ROOT).as_posix()}-{number}"] = match.group(1)
    return blocks


_BLOCKS = _blocks()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each block, run as a script in a directory of its own, two at a time; every process has
    ended before any test starts (the leak check of each test sees none of them)."""

    # Written first, in this thread: the factory makes its base directory on first use, which
    # two threads doing at once fail (FileExistsError).
    scripts = {name: tmp_path_factory.mktemp("block") / "example.py" for name in _BLOCKS}
    for name, script in scripts.items():
        script.write_text(_BLOCKS[name])

    def run(name: str) -> subprocess.CompletedProcess[str]:
        script = str(scripts[name])
        return subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60, check=False)

    with ThreadPoolExecutor(_AT_ONCE) as executor:
        return dict(zip(_BLOCKS, executor.map(run, _BLOCKS), strict=True))


@pytest.mark.parametrize("name", _BLOCKS)
def test_code_block_runs(name: str, runs: dict[str, subprocess.CompletedProcess[str]]) -> None:
    assert runs[name].returncode == 0, runs[name].stderr


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
