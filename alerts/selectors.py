"""What a PromQL expression reads: its vLLM metric names, its vector selectors, recording-rule expansion.

No PromQL parser is packaged for Python, and Prometheus 2.42 has no parse endpoint, so this is a small
lexer that knows enough of the grammar to tell a metric name from a function, an aggregation keyword,
a label name in ``by (...)``/``on (...)`` or inside ``{...}``, a duration or a string. The test suite
holds it to every expression we ship (each extracted name must be a real series or a recording rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

# A vLLM metric name where it stands as a name, not inside another (recording-rule) name.
VLLM_METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])vllm:[A-Za-z0-9_:]*[A-Za-z0-9_]")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<number>(?:0[xX][0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)[A-Za-z0-9]*)
  | (?P<variable>\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\])
  | (?P<template><<[^>]*>>)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<punct>[(){}\[\],@])
  | (?P<op>==|!=|=~|!~|>=|<=|[-+*/%^<>=])
    """,
    re.VERBOSE,
)

_AGGREGATIONS = frozenset(
    [
        *("sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"),
        *("bottomk", "topk", "quantile", "limitk", "limit_ratio"),
    ]
)
_LABEL_LIST_KEYWORDS = frozenset(["by", "without", "on", "ignoring", "group_left", "group_right"])
_OTHER_KEYWORDS = frozenset(["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"])


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int


@dataclass(frozen=True)
class VectorSelector:
    """One instant or range vector selector: ``name{matchers}`` (the range, if any, is not kept)."""

    name: str
    matchers: str  # the text between the braces, "" when there are none
    start: int  # span of name{matchers} in the expression
    end: int
    followed_by_range_or_offset: bool

    @property
    def text(self) -> str:
        return f"{self.name}{{{self.matchers}}}" if self.matchers else self.name


def tokenize(expr: str) -> list[Token]:
    """Tokens of ``expr`` without whitespace and comments. Raises ValueError on a character it can't lex."""
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot lex PromQL at {pos}: {expr[pos : pos + 30]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


def _skip_group(tokens: list[Token], i: int, open_: str, close: str) -> int:
    """Index just after the bracket group opening at ``tokens[i]``."""
    depth = 0
    for j in range(i, len(tokens)):
        if tokens[j].text == open_ and tokens[j].kind == "punct":
            depth += 1
        elif tokens[j].text == close and tokens[j].kind == "punct":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"unbalanced {open_!r} at {tokens[i].pos}")


def _iter_selectors(expr: str) -> Iterator[VectorSelector]:
    tokens = tokenize(expr)
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else None
        if tok.kind == "ident":
            word = tok.text
            if word in _LABEL_LIST_KEYWORDS:
                i = _skip_group(tokens, i + 1, "(", ")") if nxt is not None and nxt.text == "(" else i + 1
                continue
            if word in _AGGREGATIONS or word in _OTHER_KEYWORDS or (nxt is not None and nxt.text == "("):
                i += 1
                continue
            # a metric name, maybe with matchers
            matchers = ""
            end_i = i + 1
            end_pos = tok.pos + len(word)
            if nxt is not None and nxt.text == "{":
                close = _skip_group(tokens, i + 1, "{", "}")
                matchers = expr[nxt.pos + 1 : tokens[close - 1].pos].strip()
                end_i = close
                end_pos = tokens[close - 1].pos + 1
            after = tokens[end_i] if end_i < n else None
            ranged = after is not None and (after.text in ("[", "@") or after.text == "offset")
            yield VectorSelector(word, matchers, tok.pos, end_pos, ranged)
            i = end_i
            continue
        if tok.text == "{" and tok.kind == "punct":
            close = _skip_group(tokens, i, "{", "}")
            matchers = expr[tok.pos + 1 : tokens[close - 1].pos].strip()
            m = re.search(r'__name__\s*=\s*"([^"]*)"', matchers)
            after = tokens[close] if close < n else None
            ranged = after is not None and (after.text in ("[", "@") or after.text == "offset")
            yield VectorSelector(
                m.group(1) if m else "", matchers, tok.pos, tokens[close - 1].pos + 1, ranged
            )
            i = close
            continue
        if tok.text == "[" and tok.kind == "punct":
            i = _skip_group(tokens, i, "[", "]")
            continue
        i += 1


def vector_selectors(expr: str) -> list[VectorSelector]:
    """Every vector selector of ``expr``, in order."""
    return list(_iter_selectors(expr))


def metric_names(expr: str) -> set[str]:
    """Names of every series ``expr`` selects (vLLM, kube-state-metrics, recording rules, ``up``...)."""
    return {s.name for s in _iter_selectors(expr) if s.name}


def vllm_metric_names(text: str) -> set[str]:
    """The ``vllm:`` metric names in ``text`` (PromQL, or any text such as a dashboard's JSON)."""
    return set(VLLM_METRIC_NAME.findall(text))


def expand_recording_rules(expr: str, records: Mapping[str, str]) -> str:
    """Replace every recording-rule name by ``(its expression)``, recursively, until only raw series remain.

    A Prometheus that has not loaded our rules (or has not evaluated them yet) can then evaluate what an
    alert means on raw series. A recording rule used with matchers or a range is refused (the substitution
    would change its meaning); our rules use them bare.
    """
    for _ in range(len(records) + 1):
        hits = [s for s in vector_selectors(expr) if s.name in records]
        if not hits:
            return expr
        for sel in reversed(hits):  # right to left keeps earlier offsets valid
            if sel.matchers or sel.followed_by_range_or_offset:
                raise ValueError(f"recording rule {sel.name} used with matchers or a range in {expr!r}")
            expr = f"{expr[: sel.start]}({records[sel.name]}){expr[sel.end :]}"
    raise ValueError(f"recording rules refer to each other in a cycle: {expr!r}")


def exposition_sample_names(exposition: str) -> set[str]:
    """Sample names of a Prometheus text exposition (``..._bucket``, ``..._total``, as exposed)."""
    names: set[str] = set()
    for raw in exposition.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if m:
            names.add(m.group())
    return names
