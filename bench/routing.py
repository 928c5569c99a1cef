"""The routing check: does the fleet keep each conversation where its prefix is cached?

Workload: ``sessions`` multi-turn conversations of ``turns`` turns each. Every prompt starts with one
system prompt shared by the whole fleet, then the session's own context (a fresh nonce, so nothing of it
was cached before), then the history so far, then the new question. Turns advance in lockstep: turn t
of every session is sent together, in a seeded shuffled order, mixed with ``shared_requests`` one-off
questions that share only the system prompt (the traffic a conversation competes with). A router that
keeps a session on the engine that served its previous turn finds the whole history cached; one that
spreads turns (round robin, a plain Service) finds it about 1/N of the time.

Figures, from the fleet's counters (``kvstack.bench.fleet``) over the phase:
- the fleet's prefix-hit ratio (hit tokens / queried tokens, summed over engines);
- the reusable share: of the prompt tokens sent, how many an ideal router could have served from cache,
  computed per request at the engine's block size (turn t can reuse the previous turn's prompt, rounded
  down to whole blocks, less the last token; a first turn or a one-off question the system prompt's
  whole blocks);
- routing efficiency = hit ratio / reusable share (1.0: every reusable token was a hit);
- median TTFT by turn (later turns should be faster than first turns when their history is cached);
- each engine's share of the requests (a router that sends everything to one engine is not balancing).

``judge_routing`` is pure: figures and thresholds in, a verdict out.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from kvstack.bench.client import EndpointClient, EndpointError, RequestOutcome
from kvstack.bench.figures import RoutingFigures, TurnFigures
from kvstack.bench.fleet import FleetDelta, FleetSource, fleet_delta
from kvstack.bench.load import StreamRequest, completion_payload, run_batch
from kvstack.bench.prompts import new_nonce, nonce_header, shaped_text, suffix_text
from kvstack.bench.stats import median

PHASE = "routing"
SESSION_HEADER = "X-Session-ID"


@dataclass(frozen=True, slots=True)
class RoutingWorkload:
    sessions: int = 16
    turns: int = 4
    system_units: int = 6  # units of the shared system prompt (~20 tokens a unit)
    context_units: int = 20  # units of each session's own context (~450 tokens)
    turn_units: int = 2  # units of each new question + the assistant's answer kept in the history
    shared_requests: int = 4  # one-off system-prompt-only questions mixed into each turn
    output_tokens: int = 16
    seed: int = 0
    # send each session's id as an ``X-Session-ID`` header (and the OpenAI ``user`` field), as a chat
    # frontend or gateway does; a router keyed on it (vllm-router 0.1.17's consistent_hash reads the header)
    # keeps a conversation on one engine
    session_ids: bool = True


@dataclass(frozen=True, slots=True)
class RoutingThresholds:
    min_efficiency: float = 0.9  # hit ratio / reusable share
    min_engine_share_of_fair: float = 0.5  # every engine serves >= this x 1/N of the requests
    max_later_turn_ttft_ratio: float | None = None  # median TTFT of later turns / first turns


@dataclass(frozen=True, slots=True)
class RoutingVerdict:
    passed: bool
    summary: str
    failures: tuple[str, ...]


def whole_blocks(tokens: int, block_size: int) -> int:
    """Tokens of a prompt of ``tokens`` that a prefix cache can serve: whole blocks, never the last token."""
    if tokens <= 1 or block_size <= 0:
        return 0
    return ((tokens - 1) // block_size) * block_size


@dataclass(slots=True)
class _Session:
    index: int
    text: str  # everything before the next question
    user: str = ""  # the session's id (``user`` field)
    last_prompt_tokens: int | None = None


def _system_prompt(workload: RoutingWorkload) -> str:
    return shaped_text("system_prompt", workload.system_units, workload.seed)


def _turn_prompt(session: _Session, workload: RoutingWorkload, turn: int) -> str:
    return session.text + suffix_text(
        workload.seed * 100_003 + session.index * 101 + turn, workload.turn_units
    )


def _answer(workload: RoutingWorkload, session: _Session, turn: int) -> str:
    """The assistant's reply kept in the history (fixed text: the next prompt must start with this one)."""
    return (
        " "
        + shaped_text("notes", workload.turn_units, workload.seed * 7919 + session.index * 31 + turn)
        + "\n"
    )


