"""Which vLLM releases serve the render routes vllm-router's cache_aware reads, and with which flag."""

from __future__ import annotations

import pytest

from kvstack.contract.scale_out import (
    SCALE_OUT_FLAG,
    needs_scale_out_flag,
    policy_needs_render,
    release_version,
)


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("v0.26.0", (0, 26, 0)),
        ("0.32.0", (0, 32, 0)),
        ("v0.26.0.post1", (0, 26, 0)),
        ("v1.0.2", (1, 0, 2)),
        ("v0.30.1-cu128", None),
        ("latest", None),
        ("v0.30", None),
        ("sha256-abc", None),
    ],
)
def test_release_version_reads_release_tags_only(text: str, version: tuple[int, int, int] | None) -> None:
    assert release_version(text) == version


@pytest.mark.parametrize(
    ("version", "needed"),
    [
        ((0, 26, 0), False),
        ((0, 28, 9), False),
        ((0, 29, 0), None),
        ((0, 29, 3), None),
        ((0, 30, 0), True),
        ((0, 32, 0), True),
        ((1, 0, 0), True),
    ],
)
def test_the_flag_is_needed_from_0_30_and_refused_up_to_0_28(
    version: tuple[int, int, int], needed: bool | None
) -> None:
    assert needs_scale_out_flag(version) is needed


def test_only_cache_aware_reads_render_routes() -> None:
    assert SCALE_OUT_FLAG == "--enable-scale-out"
    assert policy_needs_render("cache_aware")
    for policy in ("round_robin", "power_of_two", "consistent_hash", "random", None):
        assert not policy_needs_render(policy)
