"""The one typed configuration of ``kvstack verify``: thresholds, workload sizes, timeouts.

A YAML file (``bench/verify.example.yaml``) and the command-line flags fill the same strict model; flags
win over the file. Every field has bounds, unknown keys are rejected, and a validation error names the
field and the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from kvstack.contract.metrics import PREFIX_CACHE_HITS
from kvstack.errors import ConfigError  # the project's one config error

CONFIG_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Strict):
    """Pass marks. Defaults are the issue's minimum bar."""

    min_block_size: int = Field(default=8, ge=1, description="PagedAttention block size, tokens")
    min_max_concurrency: float = Field(
        default=4.0, gt=0, description="requests of the full served context length that fit in the KV cache"
    )
    min_batching_speedup: float = Field(
        default=1.3, gt=0, description="all-at-once vs one-at-a-time output tok/s"
    )
    min_batching_throughput: float = Field(default=50.0, ge=0, description="all-at-once output tokens/s")
    min_prefix_speedup: float = Field(default=1.05, gt=0, description="median cold TTFT / median warm TTFT")
    min_prefix_hit_fraction: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=f"share of the expected cached tokens that {PREFIX_CACHE_HITS} must report",
    )
    max_errors: int = Field(default=0, ge=0, description="failed requests tolerated over the whole run")
    max_ttft_p99_ms: float | None = Field(default=None, gt=0)
    max_tpot_p99_ms: float | None = Field(default=None, gt=0)
    max_itl_p99_ms: float | None = Field(default=None, gt=0)
    max_e2e_p99_ms: float | None = Field(default=None, gt=0)


class ExpectedCapacity(_Strict):
    """What the deployment should have allocated (e.g. from the stack outputs).

    Omitted fields are not compared."""

    block_size: int | None = Field(default=None, ge=1)
    num_blocks: int | None = Field(default=None, ge=1)
    kv_tokens: int | None = Field(default=None, ge=1)
    max_concurrency: float | None = Field(default=None, gt=0)
    max_model_len: int | None = Field(default=None, ge=1)
    tolerance: float = Field(default=0.05, ge=0, lt=1, description="relative shortfall tolerated")


class EngineWorkload(_Strict):
    prompt: str = Field(default="The capital of France is", min_length=1)
    chat_prompt: str = Field(default="Name three colours of the rainbow.", min_length=1)
    max_tokens: int = Field(default=16, ge=2, le=4096)
    # sampled with a fixed seed: a greedy decode of random (dummy) weights can repeat one token forever
    temperature: float = Field(default=0.7, ge=0, le=2)
    seed: int = 1234
    chat: bool = Field(
        default=True, description="also check /v1/chat/completions when the model has a chat template"
    )


class BatchingWorkload(_Strict):
    prompts: int = Field(
        default=16, ge=16, le=4096, description="distinct prompts, sent one at a time then all at once"
    )
    prompt_tokens: int = Field(default=48, ge=8, le=100_000)
    output_tokens: int = Field(default=32, ge=2, le=100_000)


class PhaseSizing(_Strict):
    """How long every load phase (the batching phases and each sweep level) runs: until it has lasted
    ``min_duration_s`` AND completed at least its request floor (``min_requests``, and for a phase of a
    fixed size, that size). Requests keep their concurrency until then (closed loop)."""

    min_duration_s: float = Field(
        default=4.0, ge=0, le=3600, description="every load phase lasts at least this long, seconds"
    )
    min_requests: int = Field(
        default=4, ge=1, le=1_000_000, description="every load phase completes at least this many requests"
    )


class SweepWorkload(_Strict):
    max_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="cap of the 1, 2, 4, ... levels; default: from the target "
        "(KV max concurrency, max_num_seqs)",
    )
    max_num_seqs: int | None = Field(
        default=None,
        ge=1,
        le=65_536,
        description="the server's --max-num-seqs (stack outputs slo.max_num_seqs)",
    )
    fallback_max_concurrency: int = Field(
        default=16, ge=1, le=4096, description="upper bound when the target says nothing (no /metrics)"
    )
    levels: list[int] | None = Field(default=None, description="explicit levels instead of powers of two")
    rounds: int = Field(default=1, ge=1, le=100, description="each level completes at least rounds x level")
    prompt_tokens: int = Field(default=48, ge=8, le=100_000)
    output_tokens: int = Field(default=16, ge=2, le=100_000)
    saturation_gain: float = Field(
        default=0.10,
        ge=0,
        le=10,
        description="stop when a step up in concurrency gains less output tok/s than this share "
        "while median TTFT grows",
    )

    @field_validator("levels")
    @classmethod
    def _levels_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(level < 1 for level in v)):
            raise ValueError("levels must be a non-empty list of positive integers")
        return v

    def resolved_levels(self, bound: int | None = None, floor: int | None = None) -> list[int]:
        """The levels to try, in order: the explicit ones, else 1, 2, 4, ... up to ``bound`` (default:
        ``max_concurrency``, else the fallback), with the bound itself and ``floor`` (when within it)."""
        if self.levels is not None:
            return sorted(set(self.levels))
        top = bound or self.max_concurrency or self.fallback_max_concurrency
        levels: set[int] = {top}
        c = 1
        while c < top:
            levels.add(c)
            c *= 2
        if floor is not None and floor < top:
            levels.add(floor)
        return sorted(levels)


