"""Value types of the stack config: Kubernetes names and quantities, Prometheus durations, label maps.

Every type carries its rule (a pattern, a bound, a validator), so a section only names the type.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from kvstack.contract import types as contract

# the value types every system agrees on come from the contract layer
DNS_LABEL = contract.DNS_LABEL_PATTERN
DNS_SUBDOMAIN = contract.DNS_SUBDOMAIN_PATTERN
DURATION = contract.PROMETHEUS_DURATION_PATTERN
K8sName = contract.DnsLabel
SubdomainName = contract.DnsSubdomain
Duration = contract.PrometheusDuration

# Kubernetes values the contract layer does not define (it holds only the names read from other systems)
QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$"
# <prefix>/<name>, e.g. nvidia.com/gpu, amd.com/gpu, nvidia.com/mig-1g.10gb
EXTENDED_RESOURCE = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
# a label key: optional DNS-subdomain prefix, then a name of 1-63 characters
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# a label value: empty, or 1-63 of letters, digits, '-', '_', '.', starting and ending alphanumeric
LABEL_VALUE = r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$"

PATTERN_HELP = {
    **contract.PATTERN_HELP,
    QUANTITY: "must be a Kubernetes quantity such as 100Gi, 512Mi or 4",
    EXTENDED_RESOURCE: "must be an extended resource name such as nvidia.com/gpu or amd.com/gpu",
    LABEL_KEY: "must be a label key such as app.kubernetes.io/name or team (no spaces)",
    LABEL_VALUE: "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and "
    "ending with a letter or digit (no spaces)",
}

Quantity = Annotated[str, StringConstraints(pattern=QUANTITY)]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY, max_length=316)]
LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=63)]
LabelMap = dict[LabelKey, LabelValue]
AnnotationMap = dict[LabelKey, str]


def _network(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(
            f"{value!r} is not a network in CIDR notation ({exc}); write e.g. 10.0.0.0/8 or 2001:db8::/32, "
            "with the host bits zero"
        ) from None
    return value


Cidr = Annotated[str, AfterValidator(_network)]

_QUANTITY_UNITS = {
    "": 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def quantity_value(text: str) -> float:
    """A Kubernetes quantity (``64Gi``, ``500m``, ``4``) as a number (bytes, cores)."""
    match = re.fullmatch(QUANTITY.strip("^$"), text)
    if match is None:
        raise ValueError(f"not a quantity: {text!r}")
    number = re.match(r"[0-9]+(\.[0-9]+)?", text)
    assert number is not None
    return float(number.group(0)) * _QUANTITY_UNITS[text[number.end() :]]


def duration_seconds(value: str) -> float:
    """Prometheus duration (``1h30m``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800, "y": 31_536_000}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", value))


class Strict(BaseModel):
    """Base of every config section: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
