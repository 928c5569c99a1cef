"""The counters of every engine of a fleet, read where each engine can be told apart.

Behind a router or a multi-replica Service, ``/metrics`` of the endpoint answers from one engine at a
time, so the fleet's counters are read elsewhere:

- ``EngineMetricsSource``: each engine's own ``/metrics`` URL (the local fleet, a port-forward per pod);
- ``PrometheusSource``: the Prometheus that scrapes the engines, summed per pod
  (``sum by (pod) (...)``) over a label selector such as ``namespace="llm"``.

Both give a ``FleetSnapshot`` (engine -> ``EngineCounters``); ``fleet_delta`` subtracts two of them.
Reading Prometheus goes through prometheus-api-client (synchronous, so it runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kvstack.bench.client import EndpointClient, EndpointError
from kvstack.bench.config import FleetSources
from kvstack.contract import exposition, promql
from kvstack.contract.metrics import PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES, REQUEST_SUCCESS

_COUNTERS = (PREFIX_CACHE_QUERIES, PREFIX_CACHE_HITS, REQUEST_SUCCESS)


@dataclass(frozen=True, slots=True)
class EngineCounters:
    """One engine's counters: prefix-cache queries and hits (tokens) and finished requests."""

    prefix_queries: float = 0.0
    prefix_hits: float = 0.0
    requests: float = 0.0


FleetSnapshot = Mapping[str, EngineCounters]


@dataclass(frozen=True, slots=True)
class FleetDelta:
    """What the fleet did between two snapshots, per engine."""

    engines: Mapping[str, EngineCounters]
    restarted: tuple[str, ...] = ()  # engines whose counters went down (restarted in between)

    @property
    def prefix_queries(self) -> float:
        return sum(e.prefix_queries for e in self.engines.values())

    @property
    def prefix_hits(self) -> float:
        return sum(e.prefix_hits for e in self.engines.values())

    @property
    def requests(self) -> float:
        return sum(e.requests for e in self.engines.values())

    @property
    def prefix_hit_ratio(self) -> float | None:
        queries = self.prefix_queries
        return self.prefix_hits / queries if queries > 0 else None

    def request_shares(self) -> dict[str, float]:
        """Each engine's share of the requests finished in between (engines that finished none: 0)."""
        total = self.requests
        return {name: (e.requests / total if total > 0 else 0.0) for name, e in sorted(self.engines.items())}


def fleet_delta(before: FleetSnapshot, after: FleetSnapshot) -> FleetDelta:
    """``after - before`` per engine. An engine only in ``after`` counts from zero (it started in
    between); one whose counters went down is reported in ``restarted`` and counted from zero too."""
    engines: dict[str, EngineCounters] = {}
    restarted: list[str] = []
    for name, now in after.items():
        then = before.get(name, EngineCounters())
        diff = EngineCounters(
            prefix_queries=now.prefix_queries - then.prefix_queries,
            prefix_hits=now.prefix_hits - then.prefix_hits,
            requests=now.requests - then.requests,
        )
        if min(diff.prefix_queries, diff.prefix_hits, diff.requests) < 0:
            restarted.append(name)
            diff = now
        engines[name] = diff
    return FleetDelta(engines=engines, restarted=tuple(sorted(restarted)))


def parse_engine_counters(text: str, model_name: str | None = None) -> EngineCounters:
    """One engine's ``/metrics`` exposition -> its counters (series of its engine cores summed)."""
    samples = exposition.for_model(exposition.parse_samples(text), model_name)
    sums = exposition.sum_by_name(samples, _COUNTERS)
    return EngineCounters(
        prefix_queries=sums.get(PREFIX_CACHE_QUERIES, 0.0),
        prefix_hits=sums.get(PREFIX_CACHE_HITS, 0.0),
        requests=sums.get(REQUEST_SUCCESS, 0.0),
    )


class FleetSource(Protocol):
    """Where the fleet's per-engine counters are read."""

    description: str

    async def snapshot(self) -> dict[str, EngineCounters]:
        """Every engine's counters now. Raises ``EndpointError`` when they cannot be read."""
        ...

    async def settle(self, since: float) -> None:
        """Return once the counters reflect everything that finished before ``since`` (``time.time()``)."""
        ...


