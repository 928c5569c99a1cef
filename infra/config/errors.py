"""Errors of the stack config: the project's :class:`~kvstack.errors.ConfigError`, field paths as the stack
file spells them (``kvstack:engine.max_model_len``), and pydantic's errors translated into issues."""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from kvstack.errors import ConfigError, Issue
from kvstack.infra.config.types import PATTERN_HELP

__all__ = ["NAMESPACE", "ConfigError", "Issue", "cross_check_error", "field_path", "issues_from"]

NAMESPACE = "kvstack"
"""The Pulumi config namespace (also the Pulumi project name)."""

CROSS_CHECK = "cross_check"
"""pydantic error type of a rule that spans fields (raised by the sections' and the stack's validators)."""

UNION_TAGS = frozenset({"ExistingSecret", "StackSecret"})


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("engine", "max_model_len")`` -> ``kvstack:engine.max_model_len``; indexes as ``[i]``.

    A first part that is already namespaced (``kvstak:api_key``, a key of the stack file) stays as it is.
    """
    if not loc:
        return f"{NAMESPACE}:"
    head = str(loc[0])
    out = head if ":" in head else f"{NAMESPACE}:{head}"
    for part in loc[1:]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def cross_check_error(title: str, problems: list[tuple[tuple[str | int, ...], str, Any]]) -> ValidationError:
    """A ValidationError holding one error per ``(loc, message, input)``: raised from an ``after``
    validator, pydantic prefixes each loc with the section's own, so every issue names its field."""
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(
                type=PydanticCustomError(CROSS_CHECK, "{message}", {"message": message}),
                loc=loc,
                input=value,
            )
            for loc, message, value in problems
        ],
    )


def _model_at(root: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the last element of ``loc`` (for 'did you mean')."""
    model: type[BaseModel] | None = root
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        info = model.model_fields.get(part)
        if info is None:
            return None
        model = _first_model(info.annotation)
    return model


def _first_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _first_model(arg)
        if found is not None:
            return found
    return None


def issues_from(exc: ValidationError, root: type[BaseModel], secret_fields: Collection[str]) -> list[Issue]:
    """One issue per pydantic error, named as the stack file spells the field; secrets are never shown."""
    issues: list[Issue] = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if part not in UNION_TAGS)
        path = field_path(loc)
        kind = err["type"]
        shown = err.get("input")
        show = bool(loc) and loc[0] not in secret_fields and isinstance(shown, str | int | float | bool)
        if kind == CROSS_CHECK:
            msg = str((err.get("ctx") or {}).get("message", err["msg"]))
        elif kind == "extra_forbidden":
            owner = _model_at(root, loc)
            known = sorted(owner.model_fields) if owner else []
            hint = difflib.get_close_matches(str(loc[-1]), known, n=1)
            msg = "unknown field"
            msg += f" (did you mean {hint[0]!r}?)" if hint else ""
            msg += f"; known fields here: {', '.join(known)}" if known else ""
        elif kind == "missing":
            msg = "required field is missing"
        elif kind == "string_pattern_mismatch" and str((err.get("ctx") or {}).get("pattern")) in PATTERN_HELP:
            msg = PATTERN_HELP[str((err.get("ctx") or {}).get("pattern"))]
            msg += f" (got {shown!r})" if show else ""
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            msg += f" (got {shown!r})" if show else ""
        issues.append(Issue(path, msg))
    return issues
