"""Reading a Prometheus text exposition (vLLM's ``/metrics``): pure, no network.

Parsing is prometheus-client's (``text_string_to_metric_families``); this module only translates its
errors and selects samples. Sample names are as exposed (``..._total``, ``..._bucket``, ``..._created``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from kvstack.contract.metrics import COMMON_LABELS

__all__ = ["ExpositionError", "Sample", "for_model", "parse_samples", "sample_names", "sum_by_name"]

_MODEL_LABEL = COMMON_LABELS[0]


class ExpositionError(ValueError):
    """The text is not a Prometheus text exposition."""


def parse_samples(text: str) -> list[Sample]:
    """Every sample of the exposition, in order. Raises :class:`ExpositionError` on text that is not one."""
    try:
        return [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    except Exception as exc:  # the parser raises ValueError, TypeError or IndexError on junk
        raise ExpositionError(f"not a Prometheus text exposition: {exc}") from exc


def sample_names(text: str) -> set[str]:
    """The sample names of an exposition (``vllm:prompt_tokens_total``, ``..._bucket``, as exposed)."""
    return {sample.name for sample in parse_samples(text)}


def for_model(samples: Iterable[Sample], model_name: str | None) -> list[Sample]:
    """The samples of one served model (``model_name`` label); samples without the label are kept, and
    ``None`` keeps everything."""
    if model_name is None:
        return list(samples)
    return [s for s in samples if s.labels.get(_MODEL_LABEL, model_name) == model_name]


def sum_by_name(samples: Iterable[Sample], names: Sequence[str]) -> dict[str, float]:
    """Sample name -> sum of its values over every label set (engines, pods); names absent from the
    samples are absent from the result."""
    wanted = frozenset(names)
    sums: dict[str, float] = {}
    for sample in samples:
        if sample.name in wanted:
            sums[sample.name] = sums.get(sample.name, 0.0) + float(sample.value)
    return sums
