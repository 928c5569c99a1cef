"""Write a stack's manifests as YAML files (for review and GitOps), and read such a folder back."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kvstack.contract.yaml_text import dump_yaml
from kvstack.infra.config import ExistingSecret, StackConfig
from kvstack.infra.manifests import Manifest
from kvstack.infra.manifests.names import names_of
from kvstack.infra.manifests.workload import API_KEY_KEY, HF_TOKEN_KEY

RENDERED_FILE = re.compile(r"^\d{2}-[a-z0-9]+-[a-z0-9.-]+\.yaml$")


def to_yaml(body: dict[str, Any]) -> str:
    """A manifest as YAML: keys in build order, multi-line strings (dashboards, PromQL, adapter config) as
    literal blocks."""
    return dump_yaml(body, width=120)


def file_name(index: int, manifest: Manifest) -> str:
    return f"{index:02d}-{manifest.kind.lower()}-{manifest.name}.yaml"


def secret_notes(config: StackConfig) -> list[str]:
    """What to do about the Secrets that render leaves out (their values are Pulumi secrets)."""
    names = names_of(config)
    notes = []
    for which, default_name, key in (
        ("hf_token", names.hf_token_secret, HF_TOKEN_KEY),
        ("api_key", names.api_key_secret, API_KEY_KEY),
    ):
        source = getattr(config, which)
        if source is None:
            continue
        if isinstance(source, ExistingSecret):
            notes.append(
                f"the pods read Secret {config.namespace}/{source.existing_secret} key {source.key!r} "
                f"(kvstack:{which}); it must exist before the pods start"
            )
        else:
            notes.append(
                f"Secret {config.namespace}/{default_name} (kvstack:{which}) is not rendered: its value is a "
                f"Pulumi secret. Create it with: kubectl -n {config.namespace} create secret generic "
                f"{default_name} --from-literal={key}=<value>"
            )
    return notes


@dataclass(frozen=True)
class Rendered:
    files: list[Path]
    removed: list[Path]
    notes: list[str]


def render(manifests: Sequence[Manifest], config: StackConfig, out_dir: Path) -> Rendered:
    """Write one file per object (``NN-kind-name.yaml``, apply order), replacing earlier renders."""
    out_dir.mkdir(parents=True, exist_ok=True)
    removed = []
    for old in sorted(out_dir.iterdir()):
        if old.is_file() and RENDERED_FILE.match(old.name):
            old.unlink()
            removed.append(old)
    files = []
    for index, manifest in enumerate(manifests):
        path = out_dir / file_name(index, manifest)
        path.write_text(to_yaml(manifest.body), encoding="utf-8")
        files.append(path)
    return Rendered(files=files, removed=[p for p in removed if p not in files], notes=secret_notes(config))


class ManifestError(ValueError):
    """A file of a manifest folder that is not readable YAML text; the message names the file."""


def load_manifest_dir(folder: Path) -> list[dict[str, Any]]:
    """Every object in the ``*.yaml``/``*.yml`` files of a folder (multi-document files included)."""
    bodies: list[dict[str, Any]] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or exc
            raise ManifestError(f"{path}: not valid YAML: {problem}{at}") from exc
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
        bodies.extend(d for d in documents if isinstance(d, dict) and "kind" in d)
    return bodies
