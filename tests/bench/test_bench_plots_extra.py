"""matplotlib is the ``plots`` extra: without it ``kvstack verify`` still writes its JSON and JUnit, gives
its verdict, and says which extra the PNGs need.

The run happens in a subprocess whose ``import matplotlib`` fails (``sys.modules["matplotlib"] = None``),
which is what a CD image installed without the extra sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from kvstack.bench.plots import PREFIX_PNG, SWEEP_PNG
from kvstack.bench.verify import JSON_NAME, JUNIT_NAME
from tests.bench.bench_helpers import FakeServer, small_workload

WITHOUT_MATPLOTLIB = (
    "import sys\n"
    "sys.modules['matplotlib'] = None  # import matplotlib raises ImportError, as when it is not installed\n"
    "from kvstack.cli import main\n"
    "raise SystemExit(main(sys.argv[1:]))\n"
)


def test_verify_without_matplotlib_writes_json_and_junit_and_names_the_extra(
    fake_vllm: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake_vllm("ok")
    config = tmp_path / "verify.yaml"
    config.write_text(small_workload(server.url).model_dump_json(exclude={"plots"}))  # plots on (default)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", WITHOUT_MATPLOTLIB, "verify", "--config", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert "PASSED (exit 0)" in proc.stdout
    assert "pip install 'kvstack[plots]'" in proc.stdout
    report = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    assert report["complete"] is True
    assert any("pip install 'kvstack[plots]'" in note for note in report["notes"])
    assert "sweep_png" not in report["files"]
    assert "prefix_png" not in report["files"]
    assert (out / JUNIT_NAME).stat().st_size > 0
    assert not (out / SWEEP_PNG).exists()
    assert not (out / PREFIX_PNG).exists()
