"""The short form of the soak test (tests/soak.py; ``make soak`` runs the long one): mixed tasks
through one pool, and the parent's resources must stay flat."""

from __future__ import annotations

import pytest

import soak

pytestmark = [pytest.mark.anyio, pytest.mark.soak, pytest.mark.timeout(120)]

TASKS = 20_000


async def test_soak_short_form_loses_nothing_and_stays_flat() -> None:
    report = await soak.run(TASKS)
    print(report.table())
    assert report.tasks >= TASKS
    assert report.lost == 0, report.outcomes
    assert report.outcomes["tiny:ok"] > 0.9 * TASKS
    drift = report.drift()
    rss_net, _ = drift["rss"]
    assert rss_net < 16 * 2**20
    for resource in ("fds", "threads"):
        net, spread = drift[resource]
        assert abs(net) <= 4, (resource, drift)
        assert spread <= 6, (resource, drift)
    # Two workers, a warm spare and a replacement starting, plus multiprocessing's helpers.
    assert max(sample.children for sample in report.samples) <= 2 + 2 + 2
