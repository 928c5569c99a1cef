"""The prefix-caching verdict: TTFT ratio and the server's own hit counter must agree."""

from __future__ import annotations

from kvstack.bench.checks.prefix import expected_cached_tokens, judge_prefix
from kvstack.bench.report import Verdict


def test_expected_cached_tokens_counts_whole_blocks() -> None:
    assert expected_cached_tokens(500, 128, 5) == 384 * 5
    assert expected_cached_tokens(129, 128, 1) == 128
    assert expected_cached_tokens(128, 128, 1) == 0  # the last prefix token may merge with the suffix
    assert expected_cached_tokens(500, None, 5) is None


def judge(speedup: float | None, hits: float | None, expected: int | None = 1920) -> tuple[Verdict, str]:
    return judge_prefix(
        speedup=speedup,
        min_speedup=1.05,
        expected_cached=expected,
        hits=hits,
        min_hit_fraction=0.5,
        enabled_label=None if hits is None else hits > 0,
        prefix_tokens=500,
        block_size=128,
    )


def test_pass_when_both_agree() -> None:
    verdict, reason = judge(3.1, 1920.0)
    assert verdict is Verdict.PASS
    assert "1920 cached tokens" in reason


def test_caching_off_fails_even_when_ttft_drifts_above_the_bar() -> None:
    verdict, reason = judge(1.07, 0.0)  # the 1.07x seen on a busy CPU with caching off
    assert verdict is Verdict.FAIL
    assert "prefix_cache_hits_total grew by 0" in reason
    assert "enable_prefix_caching=False" in reason


def test_slow_warm_requests_fail() -> None:
    verdict, reason = judge(1.01, 1920.0)
    assert verdict is Verdict.FAIL
    assert "1.01x < 1.05x" in reason


def test_without_counters_the_ttft_decides() -> None:
    assert judge(2.0, None)[0] is Verdict.PASS
    assert judge(1.0, None)[0] is Verdict.FAIL


def test_prefix_shorter_than_a_block_cannot_pass() -> None:
    verdict, reason = judge(1.2, 0.0, expected=0)
    assert verdict is Verdict.FAIL
    assert "shorter than one KV block" in reason


def test_too_few_pairs_is_an_error() -> None:
    assert judge(None, None)[0] is Verdict.ERROR


def test_disabled_label_fails_when_counters_are_missing() -> None:
    verdict, reason = judge_prefix(
        speedup=1.07,
        min_speedup=1.05,
        expected_cached=1920,
        hits=None,
        min_hit_fraction=0.5,
        enabled_label=False,
        prefix_tokens=500,
        block_size=128,
    )
    assert verdict is Verdict.FAIL
    assert "enable_prefix_caching=False" in reason
