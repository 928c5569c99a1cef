"""promtool on the committed rule file: `check rules`, `test rules`, and that the tests cover every alert
on each side of its `for:`. A missing promtool is a failure, not a skip."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kvstack.monitoring.alerts.rules import ALERTING_GROUP, RECORDING_GROUP, RULES_FILE

PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.test.yaml"))


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed (apt-get install prometheus, or `make setup`)")
    return path


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def _alerts(rules: dict[str, Any]) -> dict[str, str]:
    """Alert name -> its `for:`."""
    return {r["alert"]: r["for"] for g in rules["groups"] for r in g["rules"] if "alert" in r}


def _duration_minutes(duration: str) -> float:
    units = {"s": 1 / 60, "m": 1, "h": 60}
    return float(duration[:-1]) * units[duration[-1]]


def test_promtool_check_rules_passes_on_the_committed_file() -> None:
    result = _run("check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_check_rules_fails_on_a_broken_expression(tmp_path: Path) -> None:
    """The check above can fail: a syntax error in one expression is reported."""
    broken = tmp_path / "broken.yaml"
    text = RULES_FILE.read_text(encoding="utf-8")
    broken.write_text(
        text.replace("max by (namespace, pod, model_name) (", "max by (namespace, pod, model_name ((", 1)
    )
    result = _run("check", "rules", str(broken))
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def test_promtool_test_files_exist() -> None:
    assert PROMTOOL_TESTS, "no promtool unit tests found"


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_test_rules(test_file: Path) -> None:
    result = _run("test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_tests_load_the_committed_rule_file_in_a_fixed_group_order(test_file: Path) -> None:
    document = yaml.safe_load(test_file.read_text(encoding="utf-8"))
    rule_files = [(test_file.parent / f).resolve() for f in document["rule_files"]]
    assert rule_files == [RULES_FILE.resolve()]
    assert document["group_eval_order"] == [RECORDING_GROUP, ALERTING_GROUP]


def test_every_alert_is_tested_on_each_side_of_its_for() -> None:
    """For each alert, some test expects it firing at time T and some test of the same input expects it
    silent at a time in [T - for, T): pending, i.e. the condition held but not for long enough yet."""
    rules = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    alerts = _alerts(rules)
    firing: dict[str, list[tuple[int, float]]] = {name: [] for name in alerts}
    silent: dict[str, list[tuple[int, float]]] = {name: [] for name in alerts}
    unknown: set[str] = set()
    case = 0
    for test_file in PROMTOOL_TESTS:
        for test in yaml.safe_load(test_file.read_text(encoding="utf-8"))["tests"]:
            case += 1
            for check in test.get("alert_rule_test", []):
                name = check["alertname"]
                if name not in alerts:
                    unknown.add(name)
                    continue
                when = _duration_minutes(check["eval_time"])
                (firing if check.get("exp_alerts") else silent)[name].append((case, when))
    assert not unknown, f"promtool tests refer to alerts that do not exist: {sorted(unknown)}"
    missing = []
    for name, for_ in alerts.items():
        window = _duration_minutes(for_)
        straddled = any(
            case_f == case_s and t_fire - window <= t_silent < t_fire
            for case_f, t_fire in firing[name]
            for case_s, t_silent in silent[name]
        )
        if not straddled:
            missing.append(f"{name} (for: {for_})")
    assert not missing, f"alerts without a firing + pending pair of promtool tests: {missing}"
