"""The documentation site builds with ``mkdocs build --strict`` (what `make docs` runs), without a
single warning, and its API reference covers every public name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import procpool
import procpool.integrations
import procpool.testing

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"


@pytest.mark.timeout(300)
def test_site_builds_strictly_without_warnings(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "site" / "reference" / "pool" / "index.html").is_file()


def _documented() -> set[str]:
    names = set()
    for page in REFERENCE.glob("*.md"):
        names.update(re.findall(r"^::: ([\w.]+)", page.read_text(), re.MULTILINE))
    return names


def test_reference_covers_every_public_name() -> None:
    documented = _documented()
    missing = [f"procpool.{name}" for name in procpool.__all__ if f"procpool.{name}" not in documented]
    assert not missing, f"add these to a page in docs/reference/: {missing}"
    # These modules are documented whole (every name in their __all__ comes with them).
    for module in (procpool.integrations, procpool.testing):
        assert module.__name__ in documented
    assert {"procpool.integrations.fastapi", "procpool.integrations.starlette"} <= documented
