"""What the server says about itself: served model and length, version, metrics, tokenizer.

``/v1/models`` gives the served name and ``max_model_len``; ``/version`` the vLLM version; ``/metrics`` the
exposition the capacity and prefix checks read; ``/tokenize`` sizes prompts in the model's own tokens (a
character estimate stands in when a gateway hides it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kvstack.bench.client import EndpointClient, EndpointError
from kvstack.bench.config import VerifyConfig
from kvstack.bench.prompts import estimate_tokens
from kvstack.bench.report import ServerInfo


async def discover(client: EndpointClient, config: VerifyConfig) -> ServerInfo:
    """Raises ``EndpointError`` when the models list cannot be read or lacks the wanted model."""
    body = await client.get_json("/v1/models")
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or not data:
        raise EndpointError(f"{client.url('/v1/models')}: no model served (answer: {str(body)[:200]})")
    entries = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    names = [str(m["id"]) for m in entries]
    if config.model is not None:
        chosen = next((m for m in entries if m["id"] == config.model), None)
        if chosen is None:
            raise EndpointError(f"model {config.model!r} is not served; /v1/models lists {names}")
    else:
        chosen = entries[0]
    max_len = chosen.get("max_model_len")
    version: str | None = None
    try:
        status, ver = await client.request_json("GET", "/version")
        if status == 200 and isinstance(ver, dict) and isinstance(ver.get("version"), str):
            version = ver["version"]
    except EndpointError:
        version = None
    info = ServerInfo(
        endpoint=client.base_url,
        model=str(chosen["id"]),
        models=names,
        max_model_len=max_len if isinstance(max_len, int) else None,
        root=chosen.get("root") if isinstance(chosen.get("root"), str) else None,
        version=version,
    )
    info.tokenizer_endpoint = await count_tokens(client, info.model, "hello world") is not None
    return info


async def fetch_metrics(client: EndpointClient, config: VerifyConfig) -> tuple[str | None, str | None]:
    """(exposition text, None) or (None, why it could not be read). Never raises."""
    try:
        return await client.get_text(config.resolved_metrics_url), None
    except EndpointError as exc:
        return None, str(exc)


async def count_tokens(client: EndpointClient, model: str, text: str) -> int | None:
    """Token count by the server's ``/tokenize``; ``None`` when the endpoint is missing or refuses."""
    try:
        status, body = await client.request_json("POST", "/tokenize", {"model": model, "prompt": text})
    except EndpointError:
        return None
    if status != 200 or not isinstance(body, dict):
        return None
    count: Any = body.get("count")
    if isinstance(count, int):
        return count
    tokens = body.get("tokens")
    return len(tokens) if isinstance(tokens, list) else None


async def fit_units(
    client: EndpointClient,
    model: str,
    build: Callable[[int], str],
    target_tokens: int,
    use_tokenizer: bool,
) -> tuple[int, int]:
    """How many units of ``build`` make about ``target_tokens`` tokens: (units, tokens of that text).

    Two measurements fit overhead + per-unit cost, then up to two corrections land within 5%.
    """

    async def measure(units: int) -> int:
        text = build(units)
        if use_tokenizer:
            n = await count_tokens(client, model, text)
            if n is not None:
                return n
        return estimate_tokens(text)

    small, large = 2, 8
    t_small = await measure(small)
    t_large = await measure(large)
    per_unit = max((t_large - t_small) / (large - small), 1.0)
    overhead = max(t_small - per_unit * small, 0.0)
    units = max(1, round((target_tokens - overhead) / per_unit))
    tokens = await measure(units)
    for _ in range(2):
        if abs(tokens - target_tokens) <= max(2, 0.05 * target_tokens):
            break
        units = max(1, units + round((target_tokens - tokens) / per_unit))
        tokens = await measure(units)
    return units, tokens
