"""`Pool.stats` as Prometheus metrics (``pip install 'procpool[prometheus]'``).

::

    from prometheus_client import REGISTRY, start_http_server
    from procpool.integrations.prometheus import PoolCollector

    async with procpool.Pool() as pool:
        REGISTRY.register(PoolCollector(pool))
        start_http_server(9100, addr="127.0.0.1")
        ...

Every scrape reads a fresh `Pool.stats` snapshot, from the exporter's own thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .._core import PoolStats

__all__ = ("PoolCollector",)


class _HasStats(Protocol):
    def stats(self) -> PoolStats: ...


class PoolCollector(Collector):
    """A Prometheus collector for one pool.

    Args:
        pool: the pool to describe (anything with a ``stats()`` method returning `PoolStats`).
        prefix: the start of every metric name.
        labels: constant labels added to every sample, to tell several pools apart
            (for example ``{"pool": "thumbnails"}``).
    """

    def __init__(self, pool: _HasStats, *, prefix: str = "procpool", labels: Mapping[str, str] | None = None) -> None:
        self._pool = pool
        self._prefix = prefix
        self._labels = dict(labels or {})

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        stats = self._pool.stats()
        names, values = list(self._labels), list(self._labels.values())

        def gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(f"{self._prefix}_{name}", documentation, labels=names)
            family.add_metric(values, value)
            return family

        def counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"{self._prefix}_{name}", documentation, labels=names)
            family.add_metric(values, value)
            return family

        yield gauge("workers", "Worker processes the pool is sized for.", stats.workers)
        yield gauge("workers_alive", "Worker processes running now.", stats.alive)
        yield gauge("workers_busy", "Workers running a task.", stats.busy)
        yield gauge("workers_idle", "Workers waiting for a task.", stats.idle)
        yield gauge("tasks_queued", "Tasks submitted and not started yet.", stats.queued)
        yield gauge("tasks_running", "Tasks running now.", stats.running)
        yield counter("tasks_completed", "Tasks that returned a result.", stats.completed)
        yield counter("tasks_failed", "Tasks that ended with an error.", stats.failed)
        yield counter("tasks_cancelled", "Tasks cancelled before they ended.", stats.cancelled)
        yield counter("worker_crashes", "Worker processes that died unexpectedly.", stats.crashed)
        yield counter("worker_recycles", "Workers replaced after max_tasks_per_worker tasks.", stats.recycled)
        for what, mean, p99 in (
            ("queue_wait", stats.queue_wait_mean, stats.queue_wait_p99),
            ("run_time", stats.run_time_mean, stats.run_time_p99),
        ):
            family = GaugeMetricFamily(
                f"{self._prefix}_{what}_seconds",
                f"Task {what.replace('_', ' ')}: the mean over all tasks, the p99 over recent ones.",
                labels=[*names, "stat"],
            )
            for stat, value in (("mean", mean), ("p99", p99)):
                if value is not None:
                    family.add_metric([*values, stat], value)
            yield family
