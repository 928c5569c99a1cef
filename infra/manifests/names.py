"""Names and labels of every object a stack creates, derived from ``kvstack:name``.

Also the router tier's object names, scrape job, metrics port and path. The router's series are not
infra's: they are read from vllm-router and catalogued in the contract layer (``kvstack.contract.router``).
"""

from __future__ import annotations

from dataclasses import dataclass

from kvstack.infra.config import StackConfig

CONTAINER = "vllm"
PORT_NAME = "http"
PART_OF = "kvstack"
COMPONENT = "inference-server"

ROUTER_CONTAINER = "router"
ROUTER_COMPONENT = "router"
ROUTER_APP = "vllm-router"
ROUTER_METRICS_PORT_NAME = "metrics"
ROUTER_METRICS_PATH = "/metrics"
ROUTER_LIVENESS_PATH = "/liveness"  # 200 while the process runs
ROUTER_READINESS_PATH = "/readiness"  # 503 until the router knows a healthy engine


class NameTooLongError(ValueError):
    """A derived Kubernetes name would exceed 63 characters."""


def _checked(value: str) -> str:
    if len(value) > 63:
        raise NameTooLongError(
            f"derived name {value!r} is {len(value)} characters (max 63); shorten kvstack:name"
        )
    return value


@dataclass(frozen=True)
class Names:
    """Kubernetes object names (``metadata.name``) of one stack."""

    base: str

    @property
    def deployment(self) -> str:
        return self.base

    @property
    def service(self) -> str:
        return self.base

    @property
    def pod_disruption_budget(self) -> str:
        return self.base

    @property
    def network_policy(self) -> str:
        return self.base

    @property
    def service_monitor(self) -> str:
        return self.base

    @property
    def pod_monitor(self) -> str:
        return self.base

    @property
    def prometheus_rule(self) -> str:
        return _checked(f"{self.base}-rules")

    @property
    def autoscaler(self) -> str:
        return self.base

    @property
    def model_cache_claim(self) -> str:
        return _checked(f"{self.base}-model-cache")

    @property
    def hf_token_secret(self) -> str:
        return _checked(f"{self.base}-hf-token")

    @property
    def api_key_secret(self) -> str:
        return _checked(f"{self.base}-api-key")

    @property
    def adapter_configmap(self) -> str:
        return _checked(f"{self.base}-adapter-rules")

    @property
    def router(self) -> str:
        """Name of every router-tier object (Deployment, Service, PDB, RBAC, NetworkPolicy, monitor)."""
        return _checked(f"{self.base}-router")

    def dashboard_configmap(self, file_name: str) -> str:
        stem = file_name.removesuffix(".json").removeprefix("kvstack-")
        return _checked(f"{self.base}-dashboard-{stem}")


def names_of(config: StackConfig) -> Names:
    return Names(config.name)


def selector_labels(config: StackConfig) -> dict[str, str]:
    """The immutable subset used by selectors (Deployment, Service, PDB, NetworkPolicy, monitors)."""
    return {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": config.name}


def common_labels(config: StackConfig) -> dict[str, str]:
    """Recommended app.kubernetes.io labels on every object."""
    labels = {
        **selector_labels(config),
        "app.kubernetes.io/component": COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }
    version = config.image.tag or (config.image.digest or "")[7:19]
    if version:
        labels["app.kubernetes.io/version"] = version[:63]
    return labels


def router_selector_labels(config: StackConfig) -> dict[str, str]:
    """The router pods' selector: disjoint from :func:`selector_labels`, so the engine's Service, PDB,
    NetworkPolicy and monitors never pick router pods, and the router never discovers itself."""
    return {"app.kubernetes.io/name": ROUTER_APP, "app.kubernetes.io/instance": config.name}


def router_labels(config: StackConfig) -> dict[str, str]:
    """Recommended labels on every router-tier object."""
    labels = {
        **router_selector_labels(config),
        "app.kubernetes.io/component": ROUTER_COMPONENT,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": "pulumi",
    }
    image = config.router.image
    version = (image.tag or (image.digest or "")[7:19]) if image else ""
    if version:
        labels["app.kubernetes.io/version"] = version[:63]
    return labels


def router_scrape_job(config: StackConfig) -> str:
    """The ``job`` label Prometheus gives the router targets (as for the engine's, by scrape kind)."""
    name = names_of(config).router
    return name if config.monitoring.scrape == "service_monitor" else f"{config.namespace}/{name}"