class Slo(_Strict):
    """Service-level objectives (stack outputs ``slo``, or flags). A request meets them when its TTFT <=
    ``ttft_ms`` and its mean inter-token latency (TPOT) <= ``itl_ms``, as ``vllm bench serve --goodput``
    defines it; a sweep level meets them when at least ``min_fraction`` of its requests do."""

    ttft_ms: float | None = Field(default=None, gt=0, description="time-to-first-token objective, ms")
    itl_ms: float | None = Field(default=None, gt=0, description="mean inter-token latency objective, ms")
    min_fraction: float = Field(
        default=0.9, gt=0, le=1, description="share of a level's requests that must meet every objective"
    )
    min_goodput_concurrency: int | None = Field(
        default=None, ge=1, description="the capacity check passes when this concurrency meets the SLO"
    )

    @property
    def given(self) -> bool:
        return self.ttft_ms is not None or self.itl_ms is not None


class UseCase(_Strict):
    name: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    title: str = Field(min_length=1)
    prefix_tokens: int = Field(ge=50, le=1_000_000)


DEFAULT_USE_CASES: tuple[UseCase, ...] = (
    UseCase(name="system_prompt", title="system prompt shared by every request", prefix_tokens=200),
    UseCase(name="few_shot", title="few-shot examples before each question", prefix_tokens=500),
    UseCase(name="rag_context", title="RAG context reused by follow-up questions", prefix_tokens=1000),
    UseCase(name="multi_turn_chat", title="multi-turn chat history resent every turn", prefix_tokens=1500),
)


class PrefixWorkload(_Strict):
    pairs: int = Field(
        default=5, ge=3, le=1000, description="cold/warm pairs, each on a prefix never sent before"
    )
    prefix_tokens: int = Field(default=500, ge=50, le=1_000_000)
    suffix_tokens: int = Field(default=16, ge=1, le=10_000)
    output_tokens: int = Field(default=1, ge=1, le=1000)
    use_cases: list[UseCase] = Field(default_factory=lambda: list(DEFAULT_USE_CASES))
    use_case_pairs: int = Field(default=3, ge=1, le=1000)


class FleetSources(_Strict):
    """Where the counters of each engine behind the endpoint are read, when the endpoint is a fleet (a
    router or a multi-replica Service answers from one engine at a time). Give one of the two."""

    engine_metrics_urls: list[str] = Field(
        default_factory=list, description="each engine's own /metrics URL (local fleet, port-forwards)"
    )
    prometheus_url: str | None = Field(default=None, description="the Prometheus that scrapes the engines")
    prometheus_selector: str = Field(
        default="", description='label matchers of the engines\' series, e.g. namespace="llm",job="vllm"'
    )
    prometheus_group_by: str = Field(
        default="pod", min_length=1, description="the label that names an engine"
    )

    @field_validator("engine_metrics_urls")
    @classmethod
    def _urls(cls, v: list[str]) -> list[str]:
        bad = [u for u in v if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"must be http:// or https:// URLs, got {bad}")
        return [u.rstrip("/") for u in v]

    @property
    def given(self) -> bool:
        return bool(self.engine_metrics_urls) or self.prometheus_url is not None


class RoutingCheck(_Strict):
    """The routing check: multi-turn sessions through the endpoint, judged on the fleet's counters."""

    sessions: int = Field(default=16, ge=2, le=10_000, description="concurrent multi-turn sessions")
    turns: int = Field(default=4, ge=2, le=100, description="turns per session")
    context_units: int = Field(
        default=20, ge=1, le=10_000, description="each session's own context (~22 tok a unit)"
    )
    shared_requests: int = Field(
        default=4, ge=0, le=10_000, description="one-off system-prompt questions mixed into each turn"
    )
    output_tokens: int = Field(default=16, ge=1, le=4096)
    session_ids: bool = Field(
        default=True,
        description="send each session's id (X-Session-ID header, OpenAI `user` field), as chat frontends do",
    )
    min_efficiency: float = Field(
        default=0.9, gt=0, le=1, description="pass mark: fleet prefix-hit ratio / reusable share"
    )
    min_engine_share_of_fair: float = Field(
        default=0.5, ge=0, le=1, description="every engine serves at least this x 1/N of the requests"
    )
    max_later_turn_ttft_ratio: float | None = Field(
        default=None, gt=0, description="optional pass mark: median TTFT of later turns / first turns"
    )