async def measure_routing(
    client: EndpointClient,
    *,
    source: FleetSource,
    model: str,
    block_size: int,
    workload: RoutingWorkload,
    on_done: Callable[[RequestOutcome], None] | None = None,
) -> tuple[RoutingFigures, list[RequestOutcome]]:
    """Run the sessions through the endpoint and read the fleet's counters around them."""
    rng = random.Random(f"routing:{workload.seed}")
    system = _system_prompt(workload)

    # the system prompt's own token count (and a warm copy on the engines the router picks for it)
    warm = await run_batch(
        client,
        [StreamRequest("/v1/completions", completion_payload(model, system, 1), f"{PHASE}-warmup")] * 2,
        concurrency=1,
    )
    system_tokens = next((o.prompt_tokens for o in warm.ok if o.prompt_tokens), 0) or 0
    system_reusable = whole_blocks(system_tokens, block_size)

    sessions = [
        _Session(
            i, system + nonce_header(new_nonce()) + shaped_text("rag_context", workload.context_units, i)
        )
        for i in range(workload.sessions)
    ]
    before = await source.snapshot()
    outcomes: list[RequestOutcome] = []
    turns: list[TurnFigures] = []
    prompt_total = reusable_total = 0
    for turn in range(1, workload.turns + 1):
        requests: list[tuple[_Session | None, StreamRequest]] = []
        for session in sessions:
            payload = completion_payload(model, _turn_prompt(session, workload, turn), workload.output_tokens)
            headers = None
            if workload.session_ids:
                payload["user"] = session.user
                headers = {SESSION_HEADER: session.user}
            phase = f"{PHASE}-turn{turn}"
            requests.append((session, StreamRequest("/v1/completions", payload, phase, headers=headers)))
        for k in range(workload.shared_requests):
            prompt = system + suffix_text(rng.randrange(1 << 30) + k, workload.turn_units)
            payload = completion_payload(model, prompt, workload.output_tokens)
            requests.append((None, StreamRequest("/v1/completions", payload, f"{PHASE}-shared")))
        rng.shuffle(requests)
        batch = await run_batch(client, [r for _, r in requests], concurrency=len(requests), on_done=on_done)
        outcomes.extend(batch.outcomes)
        turn_prompt = turn_reusable = 0
        ttfts: list[float] = []
        for (s, _), out in zip(requests, batch.outcomes, strict=False):
            if not out.ok or not out.prompt_tokens:
                continue
            if s is None:
                reusable = system_reusable
            else:
                ttfts.append(out.ttft or 0.0)
                previous = s.last_prompt_tokens
                reusable = whole_blocks(previous, block_size) if previous is not None else system_reusable
                s.last_prompt_tokens = out.prompt_tokens
            turn_prompt += out.prompt_tokens
            turn_reusable += min(reusable, whole_blocks(out.prompt_tokens, block_size))
        for session in sessions:
            session.text = _turn_prompt(session, workload, turn) + _answer(workload, session, turn)
        turns.append(
            TurnFigures(
                turn=turn,
                requests=len(ttfts),
                ttft_median_ms=median(ttfts) * 1000 if ttfts else None,
                prompt_tokens=turn_prompt,
                reusable_tokens=turn_reusable,
            )
        )
        prompt_total += turn_prompt
        reusable_total += turn_reusable
    await source.settle(time.time())
    after = await source.snapshot()
    delta: FleetDelta = fleet_delta(before, after)
    ok = [o for o in outcomes if o.ok]
    if not ok:
        raise EndpointError("every request of the routing phase failed", outcomes)
    figures = RoutingFigures(
        source=source.description,
        engines=len(delta.engines),
        requests_ok=len(ok),
        requests_failed=len(outcomes) - len(ok),
        prompt_tokens=prompt_total,
        reusable_tokens=reusable_total,
        hit_tokens=delta.prefix_hits,
        queried_tokens=delta.prefix_queries,
        block_size=block_size,
        turns=tuple(turns),
        engine_shares=delta.request_shares(),
        restarted_engines=delta.restarted,
    )
    return figures, outcomes


def judge_routing(figures: RoutingFigures, thresholds: RoutingThresholds) -> RoutingVerdict:
    """Pass when the fleet reused enough of what could be reused, and every engine took its share."""
    failures: list[str] = []
    efficiency = figures.efficiency
    if figures.restarted_engines:
        failures.append(f"engine(s) restarted during the phase: {', '.join(figures.restarted_engines)}")
    if figures.requests_failed:
        failures.append(f"{figures.requests_failed} request(s) failed")
    if efficiency is None:
        failures.append("no prefix-cache counters moved: cannot judge routing")
    elif efficiency < thresholds.min_efficiency:
        failures.append(
            f"routing efficiency {efficiency:.2f} < {thresholds.min_efficiency:.2f} "
            f"(fleet hit ratio {figures.hit_ratio or 0:.2f} "
            f"of a reusable share {figures.reusable_share or 0:.2f})"
        )
    if figures.engines >= 2:
        fair = 1.0 / figures.engines
        floor = thresholds.min_engine_share_of_fair * fair
        starved = {name: share for name, share in figures.engine_shares.items() if share < floor}
        for name, share in sorted(starved.items()):
            failures.append(f"engine {name} served {share:.0%} of the requests (< {floor:.0%})")
    later = figures.later_turn_ttft_ratio
    limit = thresholds.max_later_turn_ttft_ratio
    if limit is not None and later is not None and later > limit:
        failures.append(f"later turns' median TTFT is {later:.2f}x the first turn's (> {limit:.2f}x)")
    shares = ", ".join(f"{share:.0%}" for share in figures.engine_shares.values())
    summary = (
        f"{figures.engines} engine(s); fleet prefix-hit ratio {figures.hit_ratio or 0:.2f} of a reusable "
        f"{figures.reusable_share or 0:.2f} -> efficiency {efficiency or 0:.2f}; "
        f"later/first-turn TTFT {later or 0:.2f}x; request shares {shares}"
    )
    return RoutingVerdict(passed=not failures, summary=summary, failures=tuple(failures))
