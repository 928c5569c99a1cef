"""Value types of the systems kvstack talks to: Kubernetes names and Prometheus durations.

Each is a pattern (for error messages and non-pydantic callers), a pydantic-compatible annotated type for
models, and a sentence saying what a valid value looks like (``PATTERN_HELP``, keyed by pattern, so that a
pydantic ``string_pattern_mismatch`` error can be translated into it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import StringConstraints

DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
"""An RFC 1035 label: what Kubernetes requires of a Service's name and accepts for every other object
kvstack names (namespaces, Deployments, ...); the RFC 1123 labels that may start with a digit are
refused so that one name fits every kind of object."""
DNS_LABEL_MAX_LENGTH = 63

DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
"""An RFC 1123 subdomain: names of ConfigMaps, Secrets, PriorityClasses, ..."""
DNS_SUBDOMAIN_MAX_LENGTH = 253

PROMETHEUS_DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
"""A Prometheus duration: one or more <number><unit>, units ms s m h d w y (``5m``, ``1h30m``)."""

DnsLabel = Annotated[str, StringConstraints(pattern=DNS_LABEL_PATTERN, max_length=DNS_LABEL_MAX_LENGTH)]
DnsSubdomain = Annotated[
    str, StringConstraints(pattern=DNS_SUBDOMAIN_PATTERN, max_length=DNS_SUBDOMAIN_MAX_LENGTH)
]
PrometheusDuration = Annotated[str, StringConstraints(pattern=PROMETHEUS_DURATION_PATTERN)]

PATTERN_HELP: Mapping[str, str] = {
    DNS_LABEL_PATTERN: "must be a Kubernetes name: lowercase letters, digits and '-', starting with a letter",
    DNS_SUBDOMAIN_PATTERN: "must be a Kubernetes name: lowercase letters, digits, '-' and '.'",
    PROMETHEUS_DURATION_PATTERN: "must be a duration such as 30s, 5m or 1h30m",
}


def is_dns_label(value: str) -> bool:
    """Whether ``value`` is a :data:`DnsLabel` (for callers that validate plain arguments)."""
    return len(value) <= DNS_LABEL_MAX_LENGTH and re.fullmatch(DNS_LABEL_PATTERN, value) is not None
