"""PromQL, both ways: building expressions (selectors, matchers, ratios, numbers) and reading them (which
series an expression selects, recording-rule expansion).

Reading: no PromQL parser is packaged for Python, and Prometheus 2.42 has no parse endpoint, so this is a
small lexer that knows enough of the grammar to tell a metric name from a function, an aggregation keyword,
a label name in ``by (...)``/``on (...)`` or inside ``{...}``, a duration or a string; it also reads
Grafana's ``label_values(selector, label)`` and skips Grafana variables and prometheus-adapter templates.
The test suite holds it to every expression we ship (each extracted name must be a real series or a
recording rule), and ``kvstack lint`` uses it on a stack's manifests.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

UP = "up"
"""Prometheus' own per-target series (1 when the last scrape succeeded)."""

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
_OTHER_KEYWORDS = frozenset(
    ["and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "Inf", "NaN", "start", "end"]
)
# Grafana's variable query label_values(selector, label): the last argument is a label name.
_GRAFANA_LABEL_VALUES = "label_values"
_LABEL_VALUES_QUERY = re.compile(r"^\s*label_values\((?P<selector>.*),\s*(?P<label>\w+)\s*\)\s*$", re.DOTALL)


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


def _label_values_labels(tokens: list[Token]) -> set[int]:
    """Indexes of the label-name tokens of every ``label_values(selector, label)`` or
    ``label_values(label)``."""
    labels: set[int] = set()
    for i, tok in enumerate(tokens):
        if tok.text != _GRAFANA_LABEL_VALUES or i + 1 >= len(tokens) or tokens[i + 1].text != "(":
            continue
        close = _skip_group(tokens, i + 1, "(", ")")
        depth = 0
        last_arg = i + 2
        for j in range(i + 2, close - 1):
            if tokens[j].kind == "punct" and tokens[j].text in "({[":
                depth += 1
            elif tokens[j].kind == "punct" and tokens[j].text in ")}]":
                depth -= 1
            elif depth == 0 and tokens[j].text == ",":
                last_arg = j + 1
        if last_arg == close - 2 and tokens[last_arg].kind == "ident":
            labels.add(last_arg)
    return labels


def _iter_selectors(expr: str) -> Iterator[VectorSelector]:
    tokens = tokenize(expr)
    label_positions = _label_values_labels(tokens)
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < n else None
        if tok.kind == "ident" and i in label_positions:
            i += 1
            continue
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


def label_values_selector(query: str) -> str | None:
    """The selector of a Grafana variable query ``label_values(selector, label)``; None for any other."""
    m = _LABEL_VALUES_QUERY.match(query)
    return m.group("selector") if m else None


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


# --------------------------------------------------------------------------------------------- building


def number(x: float) -> str:
    """A number as PromQL and people write it: ``5`` not ``5.0``, ``0.05`` not ``5e-02``, and exact
    (``1234567`` stays ``1234567``, which ``{:g}`` would round to ``1.23457e+06``)."""
    text = repr(float(x))
    return text.removesuffix(".0")


def matchers_of(*parts: str) -> str:
    """Join selector matchers, dropping empty parts: ``matchers_of('a="1"', "", 'b="2"')``."""
    return ",".join(p for p in parts if p)


def selector(metric: str, matchers: str = "") -> str:
    """``metric{matchers}``, or the bare name when there are no matchers."""
    return f"{metric}{{{matchers}}}" if matchers else metric


def by(labels: Sequence[str]) -> str:
    """The label list of ``by (...)``: ``by(["a", "b"])`` is ``"a, b"``."""
    return ", ".join(labels)


def ratio_or_zero(numerator: str, denominator: str) -> str:
    """``numerator / denominator``, with 0 (not "no data") where the numerator has no series yet.

    Counters such as ``http_requests_total{status="5xx"}`` only appear after the first 5xx; without the
    ``or ... * 0`` the ratio is empty, so a panel shows "No data" and an alert has nothing to hold.
    """
    return f"(\n  {numerator}\n  or\n  {denominator} * 0\n)\n/\n{denominator}"


def job_matcher(job_regex: str) -> str:
    """Selects the scrape jobs matching ``job_regex``."""
    return f'job=~"{job_regex}"'


def engine_job_matcher(job_regex: str, router_job_regex: str) -> str:
    """Selects the scrape jobs matching ``job_regex`` but not ``router_job_regex``: where a metric name is
    not vLLM's own (``up``, ``http_requests_total``), a loose engine regex such as ``.*vllm.*`` would also
    take the router's job (``vllm-router`` is what a ServiceMonitor calls it)."""
    return f'{job_matcher(job_regex)},job!~"{router_job_regex}"'
