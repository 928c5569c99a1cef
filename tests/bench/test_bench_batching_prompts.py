"""Load prompts: every one starts with its own nonce, so no two share a cacheable first block."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from kvstack.bench.checks.batching import _requests
from kvstack.bench.checks.pipeline import Probe
from kvstack.bench.prompts import distinct_prompt

BLOCK = 16


def fake_ctx() -> Probe:
    return cast(Probe, SimpleNamespace(model="m", config=SimpleNamespace(seed=0)))


def first_block(prompt: str) -> tuple[str, ...]:
    return tuple(prompt.split()[:BLOCK])  # words stand for tokens, as in the fake server


def test_prompts_of_a_phase_and_of_two_phases_share_no_first_block() -> None:
    ctx = fake_ctx()
    prompts = [
        str(r.payload["prompt"])
        for phase in ("batching_sequential", "batching_concurrent", "sweep_c4")
        for r in _requests(ctx, phase, 16, 4, 8)
    ]
    assert len(prompts) == 48
    assert len({first_block(p) for p in prompts}) == 48
    assert len({p.split("\n", 1)[0] for p in prompts}) == 48  # the nonce lines alone all differ
    assert all(p.startswith("[request ") for p in prompts)


def test_the_opening_after_the_nonce_is_shared() -> None:
    """Why a nonce per prompt is needed: the same nonce would make the first block identical."""
    a, b = distinct_prompt(0, 4, 0, "abc"), distinct_prompt(1, 4, 0, "abc")
    assert a != b
    assert a.split()[:6] == b.split()[:6]
