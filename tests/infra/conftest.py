"""Fixtures of the infra tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.infra_stacks import stack_document

StackWriter = Callable[..., Path]


@pytest.fixture
def write_stack(tmp_path: Path) -> StackWriter:
    """Write ``Pulumi.<name>.yaml`` into tmp_path: an example stack's config changed by ``edit``.

    ``edit`` gets the ``config:`` mapping (keys like ``kvstack:engine``) and changes it in place.
    """

    def write(
        name: str = "bad", *, base: str = "prod", edit: Callable[[dict[str, Any]], None] | None = None
    ) -> Path:
        document = stack_document(base)
        if edit is not None:
            edit(document["config"])
        path = tmp_path / f"Pulumi.{name}.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return tmp_path

    return write
