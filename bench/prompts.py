"""Prompt texts for the checks: pure and seeded, no network.

Texts are built from a seeded word bank in the shape of the use case they stand for (a system prompt,
few-shot examples, retrieved documents, a chat transcript), in *units* (a rule, an example, a passage, a
turn), so that a caller can grow or shrink them to a token budget measured by the server's tokenizer.

Nonces are not seeded: a prefix-cache measurement is only cold if its prefix was never sent to the server
before, and the server outlives any one run. The nonce goes at the very START of a prefix, because the
prefix cache hashes blocks from the first token: a nonce anywhere else would leave the blocks before it
cacheable across runs.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable


def _bank(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_NOUNS = _bank(
    """
account invoice shipment warehouse customer ticket policy contract server cluster report budget
schedule engine sensor battery garden river library museum recipe harbour bridge market forecast
ledger network printer camera satellite orchard vaccine turbine festival glacier compass lantern
archive pipeline dashboard license refund pallet tariff journey protocol kitchen
"""
)

_VERBS = _bank(
    """
checks updates describes records approves delays measures explains protects schedules reviews
compares repairs ships returns cancels renews collects plans tracks summarises confirms rejects
prepares escalates archives labels
"""
)

_ADJECTIVES = _bank(
    """
quarterly urgent regional detailed annual pending careful northern digital seasonal internal
reliable temporary modern quiet fragile public careless accurate overdue standard remote coastal
historic secure optional weekly
"""
)

_NAMES = _bank(
    """
Alice Bruno Chen Dana Emeka Farah Goran Hana Ivo Jun Kira Lena
"""
)


def new_nonce() -> str:
    """A fresh random tag (never seeded): makes a prefix one the server has not seen."""
    return secrets.token_hex(6)


def nonce_header(nonce: str) -> str:
    return f"[request {nonce}]\n"


def _sentence(rng: random.Random) -> str:
    return (
        f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the "
        f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} for {rng.choice(_NAMES)}."
    )


def _question(rng: random.Random) -> str:
    return (
        f"Which {rng.choice(_NOUNS)} {rng.choice(_VERBS)} the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}?"
    )


def system_prompt_text(rng: random.Random, units: int) -> str:
    rules = "\n".join(f"{i + 1}. {_sentence(rng)} {_sentence(rng)}" for i in range(units))
    return (
        f"You are the support assistant of the {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} team. "
        f"Follow these rules in every answer:\n{rules}\n"
    )


def few_shot_text(rng: random.Random, units: int) -> str:
    examples = "\n".join(
        f"Example {i + 1}:\nQ: {_question(rng)}\nA: {_sentence(rng)} {_sentence(rng)}\n" for i in range(units)
    )
    return f"Answer in the style of these examples.\n{examples}"


def rag_context_text(rng: random.Random, units: int) -> str:
    docs = "\n".join(
        f"Document {i + 1} ({rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}):\n"
        f"{_sentence(rng)} {_sentence(rng)} {_sentence(rng)}\n"
        for i in range(units)
    )
    return f"Use only the documents below to answer.\n{docs}"


def multi_turn_text(rng: random.Random, units: int) -> str:
    turns = "\n".join(
        f"User: {_question(rng)}\nAssistant: {_sentence(rng)} {_sentence(rng)}" for _ in range(units)
    )
    return f"Conversation so far:\n{turns}\n"


def notes_text(rng: random.Random, units: int) -> str:
    return "Reference notes:\n" + " ".join(_sentence(rng) for _ in range(units)) + "\n"


TextShape = Callable[[random.Random, int], str]

SHAPES: dict[str, TextShape] = {
    "system_prompt": system_prompt_text,
    "few_shot": few_shot_text,
    "rag_context": rag_context_text,
    "multi_turn_chat": multi_turn_text,
    "notes": notes_text,
}


def shaped_text(shape: str, units: int, seed: int) -> str:
    """Text of ``units`` units in the named shape; the same (shape, units, seed) gives the same text."""
    fn = SHAPES.get(shape, notes_text)
    return fn(random.Random(f"{shape}:{seed}"), max(1, units))


def suffix_text(seed: int, units: int) -> str:
    """A question to put after a shared prefix; distinct seeds give distinct suffixes."""
    rng = random.Random(f"suffix:{seed}")
    return "\nQuestion: " + " ".join(_question(rng) for _ in range(max(1, units))) + "\nAnswer:"


def distinct_prompt(index: int, units: int, seed: int, nonce: str) -> str:
    """One of a set of distinct prompts (load phases): ``nonce`` first, then its own topic and sentences.

    Pass a fresh ``new_nonce()`` for every prompt: the opening after the nonce is the same for all, so
    prompts sharing a nonce would share their first KV block (about 14 tokens of it) in the prefix cache.
    """
    rng = random.Random(f"prompt:{seed}:{index}")
    body = " ".join(_sentence(rng) for _ in range(max(1, units)))
    return f"{nonce_header(nonce)}Write a short report about the {rng.choice(_NOUNS)}. {body}\nReport:"


def estimate_tokens(text: str) -> int:
    """Rough token count when the server has no /tokenize: about 4 characters a token for English."""
    return max(1, round(len(text) / 4))
