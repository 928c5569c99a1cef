"""Stack files (``Pulumi.<stack>.yaml``): read as Pulumi reads them, or refused naming the file.

PyYAML keeps the last of two equal keys where Pulumi refuses the file, so the loader here refuses
duplicate keys; a file that is not UTF-8 text is an error naming the file, not a traceback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from kvstack.infra.config.errors import NAMESPACE, ConfigError, Issue
from kvstack.infra.config.parse import parse_stack_config
from kvstack.infra.config.stack import StackConfig, is_near_miss, is_secure_value, strip_namespace


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (PyYAML would keep the last one)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                continue  # reported by the base class
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].line + 1}); Pulumi refuses the "
                    "file, and the two values disagree on what the stack is: keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str) -> Any:
    """YAML text to Python values, refusing duplicate keys."""
    return yaml.load(text, Loader=UniqueKeyLoader)


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line, with where it is."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return "not valid YAML: " + " ".join(str(exc).split())


@dataclass(frozen=True)
class StackFile:
    """A parsed ``Pulumi.<stack>.yaml``: its ``kvstack`` values as written and which keys were secrets."""

    path: Path
    stack: str
    values: dict[str, Any]
    secret_keys: frozenset[str]

    @property
    def source(self) -> str:
        return f"{self.path.name} (stack {self.stack})"


def stack_file_path(stack: str, project_dir: Path) -> Path:
    return project_dir / f"Pulumi.{stack}.yaml"


def _read_text(path: Path, source: str) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            source,
            [Issue("file", f"{path} not found (run from the project directory or pass --project-dir)")],
        ) from None
    except IsADirectoryError:
        raise ConfigError(source, [Issue("file", f"{path} is a folder, not a stack file")]) from None
    except OSError as exc:
        raise ConfigError(source, [Issue("file", f"cannot read {path}: {exc.strerror or exc}")]) from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(data) > 1 and b"\x00" in data[:4]):
        raise ConfigError(
            source,
            [Issue("file", f"{path} is UTF-16 text; Pulumi reads stack files as UTF-8: save it as UTF-8")],
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source,
            [
                Issue(
                    "file",
                    f"{path} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
                    "Pulumi reads stack files as UTF-8: save it as UTF-8",
                )
            ],
        ) from None


def read_stack_file(path: Path) -> StackFile:
    """Read a stack file's ``config:`` section; keys of other namespaces (``kubernetes:``) are skipped,
    near misses of ``kvstack`` are kept so that validation reports them."""
    match = re.fullmatch(r"Pulumi\.(.+)\.ya?ml", path.name)
    stack = match.group(1) if match else path.stem
    source = f"{path.name} (stack {stack})"
    text = _read_text(path, source)
    try:
        document = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [Issue("file", yaml_problem(exc))]) from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, [Issue("file", "a stack file is a mapping with a config: section")])
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(source, [Issue("config", "must be a mapping of <namespace>:<key> to values")])
    values: dict[str, Any] = {}
    secrets: set[str] = set()
    issues: list[Issue] = []
    for full_key, value in config.items():
        namespace, sep, key = str(full_key).partition(":")
        if not sep:
            issues.append(Issue(str(full_key), f"config keys are namespaced: write {NAMESPACE}:{full_key}"))
            continue
        if namespace != NAMESPACE and not is_near_miss(namespace):
            continue
        if namespace == NAMESPACE and is_secure_value(value):
            secrets.add(key)
        values[str(full_key)] = value
    if issues:
        raise ConfigError(source, issues)
    return StackFile(path=path, stack=stack, values=values, secret_keys=frozenset(secrets))


def load_stack(stack: str, project_dir: Path) -> tuple[StackFile, StackConfig]:
    """Read and validate ``Pulumi.<stack>.yaml`` in ``project_dir`` (``model.shape`` paths relative to it)."""
    stack_file = read_stack_file(stack_file_path(stack, project_dir))
    config = parse_stack_config(
        stack_file.values, source=stack_file.source, secret_keys=stack_file.secret_keys, base_dir=project_dir
    )
    return stack_file, config


__all__ = [
    "StackFile",
    "UniqueKeyLoader",
    "load_stack",
    "load_yaml",
    "read_stack_file",
    "stack_file_path",
    "strip_namespace",
]