class OpenLoopWorkload(_Strict):
    """Open-loop phases: requests sent on a seeded Poisson (gamma) schedule at each rate, whatever is in
    flight (``bench.arrivals``). No rates: the open-loop check is skipped."""

    rates: list[float] = Field(default_factory=list, description="requests/s, one phase per rate")
    burstiness: float = Field(
        default=1.0, gt=0, description="gamma shape of the gaps: 1 Poisson, < 1 burstier, > 1 more even"
    )
    max_requests: int = Field(default=16, ge=1, le=100_000, description="requests per rate at most")
    max_duration_s: float | None = Field(
        default=30.0, gt=0, description="schedule length per rate at most: requests = min(max, rate x this)"
    )
    prompt_tokens: int = Field(default=48, ge=8, le=100_000)
    output_tokens: int = Field(default=16, ge=2, le=100_000)

    @field_validator("rates")
    @classmethod
    def _rates_positive(cls, v: list[float]) -> list[float]:
        if any(not rate > 0 or rate == float("inf") for rate in v):
            raise ValueError("rates must be finite numbers > 0 (requests/s)")
        return sorted(set(v))


class BaselineSettings(_Strict):
    """The regression gate against a previous report of the same workload (``bench.baseline``)."""

    report: Path | None = Field(default=None, description="a previous verify-report.json; None: no gate")
    floor: float = Field(
        default=0.10, ge=0, lt=1, description="smallest relative regression that fails, whatever the noise"
    )
    latency_floor: float = Field(
        default=0.20,
        ge=0,
        lt=1,
        description="the same for the TTFT/TPOT percentiles, which vary more between identical runs",
    )
    confidence: float = Field(
        default=0.95, gt=0, lt=1, description="confidence of the intervals that measure the run's noise"
    )
    resamples: int = Field(
        default=1000, ge=100, le=100_000, description="bootstrap resamples (throughput, prefix speedup)"
    )


class Timeouts(_Strict):
    connect_s: float = Field(default=10.0, gt=0, description="TCP connect")
    read_s: float = Field(
        default=60.0, gt=0, description="longest silence while waiting for bytes of a response"
    )
    request_s: float = Field(default=300.0, gt=0, description="one request end to end")
    probe_s: float = Field(
        default=15.0, gt=0, description="each of /v1/models, /version, /metrics, /tokenize"
    )
    run_s: float = Field(
        default=1800.0, gt=0, description="the whole run; past it the run is abandoned (exit 2)"
    )


class ClientSettings(_Strict):
    max_connections: int | None = Field(
        default=None, ge=1, description="connection pool size; default: the largest concurrency used + 8"
    )
    parse_every_event: bool = Field(
        default=False, description="decode every SSE event's JSON (slower client)"
    )
    abort_after_consecutive_failures: int = Field(
        default=3, ge=1, description="consecutive failed requests after which the endpoint is declared down"
    )
    trust_env: bool = Field(default=True, description="honour HTTP(S)_PROXY / NO_PROXY from the environment")


class VerifyConfig(_Strict):
    """Everything one ``kvstack verify`` run needs. Written in full into every report."""

    version: Literal[1] = 1
    endpoint: str = Field(min_length=1, description="base URL of the vLLM server, e.g. http://host:8000")
    api_key: SecretStr | None = None
    model: str | None = Field(default=None, description="served model name; default: the first of /v1/models")
    metrics_url: str | None = Field(default=None, description="default: <endpoint>/metrics")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    expected_capacity: ExpectedCapacity | None = None
    engine: EngineWorkload = Field(default_factory=EngineWorkload)
    batching: BatchingWorkload = Field(default_factory=BatchingWorkload)
    sweep: SweepWorkload = Field(default_factory=SweepWorkload)
    phases: PhaseSizing = Field(default_factory=PhaseSizing)
    slo: Slo = Field(default_factory=Slo)
    prefix: PrefixWorkload = Field(default_factory=PrefixWorkload)
    fleet: FleetSources = Field(default_factory=FleetSources)
    routing: RoutingCheck = Field(default_factory=RoutingCheck)
    open_loop: OpenLoopWorkload = Field(default_factory=OpenLoopWorkload)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    client: ClientSettings = Field(default_factory=ClientSettings)
    baseline: BaselineSettings = Field(default_factory=BaselineSettings)
    plots: bool = True
    seed: int = Field(
        default=0, description="seeds the prompt texts; nonces stay random so caches start cold"
    )

    @field_validator("endpoint", "metrics_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is None:
            return None
        v = v.strip()
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
        v = v.rstrip("/")
        return v.removesuffix("/v1")

    @property
    def resolved_metrics_url(self) -> str:
        return self.metrics_url or f"{self.endpoint}/metrics"

    def max_concurrency_used(self) -> int:
        """The largest concurrency the run may use (the sweep's bound is only known at run time: the
        explicit cap, else max_num_seqs, else 1024 connections at most); an open-loop phase may have all of
        its requests in flight."""
        sweep = self.sweep
        if sweep.levels is not None:
            top = max(sweep.levels)
        else:
            top = sweep.max_concurrency or sweep.max_num_seqs or 1024
        open_loop = self.open_loop.max_requests if self.open_loop.rates else 0  # all may be in flight
        return max(self.batching.prompts, top, open_loop)

    def connection_limit(self) -> int:
        return self.client.max_connections or self.max_concurrency_used() + 8


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err["loc"]) or "(top level)"
        lines.append(f"{source}: {loc}: {err['msg']}")
    return "\n".join(lines)