class EngineMetricsSource:
    """Each engine's own ``/metrics`` URL, read with the run's client."""

    def __init__(self, client: EndpointClient, urls: Sequence[str], model_name: str | None) -> None:
        if not urls:
            raise ValueError("EngineMetricsSource needs at least one URL")
        self._client = client
        self._urls = list(dict.fromkeys(urls))
        self._model = model_name
        self.description = f"{len(self._urls)} engine /metrics URL(s)"

    async def snapshot(self) -> dict[str, EngineCounters]:
        texts = await asyncio.gather(*(self._client.get_text(url) for url in self._urls))
        out: dict[str, EngineCounters] = {}
        for url, text in zip(self._urls, texts, strict=True):
            try:
                out[url] = parse_engine_counters(text, self._model)
            except ValueError as exc:
                raise EndpointError(f"{url} is not a Prometheus exposition: {exc}") from exc
        return out

    async def settle(self, since: float) -> None:
        return None  # read directly: nothing to wait for


def prometheus_queries(selector: str, group_by: str) -> dict[str, str]:
    """The PromQL that reads each counter per engine: counter name -> query."""
    return {
        name: f"sum by ({promql.by([group_by])}) ({promql.selector(name, selector)})" for name in _COUNTERS
    }


class PrometheusSource:
    """The Prometheus that scrapes the engines: counters summed per ``group_by`` label (pod)."""

    def __init__(
        self,
        url: str,
        *,
        selector: str = "",
        group_by: str = "pod",
        settle_timeout_s: float = 120.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        from prometheus_api_client import PrometheusConnect

        self._prom = PrometheusConnect(url=url.rstrip("/"), headers=headers, disable_ssl=False, timeout=30)
        self._url = url
        self._queries = prometheus_queries(selector, group_by)
        self._group_by = group_by
        self._selector = selector
        self._settle_timeout_s = settle_timeout_s
        self.description = f"Prometheus {url} ({{{selector}}} by {group_by})"

    def _query(self, query: str) -> list[dict[str, object]]:
        try:
            result = self._prom.custom_query(query)
        except Exception as exc:  # the client raises requests' and its own errors
            raise EndpointError(f"Prometheus {self._url}: query {query!r} failed: {exc}") from exc
        return list(result)

    def _read(self) -> dict[str, EngineCounters]:
        values: dict[str, dict[str, float]] = {}
        for name, query in self._queries.items():
            for series in self._query(query):
                metric = series.get("metric")
                value = series.get("value")
                if not isinstance(metric, dict) or not isinstance(value, list) or len(value) != 2:
                    continue
                engine = str(metric.get(self._group_by, "")) or "(no label)"
                values.setdefault(engine, {})[name] = float(value[1])
        return {
            engine: EngineCounters(
                prefix_queries=v.get(PREFIX_CACHE_QUERIES, 0.0),
                prefix_hits=v.get(PREFIX_CACHE_HITS, 0.0),
                requests=v.get(REQUEST_SUCCESS, 0.0),
            )
            for engine, v in values.items()
        }

    async def snapshot(self) -> dict[str, EngineCounters]:
        return await asyncio.to_thread(self._read)

    def _oldest_sample(self) -> float | None:
        rows = self._query(f"min(timestamp({promql.selector(PREFIX_CACHE_QUERIES, self._selector)}))")
        for row in rows:
            value = row.get("value")
            if isinstance(value, list) and len(value) == 2:
                return float(value[1])
        return None

    async def settle(self, since: float) -> None:
        """Wait until every engine's newest scrape is later than ``since``."""
        deadline = time.monotonic() + self._settle_timeout_s
        while True:
            oldest = await asyncio.to_thread(self._oldest_sample)
            if oldest is not None and oldest >= since:
                return
            if time.monotonic() > deadline:
                raise EndpointError(
                    f"Prometheus {self._url} has no scrape of every engine after the phase ended "
                    f"(waited {self._settle_timeout_s:.0f} s): is it scraping them?"
                )
            await asyncio.sleep(1.0)


def source_from_config(
    client: EndpointClient, fleet: FleetSources, model_name: str | None, api_key: str | None = None
) -> FleetSource | None:
    """The fleet source the config names, or ``None`` (a single endpoint: nothing to read per engine)."""
    if fleet.engine_metrics_urls:
        return EngineMetricsSource(client, fleet.engine_metrics_urls, model_name)
    if fleet.prometheus_url is not None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        return PrometheusSource(
            fleet.prometheus_url,
            selector=fleet.prometheus_selector,
            group_by=fleet.prometheus_group_by,
            headers=headers,
        )
    return None
