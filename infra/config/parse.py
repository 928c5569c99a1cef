"""Validate one stack's values into :class:`StackConfig`, or raise :class:`ConfigError` naming the stack
file and every bad field as ``kvstack:<section>.<field>``. Both the Pulumi program (values from
``pulumi.Config``) and ``kvstack render/lint/plan`` (values from the stack file) go through it."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kvstack.infra.config.errors import CROSS_CHECK, NAMESPACE, ConfigError, Issue, field_path, issues_from
from kvstack.infra.config.sections.secrets import SECRET_KEYS
from kvstack.infra.config.stack import StackConfig, is_secure_value, unknown_key_message


def _top_level_issue(err: Mapping[str, Any]) -> Issue | None:
    """Plain words for the errors of a whole ``kvstack:<key>``: unknown keys, secrets in the wrong place."""
    loc = tuple(err["loc"])
    if not loc:
        return None
    key = str(loc[0])
    if err["type"] == CROSS_CHECK:
        return None
    if err["type"] == "extra_forbidden" and len(loc) == 1:
        return Issue(field_path(loc), unknown_key_message(key))
    if key in SECRET_KEYS and not isinstance(err.get("input"), Mapping) and len(loc) <= 2:
        return Issue(
            field_path((key,)),
            f"must be a Pulumi secret: pulumi config set --secret {NAMESPACE}:{key} <value> "
            f"(or {{existing_secret: <Secret name>, key: <key>}} to use an existing Secret)",
        )
    if key not in SECRET_KEYS and len(loc) == 1 and is_secure_value(err.get("input")):
        return Issue(field_path(loc), f"is not a secret; set it without --secret (secrets: {SECRET_KEYS})")
    return None


def config_issues(exc: ValidationError) -> list[Issue]:
    """Every error of a StackConfig validation as an issue (one per field, secrets never shown)."""
    issues: list[Issue] = []
    for err, plain in zip(
        exc.errors(include_url=False), issues_from(exc, StackConfig, SECRET_KEYS), strict=True
    ):
        issue = _top_level_issue(err) or plain
        if issue not in issues:
            issues.append(issue)
    return issues


def parse_stack_config(
    raw: Mapping[str, Any],
    *,
    source: str,
    secret_keys: Collection[str] = (),
    base_dir: Path | None = None,
) -> StackConfig:
    """Validate the config of one stack.

    ``raw`` maps ``model``, ``engine``, ... (or ``kvstack:model``, ...) to their values; ``secret_keys``
    lists the keys whose value was a Pulumi secret (the value itself is never needed here). ``source`` is
    what the error names: the stack file, e.g. ``Pulumi.prod.yaml (stack prod)``. ``base_dir`` is where a
    ``model.shape`` path is relative to (default: the current directory).
    """
    data: dict[str, Any] = {}
    for key, value in raw.items():
        bare = str(key).partition(":")[2] if str(key).startswith(f"{NAMESPACE}:") else str(key)
        data[key] = {"secure": "(Pulumi secret)"} if bare in secret_keys else value
    try:
        return StackConfig.model_validate(data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError(source, config_issues(exc)) from None
