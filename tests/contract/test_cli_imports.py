"""kvstack.cli imports a subcommand's module only when that subcommand runs, and tells a missing extra
apart from a bug in kvstack's own code."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kvstack import cli


def test_verify_imports_neither_the_deploy_side_nor_the_grafana_sdk() -> None:
    probe = textwrap.dedent(
        """
        import sys
        from kvstack.cli import build_parser
        build_parser(["verify", "--help"])
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("pulumi", "grafana_foundation_sdk")
                     or m.startswith(("kvstack.infra", "kvstack.local", "kvstack.monitoring"))))
        print("kvstack.bench.cli" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.splitlines() == ["[]", "True"]


def _subcommand_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    (tmp_path / "kvstack_test_subcommand.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli._SUBCOMMANDS, "plan", "kvstack_test_subcommand")
    monkeypatch.delitem(sys.modules, "kvstack_test_subcommand", raising=False)


def test_a_missing_third_party_package_is_reported_as_a_missing_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _subcommand_module(tmp_path, monkeypatch, "import no_such_extra_package_xyz\n")
    assert cli.main(["plan"]) == 2
    err = capsys.readouterr().err
    assert "'no_such_extra_package_xyz' is not installed" in err


def test_a_broken_import_inside_kvstack_is_raised_not_called_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _subcommand_module(tmp_path, monkeypatch, "from kvstack.contract.metrics import NO_SUCH_NAME\n")
    with pytest.raises(ImportError, match="NO_SUCH_NAME"):
        cli.build_parser(["plan"])
