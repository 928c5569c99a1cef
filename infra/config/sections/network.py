"""``kvstack:network``: who may reach the API port (a NetworkPolicy)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from kvstack.infra.config.errors import cross_check_error
from kvstack.infra.config.types import Cidr, LabelMap, Strict


class NetworkPeer(Strict):
    """One allowed source of traffic to the API port (fields combine as in a NetworkPolicy peer).

    An empty label map selects everything (``namespace_labels: {}`` is every namespace of the cluster),
    so a peer must say what it admits: non-empty label maps, or a cidr.
    """

    namespace_labels: LabelMap | None = None
    pod_labels: LabelMap | None = None
    cidr: Cidr | None = None
    except_cidrs: list[Cidr] = Field(default_factory=list)

    @model_validator(mode="after")
    def _says_what_it_opens(self) -> NetworkPeer:
        problems: list[tuple[tuple[str | int, ...], str, object]] = []
        if self.cidr is not None and (self.namespace_labels is not None or self.pod_labels is not None):
            problems.append((("cidr",), "a peer is either a cidr or label selectors, not both", self.cidr))
        if self.cidr is None and self.namespace_labels is None and self.pod_labels is None:
            problems.append(
                ((), "set cidr, namespace_labels or pod_labels (an empty peer would allow everyone)", None)
            )
        if self.namespace_labels == {}:
            problems.append(
                (
                    ("namespace_labels",),
                    "an empty selector admits every namespace of the cluster; name the clients' namespace "
                    "label (e.g. {kubernetes.io/metadata.name: apps}) or leave the field out",
                    None,
                )
            )
        if self.except_cidrs and self.cidr is None:
            problems.append((("except_cidrs",), "needs cidr", None))
        if self.cidr is not None:
            network = ipaddress.ip_network(self.cidr)
            if network.prefixlen == 0:
                problems.append(
                    (
                        ("cidr",),
                        f"{self.cidr} admits every address; name the clients' network",
                        self.cidr,
                    )
                )
            for j, text in enumerate(self.except_cidrs):
                inner = ipaddress.ip_network(text)
                if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
                    problems.append((("except_cidrs", j), f"{text} is not inside cidr {self.cidr}", text))
        if problems:
            raise cross_check_error("NetworkPeer", problems)
        return self


class NetworkSpec(Strict):
    """Who may reach the API port."""

    enabled: bool = True
    allowed_sources: list[NetworkPeer] = Field(
        default_factory=list, description="empty: only pods in the stack's namespace (and Prometheus)"
    )
    allow_prometheus: bool = True
