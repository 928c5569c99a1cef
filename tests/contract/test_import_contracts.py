"""The import-linter contracts hold on the tree, and each one fails when its rule is broken.

Each breaking case copies the package (symlinked folders resolved) to a temp dir, adds one import that the
contract forbids and runs ``lint-imports`` on that copy with the project's own configuration; a contract
that no case breaks is decorative, so every contract in pyproject.toml must have a case here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

# contract id -> (module file in the package, a line that breaks that contract)
BREAKAGES: dict[str, tuple[str, str]] = {
    "layers": ("monitoring/shipped.py", "import kvstack.local.settings"),
    "contract-imports-nothing-of-ours": ("contract/kube.py", "import kvstack.monitoring.alerts.rules"),
    "contract-on-core-dependencies": ("contract/types.py", "import kubernetes_validate"),
    "bench-without-deploy-side": ("bench/metrics.py", "import pulumi"),
    "local-on-core-dependencies": ("local/settings.py", "import pulumi"),
    "pure-cores-without-pulumi": ("infra/lint.py", "import pulumi_kubernetes"),
    "rules-without-grafana-sdk": ("monitoring/alerts/rules.py", "import grafana_foundation_sdk"),
    "dashboards-loader-without-grafana-sdk": (
        "monitoring/dashboards/__init__.py",
        "import kvstack.monitoring.dashboards.panels",
    ),
    "cli-imports-subcommands-lazily": ("cli.py", "import kvstack.bench.cli"),
    "monitoring-without-bench-infra": ("monitoring/live_check.py", "import kvstack.bench.metrics"),
    "alerts-dashboards-independent": ("monitoring/alerts/rules.py", "import kvstack.monitoring.dashboards"),
}


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    assert isinstance(contracts, list)
    return contracts


def _lint_imports(root: Path, *contract_ids: str) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--config", str(PYPROJECT), "--no-cache", "--no-logo"]
    for contract_id in contract_ids:
        args += ["--contract", contract_id]
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of the kvstack package (symlinked folders as real ones), importable from ``tmp_path``."""
    shutil.copytree(
        ROOT / "kvstack",
        tmp_path / "kvstack",
        symlinks=False,
        ignore=shutil.ignore_patterns("__pycache__", "*.json", "*.yaml", "*.txt"),
    )
    return tmp_path


def test_every_contract_has_a_breaking_case() -> None:
    ids = [str(c["id"]) for c in _contracts()]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(BREAKAGES)


def test_the_tree_keeps_every_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(BREAKAGES)} kept, 0 broken." in result.stdout


@pytest.mark.parametrize("contract_id", sorted(BREAKAGES))
def test_a_forbidden_import_breaks_its_contract(contract_id: str, package_copy: Path) -> None:
    module, line = BREAKAGES[contract_id]
    path = package_copy / "kvstack" / module
    # the untouched copy keeps the contract: what breaks it below is the one added import
    kept = _lint_imports(package_copy, contract_id)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    source = path.read_text(encoding="utf-8")
    path.write_text(f"{source}\n{line}  # deliberate violation\n", encoding="utf-8")
    broken = _lint_imports(package_copy, contract_id)
    assert broken.returncode != 0, broken.stdout
    name = next(str(c["name"]) for c in _contracts() if c["id"] == contract_id)
    assert "BROKEN" in broken.stdout
    assert " ".join(name.split()) in " ".join(broken.stdout.split())


def test_docs_architecture_names_every_contract() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").replace("\\|", "|")
    flat = " ".join(doc.split())
    for contract in _contracts():
        assert " ".join(str(contract["name"]).split()) in flat, contract["id"]
    for layer in ("kvstack.cli", "kvstack.local", "kvstack.infra", "kvstack.bench", "kvstack.monitoring"):
        assert layer in doc
