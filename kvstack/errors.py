"""The project's one configuration error type, shared by the stack config (``kvstack.infra.config``) and
the bench's verify config (``kvstack.bench.config``).

A :class:`ConfigError` names the file (``source``) and each bad field (:class:`Issue`). For a problem with
the file as a whole (unreadable, wrong encoding, not YAML) there is one issue whose field is ``file``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Issue:
    """One problem: the field's path (``kvstack:engine.max_model_len``, ``thresholds.max_errors``) and what
    is wrong with it, saying what to do instead."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class ConfigError(ValueError):
    """A configuration is invalid. ``source`` names the file; ``issues`` each bad field.

    ``ConfigError(source, issues)`` lists the issues under a header naming ``source``;
    ``ConfigError(message)`` (no issues) is one complete sentence that already names the file.
    """

    def __init__(self, source: str, issues: Sequence[Issue] = (), *, what: str = "kvstack config") -> None:
        self.source = source
        self.issues = list(issues)
        if not self.issues:
            super().__init__(source)
            return
        count = f"{len(self.issues)} problem{'s' if len(self.issues) != 1 else ''}"
        lines = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{source}: invalid {what} ({count}):\n{lines}")

    @property
    def fields(self) -> list[str]:
        return [issue.field for issue in self.issues]
