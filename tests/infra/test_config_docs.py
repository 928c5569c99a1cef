"""The docs' field tables and the CLI's flag help say what the config models say (defaults live only in
the models)."""

from __future__ import annotations

import argparse
import re
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from kvstack.infra import cli as infra_cli
from kvstack.infra.config import (
    CapacitySpec,
    EngineSpec,
    ScaleDownBehavior,
    ScaleUpBehavior,
    ScalingSpec,
    StackConfig,
)
from tests.infra.infra_stacks import PROJECT_DIR


def _tables(text: str) -> dict[str, dict[str, str]]:
    """``### `kvstack:<section>``` (and ``### Top level``) -> field -> its default column."""
    out: dict[str, dict[str, str]] = {}
    section = None
    for line in text.splitlines():
        heading = re.fullmatch(r"### `kvstack:(\w+)`|### (Top level)", line)
        if heading:
            section = heading.group(1) or ""
            out[section] = {}
        elif line.startswith("## "):
            section = None
        elif section is not None:
            row = re.match(r"\| `(\w+)` \| ([^|]*) \|", line)
            if row:
                out[section][row.group(1)] = row.group(2).strip()
    return out


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def _section_model(name: str) -> type[BaseModel]:
    annotation = StackConfig.model_fields[name].annotation
    assert isinstance(annotation, type)
    assert issubclass(annotation, BaseModel)
    return annotation


def test_infra_docs_show_each_scalar_default_of_the_models() -> None:
    tables = _tables((PROJECT_DIR / "docs" / "infra.md").read_text(encoding="utf-8"))
    checked, wrong = 0, []
    for section, rows in tables.items():
        model = StackConfig if section == "" else _section_model(section)
        for field, shown in rows.items():
            info = model.model_fields[field]
            if info.is_required():
                if shown != "**required**":
                    wrong.append(f"{section}.{field}: required, docs say {shown}")
                checked += 1
                continue
            default = info.get_default(call_default_factory=True)
            if default is None or default is PydanticUndefined or isinstance(default, BaseModel):
                continue
            if isinstance(default, (list, dict)) and default:
                continue  # non-empty collections are described in words
            checked += 1
            if not shown.startswith(_shown(default)):
                wrong.append(f"{section}.{field}: model default {_shown(default)}, docs say {shown}")
    assert wrong == []
    assert checked > 60  # the tables were found and read


def test_infra_docs_show_the_scale_behavior_defaults() -> None:
    tables = _tables((PROJECT_DIR / "docs" / "infra.md").read_text(encoding="utf-8"))
    for field, model in (("scale_up", ScaleUpBehavior), ("scale_down", ScaleDownBehavior)):
        behavior = model()
        window, pods, period = behavior.stabilization_window_seconds, behavior.pods, behavior.period_seconds
        expected = f"window {window} s, {pods} pod / {period} s"
        assert tables["scaling"][field].startswith(expected)


def test_autoscaling_docs_table_is_the_models_defaults() -> None:
    text = (PROJECT_DIR / "docs" / "autoscaling.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| ([^|]+?) \| \*\*([^*]+)\*\*", text, flags=re.MULTILINE))
    scaling = ScalingSpec()
    assert rows["queue-depth target per replica"] == f"{scaling.queue_target:g}"
    assert rows["KV-cache target per replica"].startswith(f"{scaling.kv_cache_target:g}")
    assert rows["scale-up stabilization"] == f"{scaling.scale_up.stabilization_window_seconds} s" == "300 s"
    assert rows["scale-down stabilization"] == f"{scaling.scale_down.stabilization_window_seconds} s"
    assert rows["KEDA cooldownPeriod"] == f"{scaling.keda_cooldown_period_seconds} s"


def test_plan_flags_help_comes_from_the_models() -> None:
    parser = argparse.ArgumentParser(prog="kvstack")
    infra_cli.add_parser(parser.add_subparsers(dest="command"))
    plan = parser._subparsers._group_actions[0].choices["plan"]  # type: ignore[union-attr,index]
    actions = {a.option_strings[0]: a for a in plan._actions if a.option_strings}
    engine = EngineSpec.model_fields
    assert actions["--kv-cache-dtype"].choices == list(typing.get_args(engine["kv_cache_dtype"].annotation))
    assert actions["--dtype"].choices == ["auto", "bfloat16", "float16", "half", "float32"]
    assert actions["--block-size"].choices == [8, 16, 32, 64, 128]
    assert "(stack default 256)" in (actions["--max-num-seqs"].help or "")
    assert actions["--max-num-seqs"].help == infra_cli.model_flag_help(EngineSpec, "max_num_seqs")
    assert f"(stack default {CapacitySpec().min_concurrency:g})" in (actions["--min-concurrency"].help or "")
    utilization_help = actions["--gpu-memory-utilization"].help or ""
    assert str(engine["gpu_memory_utilization"].description) in utilization_help
