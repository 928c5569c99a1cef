"""What counts as a real answer."""

from __future__ import annotations

import pytest

from kvstack.bench.checks.engine import triviality


@pytest.mark.parametrize(
    "text",
    [" Paris. It is the capital of France.", "1. Blue\n2. Red", " the cat", "a"],
)
def test_real_text(text: str) -> None:
    assert triviality(text) is None


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   \n\t ", "whitespace"),
        (" the the the the the", "one token repeated"),
        ("!!!!!!!!!!!!", "one unit repeated"),
        ("abababababab", "one unit repeated"),
        (" ab ab ab ab", "one token repeated"),
    ],
)
def test_trivial_text(text: str, why: str) -> None:
    reason = triviality(text)
    assert reason is not None
    assert why in reason
