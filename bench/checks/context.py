"""What every check gets: the config, the client, what discovery learned, where to show progress."""

from __future__ import annotations

from dataclasses import dataclass, field

from kvstack.bench.capacity import KvCapacity
from kvstack.bench.client import EndpointClient, RequestOutcome
from kvstack.bench.config import VerifyConfig
from kvstack.bench.console import Display
from kvstack.bench.report import ServerInfo


@dataclass(slots=True)
class RunContext:
    config: VerifyConfig
    client: EndpointClient
    server: ServerInfo
    display: Display
    metrics_text: str | None = None
    metrics_error: str | None = None
    capacity: KvCapacity | None = None
    outcomes: list[RequestOutcome] = field(default_factory=list)  # every streamed request of the run
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.server.model