def _read_mapping(path: Path, expected: str) -> dict[str, Any]:
    """A YAML (hence also JSON) file whose top level is a mapping; errors name the file."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"{path}: not valid {expected}: {problem}{at}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    return raw


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML config file into a dict (not yet validated)."""
    return _read_mapping(path, "YAML")


def build_config(
    file_data: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    source: str = "config",
) -> VerifyConfig:
    """Validate file data with flag overrides applied on top. Raises ``ConfigError`` naming each bad field."""
    data = deep_merge(file_data or {}, overrides or {})
    try:
        return VerifyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from exc


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> VerifyConfig:
    """The config from an optional YAML file plus flag overrides."""
    file_data = read_config_file(path) if path is not None else {}
    return build_config(file_data, overrides, source=str(path) if path is not None else "flags")


def from_stack_outputs(outputs: dict[str, Any], source: str = "stack outputs") -> dict[str, Any]:
    """Config values implied by the infra's stack outputs (``pulumi stack output --json``, or
    ``kvstack render --outputs FILE``): the served model, the planned KV capacity to compare against,
    and the stack's concurrency floor. The endpoint is taken only as a default (an in-cluster URL is
    often not reachable from the CD runner: pass --endpoint then). ``slo`` gives the TTFT and ITL
    objectives, the concurrency floor of the capacity check and the server's ``max_num_seqs``."""
    tree: dict[str, Any] = {}
    if isinstance(outputs.get("endpoint"), str):
        tree["endpoint"] = outputs["endpoint"]
    if isinstance(outputs.get("served_model_name"), str):
        tree["model"] = outputs["served_model_name"]
    capacity = outputs.get("capacity")
    if capacity is not None:
        if not isinstance(capacity, dict):
            raise ConfigError(f"{source}: 'capacity' must be a mapping, got {type(capacity).__name__}")
        expected = {
            "block_size": capacity.get("block_size"),
            "num_blocks": capacity.get("kv_blocks"),
            "kv_tokens": capacity.get("kv_tokens"),
            "max_model_len": capacity.get("max_model_len"),
            "max_concurrency": capacity.get("max_concurrency"),
        }
        tree["expected_capacity"] = {k: v for k, v in expected.items() if v is not None}
        if capacity.get("min_concurrency") is not None:
            tree["thresholds"] = {"min_max_concurrency": capacity["min_concurrency"]}
    slo = outputs.get("slo")
    if slo is not None:
        tree.update(_slo_tree(slo, source))
    if not tree:
        raise ConfigError(f"{source}: no endpoint, served_model_name or capacity: not kvstack stack outputs?")
    return tree


def _slo_tree(slo: object, source: str) -> dict[str, Any]:
    """Config values from the stack outputs' ``slo`` mapping (``ttft_seconds``, ``itl_seconds``,
    ``min_goodput_concurrency``, ``max_num_seqs``; each may be absent or null)."""
    if not isinstance(slo, dict):
        raise ConfigError(f"{source}: 'slo' must be a mapping, got {type(slo).__name__}")
    tree: dict[str, Any] = {}
    for key, field_name in (("ttft_seconds", "ttft_ms"), ("itl_seconds", "itl_ms")):
        value = slo.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: slo.{key} must be a number of seconds, got {value!r}")
        tree.setdefault("slo", {})[field_name] = float(value) * 1000.0
    if slo.get("min_goodput_concurrency") is not None:
        tree.setdefault("slo", {})["min_goodput_concurrency"] = slo["min_goodput_concurrency"]
    if slo.get("max_num_seqs") is not None:
        tree["sweep"] = {"max_num_seqs": slo["max_num_seqs"]}
    return tree


def read_stack_outputs(path: Path) -> dict[str, Any]:
    """Read a JSON file of stack outputs into config values (see :func:`from_stack_outputs`)."""
    raw = _read_mapping(path, "JSON (expected `pulumi stack output --json`)")
    return from_stack_outputs(raw, source=str(path))
