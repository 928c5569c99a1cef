"""The check pipeline of ``kvstack verify``: a check *measures* (I/O) into typed figures, then a pure
function *judges* them; the runner (``bench.verify``) names, times and records every check.

A check is a :class:`Check`: its name and title, the pydantic model of its figures, an async ``measure``
and a pure ``judge``. Checks never build a ``CheckResult`` nor time themselves. What one check needs from
another is declared in ``needs`` (names of earlier checks) and read through :class:`Deps`, which holds
only those: the prefix check declares that it needs the capacity (for the block size), the latency check
the load phases (for their requests). Nothing is shared through a mutable run context.

``measure`` raises :class:`NotMeasured` when it cannot produce figures (the verdict is then ``error``) and
lets ``EndpointError`` through when the endpoint itself is down (the run ends, exit 2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from kvstack.bench.client import EndpointClient, RequestOutcome
from kvstack.bench.config import VerifyConfig
from kvstack.bench.console import Display
from kvstack.bench.fleet import FleetSource, source_from_config
from kvstack.bench.report import CheckResult, ServerInfo, Verdict, VerifyReport

F = TypeVar("F", bound=BaseModel)
G = TypeVar("G", bound=BaseModel)


class NotMeasured(Exception):
    """The check could not produce figures; the message is the reason (verdict ``error``)."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """What a judge says about one check's figures."""

    verdict: Verdict
    reason: str
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Probe:
    """What a check measures with: the config, the client, what discovery learned, where to show progress.

    ``outcomes`` is this check's own request log: every streamed request it makes goes in (the runner
    keeps it with the check's record; the run's error summary and dependants read it from there).
    """

    config: VerifyConfig
    client: EndpointClient
    server: ServerInfo
    display: Display
    metrics_text: str | None = None
    metrics_error: str | None = None
    outcomes: list[RequestOutcome] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.server.model

    def fleet_source(self) -> FleetSource | None:
        """Where each engine's counters are read when the config names a fleet source, else ``None``."""
        key = self.config.api_key.get_secret_value() if self.config.api_key else None
        return source_from_config(self.client, self.config.fleet, self.model, key)


@dataclass(frozen=True, slots=True)
class CheckRecord:
    """One finished check as the runner keeps it: typed figures (``None`` when not measured) and the
    requests it made."""

    name: str
    figures: BaseModel | None
    outcomes: tuple[RequestOutcome, ...]


class Deps:
    """The records of the checks a check declared in ``needs``; asking for another one is a bug."""

    def __init__(self, owner: str, records: Mapping[str, CheckRecord | None]) -> None:
        self._owner = owner
        self._records = dict(records)

    def _record(self, name: str) -> CheckRecord | None:
        if name not in self._records:
            raise KeyError(f"check {self._owner!r} did not declare that it needs {name!r}")
        return self._records[name]

    def figures(self, check: Check[G]) -> G | None:
        """The typed figures of ``check``, or ``None`` when it did not produce any."""
        record = self._record(check.name)
        if record is None or record.figures is None:
            return None
        if not isinstance(record.figures, check.figures_type):
            raise TypeError(f"{check.name}: figures are {type(record.figures).__name__}")
        return record.figures

    def outcomes(self, name: str) -> tuple[RequestOutcome, ...]:
        """Every request that check ``name`` made (empty when it did not run)."""
        record = self._record(name)
        return record.outcomes if record is not None else ()


@dataclass(frozen=True, slots=True)
class Check(Generic[F]):
    """One check: ``measure`` (I/O) -> typed figures ``F`` -> ``judge`` (pure) -> verdict."""

    name: str
    title: str
    figures_type: type[F]
    measure: Callable[[Probe, Deps], Awaitable[F]]
    judge: Callable[[F, VerifyConfig], Judgement]
    needs: tuple[str, ...] = ()

    def result(self, figures: F, config: VerifyConfig, duration_s: float) -> CheckResult:
        """The report entry for measured figures: judged here, timed by the caller."""
        judgement = self.judge(figures, config)
        return CheckResult(
            name=self.name,
            title=self.title,
            verdict=judgement.verdict,
            reason=judgement.reason,
            summary=judgement.summary,
            figures=figures.model_dump(mode="json"),
            duration_s=duration_s,
        )

    def figures_in(self, report: VerifyReport) -> F | None:
        """This check's typed figures read back from a report (also one loaded from JSON)."""
        return report.figures(self.name, self.figures_type)


def check_order_problems(checks: tuple[Check[Any], ...]) -> list[str]:
    """Names unknown or declared after their dependant, duplicate names: pure (the runner refuses them)."""
    problems: list[str] = []
    seen: set[str] = set()
    for check in checks:
        if check.name in seen:
            problems.append(f"duplicate check name {check.name!r}")
        for need in check.needs:
            if need not in seen:
                problems.append(f"{check.name!r} needs {need!r}, which does not run before it")
        seen.add(check.name)
    return problems
